"""Network namespaces we own, and the processes we start inside them.

Every command goes through ``ip netns exec <ns>`` so nothing ever runs against the
root namespace's network stack. ``Netns.close()`` kills every process in the
namespace (ours or not) and deletes it; it is idempotent and safe to call on a
half-built namespace.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional

IP = "/usr/sbin/ip"
# Distro tools only: the caller's PATH may start with pyenv shims.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Without DBUS_SYSTEM_BUS_ADDRESS, D-Bus clients would connect to the host's system bus
# (/run/dbus/system_bus_socket is a path socket: network namespaces don't hide it).
NO_BUS = "unix:abstract=/calfwd-test/no-bus"
# Where a calfwd run without the lab's own setting would write the flush guard: a path that
# cannot be created, so that it fails loudly instead of writing the host's /etc/systemd.
NO_DROPIN = "/proc/calfwd-lab-has-no-dropin/calfwd-flush-guard.conf"
# The same for the daemon's status files: never the host's /run/calfwd.
NO_RUN_DIR = "/proc/calfwd-lab-has-no-run-dir"
PREFIX = "cfw"


def unique_id() -> str:
    """Six hex chars: short enough for interface and namespace names."""
    return secrets.token_hex(3)


class CommandError(subprocess.CalledProcessError):
    """CalledProcessError whose message includes the command's output."""

    def __str__(self) -> str:
        return "%s\nstdout: %s\nstderr: %s" % (
            super().__str__(), (self.output or "").strip(), (self.stderr or "").strip())


class Netns:
    """A named network namespace; use as a context manager or call close()."""

    def __init__(self, name: str, env: Optional[Mapping[str, str]] = None):
        self.name = name
        self.env: Dict[str, str] = {"PATH": SYSTEM_PATH, "DBUS_SYSTEM_BUS_ADDRESS": NO_BUS,
                                    "CALFWD_FLUSH_GUARD_DROPIN": NO_DROPIN, "CALFWD_RUN_DIR": NO_RUN_DIR}
        self.env.update(env or {})
        self._procs: List[subprocess.Popen] = []
        self._created = False

    def __repr__(self) -> str:
        return "Netns(%r)" % self.name

    def create(self) -> "Netns":
        run_host([IP, "netns", "add", self.name])
        self._created = True
        self.run("ip", "link", "set", "lo", "up")
        return self

    def argv(self, args) -> List[str]:
        return [IP, "netns", "exec", self.name, *[str(a) for a in args]]

    def environ(self, env: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        merged = dict(os.environ)
        merged.update(self.env)
        merged.update(env or {})
        return merged

    def run(self, *args, env: Optional[Mapping[str, str]] = None, check: bool = True,
            timeout: float = 15.0, input: Optional[str] = None) -> subprocess.CompletedProcess:
        """Run a command to completion inside the namespace, output captured as text."""
        argv = self.argv(args)
        proc = subprocess.run(argv, env=self.environ(env), input=input, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise CommandError(proc.returncode, argv, proc.stdout, proc.stderr)
        return proc

    def popen(self, *args, env: Optional[Mapping[str, str]] = None, stdin=subprocess.DEVNULL,
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text: bool = True) -> subprocess.Popen:
        """Start a tracked background process (``ip netns exec`` execs it: same pid)."""
        proc = subprocess.Popen(self.argv(args), env=self.environ(env), stdin=stdin,
                                stdout=stdout, stderr=stderr, text=text)
        self._procs.append(proc)
        return proc

    def sysctl(self, key: str, value) -> None:
        self.run("sysctl", "-qw", "%s=%s" % (key, value))

    def pids(self) -> List[int]:
        """Every process whose network namespace is this one, started by us or not."""
        out = run_host([IP, "netns", "pids", self.name], check=False).stdout
        return [int(p) for p in out.split()]

    def kill_all(self, grace: float = 2.0) -> None:
        """SIGTERM everything in the namespace, SIGKILL what is left after `grace`."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            pids = self.pids() if self._created else []
            for proc in self._procs:
                if proc.poll() is None and proc.pid not in pids:
                    pids.append(proc.pid)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self._alive(pids):
                time.sleep(0.02)
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream:
                    stream.close()
        self._procs.clear()

    def _alive(self, pids: List[int]) -> bool:
        for proc in self._procs:
            proc.poll()  # reap our own children so they stop counting as alive
        for pid in pids:
            try:
                with open("/proc/%d/stat" % pid) as f:
                    if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                        return True
            except (OSError, IndexError):
                pass
        return False

    def close(self) -> None:
        """Kill every process in the namespace, then delete it (its interfaces go too)."""
        try:
            self.kill_all()
        finally:
            if self._created:
                run_host([IP, "netns", "delete", self.name], check=False)
                self._created = False

    def __enter__(self) -> "Netns":
        return self.create()

    def __exit__(self, *exc) -> None:
        self.close()


def run_host(argv: List[str], check: bool = True, timeout: float = 15.0) -> subprocess.CompletedProcess:
    """Only for `ip netns add/delete/pids/list`: never touches a firewall or a link."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                          env=dict(os.environ, PATH=SYSTEM_PATH))
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, argv, proc.stdout, proc.stderr)
    return proc


def end_process(proc: Optional[subprocess.Popen], sig: int, timeout: float) -> None:
    """Signal a tracked daemon (if it still runs) and wait for it to exit."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        proc.wait(timeout=timeout)


def list_namespaces() -> List[str]:
    out = run_host([IP, "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def add_veth(a: Netns, a_if: str, b: Netns, b_if: str, a_mac: Optional[str] = None) -> None:
    """A veth pair created inside `a`, its peer placed directly into `b` (never in the root ns)."""
    args = ["ip", "link", "add", a_if]
    if a_mac:
        args += ["address", a_mac]
    a.run(*args, "type", "veth", "peer", "name", b_if, "netns", b.name)


class NamespaceGroup:
    """A set of namespaces built together (a Lab, a Cluster): `with` builds it (start()),
    close() always tears every one down, even after errors, and removes an own workdir."""

    namespaces: List["Netns"]
    workdir: Path
    _own_workdir: bool

    def start(self) -> "NamespaceGroup":
        raise NotImplementedError

    def close(self) -> None:
        errors = []
        for ns in self.namespaces:
            try:
                ns.close()
            except Exception as exc:  # keep tearing down the others
                errors.append(exc)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise errors[0]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
