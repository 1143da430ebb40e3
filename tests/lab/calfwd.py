"""calfwd itself inside the lab: the CLI and the daemon, run in the node namespace.

Both talk only to the lab's private bus (DBUS_SYSTEM_BUS_ADDRESS) and the node's nftables;
events go to a log file (stderr), read back line by line for assertions.
"""

from __future__ import annotations

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
