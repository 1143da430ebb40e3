"""`calfwd status`, the status files and node-problem-detector's check tell the truth about a
flush of Felix's and kube-proxy's rules (issue 12 item 5; issue 13 item 4).

The flush is visible only as it happens: afterwards the jumps are simply absent, as on a node
whose Calico runs elsewhere. So the daemon keeps what it saw in /run/calfwd (the lab: its
workdir), `calfwd status` folds that in, and NPD's shell check reads the one-line health file.
Each firewalld version's real behaviour is asserted: <= 1.x flushes on reload, 2.x does not.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from lab.calfwd import Calfwd, minimal_config
from lab.kubeproxy import KubeProxySim
from lab.wait import quiet_for, wait_until

REPO = Path(__file__).resolve().parents[2]
CHECK = REPO / "packaging" / "npd" / "calfwd-npd-check"


def npd_check(calfwd: Calfwd, max_age: int = 300) -> subprocess.CompletedProcess:
    """As node-problem-detector runs a custom plugin: no shell, a timeout, stdout and the status."""
    health = Path(calfwd.env["CALFWD_RUN_DIR"]) / "health"
    return subprocess.run([str(CHECK)], capture_output=True, text=True, timeout=10,
                          env={"PATH": "/usr/bin:/bin", "CALFWD_HEALTH_FILE": str(health),
                               "CALFWD_HEALTH_MAX_AGE": str(max_age)})


def status_file(calfwd: Calfwd) -> dict:
    return json.loads((Path(calfwd.env["CALFWD_RUN_DIR"]) / "status.json").read_text())


def test_a_flush_not_yet_undone_is_blocked_everywhere_until_felix_and_kube_proxy_restore(lab):
    kube = KubeProxySim(lab.node)
    kube.install()
    lab.firewalld.start()
    # Opted out of the guard: what is said here is the flush itself, not the missing guard.
    calfwd = Calfwd(lab, minimal_config(lab) + "[firewalld]\nflush_guard = false\n")
    calfwd.start()  # on firewalld 1.x its first reload (the new zone) flushed them too
    lab.calico.restore()
    kube.restore()
    wait_until(lambda: calfwd.cli("status").returncode == 0, 20, "in sync before the reload")
    ok = npd_check(calfwd)
    assert (ok.returncode, ok.stdout) == (0, "ok calfwd: in sync\n"), ok
    assert status_file(calfwd)["state"] == "ok" and status_file(calfwd)["pid"] == calfwd.proc.pid

    mark = calfwd.line_count()
    lab.firewalld.reload()
    calfwd.wait_for("reconciled", after=mark)
    if lab.calico.present() and kube.present():  # firewalld 2.x: nothing was flushed
        quiet_for(lambda: calfwd.events("calico-flushed", after=mark) == [], 1.0, "firewalld 2.x flushes nothing")
        assert calfwd.events("calico-flushed", after=mark) == []
        assert calfwd.cli("status").returncode == 0 and npd_check(calfwd).returncode == 0
        return

    calfwd.wait_for("calico-flushed", after=mark, timeout=15)
    wait_until(lambda: status_file(calfwd)["state"] == "blocked", 5, "the status file to say blocked")
    status = calfwd.cli("status")
    assert status.returncode == 1, status.stdout + status.stderr
    assert "kernel: BLOCKED: firewalld's reload at " in status.stdout
    assert "flushed Calico's iptables rules" in status.stdout
    assert "flushed kube-proxy's iptables rules: Services" in status.stdout
    as_json = json.loads(calfwd.cli("status", "--json").stdout)
    assert as_json["in_sync"] is False and as_json["daemon"]["running"] is True
    assert [f["owner"] for f in as_json["daemon"]["flushed"]] == ["Calico", "kube-proxy"]
    assert all(f["cause"] == "reload" for f in as_json["daemon"]["flushed"])
    assert any("cali-FORWARD" in j for j in as_json["daemon"]["flushed"][0]["missing"])
    doctor = json.loads(calfwd.cli("doctor", "--json").stdout)
    flushed = [f for f in doctor["findings"] if f["check"] == "flushed"]
    assert [f["severity"] for f in flushed] == ["error", "error"] and doctor["exit_code"] == 2
    check = npd_check(calfwd)
    assert check.returncode == 1 and check.stdout.startswith("blocked BLOCKED: firewalld's reload"), check
    assert check.stdout.count("\n") == 1

    assert calfwd.stop() == 0  # a restart (an upgrade) does not forget what is still gone
    calfwd.start()
    assert status_file(calfwd)["state"] == "blocked" and calfwd.cli("status").returncode == 1

    lab.calico.restore()  # Felix's refresh
    wait_until(lambda: [f["owner"] for f in status_file(calfwd)["flushed"]] == ["kube-proxy"], 10,
               "Calico's part to clear once Felix's jumps are back")
    assert calfwd.cli("status").returncode == 1, "kube-proxy's rules are still gone"
    kube.restore()  # kube-proxy's canary noticed
    wait_until(lambda: status_file(calfwd)["state"] == "ok", 10, "ok once everything is back")
    assert calfwd.cli("status").returncode == 0
    assert npd_check(calfwd).returncode == 0


def test_npd_check_without_a_daemon_and_with_a_stale_file(lab):
    calfwd = Calfwd(lab)
    missing = npd_check(calfwd)
    assert missing.returncode == 1 and missing.stdout.startswith("calfwd is not running"), missing
    calfwd.start()
    health = Path(calfwd.env["CALFWD_RUN_DIR"]) / "health"
    wait_until(health.exists, 10, "the health file")
    assert oct(health.stat().st_mode & 0o777) == "0o644"  # NPD may read it as another user
    old = time.time() - 600
    os.utime(health, (old, old))
    stale = npd_check(calfwd)
    assert stale.returncode == 1 and "old" in stale.stdout, stale
    assert calfwd.stop() == 0
    stopped = npd_check(calfwd)
    assert stopped.returncode == 1 and stopped.stdout.startswith("stopped calfwd stopped"), stopped
    status = calfwd.cli("status")
    assert "daemon: not running" in status.stdout, "a dead daemon's status.json says nothing of now"
    health.write_text("what is this\n")
    garbage = npd_check(calfwd)
    assert garbage.returncode not in (0, 1), "an unknown state is NPD's 'unknown', not a problem"


def test_a_missing_flush_guard_where_firewalld_flushes_is_a_warning_for_npd(lab):
    """flush_guard = "auto" (the default): on a firewalld that flushes, no drop-in is a node
    problem before anything broke; where firewalld does not flush (2.x), nothing to say."""
    lab.firewalld.start()
    calfwd = Calfwd(lab)
    calfwd.start()
    lab.calico.restore()
    flushes = lab.firewalld.build.major < 2
    if not flushes:
        wait_until(lambda: npd_check(calfwd).returncode == 0, 10, "ok on a firewalld that does not flush")
        assert calfwd.events("conflict") == []
        return
    wait_until(lambda: status_file(calfwd)["state"] == "warning", 10, "the missing guard to be said")
    check = npd_check(calfwd)
    assert check.returncode == 1 and check.stdout.startswith("warning WARNING: flush guard: "), check
    assert "does not exist" in status_file(calfwd)["flush_guard_problem"]
    assert len([e for e in calfwd.events("conflict") if "flush guard" in e]) == 1
    assert calfwd.cli("status").returncode == 0, "calfwd's objects are in sync: a warning, not drift"
    applied = calfwd.cli("apply")  # installs the guard; in effect from firewalld's next restart
    assert "takes effect when firewalld restarts" in applied.stdout, applied.stdout
    mark = calfwd.line_count()
    calfwd.signal(signal.SIGHUP)
    calfwd.wait_for("reconciled", after=mark)
    wait_until(lambda: "started without it" in (status_file(calfwd)["flush_guard_problem"] or ""), 5,
               "status.json saying the guard is not in effect")
    assert "started without it" in status_file(calfwd)["flush_guard_problem"]


def test_a_status_directory_others_can_write_is_refused_once_and_never_written(lab):
    """Outside systemd (no RuntimeDirectory=) the run directory may be anyone's: the daemon
    reports it once, writes nothing there, and reconciles on."""
    lab.firewalld.start()
    calfwd = Calfwd(lab, minimal_config(lab) + "[firewalld]\nflush_guard = false\n")
    run = Path(calfwd.env["CALFWD_RUN_DIR"])
    run.mkdir()
    run.chmod(0o777)
    calfwd.start()
    calfwd.signal(signal.SIGHUP)  # a second reconcile: still one report
    calfwd.wait_for("config-reloaded")
    calfwd.wait_for("reconciled", count=2)
    failed = calfwd.events("status-file-failed")
    assert len(failed) == 1, failed
    assert f"{run}: not used: anyone can write it (mode 0777)" in failed[0], failed[0]
    assert sorted(os.listdir(run)) == []
    assert calfwd.stop() == 0
    assert sorted(os.listdir(run)) == [], "nor the stopped line at the end"
