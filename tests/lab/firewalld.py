"""The real firewalld, run inside the node namespace on the private bus.

Isolation: `--system-config` points at a tmpdir (the host's /etc/firewalld is never
read or written), `--nopid` skips /run/firewalld.pid, the log goes to a file in the
tmpdir, and firewalld runs with a private /run (a tmpdir bind-mounted over /run in
the mount namespace `ip netns exec` gives it), so its /run/firewalld temp files and
anything else under /run stay in the tmpdir. The host system bus socket is hidden
from it as a side effect.

`inaccessible_paths` does in that same private mount namespace what systemd's
`InaccessiblePaths=` does for a unit (calfwd's flush guard drop-in): an empty mode-0000
file is bind-mounted over each path, so firewalld (and only firewalld) can neither run nor
read them. The host's files are untouched.

`build` picks which firewalld runs (tests/lab/versions.py): the machine's own by default, or
another release's unpacked package tree; firewall_cmd() then runs that release's client.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

from .dbus import PrivateBus
from .netns import CommandError, Netns, end_process
from .versions import FirewalldBuild, own

# Debian 12's shipped firewalld.conf, made explicit. CleanupModulesOnExit must stay
# "no": kernel modules are host-wide.
DEFAULT_SETTINGS: Dict[str, str] = {
    "DefaultZone": "public",
    "CleanupOnExit": "yes",
    "CleanupModulesOnExit": "no",
    "Lockdown": "no",
    "IPv6_rpfilter": "yes",
    "IndividualCalls": "no",
    "LogDenied": "off",
    "FirewallBackend": "nftables",
    "FlushAllOnReload": "yes",
    "RFC3964_IPv4": "yes",
}

# Runs as `ip netns exec <node> python3 -c PRIVATE_RUN <rundir> [--inaccessible PATH]...
# firewalld ...`: the bind mounts live only in the mount namespace `ip netns exec` created
# (slave of the host's). Inaccessible paths get an empty mode-0000 file bind-mounted over
# them, as systemd's InaccessiblePaths= does (it uses /run/systemd/inaccessible/reg); a path
# that does not exist is skipped, as systemd skips a "-"-prefixed one.
PRIVATE_RUN = (
    "import os, subprocess, sys\n"
    "args = sys.argv[1:]\n"
    "rundir = args.pop(0)\n"
    "hidden = []\n"
    "while args[0] == '--inaccessible':\n"
    "    hidden.append(args[1]); args = args[2:]\n"
    "subprocess.run(['mount', '-n', '--bind', rundir, '/run'], check=True)\n"
    "if hidden:\n"
    "    empty = '/run/lab-inaccessible'\n"
    "    open(empty, 'w').close(); os.chmod(empty, 0)\n"
    "    for path in hidden:\n"
    "        if os.path.exists(path):\n"
    "            subprocess.run(['mount', '-n', '--bind', empty, path], check=True)\n"
    "os.execv(args[0], args)\n"
)


class Firewalld:
    """Start/stop/kill/reload firewalld; firewall_cmd() talks to it over the private bus."""

    def __init__(self, netns: Netns, bus: PrivateBus, workdir: Path, backend: str = "nftables",
                 settings: Optional[Dict[str, str]] = None, debug: Optional[int] = None,
                 inaccessible_paths: Sequence[str] = (), build: Optional[FirewalldBuild] = None):
        self.netns = netns
        self.build = build or own()
        self.bus = bus
        self.config_dir = Path(workdir) / "firewalld"
        self.run_dir = Path(workdir) / "firewalld-run"
        self.log_path = Path(workdir) / "firewalld.log"
        self.output_path = Path(workdir) / "firewalld.out"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.settings = dict(DEFAULT_SETTINGS, FirewallBackend=backend)
        self.settings.update(settings or {})
        self.debug = debug  # firewalld --debug level (1..10) for the log file
        # Hidden from firewalld at its next start (systemd's InaccessiblePaths=, see above).
        self.inaccessible_paths = tuple(inaccessible_paths)
        self.write_config()
        self.proc: Optional[subprocess.Popen] = None
        self.startup_seconds: Optional[float] = None

    def write_config(self) -> None:
        text = "".join("%s=%s\n" % kv for kv in self.settings.items())
        (self.config_dir / "firewalld.conf").write_text(text)

    def configure(self, **settings: str) -> None:
        """Change firewalld.conf; takes effect on the next start or reload."""
        self.settings.update(settings)
        self.write_config()

    @property
    def env(self) -> Dict[str, str]:
        return {"DBUS_SYSTEM_BUS_ADDRESS": self.bus.address}

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Start and block until `firewall-cmd --state` says running (rules applied)."""
        if self.running:
            raise RuntimeError("firewalld already running")
        argv = ["/usr/bin/python3", "-c", PRIVATE_RUN, self.run_dir]
        for path in self.inaccessible_paths:
            argv += ["--inaccessible", path]
        argv += [*self.build.daemon_argv(), "--nofork", "--nopid", "--system-config", self.config_dir]
        if self.build.has_log_target:  # 0.9, 1.0: errors also go to syslog, which the private /run hides
            argv += ["--log-target", "file"]
        argv += ["--log-file", self.log_path]
        if self.debug:
            argv.append("--debug=%d" % self.debug)
        started = time.monotonic()
        with open(self.output_path, "a") as out:
            self.proc = self.netns.popen(*argv, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("firewalld exited with %s:\n%s" % (self.proc.returncode, self.logs()))
            state = self.state()
            if state == "running":
                break
            if state == "failed" or time.monotonic() - started > timeout:
                raise RuntimeError("firewalld state %r after %.1fs:\n%s"
                                   % (state, time.monotonic() - started, self.logs()))
            time.sleep(0.05)
        self.startup_seconds = time.monotonic() - started

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: firewalld cleans up (CleanupOnExit), which flushes the iptables tables again."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: no cleanup, its nft table stays loaded."""
        self._signal(signal.SIGKILL, 10.0)

    @property
    def pid(self) -> Optional[int]:
        """firewalld's own pid (the wrapper execs it), while it runs."""
        return self.proc.pid if self.running else None

    def restart(self) -> None:
        self.stop()
        self.start()

    def reload(self) -> None:
        self.firewall_cmd("--reload", timeout=60.0)

    def state(self) -> str:
        """'running', 'not running' (also: no bus or no firewalld on it), 'failed', ..."""
        proc = self.netns.run(*self.build.client_argv(), "--state", env=self.env, check=False)
        return (proc.stdout.strip() or "not running").lower()

    def firewall_cmd(self, *args, check: bool = True, timeout: float = 30.0) -> str:
        proc = self.netns.run(*self.build.client_argv(), *args, env=self.env, check=False, timeout=timeout)
        if check and proc.returncode != 0:
            raise CommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc.stdout

    def logs(self) -> str:
        parts = []
        for path in (self.log_path, self.output_path):
            if path.exists():
                parts.append("== %s ==\n%s" % (path.name, path.read_text()[-4000:]))
        return "\n".join(parts)

    def _signal(self, sig: int, timeout: float) -> None:
        end_process(self.proc, sig, timeout)
        self.proc = None
