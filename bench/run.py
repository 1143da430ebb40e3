#!/usr/bin/python3
"""calfwd's benchmarks, side by side in one run, in throw-away lab namespaces (`make bench`).

Sections (bench/README.md explains the method and what each number means):
  outage   new connections lost per firewalld reload/restart, pod vs host, three ways:
           no calfwd (the common ad-hoc fix), runtime-only re-apply after Reloaded, calfwd
  latency  Reloaded (and a new firewalld reaching RUNNING) -> calfwd's verified reconcile
  scale    1 / 100 / 1000 / 10000 pools: parse, nftables apply, rule count, firewalld layer
  idle     start -> READY=1, CPU seconds per idle minute, RSS
  storm    CPU cost of fake Reloaded signals from another bus client
  kernel   repair time of calfwd's table; CPU cost of following Felix's and kube-proxy's churn
           (bench/kernel.py)
  chains   CPU and RSS per change in a watched base chain holding 10 vs 3,000 rules
           (bench/chains.py)
  pools    ip_pools = "auto": reading and merging Felix's sets of 10, 256, 4,000 members
           (bench/pools_read.py)

Writes bench/results/<date>.json (or --out) and prints the Markdown tables of docs/benchmarks.md.
Runs as root; needs what the test lab needs (tests/install-deps.sh). Nothing leaves the lab's
namespaces: the probers connect to the lab's own echo servers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
for path in (REPO / "tests", REPO):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from lab import Lab, unavailable  # noqa: E402
from lab.calfwd import STORM  # noqa: E402

import chains  # noqa: E402  (bench/chains.py, beside this file)
import kernel  # noqa: E402  (bench/kernel.py, beside this file)
import reload_policy  # noqa: E402  (bench/reload_policy.py, beside this file)

PYTHON = "/usr/bin/python3"
BENCH = REPO / "bench"
INTERFACES = ("cali+", "tunl0", "vxlan.calico", "vxlan-v6.calico", "wireguard.cali", "wg-v6.cali")

FULL = dict(rate=100.0, reloads=20, restarts=3, reload_gap=1.5, restart_gap=3.0,
            latency_reloads=50, latency_restarts=20, latency_runtime_reloads=20,
            pools=(1, 100, 1000, 10000), source_pools=(1, 100, 1000), idle_seconds=60.0, storm=2000,
            repairs=50, repairs_resync=2, churn_rate=50.0, churn_seconds=30.0,
            chain_rules=(10, 3000), chain_rate=5.0, chain_seconds=30.0, pool_members=(10, 256, 4000))
QUICK = dict(rate=50.0, reloads=2, restarts=1, reload_gap=1.0, restart_gap=1.5,
             latency_reloads=3, latency_restarts=1, latency_runtime_reloads=2,
             pools=(1, 100), source_pools=(1,), idle_seconds=3.0, storm=200,
             repairs=3, repairs_resync=0, churn_rate=50.0, churn_seconds=2.0,
            chain_rules=(10, 3000), chain_rate=5.0, chain_seconds=2.0, pool_members=(10, 4000))


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# Processes in the lab


class Daemon:
    """`calfwd run` in the node namespace; every output line timestamped as it is read."""

    def __init__(self, lab: Lab, config: str, name: str = "bench-calfwd", notify: bool = False):
        self.lab = lab
        self.path = Path(lab.workdir) / f"{name}.toml"
        self.path.write_text(config)
        self.path.chmod(0o644)
        self.lines: List[Tuple[float, str]] = []
        self.notifications: List[Tuple[float, str]] = []
        env = {"PYTHONPATH": str(REPO), "CALFWD_LOG": "stderr", "PYTHONUNBUFFERED": "1",
               "CALFWD_RUN_DIR": str(Path(lab.workdir) / f"{name}-run"),
               "DBUS_SYSTEM_BUS_ADDRESS": lab.bus.address}
        self._notify_sock = None
        if notify:  # sd_notify: a datagram socket on the file system works across namespaces
            notify_path = Path(lab.workdir) / f"{name}.notify"
            self._notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._notify_sock.bind(str(notify_path))
            env["NOTIFY_SOCKET"] = str(notify_path)
            threading.Thread(target=self._read_notify, daemon=True).start()
        self.spawned = time.monotonic()
        self.proc = lab.node.popen(PYTHON, "-m", "calfwd", "--config", str(self.path), "run", env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def _read_notify(self) -> None:
        while True:
            try:
                data = self._notify_sock.recv(65536)
            except OSError:
                return
            self.notifications.append((time.monotonic(), data.decode(errors="replace")))

    def wait_line(self, pattern: str, after: float = 0.0, timeout: float = 60.0) -> Tuple[float, str]:
        """The first line matching `pattern` (a regex) read after monotonic time `after`."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        seen = 0
        while True:
            lines = self.lines
            for t, line in lines[seen:]:
                if t >= after and regex.search(line):
                    return t, line
            seen = len(lines)
            if self.proc.poll() is not None:
                time.sleep(0.2)
                raise RuntimeError(f"calfwd exited ({self.proc.returncode}):\n" + self.tail())
            if time.monotonic() > deadline:
                raise TimeoutError(f"no /{pattern}/ within {timeout}s:\n" + self.tail())
            time.sleep(0.005)

    def wait_ready(self, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, text in list(self.notifications):
                if "READY=1" in text.split("\n"):
                    return t
            time.sleep(0.005)
        raise TimeoutError("no READY=1\n" + self.tail())

    def settle(self, quiet: float = 1.0, timeout: float = 60.0) -> None:
        """Until calfwd has said nothing for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.lines[-1][0] if self.lines else self.spawned
            if time.monotonic() - last >= quiet:
                return
            time.sleep(0.05)

    def tail(self, n: int = 20) -> str:
        return "\n".join(line for _t, line in self.lines[-n:])

    def cpu_seconds(self) -> float:
        return kernel.process_cpu_seconds(self.proc.pid)

    def memory_kb(self) -> Dict[str, int]:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return {line.split(":")[0]: int(line.split()[1]) for line in f
                    if line.startswith(("VmRSS:", "VmHWM:"))}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        if self._notify_sock:
            self._notify_sock.close()


class Streamer:
    """A helper process (prober, monitor) whose stdout lines are read by a thread."""

    def __init__(self, ns, *argv: str, env: Optional[Dict[str, str]] = None):
        self.proc = ns.popen(PYTHON, *argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.lines: List[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(predicate(line) for line in list(self.lines)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
                raise RuntimeError(f"{self.proc.args}: not ready: {self.proc.stderr.read()[-2000:]}")
            time.sleep(0.01)

    def finish(self, timeout: float = 60.0) -> List[str]:
        self.proc.stdin.close()
        self.proc.wait(timeout=timeout)
        self._thread.join(timeout=10)
        return self.lines


def start_prober(ns, dst: str, port: int, rate: float, timeout: float = 1.0, max_seconds: float = 900.0) -> Streamer:
    prober = Streamer(ns, str(BENCH / "prober.py"), dst, str(port), str(rate), str(timeout), str(max_seconds))
    prober.wait_for(lambda line: line == "ready")
    return prober


def start_monitor(lab: Lab, max_seconds: float = 1800.0) -> Streamer:
    monitor = Streamer(lab.node, str(BENCH / "monitor.py"), str(max_seconds),
                       env={"DBUS_SYSTEM_BUS_ADDRESS": lab.bus.address})
    monitor.wait_for(lambda line: '"ready"' in line)
    return monitor


def base_config(lab: Lab, extra: str = "") -> str:
    return (f'[calico]\nip_pools = ["{lab.addr.pool_v4}", "{lab.addr.pool_v6}"]\nnat_outgoing = true\n'
            + extra)


def cli(lab: Lab, config_path: Path, *args: str) -> subprocess.CompletedProcess:
    # The flush guard `apply` installs by default goes to the lab's workdir (never the host's
    # /etc); the lab's firewalld does not run with it, so the numbers are those without it.
    return lab.node.run(PYTHON, "-m", "calfwd", "--config", str(config_path), *args,
                        env={"PYTHONPATH": str(REPO), "DBUS_SYSTEM_BUS_ADDRESS": lab.bus.address,
                             "CALFWD_FLUSH_GUARD_DROPIN": str(Path(lab.workdir) / "bench-flush-guard.conf")},
                        check=False, timeout=120)


# ---------------------------------------------------------------------------------------
# Statistics


def percentile(values: List[float], p: float) -> Optional[float]:
    """Nearest-rank percentile (with 50 samples, p99 is the maximum)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil
    return ordered[int(rank) - 1]


def summary(values: List[float], digits: int = 2) -> Dict[str, Any]:
    if not values:
        return {"n": 0}
    r = lambda v: round(v, digits)  # noqa: E731
    return {"n": len(values), "p50": r(statistics.median(values)), "p90": r(percentile(values, 90)),
            "p99": r(percentile(values, 99)), "max": r(max(values)), "mean": r(statistics.fmean(values)),
            "min": r(min(values))}


FIELD = re.compile(r"\b(duration_ms|nft_duration_ms)=([0-9.]+)")


def fields(line: str) -> Dict[str, float]:
    return {k: float(v) for k, v in FIELD.findall(line)}


# ---------------------------------------------------------------------------------------
# Outage per reload/restart


def setup_no_calfwd(lab: Lab) -> Optional[Daemon]:
    """The common ad-hoc fix: cali+ in the trusted zone (permanent), Felix's rules in place."""
    fw = lab.firewalld
    fw.start()
    fw.firewall_cmd("--permanent", "--zone=trusted", "--add-interface=cali+")
    fw.reload()
    lab.calico.restore()  # Felix's resync after the flush of start and reload
    return None


def setup_runtime(lab: Lab) -> Daemon:
    """Runtime-only re-apply after Reloaded (what Docker does with its zone): the zone and the
    policies exist permanently (made once by calfwd in permanent mode), the interfaces are bound
    at runtime only, by calfwd in mode = "runtime", again after every reload and restart."""
    fw = lab.firewalld
    fw.start()  # flushes Felix's rules: not restored, natOutgoing is calfwd's table alone
    once = Path(lab.workdir) / "permanent-once.toml"
    once.write_text(base_config(lab))
    once.chmod(0o644)
    result = cli(lab, once, "apply")
    if result.returncode != 0:
        raise RuntimeError(f"calfwd apply: {result.stdout}{result.stderr}")
    for iface in INTERFACES:
        fw.firewall_cmd("--permanent", "--zone=calfwd", f"--remove-interface={iface}")
    fw.reload()
    daemon = Daemon(lab, base_config(lab, '[firewalld]\nmode = "runtime"\n'))
    daemon.wait_line(r"calfwd\[reconciled\].*after start.*add interface cali\+ to zone 'calfwd' \(runtime\)")
    return daemon


def setup_permanent(lab: Lab) -> Daemon:
    lab.firewalld.start()  # flushes Felix's rules: not restored
    daemon = Daemon(lab, base_config(lab))
    daemon.wait_line(r"calfwd\[reconciled\].*after start.*verified")
    return daemon


OUTAGE_ROWS = [
    ("no-calfwd", "no calfwd (cali+ in trusted, Felix's rules)", setup_no_calfwd),
    ("runtime", "runtime re-apply after Reloaded (Docker-style)", setup_runtime),
    ("calfwd", "calfwd (permanent, default)", setup_permanent),
]


def disturbance_schedule(reloads: int, restarts: int) -> List[str]:
    events = [(i / reloads, "reload") for i in range(reloads)] if reloads else []
    events += [((i + 0.5) / restarts, "restart") for i in range(restarts)]
    return [kind for _pos, kind in sorted(events)]


def attribute(attempts: List[List[Any]], events: List[Dict[str, Any]], end: float) -> Dict[str, Any]:
    """Failed attempts per disturbance: those started between it and the next one."""
    first = events[0]["t0"] if events else end
    out: Dict[str, Any] = {"attempts": len(attempts), "failed": sum(1 for a in attempts if not a[1]),
                           "failed_before_first": sum(1 for a in attempts if a[0] < first and not a[1])}
    per_kind: Dict[str, List[int]] = {}
    for i, event in enumerate(events):
        stop = events[i + 1]["t0"] if i + 1 < len(events) else end
        lost = sum(1 for a in attempts if event["t0"] <= a[0] < stop and not a[1])
        per_kind.setdefault(event["kind"], []).append(lost)
    for kind, counts in per_kind.items():
        out[f"per_{kind}"] = {"median": statistics.median(counts), "mean": round(statistics.fmean(counts), 2),
                              "max": max(counts), "total": sum(counts), "counts": counts}
    # The longest run of consecutive failures, as time (the outage a client would see).
    worst, run_start, prev_fail = 0.0, None, False
    for t, ok, _ms, _why in sorted(attempts):
        if not ok and not prev_fail:
            run_start = t
        if not ok:
            worst = max(worst, t - run_start)
        prev_fail = not ok
    out["longest_failure_run_ms"] = round(worst * 1000, 1)
    reasons: Dict[str, int] = {}
    for a in attempts:
        if not a[1]:
            reasons[a[3]] = reasons.get(a[3], 0) + 1
    out["failure_reasons"] = reasons
    return out


def outage_row(key: str, name: str, setup: Callable[[Lab], Optional[Daemon]], p: Dict[str, Any],
               lab_factory: Callable[[], Lab] = Lab) -> Dict[str, Any]:
    log(f"outage: {name}")
    with lab_factory() as lab:
        daemon = setup(lab)
        if not lab.pod_reaches_proxy(within=5.0):
            raise RuntimeError(f"{name}: pod cannot reach the proxy before the first disturbance")
        a = lab.addr
        probers = {"pod": start_prober(lab.pod, a.proxy_v4, a.proxy_port, p["rate"]),
                   "host": start_prober(lab.node, a.proxy_v4, a.proxy_port, p["rate"])}
        time.sleep(1.0)
        events: List[Dict[str, Any]] = []
        for kind in disturbance_schedule(p["reloads"], p["restarts"]):
            t0 = time.monotonic()
            if kind == "reload":
                lab.firewalld.reload()
            else:
                lab.firewalld.restart()
            events.append({"kind": kind, "t0": t0, "command_s": round(time.monotonic() - t0, 3)})
            time.sleep(p["reload_gap"] if kind == "reload" else p["restart_gap"])
        end = time.monotonic()
        results = {}
        for who, prober in probers.items():
            data = json.loads(prober.finish()[-1])
            results[who] = attribute(data["attempts"], [dict(e) for e in events], end)
        reconciles = None
        if daemon is not None:
            reconciles = sum(1 for _t, line in daemon.lines if line.startswith("calfwd[reconciled]"))
            alive = daemon.proc.poll() is None
            daemon.stop()
            if not alive:
                raise RuntimeError(f"{name}: calfwd died:\n{daemon.tail()}")
    pod, host = results["pod"]["failed"], results["host"]["failed"]
    return {"key": key, "name": name, "pod": results["pod"], "host": results["host"],
            "pod_over_host": round(pod / host, 2) if host else None, "calfwd_reconciles": reconciles,
            "reload_command_s": summary([e["command_s"] for e in events if e["kind"] == "reload"], 3),
            "restart_command_s": summary([e["command_s"] for e in events if e["kind"] == "restart"], 3)}


def bench_outage(p: Dict[str, Any]) -> Dict[str, Any]:
    rows = [outage_row(key, name, setup, p) for key, name, setup in OUTAGE_ROWS]
    return {"rate_per_prober": p["rate"], "attempt_timeout_s": 1.0, "reloads": p["reloads"],
            "restarts": p["restarts"], "felix_rules": "flushed by firewalld and not restored (calfwd rows)",
            "rows": rows}


# ---------------------------------------------------------------------------------------
# Latency


def latency_series(lab: Lab, daemon: Daemon, monitor: Streamer, reloads: int, restarts: int,
                   pattern_reload: str) -> Dict[str, Any]:
    t_begin = time.monotonic()
    for _ in range(reloads):
        t = time.monotonic()
        lab.firewalld.reload()
        daemon.wait_line(pattern_reload, after=t)
        time.sleep(0.7)  # longer than calfwd's 0.5 s hold-off: each reload gets its own reconcile
    restart_marks = []
    for _ in range(restarts):
        t = time.monotonic()
        lab.firewalld.restart()
        daemon.wait_line(r"calfwd\[reconciled\] reconciled after firewalld-started", after=t)
        restart_marks.append(t)
        time.sleep(0.7)
    events = [json.loads(line) for line in list(monitor.lines) if line.startswith("{")]
    events = [e for e in events if e["t"] >= t_begin]
    reconciled = [(t, line) for t, line in daemon.lines if line.startswith("calfwd[reconciled]")]

    def first_after(t0: float, trigger: str) -> Optional[Tuple[float, str]]:
        for t, line in reconciled:
            if t >= t0 and f"after {trigger}" in line:
                return t, line
        return None

    out: Dict[str, Any] = {}
    for kind, trigger in (("reloaded", "firewalld-reloaded"), ("state", "firewalld-started")):
        e2e, own, nft = [], [], []
        for event in events:
            if event["kind"] != kind or (kind == "state" and event.get("state") != "RUNNING"):
                continue
            found = first_after(event["t"] - 0.05, trigger)
            if not found or "verified" not in found[1] or "NOT verified" in found[1]:
                continue
            e2e.append((found[0] - event["t"]) * 1000)
            f = fields(found[1])
            own.append(f.get("duration_ms", 0.0))
            nft.append(f.get("nft_duration_ms", 0.0))
        out[kind] = {"end_to_end_ms": summary(e2e), "calfwd_duration_ms": summary(own),
                     "nft_duration_ms": summary(nft)}
    starts = [e for e in events if e["kind"] == "owner" and e.get("new")]
    states = [e for e in events if e["kind"] == "state"]
    out["firewalld_startup_ms"] = summary([(s["t"] - o["t"]) * 1000 for o, s in zip(starts, states)])
    return out


def bench_latency(p: Dict[str, Any]) -> Dict[str, Any]:
    log("latency: permanent mode")
    result: Dict[str, Any] = {}
    with Lab() as lab:
        lab.firewalld.start()
        daemon = Daemon(lab, base_config(lab))
        daemon.wait_line(r"calfwd\[reconciled\].*after start")
        daemon.settle()
        monitor = start_monitor(lab)
        result["permanent"] = latency_series(
            lab, daemon, monitor, p["latency_reloads"], p["latency_restarts"],
            r"calfwd\[reconciled\] reconciled after firewalld-reloaded")
        monitor.finish()
        daemon.stop()
    log("latency: runtime mode (interfaces re-added after every Reloaded)")
    with Lab() as lab:
        daemon = setup_runtime(lab)
        daemon.settle()
        monitor = start_monitor(lab)
        result["runtime"] = latency_series(
            lab, daemon, monitor, p["latency_runtime_reloads"], 0,
            r"calfwd\[reconciled\] reconciled after firewalld-reloaded")
        result["runtime"].pop("state", None)
        result["runtime"].pop("firewalld_startup_ms", None)
        monitor.finish()
        daemon.stop()
    return result


# ---------------------------------------------------------------------------------------
# Scale


def bench_scale(p: Dict[str, Any]) -> Dict[str, Any]:
    rows = []
    with Lab() as lab:
        lab.firewalld.start()
        runs = [(n, False) for n in p["pools"]] + [(n, True) for n in p["source_pools"]]
        for n, sources in runs:
            log(f"scale: {n} pools" + (" as zone sources" if sources else ""))
            t = time.monotonic()
            result = lab.node.run(PYTHON, str(BENCH / "scale.py"), str(n), *(["--sources"] if sources else []),
                                  env={"PYTHONPATH": str(REPO), "DBUS_SYSTEM_BUS_ADDRESS": lab.bus.address},
                                  check=False, timeout=1800)
            if result.returncode != 0:
                raise RuntimeError(f"scale.py {n}: {result.stderr[-3000:]}")
            row = json.loads(result.stdout.strip().splitlines()[-1])
            row["wall_s"] = round(time.monotonic() - t, 2)
            rows.append(row)
    return {"rows": rows}


def bench_pools(p: Dict[str, Any]) -> Dict[str, Any]:
    rows = []
    with Lab(calico=False) as lab:  # no Felix: pools_read.py creates `table ip calico`
        for n in p["pool_members"]:
            log(f"pools: Felix's sets with {n} members each")
            result = lab.node.run(PYTHON, str(BENCH / "pools_read.py"), str(n), env={"PYTHONPATH": str(REPO)},
                                  check=False, timeout=1800)
            if result.returncode != 0:
                raise RuntimeError(f"pools_read.py {n}: {result.stderr[-3000:]}")
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            lab.node.run("nft", "delete", "table", "ip", "calico")
    return {"rows": rows}


# ---------------------------------------------------------------------------------------
# Idle cost, start-up, and the storm




def wait_cpu_quiet(daemon: Daemon, quiet: float = 0.5, timeout: float = 30.0) -> None:
    """Until calfwd's CPU time has not moved for `quiet` seconds (it has drained its queue)."""
    deadline = time.monotonic() + timeout
    last, since = daemon.cpu_seconds(), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.05)
        now = daemon.cpu_seconds()
        if now != last:
            last, since = now, time.monotonic()


def bench_idle(p: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    idle: Dict[str, Any] = {}
    with Lab() as lab:
        lab.firewalld.start()
        log("idle: start to READY=1, fresh (creates the zone and policies, one firewalld reload)")
        daemon = Daemon(lab, base_config(lab), name="fresh", notify=True)
        idle["ready_fresh_ms"] = round((daemon.wait_ready() - daemon.spawned) * 1000, 1)
        daemon.settle()
        daemon.stop()
        log("idle: start to READY=1, restart (everything already there)")
        daemon = Daemon(lab, base_config(lab), name="warm", notify=True)
        idle["ready_restart_ms"] = round((daemon.wait_ready() - daemon.spawned) * 1000, 1)
        daemon.settle(quiet=2.0)
        log(f"idle: {p['idle_seconds']:.0f} s doing nothing (default resync every 60 s)")
        cpu0, t0 = daemon.cpu_seconds(), time.monotonic()
        time.sleep(p["idle_seconds"])
        cpu1, t1 = daemon.cpu_seconds(), time.monotonic()
        idle["idle_window_s"] = round(t1 - t0, 2)
        idle["cpu_s_per_idle_minute"] = round((cpu1 - cpu0) * 60.0 / (t1 - t0), 4)
        mem = daemon.memory_kb()
        idle["rss_mb"] = round(mem["VmRSS"] / 1024, 1)
        idle["rss_peak_mb"] = round(mem["VmHWM"] / 1024, 1)
        idle["open_fds"] = len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))

        log(f"storm: {p['storm']} fake Reloaded signals from another client")
        wait_cpu_quiet(daemon)
        mark = time.monotonic()
        cpu0 = daemon.cpu_seconds()
        lab.node.run(PYTHON, "-c", STORM, str(p["storm"]), env={"DBUS_SYSTEM_BUS_ADDRESS": lab.bus.address},
                     timeout=300)
        wait_cpu_quiet(daemon)
        cpu = daemon.cpu_seconds() - cpu0
        honoured = sum(1 for t, line in daemon.lines if t >= mark and line.startswith(
            ("calfwd[firewalld-reloaded]", "calfwd[reconciled]")))
        storm = {"signals": p["storm"], "cpu_s": round(cpu, 4),
                 "cpu_us_per_signal": round(cpu / p["storm"] * 1e6, 1), "reconciles_triggered": honoured,
                 "calfwd_alive": daemon.proc.poll() is None}
        daemon.stop()
    return idle, storm


# ---------------------------------------------------------------------------------------
# The run


def meta(p: Dict[str, Any], quick: bool) -> Dict[str, Any]:
    def out(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=REPO).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "params": {k: list(v) if isinstance(v, tuple) else v for k, v in p.items()},
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "firewalld": out("/usr/bin/python3", "-c", "import firewall.config as c; print(c.VERSION)"),
        "nft": out("/usr/sbin/nft", "--version"),
        "calfwd_commit": out("git", "rev-parse", "--short", "HEAD"),
        "calfwd_tree_dirty": bool(out("git", "status", "--porcelain", "--", "calfwd")),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


SECTIONS = ("outage", "latency", "scale", "idle", "kernel", "chains", "pools", "reloadpolicy")


def run(quick: bool, sections: Tuple[str, ...]) -> Dict[str, Any]:
    p = QUICK if quick else FULL
    result: Dict[str, Any] = {"meta": meta(p, quick)}
    timings = {}
    for section in sections:
        t = time.monotonic()
        if section == "outage":
            result["outage"] = bench_outage(p)
        elif section == "latency":
            result["latency"] = bench_latency(p)
        elif section == "scale":
            result["scale"] = bench_scale(p)
        elif section == "idle":
            result["idle"], result["storm"] = bench_idle(p)
        elif section == "kernel":
            result["kernel"] = kernel.bench_kernel(p, Daemon, base_config, summary, log, wait_cpu_quiet)
        elif section == "chains":
            result["chains"] = chains.bench_chains(p, Daemon, base_config, log, wait_cpu_quiet)
        elif section == "pools":
            result["pools"] = bench_pools(p)
        elif section == "reloadpolicy":
            result["reloadpolicy"] = reload_policy.bench_reload_policy(p, outage_row, setup_permanent, log)
        timings[section] = round(time.monotonic() - t, 1)
    result["meta"]["section_seconds"] = timings
    result["meta"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


# ---------------------------------------------------------------------------------------
# Markdown


def markdown(r: Dict[str, Any]) -> str:
    m = r["meta"]
    out = [f"Run {m['date']} ({'quick' if m['quick'] else 'full'}), firewalld {m['firewalld']}, "
           f"kernel {m['kernel']}, {m['cpus']} CPUs, load average {m['loadavg_start'][0]} at start, "
           f"{m['loadavg_end'][0]} at end.", ""]
    if "outage" in r:
        o = r["outage"]
        out += [f"**Outage**: new connections lost, {o['rate_per_prober']:.0f} new connections/s per prober, "
                f"{o['reloads']} reloads and {o['restarts']} restarts of firewalld "
                "(median per reload / per restart, total over the run):", "",
                "| setup | pod per reload | host per reload | pod per restart | host per restart "
                "| pod total | host total | pod / host |",
                "|---|---|---|---|---|---|---|---|"]
        for row in o["rows"]:
            pod, host = row["pod"], row["host"]
            out.append("| {} | {} | {} | {} | {} | {} of {} | {} of {} | {} |".format(
                row["name"], pod.get("per_reload", {}).get("median", "-"), host.get("per_reload", {}).get("median", "-"),
                pod.get("per_restart", {}).get("median", "-"), host.get("per_restart", {}).get("median", "-"),
                pod["failed"], pod["attempts"], host["failed"], host["attempts"],
                row["pod_over_host"] if row["pod_over_host"] is not None else "-"))
        out.append("")
    if "latency" in r:
        lat = r["latency"]
        out += ["**Reconcile latency** (ms; end to end = from the signal, as a second bus client "
                "receives it, to calfwd's `reconciled ... verified` line):", "",
                "| trigger | n | end to end p50 | p99 | calfwd's duration_ms p50 | p99 | nftables part p50 | p99 |",
                "|---|---|---|---|---|---|---|---|"]
        for label, series in (("Reloaded (permanent)", lat.get("permanent", {}).get("reloaded")),
                              ("new firewalld RUNNING (permanent)", lat.get("permanent", {}).get("state")),
                              ("Reloaded (runtime mode: re-adds interfaces)", lat.get("runtime", {}).get("reloaded"))):
            if not series or not series["end_to_end_ms"].get("n"):
                continue
            e, d, n = series["end_to_end_ms"], series["calfwd_duration_ms"], series["nft_duration_ms"]
            out.append(f"| {label} | {e['n']} | {e['p50']} | {e['p99']} | {d['p50']} | {d['p99']} | {n['p50']} | {n['p99']} |")
        out.append("")
    if "scale" in r:
        out += ["**Scale** (ms; nftables apply = read + plan + one transaction):", "",
                "| pools | zone sources | parse + validate | nft create | nft no-op | nft one pool changed "
                "| rules | set elements | firewalld layer create | whole reconcile, nothing to do |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for row in r["scale"]["rows"]:
            out.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                row["pools"], "yes" if row["trust_pool_sources"] else "no", row["parse_ms"], row["nft_create_ms"],
                row["nft_noop_ms"], row["nft_change_ms"], row["rules"], row["set_elements"],
                row.get("fw_create_ms", "-"), row.get("reconcile_noop_ms", "-")))
        out.append("")
    if "idle" in r:
        i, s = r["idle"], r["storm"]
        out += ["**Idle and start-up**:", "",
                "| start to READY=1 (fresh / restart) | CPU per idle minute | RSS (peak) | open fds "
                "| fake Reloaded storm |", "|---|---|---|---|---|",
                f"| {i['ready_fresh_ms']} ms / {i['ready_restart_ms']} ms | {i['cpu_s_per_idle_minute']} s "
                f"| {i['rss_mb']} MB ({i['rss_peak_mb']} MB) | {i['open_fds']} "
                f"| {s['signals']} signals: {s['cpu_s']} CPU-s ({s['cpu_us_per_signal']} µs each), "
                f"{s['reconciles_triggered']} reconciles |", ""]
    if "kernel" in r:
        out += kernel.markdown(r["kernel"])
    if "chains" in r:
        out += chains.markdown(r["chains"])
    if "reloadpolicy" in r:
        out += reload_policy.markdown(r["reloadpolicy"])
    if "pools" in r:
        out += ["**ip_pools = \"auto\"**: Felix's two IPv4 pool sets with N members each (ms, median of 5):", "",
                "| members per set | read (libnftables) | resolve | describe | merge alone, uncapped | outcome |",
                "|---|---|---|---|---|---|"]
        for row in r["pools"]["rows"]:
            out.append(f"| {row['members']} | {row['read_ms']} | {row['resolve_ms']} | {row['describe_ms']} "
                       f"| {row['merge_ms']} | {row['outcome']} |")
        out.append("")
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts (the CI smoke test)")
    parser.add_argument("--out", help="JSON file (default: bench/results/<date>.json)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    args = parser.parse_args(argv)
    reason = unavailable()
    if reason:
        print(f"bench: {reason}", file=sys.stderr)
        return 2
    sections = tuple(s for s in args.sections.split(",") if s)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    started = time.monotonic()
    result = run(args.quick, sections)
    result["meta"]["total_seconds"] = round(time.monotonic() - started, 1)
    out = Path(args.out) if args.out else BENCH / "results" / f"{datetime.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    log(f"wrote {out} in {result['meta']['total_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
