"""Faults and hostile input around `calfwd run`, in the lab (real firewalld, real bus, real kernel).

Each test breaks one thing calfwd depends on and checks what the issue asks for: calfwd stays
up (or exits as designed), says what happened in one clear event, keeps its nftables table,
and once the fault is gone everything is as before: the same table, zone and policies (nothing
duplicated) and new connections pod -> proxy and peer -> pod within a second.

Faults: firewalld absent at start; firewalld hung (SIGSTOP) and then SIGKILLed in the middle of
the reconcile that creates its zone; the bus restarted under both; firewalld in FAILED state;
a reload that fails (no Reloaded, the resync catches up); no CAP_NET_ADMIN; an interface bound
to another zone; an invalid config on SIGHUP. Hostile input: a storm of fake Reloaded signals,
a spoofed NameOwnerChanged, a config file others can write.

Bugs these tests found are fixed; the tests that found them stay as regression tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import List, Optional

import pytest

from lab.calfwd import PYTHON, STORM, Calfwd, footprint, traffic_ok
from lab.wait import quiet_for, until_steady, wait_until

FIREWALLD_DBUS = ("org.fedoraproject.FirewallD1", "/org/fedoraproject/FirewallD1")
BROKEN_ZONE = "<zone><this is not xml"
CALFWD_DBUS_TIMEOUT = 5.0  # calfwd.drivers.firewalld.Firewalld's per-call timeout


# ---------------------------------------------------------------------------------------
# Helpers


def table(lab) -> str:
    return lab.node.run("nft", "list", "table", "inet", "calfwd", check=False).stdout






def firewalld_state(lab) -> Optional[str]:
    """firewalld's `state` property over the lab's bus: RUNNING, FAILED, INIT; None if absent.

    (`firewall-cmd --state` prints "not running" for FAILED, so ask D-Bus directly.)
    """
    proc = lab.node.run("dbus-send", "--system", "--print-reply", "--reply-timeout=5000",
                        f"--dest={FIREWALLD_DBUS[0]}", FIREWALLD_DBUS[1],
                        "org.freedesktop.DBus.Properties.Get", f"string:{FIREWALLD_DBUS[0]}", "string:state",
                        env={"DBUS_SYSTEM_BUS_ADDRESS": lab.bus.address}, check=False, timeout=15)
    if proc.returncode != 0:
        return None
    return proc.stdout.split('"')[-2] if '"' in proc.stdout else None


def start_firewalld_failed(lab) -> None:
    """Start firewalld with a broken zone file: it falls back to its stock config, state FAILED."""
    fw = lab.firewalld
    (fw.config_dir / "zones").mkdir(exist_ok=True)
    (fw.config_dir / "zones" / "broken.xml").write_text(BROKEN_ZONE)
    with pytest.raises(RuntimeError):
        fw.start(timeout=0.5)  # the lab waits for "running", which FAILED never is
    assert fw.running, "firewalld must keep running in FAILED state"
    wait_until(lambda: firewalld_state(lab) == "FAILED", 30, "firewalld in state FAILED")


def config(lab, extra: str = "") -> str:
    return (f'[calico]\nip_pools = ["{lab.addr.pool_v4}", "{lab.addr.pool_v6}"]\nnat_outgoing = true\n'
            + extra)


def resync_config(lab, seconds: int = 1, extra: str = "") -> str:
    return config(lab, extra) + f"[daemon]\nresync_interval = {seconds}\n"


def no_traceback(calfwd: Calfwd) -> None:
    text = "\n".join(calfwd.lines())
    assert "Traceback" not in text, text


def start_without_net_admin(calfwd: Calfwd) -> None:
    """`calfwd run` as root but without CAP_NET_ADMIN (not in its bounding or inheritable set)."""
    with open(calfwd.log_path, "a") as out:
        calfwd.proc = calfwd.lab.node.popen(
            "setpriv", "--inh-caps=-all", "--bounding-set=-net_admin",
            PYTHON, "-m", "calfwd", "--config", str(calfwd.config_path), "run",
            env=calfwd.env, stdout=out, stderr=subprocess.STDOUT)


def cli_without_net_admin(calfwd: Calfwd, *args: str):
    return calfwd.lab.node.run("setpriv", "--inh-caps=-all", "--bounding-set=-net_admin",
                               PYTHON, "-m", "calfwd", "--config", str(calfwd.config_path), *args,
                               env=calfwd.env, check=False, timeout=60)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# A bus client that pretends to be the bus driver: NameOwnerChanged for firewalld's name.
SPOOF_OWNER = r"""
import sys
import dbus, dbus.lowlevel
bus = dbus.SystemBus()
new = bus.get_unique_name() if sys.argv[1] == "me" else ""
msg = dbus.lowlevel.SignalMessage("/org/freedesktop/DBus", "org.freedesktop.DBus", "NameOwnerChanged")
msg.append("org.fedoraproject.FirewallD1", "", new, signature="sss")
bus.send_message(msg)
bus.flush()
bus.call_blocking("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId", "", ())
"""


def bus_client(lab, script: str, *args: str) -> str:
    return lab.node.run(PYTHON, "-c", script, *args, env={"DBUS_SYSTEM_BUS_ADDRESS": lab.bus.address},
                        timeout=120).stdout.strip()


# ---------------------------------------------------------------------------------------
# firewalld absent, hung, killed, failed, failing to reload


def test_firewalld_absent_at_start_then_started(lab):
    """No firewalld on the bus: calfwd applies its nftables table alone; then firewalld comes."""
    lab.calico.remove_nat_outgoing()  # pod egress now depends on calfwd's table alone
    calfwd = Calfwd(lab)
    calfwd.start()
    started = calfwd.events("started")[0]
    assert "firewalld_owner=none" in started
    first = calfwd.events("reconciled")[0]
    assert "verified" in first and "table inet calfwd is missing" in first and "zone" not in first
    assert lab.pod_reaches_proxy(), "nftables layer alone must carry pod egress"

    mark = calfwd.line_count()
    lab.firewalld.start()
    assert "RUNNING" in calfwd.wait_for("firewalld-appeared", after=mark)[0]
    line = calfwd.wait_for("reconciled", after=mark)[0]
    assert "create zone 'calfwd'" in line and "verified" in line
    assert traffic_ok(lab), "pod traffic after firewalld came up"
    if not lab.calico.present():  # firewalld <= 1.x flushed Felix's rules as it started
        wait_until(lambda: "kernel: BLOCKED: firewalld's start" in calfwd.cli("status").stdout, 10,
                   "status to say the start flushed Felix's rules")
        lab.calico.restore()  # Felix's refresh
    wait_until(lambda: calfwd.cli("status").returncode == 0, 10, "calfwd status in sync")

    # Subscribed to the new owner: its reloads are seen and change nothing.
    baseline = footprint(lab)
    mark = calfwd.line_count()
    lab.firewalld.reload()
    calfwd.wait_for("firewalld-reloaded", after=mark)
    assert "0 change(s), verified" in calfwd.wait_for("reconciled", after=mark)[0]
    assert footprint(lab) == baseline
    assert traffic_ok(lab) and calfwd.running
    no_traceback(calfwd)


def test_firewalld_hung_then_killed_in_the_middle_of_the_reconcile_that_creates_its_zone(lab):
    """SIGSTOP firewalld the moment calfwd's new zone file appears (addZone2 is being served,
    the policies and the reload are still to come), leave it hung past calfwd's D-Bus timeout,
    then SIGKILL it. calfwd must give up on the call, stay up, and finish the job when firewalld
    comes back: same zone and policies as a clean run, each exactly once."""
    fw = lab.firewalld
    fw.start()
    calfwd = Calfwd(lab)
    zone_file = fw.config_dir / "zones" / "calfwd.xml"
    calfwd.start(wait_event=None)

    def zone_written() -> bool:  # firewalld writes the file in place: wait for all of it
        try:
            return zone_file.read_text().rstrip().endswith("</zone>")
        except FileNotFoundError:
            return False
    wait_until(zone_written, 30, "calfwd creating its zone", interval=0.001)
    os.kill(fw.proc.pid, signal.SIGSTOP)
    try:
        assert not calfwd.events("reconciled"), "the reconcile finished before firewalld was stopped"
        # calfwd's call times out (5 s): one clear error, and calfwd keeps running.
        failed = calfwd.wait_for("reconcile-failed", timeout=CALFWD_DBUS_TIMEOUT + 10)[0]
        assert "firewalld:" in failed and ("zone 'calfwd'" in failed or "policy" in failed), failed
        assert calfwd.running
        assert "masquerade" in table(lab), "the nftables layer goes first and stays"
    finally:
        fw.kill()  # SIGKILL works on a stopped process; its nft table stays loaded
    calfwd.wait_for("firewalld-vanished")
    assert calfwd.running

    mark = calfwd.line_count()
    fw.start()  # loads the half-made permanent config: the zone without the policies
    calfwd.wait_for("firewalld-appeared", after=mark)
    line = calfwd.wait_for("reconciled", after=mark, timeout=30)[0]
    assert "verified" in line and "NOT verified" not in line, line
    assert "create zone" not in line, "the zone firewalld saved must be reused, not created again"
    wait_until(lambda: calfwd.cli("status").returncode == 0, 10, "calfwd status in sync")
    fp = footprint(lab)
    # public.xml: calfwd's service in the default zone, whose catch-all holds the lab's uplink
    # (firewalld < 2.0 applies no policy there; docs/behaviour.md "Host ports and the default zone").
    zone_files = [f for f in fp["zone_files"] if f != "public.xml"]
    assert zone_files == ["calfwd.xml", "calfwd.xml.old"] or zone_files == ["calfwd.xml"], fp
    assert fp["policy_files"] in (["calfwd-forward.xml", "calfwd-host.xml"],), fp["policy_files"]
    assert fp["policies"].count("calfwd-forward") == 1 and fp["policies"].count("calfwd-host") == 1
    assert "cali+" in fp["zone"] and "cali+" in fp["zone_permanent"]
    assert traffic_ok(lab)
    no_traceback(calfwd)


def test_bus_restart_then_calfwd_restarted_on_the_new_bus(lab):
    """The chosen behaviour: calfwd exits 1 on a lost bus (systemd restarts it); rules stay.
    firewalld 1.3 exits too when its bus goes. Restarted on the new bus, calfwd must come
    back nftables-only, then notice firewalld, and follow its reloads: all as before."""
    fw = lab.firewalld
    fw.start()
    calfwd = Calfwd(lab)
    calfwd.start()
    baseline = footprint(lab)
    lab.bus.restart()
    assert calfwd.proc.wait(timeout=10) == 1
    assert "lost the system bus" in "\n".join(calfwd.lines())
    assert "masquerade" in table(lab)
    wait_until(lambda: fw.proc.poll() is not None, 10, "firewalld exiting with its bus")
    assert traffic_ok(lab), "rules stay in place while nobody runs"

    mark = calfwd.line_count()
    calfwd.start()  # what systemd does (Restart=on-failure)
    assert "firewalld_owner=none" in calfwd.events("started", after=mark)[0]
    fw.start()
    calfwd.wait_for("firewalld-appeared", after=mark)
    calfwd.wait_for("reconciled", after=mark, count=2)
    assert traffic_ok(lab)
    mark = calfwd.line_count()
    fw.reload()
    calfwd.wait_for("firewalld-reloaded", after=mark)
    calfwd.wait_for("reconciled", after=mark)
    assert footprint(lab) == baseline
    assert traffic_ok(lab) and calfwd.running
    no_traceback(calfwd)


def test_bus_absent_at_start_then_bus_and_firewalld_come(lab):
    """Chosen: with no system bus, calfwd applies its nftables table (pod egress works), then
    exits 1 so that systemd (Restart=on-failure) retries until the bus is back."""
    lab.bus.stop()
    calfwd = Calfwd(lab, config=resync_config(lab, 1))
    calfwd.start(wait_event="reconcile-failed")
    assert calfwd.proc.wait(timeout=30) == 1
    assert "no system bus" in "\n".join(calfwd.lines())
    assert "masquerade" in table(lab)
    lab.bus.start()
    lab.firewalld.start()
    calfwd.start()  # what systemd's restart does
    wait_until(lambda: "cali+" in lab.firewalld.firewall_cmd("--zone=calfwd", "--list-interfaces", check=False),
               10, "calfwd managing firewalld after its restart onto the bus")
    assert traffic_ok(lab)
    no_traceback(calfwd)


def test_firewalld_failed_state_is_reported_and_recovered_from(lab):
    """A broken zone file makes firewalld 1.3 start its stock config only, in state FAILED (our
    zone is not loaded: pods are rejected until the admin fixes firewalld; nothing calfwd can
    add at runtime would be kept). calfwd says so, keeps its table, and once firewalld is fixed
    and reloaded everything is back exactly as it was."""
    fw = lab.firewalld
    fw.start()
    calfwd = Calfwd(lab, config=resync_config(lab, 1))
    calfwd.start()
    baseline = footprint(lab)

    mark = calfwd.line_count()
    fw.stop()
    start_firewalld_failed(lab)
    line = calfwd.wait_for("firewalld-failed", after=mark)[0]
    assert "FAILED" in line and "keeps its nftables table" in line
    assert table(lab) == baseline["table"]
    calfwd.wait_resyncs(2)  # two resyncs while FAILED: no error, no change, calfwd stays
    assert calfwd.running and not calfwd.events("reconcile-failed", after=mark)
    assert table(lab) == baseline["table"]

    (fw.config_dir / "zones" / "broken.xml").unlink()
    mark = calfwd.line_count()
    fw.reload()  # FAILED -> RUNNING; firewalld sends Reloaded
    assert firewalld_state(lab) == "RUNNING"
    calfwd.wait_for("firewalld-reloaded", after=mark)
    line = calfwd.wait_for("reconciled", after=mark)[0]
    assert "verified" in line and "NOT verified" not in line
    assert footprint(lab) == baseline
    assert traffic_ok(lab)
    no_traceback(calfwd)


def test_firewalld_already_failed_when_calfwd_starts_is_reported(lab):
    start_firewalld_failed(lab)
    calfwd = Calfwd(lab, config=resync_config(lab, 1))
    calfwd.start()
    assert calfwd.running and "masquerade" in table(lab)
    calfwd.wait_for("firewalld-failed", timeout=3)


def test_a_failed_reload_sends_nothing_and_the_resync_catches_up(lab):
    """firewalld 1.3 checks the on-disk config before it touches anything: a reload with a
    broken zone file fails (INVALID_ZONE), keeps the runtime as it was, stays RUNNING and sends
    no Reloaded. Drift made meanwhile (someone removes cali+ from calfwd's zone at runtime,
    and deletes calfwd's table) is seen by no signal: the resync (1 s here) must repair it."""
    fw = lab.firewalld
    fw.start()
    lab.calico.remove_nat_outgoing()
    # Without kernel events, as on a host whose nft monitor is down: the resync alone
    # (test_kernel_events_in_lab.py covers the table's repair by event).
    calfwd = Calfwd(lab, config=resync_config(lab, 1) + "kernel_events = false\n")
    calfwd.start()
    baseline = footprint(lab)
    until_steady(calfwd.line_count, 0.6, 15, "the start-up burst is over")

    mark = calfwd.line_count()
    fw.firewall_cmd("--zone=calfwd", "--remove-interface=cali+")
    lab.node.run("nft", "delete", "table", "inet", "calfwd")
    (fw.config_dir / "zones" / "broken.xml").write_text(BROKEN_ZONE)
    failed = lab.node.run("firewall-cmd", "--reload", env=fw.env, check=False)
    assert failed.returncode != 0 and "INVALID_ZONE" in failed.stderr + failed.stdout
    assert firewalld_state(lab) == "RUNNING"

    # The drift may be repaired by one resync or two (one can fall between the two changes).
    def repaired() -> List[str]:
        lines = calfwd.events("reconciled", after=mark)
        text = "\n".join(lines)
        return lines if "table inet calfwd is missing" in text and "add interface cali+" in text else []
    lines = wait_until(repaired, 10, "the resync repairing both")
    assert all("after resync" in line and "verified" in line for line in lines), lines
    assert not calfwd.events("firewalld-reloaded", after=mark), "a failed reload sends no Reloaded"
    assert dict(footprint(lab), zone_files=baseline["zone_files"]) == baseline
    assert traffic_ok(lab)

    (fw.config_dir / "zones" / "broken.xml").unlink()
    mark = calfwd.line_count()
    fw.reload()
    calfwd.wait_for("firewalld-reloaded", after=mark)
    assert footprint(lab) == baseline and traffic_ok(lab)
    no_traceback(calfwd)


# ---------------------------------------------------------------------------------------
# Privileges


CLI_NEEDS_NET_ADMIN = ("apply", "plan", "status", "cleanup")


def test_cli_without_cap_net_admin_fails_clearly_with_exit_3(lab):
    lab.firewalld.start()
    calfwd = Calfwd(lab)
    for command in CLI_NEEDS_NET_ADMIN:
        result = cli_without_net_admin(calfwd, command)
        assert result.returncode == 3, (command, result)
        assert "Traceback" not in result.stderr
        ours = [line for line in result.stderr.splitlines() if line.startswith("calfwd: ")]
        assert len(ours) == 1, (command, result.stderr)
        assert ours[0].startswith("calfwd: nftables: missing CAP_NET_ADMIN"), ours
    # check reads only the file: it needs no privilege.
    assert cli_without_net_admin(calfwd, "check").returncode == 0
    assert table(lab) == "", "nothing may have been half-applied"


def test_cli_without_cap_net_admin_prints_exactly_one_line(lab):
    calfwd = Calfwd(lab)
    result = cli_without_net_admin(calfwd, "status")
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith("calfwd: ") and "NftError" not in result.stderr


def test_daemon_without_cap_net_admin_keeps_running_and_says_why_at_every_retry(lab):
    """Observed and chosen: the daemon does not exit. It applies what it can (firewalld's
    zone and policies go over D-Bus, which needs no capability), reports the nftables layer as
    failed with the reason, and retries at every resync, so that fixing the unit (or the
    capability bounding set) and restarting is all it takes; SIGTERM still exits 0."""
    lab.firewalld.start()
    calfwd = Calfwd(lab, config=resync_config(lab, 1))
    start_without_net_admin(calfwd)
    failures = calfwd.wait_for("reconcile-failed", count=3, timeout=20)
    assert calfwd.running
    assert "after start" in failures[0]
    assert any("after resync" in f for f in failures[1:]), failures
    for line in failures:
        assert "nftables:" in line and "CAP_NET_ADMIN" in line, line
    assert table(lab) == ""
    assert "cali+" in lab.firewalld.firewall_cmd("--zone=calfwd", "--list-interfaces")
    assert calfwd.stop() == 0
    no_traceback(calfwd)


# ---------------------------------------------------------------------------------------
# Someone else's binding


def test_interface_bound_to_another_zone_is_reported_naming_both_not_fought(lab):
    fw = lab.firewalld
    fw.start()
    for args in (("--permanent",), ()):
        fw.firewall_cmd(*args, "--zone=trusted", "--add-interface=tunl0")
    calfwd = Calfwd(lab, config=resync_config(lab, 1))
    calfwd.start()
    conflicts = [c for c in calfwd.events("conflict") if "tunl0" in c]
    assert len(conflicts) == 1, conflicts
    assert "'trusted'" in conflicts[0] and "'calfwd'" in conflicts[0]
    assert "leaves it there" in conflicts[0]

    mark = calfwd.line_count()
    calfwd.wait_resyncs(2)
    fw.reload()
    calfwd.wait_for("reconciled", after=mark)
    calfwd.wait_resyncs(1)  # and one after the reload's
    assert [c for c in calfwd.events("conflict", after=mark) if "tunl0" in c] == [], "said once, not every resync"
    for args in (("--permanent",), ()):
        assert fw.firewall_cmd(*args, "--get-zone-of-interface=tunl0").strip() == "trusted"
    plan = calfwd.cli("plan")
    assert plan.returncode == 1 and "tunl0 is bound to zone 'trusted'" in plan.stdout
    assert traffic_ok(lab)

    # The admin moves it out of trusted: calfwd takes it at the next resync.
    mark = calfwd.line_count()
    for args in (("--permanent",), ()):
        fw.firewall_cmd(*args, "--zone=trusted", "--remove-interface=tunl0")
    # (A resync may fall between the two removals: then it takes tunl0 in two steps.)
    def taken() -> bool:
        zones = [fw.firewall_cmd(*args, "--get-zone-of-interface=tunl0", check=False).strip()
                 for args in (("--permanent",), ())]
        return zones == ["calfwd", "calfwd"]
    wait_until(taken, 10, "calfwd binding tunl0 once it is free")
    assert "add interface tunl0" in "\n".join(calfwd.events("reconciled", after=mark))
    no_traceback(calfwd)


# ---------------------------------------------------------------------------------------
# Config on SIGHUP, and files others can write


def test_invalid_config_on_sighup_keeps_the_last_good_one_in_force(lab):
    """The bad file is refused; the good config goes on being enforced (a firewalld reload,
    drift repaired at the resync); a file others could write is refused too; a valid
    SIGHUP later applies."""
    fw = lab.firewalld
    fw.start()
    lab.calico.remove_nat_outgoing()
    calfwd = Calfwd(lab, config=resync_config(lab, 1))
    calfwd.start()
    good = footprint(lab)

    calfwd.write_config('[calico]\nip_pools = ["198.18.64.1/20"]\nnat_outgoing = true\n'
                        "[daemon]\nresync_interval = 1\n")
    mark = calfwd.line_count()
    calfwd.signal(signal.SIGHUP)
    lines = calfwd.wait_for("config-invalid", after=mark)
    assert "host bits" in lines[0] and "keeping the last good" in lines[0]
    fw.reload()
    calfwd.wait_for("reconciled", after=mark)
    lab.node.run("nft", "delete", "table", "inet", "calfwd")
    wait_until(lambda: table(lab) == good["table"], 5, "the resync restoring the last good table")
    assert footprint(lab) == good
    assert traffic_ok(lab)

    # Valid, but group-writable: refused as root, the old config stays.
    calfwd.write_config(resync_config(lab, 1).replace(f'"{lab.addr.pool_v6}"',
                                                      f'"{lab.addr.pool_v6}", "198.18.96.0/20"'))
    calfwd.config_path.chmod(0o664)
    mark = calfwd.line_count()
    calfwd.signal(signal.SIGHUP)
    assert "lets group or others write" in calfwd.wait_for("config-invalid", after=mark)[0]
    calfwd.wait_resyncs(1)  # a reconcile since, with the last good config
    assert "198.18.96.0/20" not in table(lab)

    calfwd.config_path.chmod(0o644)
    mark = calfwd.line_count()
    calfwd.signal(signal.SIGHUP)
    calfwd.wait_for("config-reloaded", after=mark)
    calfwd.wait_for("reconciled", after=mark)
    assert "198.18.96.0/20" in table(lab)
    assert traffic_ok(lab) and calfwd.running
    no_traceback(calfwd)


def test_sighup_with_a_config_the_validator_chokes_on_is_survived(lab):
    calfwd = Calfwd(lab)
    calfwd.start()
    good = table(lab)
    calfwd.write_config('[calico]\nip_pools = ["198.18.64.0/\u00b2"]\n')
    for _ in range(2):
        mark = calfwd.line_count()
        calfwd.signal(signal.SIGHUP)
        calfwd.wait_for("config-invalid", after=mark, timeout=5)
    assert calfwd.running and table(lab) == good
    no_traceback(calfwd)


@pytest.mark.parametrize("mode,owner,why", [(0o666, 0, "lets group or others write"),
                                            (0o640, 65534, "owned by uid 65534")])
def test_run_refuses_a_config_others_can_write(lab, mode, owner, why):
    calfwd = Calfwd(lab)
    os.chown(calfwd.config_path, owner, 0)
    calfwd.config_path.chmod(mode)
    calfwd.start(wait_event=None)
    assert calfwd.proc.wait(timeout=30) == 2
    lines = calfwd.lines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("calfwd[config-invalid]") and str(calfwd.config_path) in lines[0]
    assert why in lines[0]
    assert table(lab) == "", "nothing applied"


# ---------------------------------------------------------------------------------------
# Hostile bus clients


def test_storm_of_fake_reloaded_costs_little_and_changes_nothing(lab):
    """2000 Reloaded signals from a client that does not own firewalld's name: ignored, no
    reconcile, nothing changed, and cheap. The bound on CPU is generous on purpose (a shared
    CI machine); bench/ measures the real cost."""
    lab.firewalld.start()
    calfwd = Calfwd(lab)
    calfwd.start()
    until_steady(calfwd.line_count, 1.0, 20, "the start-up burst (create, reload, verify) is over")
    before = footprint(lab)
    mark = calfwd.line_count()
    cpu_before = cpu_seconds(calfwd.proc.pid)
    sender = bus_client(lab, STORM, "2000")
    assert sender.startswith(":")
    # A real reload afterwards proves calfwd was listening, and marks the end of the storm.
    lab.firewalld.reload()
    calfwd.wait_for("firewalld-reloaded", after=mark)
    calfwd.wait_for("reconciled", after=mark)
    quiet_for(lambda: len(calfwd.events("firewalld-reloaded", after=mark)) == 1
              and len(calfwd.events("reconciled", after=mark)) == 1, 1.0,
              "the storm brings no reconcile of its own")
    cpu = cpu_seconds(calfwd.proc.pid) - cpu_before
    assert len(calfwd.events("firewalld-reloaded", after=mark)) == 1
    assert len(calfwd.events("reconciled", after=mark)) == 1
    assert footprint(lab) == before
    assert cpu < 2.0, f"2000 fake signals and one real reconcile cost {cpu:.2f} CPU-seconds"
    assert calfwd.running


@pytest.mark.parametrize("who", ["nobody", "me"])
def test_spoofed_name_owner_changed_does_not_change_firewalds_owner(lab, who):
    lab.firewalld.start()
    calfwd = Calfwd(lab)
    calfwd.start()
    until_steady(calfwd.line_count, 1.0, 20, "the start-up burst is over")
    mark = calfwd.line_count()
    bus_client(lab, SPOOF_OWNER, who)  # routed to calfwd before the reload's signals (bus order)
    lab.firewalld.reload()
    wait_until(lambda: calfwd.events("firewalld-reloaded", after=mark), 10, "the real Reloaded honoured")
    quiet_for(lambda: not calfwd.events("firewalld-vanished", after=mark)
              and not calfwd.events("firewalld-appeared", after=mark), 1.0,
              "a spoofed NameOwnerChanged changes nobody's ownership")
    assert not calfwd.events("firewalld-vanished", after=mark)
    assert not calfwd.events("firewalld-appeared", after=mark)
    assert len(calfwd.events("firewalld-reloaded", after=mark)) == 1, "the real Reloaded was ignored"


def test_a_fake_reloaded_from_a_spoofer_is_not_honoured(lab):
    """The same spoofer, without touching NameOwnerChanged: its Reloaded is not the owner's."""
    lab.firewalld.start()
    calfwd = Calfwd(lab)
    calfwd.start()
    until_steady(calfwd.line_count, 1.0, 20, "the start-up burst is over")
    mark = calfwd.line_count()
    bus_client(lab, STORM, "5")
    quiet_for(lambda: not calfwd.events("firewalld-reloaded", after=mark)
              and not calfwd.events("reconciled", after=mark), 1.0, "a spoofer's Reloaded is not honoured")
    assert not calfwd.events("firewalld-reloaded", after=mark)
    assert not calfwd.events("reconciled", after=mark)
