"""Kernel-event benchmarks (issue 9), a section of bench/run.py (`--sections kernel`).

repair   time from someone's `nft delete table inet calfwd` to calfwd's table back, as an
         independent `nft --json monitor` in the node namespace sees both transactions;
         side by side with kernel_events = false, where only the resync repairs it.
churn    calfwd's CPU (its own threads plus its nft monitor child) and RSS, idle and while
         Felix-like and kube-proxy-like writers change rules in their own chains at a fixed
         rate; the cost per churned rule is the difference divided by the changes made.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, List

from lab import Lab
from lab.kubeproxy import KubeProxySim

PYTHON = "/usr/bin/python3"

# In the node namespace: delete calfwd's table N times, time each until it is back.
REPAIR = r"""
import json, os, select, subprocess, sys, time, nftables
count, gap, limit = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
mon = subprocess.Popen(["nft", "--json", "monitor"], stdout=subprocess.PIPE)
fd = mon.stdout.fileno()
time.sleep(0.5)
nft = nftables.Nftables()
out, buffer = [], b""
# calfwd's repair is one transaction whose last object is the ip6 masquerade rule
done = lambda line: (b'"add": {"rule": {"family": "inet", "table": "calfwd"' in line
                     and b'"ip6"' in line and b"masquerade" in line)
for _ in range(count):
    t0 = time.perf_counter()
    rc, _o, err = nft.cmd("delete table inet calfwd")
    assert rc == 0, err
    result = None
    while result is None:
        left = t0 + limit - time.perf_counter()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break  # not back within the limit
        lines = (buffer + os.read(fd, 1 << 16)).split(b"\n")
        buffer = lines.pop()
        if any(done(line) for line in lines):
            result = (time.perf_counter() - t0) * 1000
    out.append(result)
    time.sleep(gap)
    buffer = b""
    while select.select([fd], [], [], 0)[0]:
        os.read(fd, 1 << 16)  # the rest of the repair's lines
mon.terminate()
print(json.dumps(out))
"""

# In the node namespace: rule changes in a Felix-like and a kube-proxy-like chain, `rate` per
# second for `seconds`, alternating add and flush (each one rule event on the monitor).
CHURN = r"""
import json, sys, time, nftables
rate, seconds = float(sys.argv[1]), float(sys.argv[2])
nft = nftables.Nftables()
for cmd in ("add chain ip filter cali-lab-churn", "add chain ip nat KUBE-SVC-LABCHURN"):
    assert nft.cmd(cmd)[0] == 0
ops = ["add rule ip filter cali-lab-churn counter accept", "flush chain ip filter cali-lab-churn",
       "add rule ip nat KUBE-SVC-LABCHURN counter accept", "flush chain ip nat KUBE-SVC-LABCHURN"]
start, n = time.monotonic(), 0
while time.monotonic() - start < seconds:
    assert nft.cmd(ops[n % 4])[0] == 0
    n += 1
    time.sleep(max(0.0, start + n / rate - time.monotonic()))
print(json.dumps({"changes": n, "seconds": time.monotonic() - start}))
"""


def _children(pid: int) -> List[str]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return f.read().split()
    except OSError:
        return []


def process_cpu_seconds(pid: int) -> float:
    """CPU time of all of a process's threads, ns resolution (/proc/<pid>/task/*/schedstat:
    time on CPU); /proc/<pid>/stat's utime+stime only count whole clock ticks (10 ms)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def children_cpu_seconds(pid: int) -> float:
    """CPU of a process's direct children (the nft monitor)."""
    return sum(process_cpu_seconds(int(child)) for child in _children(pid))


def children_rss_mb(pid: int) -> float:
    total = 0
    for child in _children(pid):
        try:
            with open(f"/proc/{child}/status") as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except OSError:  # restarted in between
            pass
    return round(total / 1024, 1)


def bench_kernel(p: Dict[str, Any], daemon_cls: Any, base_config: Any, summary: Any, log: Any,
                 wait_cpu_quiet: Any) -> Dict[str, Any]:
    result: Dict[str, Any] = {}
    with Lab() as lab:
        lab.firewalld.start()
        KubeProxySim(lab.node).install()

        def cpu(daemon: Any) -> float:
            return daemon.cpu_seconds() + children_cpu_seconds(daemon.proc.pid)

        def split(daemon: Any) -> Any:
            return daemon.cpu_seconds(), children_cpu_seconds(daemon.proc.pid)

        for events in (True, False):
            key = "kernel_events" if events else "resync_only"
            extra = "" if events else "[daemon]\nkernel_events = false\n"
            daemon = daemon_cls(lab, base_config(lab, extra), name=key)
            daemon.wait_line(r"^calfwd\[reconciled\]")
            daemon.settle(quiet=2.0)
            n = p["repairs"] if events else p["repairs_resync"]
            log(f"kernel: {n} deletions of calfwd's table ({key})")
            out = lab.node.run(PYTHON, "-c", REPAIR, str(n), "0.6", "90", timeout=900).stdout
            samples: List[Any] = json.loads(out)
            done = [s for s in samples if s is not None]
            result.setdefault("repair", {})[key] = dict(summary(done), not_repaired=len(samples) - len(done))
            row: Dict[str, Any] = {}
            if events:
                lab.calico.restore()
                daemon.settle(quiet=2.0)
                wait_cpu_quiet(daemon)
                log(f"kernel: {p['idle_seconds']:.0f} s idle, monitor on")
                c0, t0 = cpu(daemon), time.monotonic()
                time.sleep(p["idle_seconds"])
                row["idle_cpu_s_per_minute"] = round((cpu(daemon) - c0) * 60 / (time.monotonic() - t0), 4)
            log(f"kernel: churn at {p['churn_rate']:.0f} changes/s for {p['churn_seconds']:.0f} s ({key})")
            wait_cpu_quiet(daemon)
            c0, (own0, child0) = cpu(daemon), split(daemon)
            churn = json.loads(lab.node.run(PYTHON, "-c", CHURN, str(p["churn_rate"]), str(p["churn_seconds"]),
                                            timeout=600).stdout)
            wait_cpu_quiet(daemon)
            spent = cpu(daemon) - c0
            own1, child1 = split(daemon)
            row.update(changes=churn["changes"], churn_seconds=round(churn["seconds"], 1),
                       churn_cpu_s_per_minute=round(spent * 60 / churn["seconds"], 4),
                       cpu_us_per_change=round(spent / churn["changes"] * 1e6, 1),
                       calfwd_us_per_change=round((own1 - own0) / churn["changes"] * 1e6, 1),
                       monitor_us_per_change=round((child1 - child0) / churn["changes"] * 1e6, 1),
                       rss_mb=round(daemon.memory_kb()["VmRSS"] / 1024, 1),
                       monitor_rss_mb=children_rss_mb(daemon.proc.pid),
                       repairs_logged=sum(1 for _t, line in daemon.lines if line.startswith("calfwd[table-repaired]")))
            result.setdefault("churn", {})[key] = row
            daemon.stop()
    return result


def markdown(k: Dict[str, Any]) -> List[str]:
    rep, churn = k["repair"], k["churn"]
    on, off = rep["kernel_events"], rep["resync_only"]
    out = ["**Repair of calfwd's table** (ms from `nft delete table inet calfwd` to the table back, as "
           "another `nft monitor` sees both):", "",
           "| setup | deletions | median | p99 | max | not back within 90 s |", "|---|---|---|---|---|---|",
           f"| kernel events (default) | {on.get('n', 0)} | {on.get('p50')} | {on.get('p99')} | {on.get('max')} "
           f"| {on['not_repaired']} |",
           f"| `kernel_events = false` (resync every 60 s) | {off.get('n', 0)} | {off.get('p50')} | {off.get('p99')} "
           f"| {off.get('max')} | {off['not_repaired']} |", "",
           "**Cost of following the kernel** (calfwd's threads plus its nft monitor child):", "",
           "| setup | idle CPU per minute | CPU per minute at churn | µs per churned rule | RSS calfwd + monitor |",
           "|---|---|---|---|---|"]
    for key, label in (("kernel_events", "kernel events (default)"), ("resync_only", "`kernel_events = false`")):
        row = churn[key]
        out.append(f"| {label} | {row.get('idle_cpu_s_per_minute', '-')} s | {row['churn_cpu_s_per_minute']} s "
                   f"({row['changes']} changes in {row['churn_seconds']} s) | {row['cpu_us_per_change']} "
                   f"| {row['rss_mb']} MB + {row['monitor_rss_mb']} MB |")
    out.append("")
    return out
