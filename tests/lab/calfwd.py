"""calfwd itself inside the lab: the CLI and the daemon, run in the node namespace.

Both talk only to the lab's private bus (DBUS_SYSTEM_BUS_ADDRESS) and the node's nftables;
events go to a log file (stderr), read back line by line for assertions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import List, Optional

REPO = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"


# A bus client that is not firewalld: emits argv[1] Reloaded signals, then makes one method
# call to the bus itself. dbus-daemon handles a connection's messages in order, so once that
# call returns every signal has been routed to calfwd's connection. Prints its unique name.
STORM = r"""
import sys
import dbus, dbus.lowlevel
bus = dbus.SystemBus()
for _ in range(int(sys.argv[1])):
    bus.send_message(dbus.lowlevel.SignalMessage(
        "/org/fedoraproject/FirewallD1", "org.fedoraproject.FirewallD1", "Reloaded"))
bus.flush()
bus.call_blocking("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId", "", ())
print(bus.get_unique_name())
"""


def footprint(lab) -> dict:
    """Everything calfwd makes, as nft and firewalld print it: equal means nothing grew."""
    fw = lab.firewalld
    return {
        "table": lab.node.run("nft", "list", "table", "inet", "calfwd", check=False).stdout,
        "zone": fw.firewall_cmd("--zone=calfwd", "--list-all"),
        "zone_permanent": fw.firewall_cmd("--permanent", "--zone=calfwd", "--list-all"),
        "policies": fw.firewall_cmd("--list-all-policies"),
        "policies_permanent": fw.firewall_cmd("--permanent", "--list-all-policies"),
        # *.xml only: firewalld leaves *.xml.old backups behind on every update.
        "zone_files": sorted(p.name for p in (fw.config_dir / "zones").glob("*.xml")),
        "policy_files": sorted(p.name for p in (fw.config_dir / "policies").glob("*.xml")),
    }


def traffic_ok(lab) -> bool:
    """Both directions of the incident: pod -> proxy (natOutgoing) and peer -> pod (forwarding)."""
    return lab.pod_reaches_proxy() and lab.peer_reaches_pod()


AUTO_CONFIG = '[calico]\nip_pools = "auto"\n'


def minimal_config(lab) -> str:
    """The issue's two-line config, with the lab's pools. CALFWD_LAB_POOLS=auto: the one line
    `ip_pools = "auto"` instead, the same on every node of every cluster (pools from Felix)."""
    if os.environ.get("CALFWD_LAB_POOLS") == "auto":
        return AUTO_CONFIG
    return (f'[calico]\nip_pools = ["{lab.addr.pool_v4}", "{lab.addr.pool_v6}"]\n'
            "nat_outgoing = true\n")


class Calfwd:
    def __init__(self, lab, config: Optional[str] = None, name: str = "calfwd"):
        self.lab = lab
        self.config_path = Path(lab.workdir) / f"{name}.toml"
        self.log_path = Path(lab.workdir) / f"{name}.log"
        self.write_config(config or minimal_config(lab))
        self.proc: Optional[subprocess.Popen] = None
        # CALFWD_FIREWALLD_DIR: doctor reads, and cleanup (firewalld stopped) changes, the lab
        # firewalld's --system-config directory, never the host's /etc/firewalld.
        self.env = {"PYTHONPATH": str(REPO), "CALFWD_LOG": "stderr",
                    "DBUS_SYSTEM_BUS_ADDRESS": lab.bus.address, "PYTHONUNBUFFERED": "1",
                    "CALFWD_FIREWALLD_DIR": str(lab.firewalld.config_dir),
                    # `calfwd apply` installs the flush guard where firewalld flushes ([firewalld]
                    # flush_guard = "auto"): into the lab's workdir, never the host's /etc.
                    "CALFWD_FLUSH_GUARD_DROPIN": str(Path(lab.workdir) / f"{name}-firewalld.service.d"
                                                     / "calfwd-flush-guard.conf"),
                    # The daemon's status files (/run/calfwd on a host), read by `calfwd status`.
                    "CALFWD_RUN_DIR": str(Path(lab.workdir) / f"{name}-run")}

    def write_config(self, text: str) -> None:
        self.config_path.write_text(text)
        self.config_path.chmod(0o644)

    def cli(self, *args: str, check: bool = False, timeout: float = 60.0):
        return self.lab.node.run(PYTHON, "-m", "calfwd", "--config", str(self.config_path), *args,
                                 env=self.env, check=check, timeout=timeout)

    # -- the daemon ------------------------------------------------------------------------

    def start(self, wait_event: Optional[str] = "reconciled", timeout: float = 30.0) -> None:
        """Start `calfwd run` and wait for its first reconcile to be reported."""
        mark = self.line_count()
        with open(self.log_path, "a") as out:
            self.proc = self.lab.node.popen(PYTHON, "-m", "calfwd", "--config", str(self.config_path),
                                            "run", env=self.env, stdout=out, stderr=subprocess.STDOUT)
        if wait_event:
            self.wait_for(wait_event, after=mark, timeout=timeout)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if not self.running:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.running:
            self.proc.kill()
            self.proc.wait(timeout=10)

    # -- its events ------------------------------------------------------------------------

    def lines(self) -> List[str]:
        try:
            return self.log_path.read_text().splitlines()
        except FileNotFoundError:
            return []

    def line_count(self) -> int:
        return len(self.lines())

    def events(self, event: str, after: int = 0) -> List[str]:
        return [line for line in self.lines()[after:] if line.startswith(f"calfwd[{event}]")]

    def wait_for(self, event: str, after: int = 0, count: int = 1, timeout: float = 30.0) -> List[str]:
        """Block until `count` events of a kind were logged after line `after`."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(event, after)
            if len(found) >= count:
                return found
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"calfwd exited ({self.proc.returncode}) before '{event}':\n"
                                     + "\n".join(self.lines()[-30:]))
            if time.monotonic() > deadline:
                raise AssertionError(f"no '{event}' event within {timeout}s:\n"
                                     + "\n".join(self.lines()[-30:]))
            time.sleep(0.02)

    # -- its status file -------------------------------------------------------------------

    def status_doc(self) -> Optional[dict]:
        """The daemon's status.json (rewritten at each reconcile it reports), None before the first."""
        try:
            return json.loads((Path(self.env["CALFWD_RUN_DIR"]) / "status.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def wait_resyncs(self, count: int, timeout: float = 15.0) -> None:
        """Block until the daemon has finished `count` more reconciles after a resync: each
        rewrites status.json (a new `updated`, last_reconcile.trigger "resync"), including the
        quiet ones that log nothing. A test that "resyncs change nothing" needs them to happen."""
        from lab.wait import wait_until

        seen = set()
        first = self.status_doc()
        before = first["updated"] if first else None

        def done() -> bool:
            doc = self.status_doc()
            if doc and doc["updated"] != before and doc["last_reconcile"]["trigger"] == "resync":
                seen.add(doc["updated"])
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"calfwd exited ({self.proc.returncode}) during the resyncs")
            return len(seen) >= count
        wait_until(done, timeout, f"{count} resync(s) of calfwd's daemon", interval=0.05)

    # -- its nft monitor -------------------------------------------------------------------

    def monitor_pid(self) -> Optional[int]:
        """The daemon's `nft --json monitor` child, None while it has none."""
        assert self.proc is not None
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return None
        for pid in children:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline[1:3] == [b"--json", b"monitor"]:
                return int(pid)
        return None

    def wait_monitor_listening(self, timeout: float = 10.0) -> int:
        """Block until the daemon's nft monitor has joined nftables' netlink group (its socket
        in /proc/PID/net/netlink, the node's namespace): from then on every nftables change
        reaches calfwd. Then until the daemon has had its first look at the chains
        (MONITOR_SETTLE after the monitor started, by the monitor's own start time). Its pid."""
        from calfwd.watch.kernel import MONITOR_SETTLE
        from lab.wait import wait_until

        def listening() -> Optional[int]:
            pid = self.monitor_pid()
            return pid if pid is not None and _in_nftables_group(pid) else None
        pid = int(wait_until(listening, timeout, "calfwd's nft monitor listens to nftables' netlink group",
                             interval=0.02))  # type: ignore[arg-type]
        wait_until(lambda: _age(pid) > MONITOR_SETTLE + 0.1, timeout,
                   "calfwd's first look at the chains after its monitor started", interval=0.02)
        return pid


NFNLGRP_NFTABLES = 7  # linux/netfilter/nfnetlink.h
NETLINK_NETFILTER = 12


def _in_nftables_group(pid: int) -> bool:
    """A NETLINK_NETFILTER socket of `pid` (its port id, nft's autobind) in the nftables group."""
    try:
        rows = Path(f"/proc/{pid}/net/netlink").read_text().splitlines()[1:]
    except OSError:
        return False
    for row in rows:
        fields = row.split()
        if int(fields[1]) == NETLINK_NETFILTER and int(fields[2]) == pid \
                and int(fields[3], 16) & (1 << (NFNLGRP_NFTABLES - 1)):
            return True
    return False


def _age(pid: int) -> float:
    """Seconds since process `pid` started (/proc/PID/stat's starttime), 0 when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except OSError:
        return 0.0
    start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, after comm
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
