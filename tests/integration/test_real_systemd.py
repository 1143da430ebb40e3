"""calfwd under a real systemd as PID 1 (issue 4, item 5).

One container per module (tests/lab/systemd_root.py): a cached Debian 12 root booted with
systemd as PID 1 in pid, mount, network, uts, ipc and cgroup namespaces of its own, with a
real firewalld and a real D-Bus inside. calfwd is the RPM built by `make rpm` from this
checkout, installed there by rpm itself (its scriptlets run against the container's
systemd). The tests run in file order and share the container:

  install and enable -> power cycle: calfwd starts at boot, after firewalld -> status line
  -> firewalld objects and nftables table -> firewalld restart -> firewalld reload ->
  systemctl reload (valid and invalid config) -> journal fields -> watchdog (pings; a hung
  daemon is killed and restarted) -> stop leaves the rules -> poweroff leaves nothing.

What belongs to the package itself (scriptlets on install, upgrade and erase; the sandbox
the daemon ends up in; an invalid config at start not restarted) is tested in the same kind
of container by test_unit_and_journal.py.

Cost: about 40 s with the root cached (two boots of under a second each); building the root
the first time (debootstrap) adds about 2 minutes, extracting it from the cached tarball
about 15 s. Skipped with the reason when not root, a tool is missing or the Debian mirror
cannot be reached to build the root; with CI=true those are failures instead: CI must run
this test (the cache makes network trouble rare there).

The host is never involved: firewalld, calfwd and the bus run in the container's own
network namespace and mount namespace (its /run is a tmpfs); see systemd_root.py for
what is masked and why.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from calfwd import events
from lab.package import booted_with, build_rpm, skip_or_fail
from lab.systemd_root import POWERED_OFF, SystemdContainer, prerequisites, wait_until
from lab.wait import quiet_for

REPO = Path(__file__).resolve().parents[2]
POOL = "10.244.0.0/16"  # the shipped /etc/calfwd/calfwd.toml's pool
EXTRA_POOL = "10.245.0.0/16"


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """The noarch RPM, built by the Makefile's own `rpm` target from this checkout."""
    reason = prerequisites()
    if reason:
        skip_or_fail(reason)
    return build_rpm(tmp_path_factory.mktemp("rpmbuild"))


@pytest.fixture(scope="module")
def box(tmp_path_factory, package):
    with booted_with(tmp_path_factory.mktemp("systemd"), package) as container:
        yield container


# -- helpers --------------------------------------------------------------------------------

def _active(box: SystemdContainer, unit: str) -> str:
    return box.run("systemctl", "is-active", unit, check=False).stdout.strip()


def _events(box: SystemdContainer, *args: str, after: str = "", **fields: str) -> List[Dict[str, object]]:
    """calfwd's events (`journalctl -u calfwd`), after a cursor if given, with CALFWD_<FIELD>=value."""
    entries = box.journal_after(after, "calfwd.service") if after else box.journal("-u", "calfwd", *args)
    wanted = {"CALFWD_%s" % k.upper(): v for k, v in fields.items()}
    return [e for e in entries if "CALFWD_EVENT" in e and all(e.get(k) == v for k, v in wanted.items())]


def _wait_event(box: SystemdContainer, after: str, event: str, timeout: float = 60,
                **fields: str) -> Dict[str, object]:
    found = wait_until(lambda: _events(box, after=after, event=event, **fields), timeout,
                       "calfwd event %s %s in the journal" % (event, fields or ""))
    return found[0]  # type: ignore[index]


def _calfwd_objects(box: SystemdContainer, pools=(POOL,)) -> None:
    """calfwd's zone, policies and nftables table exist, in firewalld's runtime and permanent."""
    zone = box.run("firewall-cmd", "--zone=calfwd", "--list-all").stdout
    assert "target: ACCEPT" in zone and "cali+" in zone, zone
    forward = box.run("firewall-cmd", "--info-policy=calfwd-forward").stdout
    assert re.search(r"egress-zones: calfwd\b", forward), forward
    host = box.run("firewall-cmd", "--info-policy=calfwd-host").stdout
    assert "179/tcp" in host, host  # BGP
    permanent = box.run("firewall-cmd", "--permanent", "--get-zones").stdout.split()
    assert "calfwd" in permanent
    table = box.run("nft", "list", "table", "inet", "calfwd").stdout
    for pool in pools:
        assert pool in table, table
    assert "masquerade" in table, table


def _in_sync(box: SystemdContainer) -> None:
    status = box.run("calfwd", "status", check=False)
    assert status.returncode == 0, status.stdout + status.stderr


def _seconds(span: str) -> float:
    """systemd's time span ("5s", "3min", "1min 30s", "100ms") in seconds."""
    units = {"min": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(min|ms|us|s)\b", span))


def _main_pid(box: SystemdContainer) -> str:
    return box.show("calfwd", "MainPID")["MainPID"]


# -- the tests, in order ----------------------------------------------------------------------

def test_installed_and_enabled(box):
    state = box.run("systemctl", "is-system-running", check=False).stdout.strip()
    assert state == "running", box.diagnose()
    assert _active(box, "firewalld") == "active"
    assert _active(box, "dbus") == "active"
    box.run("rpm", "-q", "calfwd")
    assert box.run("stat", "-c", "%a %U:%G", "/etc/calfwd/calfwd.toml").stdout.split() == \
        ["644", "root:root"]
    box.run("test", "-x", "/usr/bin/calfwd")
    box.run("test", "-f", "/usr/lib/systemd/system/calfwd.service")
    box.run("calfwd", "check")
    verify = box.run("systemd-analyze", "verify", "--man=no", "calfwd.service", check=False)
    assert (verify.returncode, verify.stderr.strip()) == (0, ""), verify
    box.run("systemctl", "enable", "calfwd")
    assert box.run("systemctl", "is-enabled", "calfwd").stdout.strip() == "enabled"
    assert box.run("systemctl", "is-enabled", "firewalld").stdout.strip() == "enabled"


def test_enabled_calfwd_starts_at_boot_after_firewalld(box):
    assert box.poweroff() == POWERED_OFF, box.log_text()
    assert box.leftovers() == []
    box.boot()
    assert box.run("systemctl", "is-system-running").stdout.strip() == "running", box.diagnose()
    # Type=notify: active means READY=1 arrived, i.e. the first reconcile is done.
    show = box.show("calfwd", "ActiveState", "SubState", "Type", "NotifyAccess", "NRestarts",
                    "ExecMainStartTimestampMonotonic", "ActiveEnterTimestampMonotonic")
    assert (show["ActiveState"], show["SubState"], show["Type"], show["NotifyAccess"]) == \
        ("active", "running", "notify", "main"), show
    assert show["NRestarts"] == "0"
    firewalld = box.show("firewalld", "ActiveEnterTimestampMonotonic")
    # After=firewalld.service: calfwd's process started only once firewalld was active.
    assert int(show["ExecMainStartTimestampMonotonic"]) >= \
        int(firewalld["ActiveEnterTimestampMonotonic"]) > 0, (show, firewalld)
    assert int(show["ActiveEnterTimestampMonotonic"]) > int(firewalld["ActiveEnterTimestampMonotonic"])
    # This run of the unit (not `-b`: every container boot has the host kernel's boot id).
    invocation = "_SYSTEMD_INVOCATION_ID=" + box.show("calfwd", "InvocationID")["InvocationID"]
    started = _events(box, invocation, event="started")
    assert len(started) == 1 and started[0]["CALFWD_FIREWALLD_OWNER"] != "none", started
    first = _events(box, invocation, event="reconciled")[0]
    assert first["CALFWD_TRIGGER"] == "start" and first["CALFWD_VERIFIED"] == "True", first
    assert first.get("CALFWD_FIREWALLD_VERSION"), first  # firewalld was seen, and RUNNING


def test_status_shows_the_status_line(box):
    # Each reconcile rewrites the line (the one after calfwd's own reload may land between the
    # two reads): compare the two views of one unchanged line.
    def one_line() -> Optional[str]:
        status = box.run("systemctl", "status", "calfwd", "--no-pager", check=False).stdout
        line = re.search(r'Status: "(.*)"', status)
        assert line, status
        return line.group(1) if box.show("calfwd", "StatusText")["StatusText"] == line.group(1) else None
    text = str(wait_until(one_line, 10, "StatusText matching systemctl status's line", interval=0.5))
    assert re.fullmatch(r"in sync; firewalld \d+\.\d+\.\d+; zone calfwd; pools %s; "
                        r"last reconcile \d\d:\d\d:\d\d \([a-z-]+, [\d.]+ ms\)" % re.escape(POOL),
                        text), text


def test_firewalld_objects_and_nftables_table(box):
    _calfwd_objects(box)
    _in_sync(box)


def test_firewalld_restart_leaves_calfwd_running(box):
    pid = _main_pid(box)
    mark = box.cursor()
    box.run("systemctl", "restart", "firewalld", timeout=120)
    assert _active(box, "firewalld") == "active"
    _wait_event(box, mark, "firewalld-vanished")
    _wait_event(box, mark, "firewalld-appeared", firewalld_state="RUNNING")
    done = _wait_event(box, mark, "reconciled", trigger="firewalld-started")
    # Permanent mode: firewalld brought calfwd's zone and policies back by itself, and
    # calfwd's own table was never touched; the reconcile only verified.
    assert (done["CALFWD_VERIFIED"], done["CALFWD_CHANGES"]) == ("True", "0"), done
    assert _active(box, "calfwd") == "active" and _main_pid(box) == pid
    assert box.show("calfwd", "NRestarts")["NRestarts"] == "0"
    _calfwd_objects(box)
    _in_sync(box)


def test_firewalld_reload_leaves_calfwd_running(box):
    pid = _main_pid(box)
    mark = box.cursor()
    box.run("firewall-cmd", "--reload", timeout=120)
    _wait_event(box, mark, "firewalld-reloaded")
    done = _wait_event(box, mark, "reconciled", trigger="firewalld-reloaded")
    assert (done["CALFWD_VERIFIED"], done["CALFWD_CHANGES"]) == ("True", "0"), done
    assert _active(box, "calfwd") == "active" and _main_pid(box) == pid
    _calfwd_objects(box)
    _in_sync(box)


def test_kernel_events_work_inside_the_unit_sandbox(box):
    """The nft monitor child runs under the hardened unit: someone deleting calfwd's table is
    repaired by event (not by the 60 s resync), and the monitor never failed."""
    pid = _main_pid(box)
    before = box.run("nft", "list", "table", "inet", "calfwd").stdout
    mark = box.cursor()
    box.run("nft", "delete", "table", "inet", "calfwd")
    repaired = _wait_event(box, mark, "table-repaired", timeout=20)
    assert "changed by someone else" in str(repaired["MESSAGE"])
    assert box.run("nft", "list", "table", "inet", "calfwd").stdout == before
    assert _events(box, event="kernel-events-lost") == []
    assert _main_pid(box) == pid


def test_systemctl_reload(box):
    pid = _main_pid(box)
    shipped = box.run("cat", "/etc/calfwd/calfwd.toml").stdout
    two_pools = shipped.replace('ip_pools = ["%s"]' % POOL, 'ip_pools = ["%s", "%s"]' % (POOL, EXTRA_POOL))
    assert two_pools != shipped, "the shipped config's pool line changed; update this test"
    try:
        box.write("/etc/calfwd/calfwd.toml", two_pools)
        mark = box.cursor()
        box.run("systemctl", "reload", "calfwd")  # ExecReload= SIGHUP; RELOADING=1 ... READY=1
        _wait_event(box, mark, "config-reloaded")
        _wait_event(box, mark, "reconciled", trigger="config-reloaded")
        wait_until(lambda: box.show("calfwd", "SubState")["SubState"] == "running", 10,
                   "calfwd back in state running after the reload")
        assert _main_pid(box) == pid and _active(box, "calfwd") == "active"
        assert "pools %s,%s;" % (POOL, EXTRA_POOL) in box.show("calfwd", "StatusText")["StatusText"]
        _calfwd_objects(box, pools=(POOL, EXTRA_POOL))
        systemd_says = [e["MESSAGE"] for e in box.journal_after(mark, "calfwd.service")
                        if "CALFWD_EVENT" not in e]
        assert any("Reloaded" in str(m) for m in systemd_says), systemd_says

        # An invalid file: refused, the running configuration stays. With an ExecReload=
        # that runs `calfwd check` first, `systemctl reload` itself fails and the daemon
        # never sees the file; with SIGHUP alone, the daemon refuses it.
        box.write("/etc/calfwd/calfwd.toml", shipped.replace(POOL, "10.244.0.1/16"))
        mark = box.cursor()
        reload = box.run("systemctl", "reload", "calfwd", check=False)
        exec_reload = box.run("systemctl", "show", "calfwd", "-p", "ExecReload").stdout  # one line each
        if "calfwd check" in exec_reload:
            assert reload.returncode != 0, reload
            said = wait_until(lambda: [e for e in box.journal_after(mark, "calfwd.service")
                                       if "host bits set" in str(e.get("MESSAGE"))], 30,
                              "calfwd check's complaint in the journal")
            assert not _events(box, after=mark, event="config-reloaded"), said
        else:
            assert reload.returncode == 0, reload
            invalid = _wait_event(box, mark, "config-invalid")
            assert "host bits set" in str(invalid["MESSAGE"]), invalid
            assert int(str(invalid["PRIORITY"])) == events.PRIORITY_ERR
        wait_until(lambda: box.show("calfwd", "SubState")["SubState"] == "running", 10,
                   "calfwd back in state running after the refused reload")
        assert _main_pid(box) == pid
        assert "pools %s,%s;" % (POOL, EXTRA_POOL) in box.show("calfwd", "StatusText")["StatusText"]
    finally:
        box.write("/etc/calfwd/calfwd.toml", shipped)
    mark = box.cursor()
    box.run("systemctl", "reload", "calfwd")
    _wait_event(box, mark, "reconciled", trigger="config-reloaded")
    assert "pools %s;" % POOL in box.show("calfwd", "StatusText")["StatusText"]
    assert EXTRA_POOL not in box.run("nft", "list", "table", "inet", "calfwd").stdout
    _in_sync(box)


def test_journal_has_the_events_with_their_fields(box):
    reconciled = _events(box, event="reconciled")
    triggers = {e["CALFWD_TRIGGER"] for e in reconciled}
    assert {"start", "firewalld-started", "firewalld-reloaded", "config-reloaded"} <= triggers, triggers
    for entry in reconciled:
        assert entry["MESSAGE_ID"] == events.KINDS["reconciled"].message_id
        assert entry["PRIORITY"] == str(events.PRIORITY_INFO)
        assert entry["CALFWD_VERIFIED"] == "True", entry
        float(str(entry["CALFWD_DURATION_MS"]))
        int(str(entry["CALFWD_CHANGES"]))
    everything = _events(box)
    kinds = {e["CALFWD_EVENT"] for e in everything}
    assert {"started", "reconciled", "firewalld-vanished", "firewalld-appeared",
            "firewalld-reloaded", "config-reloaded"} <= kinds, kinds
    for entry in everything:
        kind = events.KINDS[str(entry["CALFWD_EVENT"])]
        assert entry["MESSAGE_ID"] == kind.message_id and entry["PRIORITY"] == str(kind.priority)
        assert entry["_SYSTEMD_UNIT"] == "calfwd.service" and entry["SYSLOG_IDENTIFIER"] == "calfwd"
    assert not _events(box, event="reconcile-failed")
    text = box.run("journalctl", "-u", "calfwd", "--no-pager").stdout
    assert "reconciled after firewalld-reloaded" in text, text[-3000:]
    # The catalog the package installed explains the events (journalctl -x).
    explained = box.run("journalctl", "-u", "calfwd", "-x", "--no-pager", "CALFWD_EVENT=started").stdout
    assert "Subject: calfwd started" in explained, explained


def test_watchdog_pings_and_restarts_a_hung_daemon(box):
    shipped = _seconds(re.search(r"^WatchdogSec=(.+)$", (REPO / "systemd" / "calfwd.service")
                                 .read_text(), re.M).group(1))
    assert shipped > 0 and _seconds(box.show("calfwd", "WatchdogUSec")["WatchdogUSec"]) == shipped
    dropin = "/etc/systemd/system/calfwd.service.d/test-watchdog.conf"
    box.run("mkdir", "-p", os.path.dirname(dropin))
    box.write(dropin, "[Service]\nWatchdogSec=2s\n")
    try:
        box.run("systemctl", "daemon-reload")
        box.run("systemctl", "restart", "calfwd")
        pid = _main_pid(box)
        restarts = int(box.show("calfwd", "NRestarts")["NRestarts"])
        # Pings every second (WatchdogSec/2): the timestamp of the last one keeps moving.
        stamps = set()

        def moving() -> bool:
            stamps.add(box.show("calfwd", "WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"])
            return len(stamps) >= 3
        wait_until(moving, 4.0, "the watchdog's timestamp moving (pings every second)", interval=0.5)
        assert len(stamps) >= 3, stamps
        quiet_for(lambda: _main_pid(box) == pid and int(box.show("calfwd", "NRestarts")["NRestarts"]) == restarts,
                  2.5, "pinged in time: systemd neither kills nor restarts calfwd", interval=0.5)
        assert _main_pid(box) == pid and int(box.show("calfwd", "NRestarts")["NRestarts"]) == restarts

        # A hung main loop stops pinging: systemd kills it (SIGABRT) and restarts it.
        mark = box.cursor()
        box.run("kill", "-STOP", pid)
        wait_until(lambda: int(box.show("calfwd", "NRestarts")["NRestarts"]) > restarts, 60,
                   "systemd to restart the hung calfwd")
        wait_until(lambda: _active(box, "calfwd") == "active", 30, "calfwd active again")
        assert _main_pid(box) != pid
        systemd_says = " ".join(str(e.get("MESSAGE")) for e in box.journal_after(mark, "calfwd.service"))
        assert "Watchdog timeout" in systemd_says, systemd_says
        _wait_event(box, mark, "reconciled", trigger="start")
    finally:
        box.run("rm", "-f", dropin)
        box.run("systemctl", "daemon-reload")
    box.run("systemctl", "restart", "calfwd")
    assert _seconds(box.show("calfwd", "WatchdogUSec")["WatchdogUSec"]) == shipped
    assert _active(box, "calfwd") == "active"


def test_metrics_textfile_inside_the_unit_sandbox(box):
    """ReadWritePaths= lets the hardened unit write Debian's textfile directory, mode 0644
    despite UMask=0077; a directory outside it is one metrics-write-failed event, and calfwd
    keeps reconciling."""
    config = "/etc/calfwd/calfwd.toml"
    shipped = box.run("cat", config).stdout
    allowed, other = "/var/lib/prometheus/node-exporter/calfwd.prom", "/var/lib/elsewhere/calfwd.prom"
    assert '# textfile = ""' in shipped, "the shipped config's metrics line changed; update this test"
    box.run("mkdir", "-p", os.path.dirname(allowed), os.path.dirname(other))
    try:
        box.write(config, shipped.replace('# textfile = ""', 'textfile = "%s"' % allowed))
        mark = box.cursor()
        # A restart: the unit's mount namespace is made at start, with the directories there then.
        box.run("systemctl", "restart", "calfwd")
        _wait_event(box, mark, "reconciled", trigger="start")
        text = wait_until(lambda: box.run("cat", allowed, check=False).stdout, 10, "the metrics file")
        assert 'calfwd_in_sync{layer="firewalld"} 1' in text and "calfwd_info{" in text, text
        assert box.run("stat", "-c", "%a %U", allowed).stdout.split() == ["644", "root"]
        assert box.run("ls", "-A", os.path.dirname(allowed)).stdout.split() == ["calfwd.prom"]

        box.write(config, shipped.replace('# textfile = ""', 'textfile = "%s"' % other))
        mark = box.cursor()
        box.run("systemctl", "reload", "calfwd")
        failed = _wait_event(box, mark, "metrics-write-failed")
        assert "Read-only file system" in str(failed["MESSAGE"]) and failed["CALFWD_PATH"] == other, failed
        _wait_event(box, mark, "reconciled", trigger="config-reloaded")
        assert _active(box, "calfwd") == "active"
        _in_sync(box)
    finally:
        box.write(config, shipped)
        box.run("systemctl", "restart", "calfwd")
        box.run("rm", "-rf", os.path.dirname(allowed), os.path.dirname(other))


def test_stop_leaves_the_rules_in_place(box):
    mark = box.cursor()
    box.run("systemctl", "stop", "calfwd")
    assert _active(box, "calfwd") == "inactive"
    show = box.show("calfwd", "Result", "ExecMainStatus")
    assert (show["Result"], show["ExecMainStatus"]) == ("success", "0"), show
    _wait_event(box, mark, "stopping")
    _calfwd_objects(box)
    _in_sync(box)  # nothing to repair: every rule is still there


def test_poweroff_leaves_nothing_behind(box):
    assert box.poweroff() == POWERED_OFF, box.log_text()
    assert box.leftovers() == []
    assert not box.running()
