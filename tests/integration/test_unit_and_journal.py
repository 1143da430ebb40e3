"""calfwd against the real journald and the real sd_notify protocol.

- journald: a real systemd-journald in a private mount namespace (tmpfs over /run, so
  its sockets and journal files exist only there), with calfwd's catalog compiled into a
  private database bound over /var/lib/systemd/catalog in that namespace only. Events come
  from calfwd.events.Reporter and from the real daemon (`calfwd run`, inside a network
  namespace the test creates); they are read back with journalctl --directory, and
  `journalctl -x` must show the catalog text with the entry's fields filled in.
- sd_notify: `calfwd run` inside a network namespace, with NOTIFY_SOCKET pointing at an
  AF_UNIX datagram socket the test bound: READY=1 only once the first reconcile is done,
  STATUS=, WATCHDOG=1 at WATCHDOG_USEC/2, RELOADING=1 + MONOTONIC_USEC then READY=1 on
  SIGHUP, STOPPING=1 on SIGTERM; every datagram from the main PID (NotifyAccess=main).

firewalld is disabled in these configs, so the daemon never connects to any bus (see
calfwd/daemon.py run()); DBUS_SYSTEM_BUS_ADDRESS still points at an address nobody
listens on. Nothing touches the host's journal, catalog, bus or root network namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest

from lab.netns import Netns, SYSTEM_PATH, unique_id

REPO = Path(__file__).resolve().parents[2]
CATALOG = REPO / "packaging" / "calfwd.catalog"
PYTHON = "/usr/bin/python3"
JOURNALD = "/lib/systemd/systemd-journald"

sys.path.insert(0, str(REPO))
from calfwd import events  # noqa: E402


def _require(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (mount and network namespaces)")
    missing = [t for t in tools if not (os.access(t, os.X_OK) if t.startswith("/")
                                         else shutil.which(t, path=SYSTEM_PATH))]
    if missing:
        pytest.skip("needs " + ", ".join(missing))
    for module in ("nftables", "gi", "dbus", "systemd.journal"):
        probe = subprocess.run([PYTHON, "-c", "import " + module], capture_output=True)
        if probe.returncode != 0:
            pytest.skip("needs the distro's python3 binding for %s" % module)


def _config(path: Path, pools: str = '["198.18.64.0/20"]') -> Path:
    path.write_text("[calico]\nip_pools = %s\nnat_outgoing = true\n\n"
                    "[firewalld]\nenabled = false\n\n[daemon]\nresync_interval = 3600\n" % pools)
    path.chmod(0o644)
    return path


def _daemon_env() -> Dict[str, str]:
    return {"PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1",
            "DBUS_SYSTEM_BUS_ADDRESS": "unix:abstract=/calfwd-test/none-%s" % unique_id()}


# -- journald ------------------------------------------------------------------------------

# tests/lab/scripts/journal_helper.py runs as root inside `unshare --mount --propagation private`.
_JOURNAL_HELPER = str(Path(__file__).resolve().parents[1] / "lab" / "scripts" / "journal_helper.py")


_EMITTER = r'''
from calfwd.events import Reporter
reporter = Reporter()
assert reporter.to_journal, "Reporter did not find the journal socket"
reporter.emit("started", "calfwd started (config /etc/calfwd/calfwd.toml)",
              config="/etc/calfwd/calfwd.toml", firewalld_owner="none", test="reporter")
reporter.emit("reconciled", "reconciled after start in 4.83 ms, 1 change(s), verified",
              trigger="start", duration_ms=4.83, nft_duration_ms=2.96, changes=1, verified=True,
              firewalld_version=None, test="reporter")
reporter.emit("reconcile-failed", "reconcile after resync failed: nftables: Operation not permitted",
              trigger="resync", test="reporter")
reporter.emit("signal-ignored", "ignored a Reloaded signal", sender=":1.99", test="reporter")
'''


@pytest.fixture
def journal_run(tmp_path):
    """Run the helper once; returns (entries by test/event, `journalctl -x` text, workdir)."""
    _require("unshare", "mount", "nsenter", "journalctl", JOURNALD, "ip")
    root = tmp_path / "catalog-root"
    (root / "usr" / "lib" / "systemd" / "catalog").mkdir(parents=True)
    (root / "var" / "lib" / "systemd" / "catalog").mkdir(parents=True)
    shutil.copy(CATALOG, root / "usr" / "lib" / "systemd" / "catalog" / "calfwd.catalog")
    subprocess.run(["journalctl", "--root", str(root), "--update-catalog"], check=True,
                   env=dict(os.environ, PATH=SYSTEM_PATH))
    if not Path("/var/lib/systemd/catalog").is_dir():
        pytest.skip("no /var/lib/systemd/catalog to bind the private catalog database over")
    if not Path("/etc/machine-id").is_file():
        pytest.skip("no /etc/machine-id (journald names its directory after it)")
    config = _config(tmp_path / "calfwd.toml")
    with Netns("cfwj-" + unique_id()) as ns:
        ns.sysctl("net.ipv4.ip_forward", 1)  # a Calico node forwards: nothing blocks its paths
        env = dict(os.environ, PATH=SYSTEM_PATH, **_daemon_env())
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", PYTHON, _JOURNAL_HELPER,
             str(tmp_path), str(root / "var" / "lib" / "systemd" / "catalog"), ns.name,
             str(config), _EMITTER],
            capture_output=True, text=True, env=env, timeout=120)
        table = ns.run("nft", "list", "table", "inet", "calfwd", check=False)
    logs = "".join("\n--- %s:\n%s" % (name, (tmp_path / name).read_text())
                   for name in ("journald.log", "daemon.stderr") if (tmp_path / name).exists())
    assert proc.returncode == 0, proc.stdout + proc.stderr + logs
    entries = [json.loads(line) for line in (tmp_path / "entries.json").read_text().splitlines()]
    return entries, (tmp_path / "explained.txt").read_text(), tmp_path, table


def test_reporter_events_are_structured_journal_entries(journal_run):
    entries, _explained, _work, _table = journal_run
    mine = {e["CALFWD_EVENT"]: e for e in entries if e.get("CALFWD_TEST") == "reporter"}
    assert set(mine) == {"started", "reconciled", "reconcile-failed"}  # debug is filtered
    reconciled = mine["reconciled"]
    assert reconciled["MESSAGE_ID"] == events.KINDS["reconciled"].message_id
    assert reconciled["PRIORITY"] == "6"
    assert reconciled["SYSLOG_IDENTIFIER"] == "calfwd"
    assert reconciled["MESSAGE"] == "reconciled after start in 4.83 ms, 1 change(s), verified"
    assert reconciled["CALFWD_TRIGGER"] == "start"
    assert reconciled["CALFWD_DURATION_MS"] == "4.83"
    assert reconciled["CALFWD_NFT_DURATION_MS"] == "2.96"
    assert reconciled["CALFWD_CHANGES"] == "1"
    assert reconciled["CALFWD_VERIFIED"] == "True"
    assert "CALFWD_FIREWALLD_VERSION" not in reconciled  # None is left out, not "None"
    failed = mine["reconcile-failed"]
    assert failed["PRIORITY"] == "3"
    assert failed["MESSAGE_ID"] == events.KINDS["reconcile-failed"].message_id
    started = mine["started"]
    assert started["CALFWD_CONFIG"] == "/etc/calfwd/calfwd.toml"
    assert started["CALFWD_FIREWALLD_OWNER"] == "none"


def test_journalctl_x_shows_the_catalog_text_with_the_fields(journal_run):
    _entries, explained, _work, _table = journal_run
    assert "reconciled after start in 4.83 ms" in explained
    assert "Subject: calfwd reconciled firewalld and nftables with its configuration" in explained
    assert "Defined-By: calfwd" in explained
    assert "Support: man:calfwd(8)" in explained
    assert "with 1 change(s) in 4.83 ms." in " ".join(explained.replace("░░", " ").split())


def test_daemon_events_land_in_the_journal(journal_run):
    entries, _explained, work, table = journal_run
    daemon = [e for e in entries if "CALFWD_TEST" not in e]
    kinds = [e["CALFWD_EVENT"] for e in daemon]
    assert kinds[:2] == ["started", "reconciled"], kinds
    assert "config-reloaded" in kinds and kinds[-1] == "stopping", kinds
    for entry in daemon:
        kind = events.KINDS[entry["CALFWD_EVENT"]]
        assert entry["MESSAGE_ID"] == kind.message_id
        assert entry["PRIORITY"] == str(kind.priority)
        assert entry["SYSLOG_IDENTIFIER"] == "calfwd"
    first = daemon[1]
    assert first["CALFWD_TRIGGER"] == "start" and first["CALFWD_VERIFIED"] == "True"
    assert int(first["CALFWD_CHANGES"]) >= 1
    assert (work / "daemon.rc").read_text() == "0"
    # Stopping leaves the rules in place.
    assert table.returncode == 0 and "198.18.64.0/20" in table.stdout, table.stderr


# -- sd_notify -----------------------------------------------------------------------------

class NotifySocket:
    """An AF_UNIX datagram socket like systemd's, recording the sender of each datagram."""

    def __init__(self, path: str):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.received: List[Tuple[float, int, str]] = []  # (monotonic, sender pid, text)

    def receive(self, until: Callable[[List[Tuple[float, int, str]]], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not until(self.received):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out; got %r" % [m[2] for m in self.received])
            self.sock.settimeout(left)
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                continue
            pid = -1
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", payload[:12])[0]
            self.received.append((time.monotonic(), pid, data.decode()))

    def texts(self) -> List[str]:
        return [m[2] for m in self.received]

    def close(self) -> None:
        self.sock.close()


def _has(text: str) -> Callable[[List[Tuple[float, int, str]]], bool]:
    return lambda messages: any(text in m[2].split("\n") for m in messages)


def _count(text: str, n: int) -> Callable[[List[Tuple[float, int, str]]], bool]:
    return lambda messages: sum(text in m[2].split("\n") for m in messages) >= n


@pytest.fixture
def notify_socket():
    directory = tempfile.mkdtemp(prefix="cfwn-")  # short: sun_path has 108 bytes
    sock = NotifySocket(os.path.join(directory, "notify"))
    yield sock
    sock.close()
    shutil.rmtree(directory, ignore_errors=True)


def test_sd_notify_protocol(tmp_path, notify_socket):
    _require("ip", "nft")
    config = _config(tmp_path / "calfwd.toml")
    with Netns("cfwn-" + unique_id()) as ns:
        ns.sysctl("net.ipv4.ip_forward", 1)  # a Calico node forwards: nothing blocks its paths
        stderr = open(tmp_path / "daemon.stderr", "w")
        env = dict(_daemon_env(), CALFWD_LOG="stderr", NOTIFY_SOCKET=notify_socket.path,
                   CALFWD_RUN_DIR=str(tmp_path / "run"),
                   WATCHDOG_USEC="400000")
        daemon = ns.popen(PYTHON, "-m", "calfwd", "--config", str(config), "run", env=env,
                          stderr=stderr)
        try:
            notify_socket.receive(_has("READY=1"), timeout=30)
            # READY=1 comes only after the first reconcile: the table is there already.
            table = ns.run("nft", "list", "table", "inet", "calfwd", check=False)
            assert table.returncode == 0 and "198.18.64.0/20" in table.stdout, table.stderr
            texts = notify_socket.texts()
            ready = texts.index("READY=1")
            status = [t for t in texts[:ready] if t.startswith("STATUS=")]
            assert status, texts
            assert status[-1].startswith("STATUS=in sync; firewalld absent; zone calfwd; "
                                         "pools 198.18.64.0/20; last reconcile "), status

            # Watchdog: pings from the main loop every WATCHDOG_USEC/2 (200 ms).
            start = len(notify_socket.received)
            notify_socket.receive(lambda m: sum(x[2] == "WATCHDOG=1" for x in m[start:]) >= 4,
                                  timeout=5)
            pings = [t for t, _pid, text in notify_socket.received[start:] if text == "WATCHDOG=1"]
            gaps = [b - a for a, b in zip(pings, pings[1:])]
            assert all(0.1 < gap < 0.4 for gap in gaps), gaps

            # Reload with a changed config: RELOADING=1 + MONOTONIC_USEC, then the STATUS= of
            # the reconcile with the new pools, then READY=1 (the reload is done when applied).
            _config(config, '["198.18.64.0/20", "198.18.80.0/20"]')
            start = len(notify_socket.received)
            before = time.monotonic()
            daemon.send_signal(signal.SIGHUP)
            notify_socket.receive(lambda m: "READY=1" in [x[2] for x in m[start:]], timeout=20)
            after = [t for t in notify_socket.texts()[start:] if t != "WATCHDOG=1"]
            assert "pools 198.18.64.0/20,198.18.80.0/20" in after[1], after
            reloading = after[0].split("\n")
            assert reloading[0] == "RELOADING=1", after
            usec = int(reloading[1].split("=", 1)[1])
            assert reloading[1].startswith("MONOTONIC_USEC=")
            assert before * 1e6 - 1e6 < usec < time.monotonic() * 1e6 + 1e6
            assert after[2] == "READY=1", after

            # An invalid config on reload: refused, and the daemon stays ready.
            config.write_text("[calico]\nip_pools = []\n")
            start = len(notify_socket.received)
            daemon.send_signal(signal.SIGHUP)
            notify_socket.receive(lambda m: "READY=1" in [x[2] for x in m[start:]], timeout=20)
            assert daemon.poll() is None

            start = len(notify_socket.received)
            daemon.send_signal(signal.SIGTERM)
            notify_socket.receive(lambda m: "STOPPING=1" in [x[2] for x in m[start:]], timeout=20)
            assert daemon.wait(timeout=20) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
            stderr.close()
        log = (tmp_path / "daemon.stderr").read_text()
        assert "calfwd[config-invalid]" in log, log
        # NotifyAccess=main: every datagram came from the daemon's own pid.
        assert {pid for _t, pid, _text in notify_socket.received} == {daemon.pid}
        # Stopping left the rules in place.
        table = ns.run("nft", "list", "table", "inet", "calfwd", check=False)
        assert table.returncode == 0 and "198.18.80.0/20" in table.stdout


# -- the package's lifecycle under a real systemd -------------------------------------------
#
# tests/integration/test_real_systemd.py runs the installed service under systemd as PID 1
# (boot order, status line, reloads, firewalld restarts, journal, watchdog). This test uses
# the same container (tests/lab/systemd_root.py: a cached Debian 12 root, systemd as PID 1
# in namespaces of its own, a real firewalld and bus inside) for what belongs to the
# package: what rpm's scriptlets do on install, upgrade and erase, and what the unit's
# sandbox leaves the running daemon (capabilities, no_new_privs, seccomp, exposure), and
# that an invalid config at start fails the unit without restart loops.


def _show(box, *props: str) -> Dict[str, str]:
    return box.show("calfwd", *props)


@pytest.fixture
def container(tmp_path):
    from lab.package import root_or_skip, skip_or_fail
    from lab.systemd_root import SystemdContainer

    for tool in ("rpmbuild", "rpm", "make"):
        if not shutil.which(tool, path=SYSTEM_PATH):
            skip_or_fail("needs %s to build the package" % tool)
    root = root_or_skip()
    box = SystemdContainer(root, tmp_path / "systemd")
    try:
        yield box.boot()
    finally:
        box.close()
        assert not box.leftovers(), box.leftovers()


def test_rpm_lifecycle_under_systemd(container, tmp_path):
    from lab.package import build_rpm, copy_in
    from lab.wait import quiet_for, wait_until

    box = container
    topdir = tmp_path / "rpmbuild"
    package = build_rpm(topdir)
    assert box.run("systemctl", "is-active", "firewalld", check=False).stdout.strip() == "active"
    copy_in(box, package)  # the package, and the .pth for its Fedora layout on Debian's python3

    # Install: %post presets the unit (Debian's presets enable it) and indexes the catalog.
    box.run("rpm", "-i", "--nodeps", "/root/calfwd.rpm", timeout=120)
    listed = box.run("journalctl", "--list-catalog").stdout
    for kind in events.KINDS.values():
        assert "%s calfwd: " % kind.message_id in listed, kind.name
    box.run("systemctl", "start", "calfwd")  # returns after READY=1: the first reconcile
    show = _show(box, "ActiveState", "Type", "StatusText", "MainPID")
    assert (show["ActiveState"], show["Type"]) == ("active", "notify"), show
    guard_file = "/etc/systemd/system/firewalld.service.d/calfwd-flush-guard.conf"
    if box.run("test", "-e", guard_file, check=False).returncode == 0:
        # %post installed the flush guard (this firewalld flushes) on a running host: in effect
        # from firewalld's next restart, which calfwd never forces. Until then it says so.
        assert show["StatusText"].startswith("WARNING: flush guard: %s is installed, but the running "
                                             "firewalld started without it" % guard_file), show
        assert box.run("cat", "/run/calfwd/health").stdout.startswith("warning WARNING: flush guard: ")
        box.run("systemctl", "daemon-reload")
        box.run("systemctl", "restart", "firewalld")
        wait_until(lambda: _show(box, "StatusText")["StatusText"].startswith("in sync; firewalld "), 60,
                   "the warning to clear once firewalld restarted with the guard")
    assert _show(box, "StatusText")["StatusText"].startswith("in sync; firewalld "), show
    health = box.run("stat", "-c", "%a", "/run/calfwd/health").stdout.strip()
    assert (box.run("cat", "/run/calfwd/health").stdout, health) == ("ok calfwd: in sync\n", "644")

    # What the sandbox leaves the daemon: CAP_NET_ADMIN only, no_new_privs, a seccomp filter.
    status = box.run("cat", "/proc/%s/status" % show["MainPID"]).stdout
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    for cap in ("CapEff", "CapPrm", "CapBnd"):
        assert int(fields[cap], 16) == 1 << 12, (cap, fields[cap])  # 12 = CAP_NET_ADMIN
    assert fields["NoNewPrivs"].strip() == "1" and fields["Seccomp"].strip() == "2"
    security = box.run("systemd-analyze", "security", "calfwd", "--no-pager", check=False).stdout
    exposure = float(security.rsplit("exposure level for calfwd.service: ", 1)[1].split()[0])
    assert exposure <= 2.5, security
    assert "table inet calfwd" in box.run("nft", "list", "tables").stdout

    # An invalid config at start: exit 2, failed, not restarted (RestartPreventExitStatus=2).
    shipped = box.run("cat", "/etc/calfwd/calfwd.toml").stdout
    box.write("/etc/calfwd/calfwd.toml", "[calico]\nip_pools = []\n")
    assert box.run("systemctl", "restart", "calfwd", check=False).returncode != 0
    failed = {"ActiveState": "failed", "ExecMainStatus": "2", "NRestarts": "0"}
    wait_until(lambda: _show(box, "ActiveState", "ExecMainStatus", "NRestarts") == failed, 10, "calfwd failed, exit 2")
    quiet_for(lambda: _show(box, "ActiveState", "ExecMainStatus", "NRestarts") == failed, 6,
              "RestartPreventExitStatus=2: no restart, even after RestartSec=5s", interval=0.5)
    show = _show(box, "ActiveState", "ExecMainStatus", "NRestarts")
    assert show == {"ActiveState": "failed", "ExecMainStatus": "2", "NRestarts": "0"}, show
    invalid = box.journal("-u", "calfwd", "CALFWD_EVENT=config-invalid")
    assert invalid and invalid[-1]["PRIORITY"] == "3"
    box.write("/etc/calfwd/calfwd.toml", shipped)
    box.run("systemctl", "start", "calfwd")

    # Upgrade path (the same package again: new %post $1=2, old %preun/%postun $1=1):
    # a running calfwd is restarted (try-restart) and nothing is cleaned up.
    before = _show(box, "MainPID")["MainPID"]
    box.run("rpm", "-U", "--nodeps", "--replacepkgs", "/root/calfwd.rpm", timeout=120)
    wait_until(lambda: _show(box, "ActiveState", "MainPID")["MainPID"] not in ("0", before),
               30, "calfwd restarted by the upgrade")
    assert _show(box, "ActiveState")["ActiveState"] == "active"
    assert "table inet calfwd" in box.run("nft", "list", "tables").stdout
    assert "calfwd" in box.run("firewall-cmd", "--get-zones").stdout.split()

    # Erase: stop and disable, then `calfwd cleanup`, then the catalog is unindexed.
    erase = box.run("rpm", "-e", "--nodeps", "calfwd", timeout=180)
    assert "removed: remove table inet calfwd" in erase.stdout, erase.stdout + erase.stderr
    assert box.run("systemctl", "is-active", "calfwd", check=False).stdout.strip() != "active"
    assert "table inet calfwd" not in box.run("nft", "list", "tables").stdout
    assert "calfwd" not in box.run("firewall-cmd", "--get-zones").stdout.split()
    assert "calfwd" not in box.run("firewall-cmd", "--permanent", "--get-zones").stdout.split()
    policies = box.run("firewall-cmd", "--permanent", "--get-policies").stdout.split()
    assert "calfwd-forward" not in policies and "calfwd-host" not in policies
    assert " calfwd: " not in box.run("journalctl", "--list-catalog").stdout
