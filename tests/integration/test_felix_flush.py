"""The daemon notices firewalld flushing Felix's rules: one warning per flush, the optional
on_calico_flush command (run without a shell, its output logged), and silence with the guard."""

from __future__ import annotations

import signal

from calfwd.judge import guard
from lab.calfwd import Calfwd


def daemon(lab, extra: str = "") -> Calfwd:
    config = (f'[calico]\nip_pools = ["{lab.addr.pool_v4}", "{lab.addr.pool_v6}"]\nnat_outgoing = true\n'
              + extra)
    calfwd = Calfwd(lab, config)
    calfwd.env[guard.DROPIN_ENV] = str(lab.workdir / "guard.conf")
    calfwd.start()
    return calfwd


def refresh_baseline(calfwd) -> None:
    """Felix restored its rules; a reconcile (here: SIGHUP) makes calfwd look again."""
    mark = calfwd.line_count()
    calfwd.signal(signal.SIGHUP)
    calfwd.wait_for("reconciled", after=mark)


def test_one_warning_per_flush_on_start_reload_and_stop(lab):
    calfwd = daemon(lab, "felix_refresh_interval = 90\n")
    lab.firewalld.start()
    line = calfwd.wait_for("calico-flushed")[0]
    assert "firewalld 1.3.3 flushed Calico's iptables rules on start" in line
    assert "cali-FORWARD" in line and "cali-POSTROUTING" in line
    assert "within 90 s" in line and "calfwd guard enable" in line and ">= 2.0" in line

    # A reload while Felix has not restored anything yet: nothing new to report.
    mark = calfwd.line_count()
    lab.firewalld.reload()
    calfwd.wait_for("reconciled", after=mark)
    assert calfwd.events("calico-flushed", after=mark) == []

    lab.calico.restore()
    refresh_baseline(calfwd)
    mark = calfwd.line_count()
    lab.firewalld.reload()
    line = calfwd.wait_for("calico-flushed", after=mark)[0]
    assert "on reload" in line
    calfwd.wait_for("reconciled", after=mark)

    lab.calico.restore()
    refresh_baseline(calfwd)
    mark = calfwd.line_count()
    lab.firewalld.stop()
    line = calfwd.wait_for("calico-flushed", after=mark)[0]
    assert "on stop" in line
    assert len(calfwd.events("calico-flushed")) == 3
    assert lab.pod_reaches_proxy(), "calfwd's own table keeps pod egress working meanwhile"


def test_on_calico_flush_command(lab, root_dir):
    marker = lab.workdir / "flush-command.args"
    script = root_dir / "on-flush.sh"  # not under /tmp: calfwd runs no program others could swap
    script.write_text(f'#!/bin/sh\necho "$@" > {marker}\necho "restarting calico-node for $1"\n')
    script.chmod(0o755)
    calfwd = daemon(lab, f'[daemon]\non_calico_flush = ["{script}", "node 1; touch /tmp/pwned"]\n'
                         "on_calico_flush_interval = 3600\non_calico_flush_timeout = 10\n")
    lab.firewalld.start()
    line = calfwd.wait_for("calico-flushed")[0]
    assert "Started on_calico_flush" in line
    done = calfwd.wait_for("flush-command")[0]
    assert "exited 0" in done and "restarting calico-node for node 1; touch /tmp/pwned" in done
    assert marker.read_text() == "node 1; touch /tmp/pwned\n"  # one argument, no shell

    lab.calico.restore()
    refresh_baseline(calfwd)
    mark = calfwd.line_count()
    lab.firewalld.reload()
    line = calfwd.wait_for("calico-flushed", after=mark)[0]
    assert "not started" in line and "at most once per 3600 s" in line
    assert len(calfwd.events("flush-command")) == 1


def test_guarded_firewalld_flushes_nothing_and_nothing_is_reported(lab):
    calfwd = daemon(lab, "[firewalld]\nflush_guard = true\n")
    missing = calfwd.wait_for("conflict")[0]
    assert "flush_guard = true" in missing and "calfwd guard enable" in missing
    calfwd.env["CALFWD_FIREWALLD_DIR"] = str(lab.firewalld.config_dir)
    assert calfwd.cli("guard", "enable").returncode == 0
    lab.firewalld.inaccessible_paths = guard.parse_dropin((lab.workdir / "guard.conf").read_text())
    mark = calfwd.line_count()
    lab.firewalld.start()
    calfwd.wait_for("reconciled", after=mark)
    lab.firewalld.reload()
    calfwd.wait_for("reconciled", after=mark, count=2)
    lab.firewalld.stop()
    calfwd.wait_for("firewalld-vanished", after=mark)
    assert lab.calico.present()
    assert calfwd.events("calico-flushed") == []
    guard_events = [line for line in calfwd.events("conflict") if "flush_guard" in line]
    assert len(guard_events) == 1, "the missing guard is reported once, not at every reconcile"
