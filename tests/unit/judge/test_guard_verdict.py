"""One verdict on the flush guard for everyone who says something about it: doctor's
flush-guard check, `calfwd guard status`, the daemon (flush_guard = true and "auto" alike) and
the metrics' calfwd_flush_guard_installed. Fed the same host (a hand-made snapshot), they say
the same thing; only guard.assess() judges."""

from __future__ import annotations

import dataclasses
import io

import pytest

from calfwd import cli
from calfwd.commands import guard as guard_command
from calfwd.judge import guard
from calfwd import config as cfg
from calfwd import daemon as daemon_mod
from calfwd.daemon import Coalescer, Daemon
from calfwd.doctor import reads
from calfwd.doctor.firewalld_checks import check_guard
from calfwd.doctor.findings import ERROR, WARNING
from calfwd.doctor.snapshot import Read
from calfwd.events import Reporter
from fakes.host import CONFIG, NFT, fw, healthy, old
from fakes.loop import Loop
from fakes.reconciler import FakeReconciler

LEGACY = "/usr/sbin/xtables-legacy-multi"
GOOD = guard.render_dropin((NFT,))

HOSTS = {
    "1.x, no guard": old(),
    "1.x, installed, not restarted": old(dropin_text=GOOD),
    "1.x, in effect": old(dropin_text=GOOD, firewalld=fw(version="1.3.3", guarded=(NFT,))),
    "1.x, stale": old(dropin_text=guard.render_dropin((LEGACY,))),
    "1.x, mounts unreadable": old(dropin_text=GOOD, firewalld=fw(version="1.3.3", guarded=None),
                                  unknown={Read.GUARD_ACTIVE: "cannot read /proc/1234/mountinfo"}),
    "1.x, iptables backend": old(dropin_text=GOOD, firewalld=fw(version="1.3.3", backend="iptables")),
    "1.x iptables backend, no guard": old(firewalld=fw(version="1.3.3", backend="iptables")),
    "1.x, direct rules": old(dropin_text=GOOD, permanent_direct=("permanent rule ipv4 filter INPUT",)),
    "someone else's file": old(dropin_text="[Service]\nLimitNOFILE=1\n"),
    "drop-in unreadable": old(unknown={Read.GUARD_DROPIN: "Permission denied"}),
    "2.x, no guard": healthy(),
    "2.x, installed": healthy(dropin_text=GOOD),
    "1.x, firewalld stopped": old(dropin_text=GOOD, firewalld=fw(running=False, state="", version="")),
}
SETTINGS = (True, "auto", False)


def configured(snap, setting):
    return dataclasses.replace(snap, config=dataclasses.replace(
        CONFIG, firewalld=dataclasses.replace(CONFIG.firewalld, flush_guard=setting)))


def status_lines(snap, monkeypatch, capsys):
    monkeypatch.setattr(guard_command.host, "read_snapshot", lambda *a, **k: snap)
    code = cli.main(["--config", snap.config_path, "guard", "status", "--dropin", snap.dropin_path])
    return code, capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("setting", SETTINGS, ids=str)
@pytest.mark.parametrize("host", sorted(HOSTS))
def test_doctor_guard_status_and_the_daemon_say_the_same(host, setting, monkeypatch, capsys):
    snap = configured(HOSTS[host], setting)
    found = check_guard(snap)
    monkeypatch.setattr(reads, "read_snapshot", lambda *a, **k: snap)
    verdict = daemon_mod.judge_guard(snap.config_path, setting)
    code, lines = status_lines(snap, monkeypatch, capsys)
    assert len(found) <= 1, found  # one verdict, one finding
    if not found:  # nothing for doctor to say: no drop-in, none wanted
        assert verdict.state == "not-wanted" and verdict.problem is None
        assert lines[1].startswith("INFO    flush-guard: ") and code == 0
        return
    finding = found[0]
    assert (finding.severity, finding.saw, finding.why, finding.fix) == \
        (verdict.severity, verdict.seen, verdict.why, verdict.fix)
    assert lines[1] == finding.line(), "guard status prints doctor's finding"
    assert code == (0 if finding.severity in ("ok", "info") else 1)
    daemon_line = f"flush guard: {finding.saw}; fix: {finding.fix}"
    assert verdict.problem == (daemon_line if finding.severity in (WARNING, ERROR) else None)


def make_daemon(monkeypatch, tmp_path, text):
    monkeypatch.setenv("CALFWD_RUN_DIR", str(tmp_path / "run"))
    config = cfg.parse('[calico]\nip_pools = ["10.244.0.0/16"]\n' + text, "/etc/calfwd/calfwd.toml")
    glib = Loop()
    stream = io.StringIO()
    d = Daemon("/etc/calfwd/calfwd.toml", config, None, FakeReconciler(), Reporter(stream, journal=None), glib,
               lambda _note: None)
    d.coalescer = Coalescer(d._reconcile, daemon_mod.HOLDOFF, glib, clock=lambda: glib.now)
    d.metrics._write = lambda path, text: None
    return d, glib, stream


def run(d, glib, trigger, until):
    d.coalescer.request(trigger)
    glib.run_until(until)


@pytest.mark.parametrize("setting", ["true", '"auto"'])
def test_the_daemon_judges_true_and_auto_alike(setting, monkeypatch, tmp_path):
    """flush_guard = true used to look at the drop-in file alone: a guard installed but not in
    effect (firewalld not restarted since), or one that keeps firewalld from starting (the
    iptables backend), went unsaid where doctor warned. Both settings now get doctor's line."""
    d, glib, stream = make_daemon(monkeypatch, tmp_path, f"[firewalld]\nflush_guard = {setting}\n")
    d.owner = ":1.7"  # firewalld is on the bus
    box = {"snap": configured(HOSTS["1.x, installed, not restarted"], True)}
    monkeypatch.setattr(reads, "read_snapshot", lambda *a, **k: box["snap"])
    run(d, glib, "start", 0.0)
    line = check_guard(box["snap"])[0]
    assert d._guard_problem == f"flush guard: {line.saw}; fix: {line.fix}"
    assert "started without it" in d._guard_problem
    assert stream.getvalue().count("calfwd[conflict] flush guard: ") == 1
    box["snap"] = configured(HOSTS["1.x, iptables backend"], True)
    run(d, glib, "firewalld-started", 1.0)
    assert "FirewallBackend=iptables" in d._guard_problem
    box["snap"] = configured(HOSTS["1.x, in effect"], True)
    run(d, glib, "config-reloaded", 2.0)
    assert d._guard_problem is None


def test_the_metric_is_the_verdicts_even_where_the_daemon_reports_nothing(monkeypatch, tmp_path):
    """flush_guard = false: nothing to report, but calfwd_flush_guard_installed still follows
    the same verdict (installed and current), judged when the daemon judges."""
    d, glib, stream = make_daemon(monkeypatch, tmp_path, "[firewalld]\nflush_guard = false\n"
                                  f"[metrics]\ntextfile = \"{tmp_path}/calfwd.prom\"\n")
    box = {"snap": configured(HOSTS["1.x, installed, not restarted"], False)}
    monkeypatch.setattr(reads, "read_snapshot", lambda *a, **k: box["snap"])
    run(d, glib, "start", 0.0)
    assert d.metrics.tally.flush_guard_installed is True and d._guard_problem is None
    box["snap"] = configured(HOSTS["1.x, stale"], False)
    run(d, glib, "resync", 1.0)
    assert d.metrics.tally.flush_guard_installed is True, "a resync within GUARD_EVERY does not judge again"
    run(d, glib, "firewalld-started", 2.0)
    assert d.metrics.tally.flush_guard_installed is False
    assert "conflict" not in stream.getvalue()


def test_a_snapshot_that_cannot_be_read_is_no_verdict_and_not_installed(monkeypatch, tmp_path):
    d, glib, _stream = make_daemon(monkeypatch, tmp_path, "[firewalld]\nflush_guard = true\n"
                                   f"[metrics]\ntextfile = \"{tmp_path}/calfwd.prom\"\n")

    def broken(*_a, **_k):
        raise RuntimeError("no")

    monkeypatch.setattr(reads, "read_snapshot", broken)
    run(d, glib, "start", 0.0)
    assert d._guard_problem is None and d.metrics.tally.flush_guard_installed is False
