"""The daemon's burst coalescing, with a fake clock and a fake GLib timer queue; and what the
daemon decides on a coalesced run's triggers (the flush guard's judgement, READY=1, the
repair brake), with fake drivers."""

from __future__ import annotations

import io

from calfwd import config as cfg
from calfwd import daemon as daemon_mod
from calfwd.daemon import Coalescer, Daemon, label
from calfwd.events import Reporter
from calfwd.reconcile import ORPHAN_TRIGGERS
from fakes.loop import Loop
from fakes.reconciler import FakeReconciler


def make(holdoff=0.5):
    glib = Loop()
    runs = []
    c = Coalescer(lambda trigger: runs.append((glib.now, trigger)), holdoff, glib, clock=lambda: glib.now)
    return glib, c, runs


def test_first_request_runs_at_once():
    glib, c, runs = make()
    c.request("start")
    glib.run_until(0.0)
    assert runs == [(0.0, {"start"})]


def test_hundred_signals_in_a_second_cost_a_few_reconciles():
    glib, c, runs = make()
    for i in range(100):
        glib.run_until(i / 100)
        c.request("firewalld-reloaded")
    glib.run_until(5.0)
    assert 2 <= len(runs) <= 3, runs
    # The last signal is never lost: a run happens after it.
    assert runs[-1][0] >= 0.99


def test_requests_during_holdoff_collapse_into_one_run():
    glib, c, runs = make()
    c.request("a")
    glib.run_until(0.0)
    c.request("b")
    c.request("c")
    glib.run_until(0.1)
    assert len(runs) == 1
    glib.run_until(1.0)
    assert [t for _, t in runs] == [{"a"}, {"b", "c"}]
    assert runs[1][0] == 0.5


def test_spaced_requests_each_run_immediately():
    glib, c, runs = make()
    for t in (0.0, 1.0, 2.0):
        glib.run_until(t)
        c.request("resync")
        glib.run_until(t)
    assert [when for when, _ in runs] == [0.0, 1.0, 2.0]


def test_a_trigger_in_a_busy_window_is_never_lost():
    """Issue 19: the run after a busy window kept only the first trigger's name, so a
    firewalld-started that came second ran as felix-pools-changed (or resync)."""
    glib, c, runs = make()
    c.request("resync")
    glib.run_until(0.0)
    c.request("felix-pools-changed")
    c.request("firewalld-started")
    c.request("felix-pools-changed")
    glib.run_until(1.0)
    assert [t for _, t in runs] == [{"resync"}, {"felix-pools-changed", "firewalld-started"}]


def test_a_run_is_labelled_by_its_most_significant_trigger():
    assert label(frozenset({"resync", "firewalld-started", "felix-pools-changed"})) == "firewalld-started"
    assert label(frozenset({"firewalld-reloaded", "config-reloaded"})) == "config-reloaded"
    assert label(frozenset({"resync", "something-new"})) == "something-new"
    assert label(frozenset({"resync"})) == "resync"
    # reconcile.py looks for orphan tables when the label is one of these: any run that
    # stands for one of them must carry it as its label.
    for orphan in ORPHAN_TRIGGERS & set(daemon_mod.SIGNIFICANCE):
        others = set(daemon_mod.SIGNIFICANCE) - ORPHAN_TRIGGERS
        assert label(frozenset(others | {orphan})) == orphan


# -- the daemon's decisions on a coalesced run ----------------------------------------------

CONFIG = cfg.parse('[calico]\nip_pools = ["10.244.0.0/16"]\n\n[firewalld]\nflush_guard = "auto"\n',
                   "/etc/calfwd/calfwd.toml")


def make_daemon(monkeypatch, tmp_path):
    monkeypatch.setenv("CALFWD_RUN_DIR", str(tmp_path))
    judged = []
    monkeypatch.setattr(daemon_mod, "judge_guard", lambda path, setting: judged.append(path))
    glib = Loop()
    notes = []
    d = Daemon("/etc/calfwd/calfwd.toml", CONFIG, None, FakeReconciler(), Reporter(io.StringIO(), journal=None), glib, notes.append)
    d.coalescer = Coalescer(d._reconcile, daemon_mod.HOLDOFF, glib, clock=lambda: glib.now)
    d.owner = ":1.7"  # firewalld is on the bus
    return d, glib, judged, notes


def test_firewalld_started_in_a_busy_window_still_judges_the_guard(monkeypatch, tmp_path):
    """Issue 19's CI flake: after a firewalld restart with the guard installed, the warning
    stayed for 5 minutes when the firewalld-started run was coalesced behind another trigger."""
    d, glib, judged, _notes = make_daemon(monkeypatch, tmp_path)
    d.coalescer.request("resync")
    glib.run_until(0.0)
    assert len(judged) == 1  # the first judgement
    glib.run_until(0.1)
    d.coalescer.request("felix-pools-changed")  # Felix's sets changed ...
    d.coalescer.request("firewalld-started")    # ... and a new firewalld is RUNNING
    glib.run_until(1.0)
    assert d.reconciler.labels == ["resync", "firewalld-started"]
    assert len(judged) == 2, "firewalld-started must re-judge the flush guard"


def test_triggers_deferred_during_calfwds_own_reload_are_all_kept(monkeypatch, tmp_path):
    """Triggers arriving during calfwd's own firewalld reload collapse into one run after it:
    that run must stand for each of them, not only for the first."""
    d, glib, judged, _notes = make_daemon(monkeypatch, tmp_path)
    d.reconciler.reload = True
    d.coalescer.request("resync")
    glib.run_until(0.0)
    assert d._reloading and not judged
    d.reconciler.reload = False
    d.coalescer.request("felix-pools-changed")
    glib.run_until(0.6)
    d.coalescer.request("firewalld-started")
    glib.run_until(1.2)
    assert d.reconciler.labels == ["resync"]  # nothing runs while firewalld reloads
    d.reconciler.reloads.pop()()  # the reload is over: its run is reported, the rest run next
    assert len(judged) == 1
    glib.run_until(3.0)
    assert d.reconciler.labels == ["resync", "firewalld-started"]
    assert len(judged) == 2, "firewalld-started must re-judge the flush guard"


def test_a_config_reload_deferred_with_other_triggers_answers_systemctl(monkeypatch, tmp_path):
    d, glib, _judged, notes = make_daemon(monkeypatch, tmp_path)
    d.ready = True
    d.reconciler.reload = True
    d.coalescer.request("resync")
    glib.run_until(0.0)
    d.reconciler.reload = False
    d.coalescer.request("firewalld-reloaded")
    glib.run_until(0.6)
    d._hup_ready = True  # _on_hup's config-reloaded came during the reload
    d._reconcile(frozenset({"config-reloaded"}))
    d.coalescer.request("firewalld-started")
    glib.run_until(1.2)
    d.reconciler.reloads.pop()()
    assert "READY=1" not in notes  # that run was not the new config's
    glib.run_until(3.0)
    assert d.reconciler.labels == ["resync", "config-reloaded"]
    assert notes.count("READY=1") == 1  # `systemctl reload` is answered


def test_a_resync_coalesced_with_another_trigger_still_resumes_repairs(monkeypatch, tmp_path):
    d, glib, _judged, _notes = make_daemon(monkeypatch, tmp_path)
    seen = []
    monkeypatch.setattr(d.kernel, "reconciled", lambda triggers, version: seen.append(set(triggers)))
    d.coalescer.request("firewalld-reloaded")
    glib.run_until(0.0)
    d.coalescer.request("resync")
    d.coalescer.request("firewalld-reloaded")
    glib.run_until(1.0)
    assert seen == [{"firewalld-reloaded"}, {"resync", "firewalld-reloaded"}]


def test_flannels_subnet_file_rewritten_reconciles_within_a_poll(monkeypatch, tmp_path):
    """ip_pools = "auto" on a Canal or flannel node follows flannel's subnet file: a rename over
    it (as flannel and k3s write it) runs a reconcile at the next poll; an unchanged file does
    not, and on a Calico node the file is not even looked at."""
    d, glib, _judged, _notes = make_daemon(monkeypatch, tmp_path)
    subnet = tmp_path / "subnet.env"
    subnet.write_text("FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_IPMASQ=true\n")
    d.config = cfg.parse(f'[calico]\nip_pools = "auto"\n[flannel]\nsubnet_file = "{subnet}"\n', "t.toml")
    d.reconciler.cni = "canal"
    d.coalescer.request("start")
    glib.run_until(0.0)
    # Rewritten after the start's reconcile read it and before the first poll: the baseline is
    # the reconcile's, so the poll sees the change (it was lost when the first poll took it).
    again = tmp_path / "subnet.env.tmp"
    again.write_text("FLANNEL_NETWORK=10.45.0.0/16\nFLANNEL_IPMASQ=true\n")
    again.rename(subnet)
    d._poll_forwarding()
    glib.run_until(1.0)
    assert d.reconciler.labels == ["start", "flannel-subnet-changed"]
    d._poll_forwarding()
    glib.run_until(1.5)
    assert d.reconciler.labels == ["start", "flannel-subnet-changed"], "nothing changed since: no run"
    d.reconciler.labels = ["start"]
    new = tmp_path / "subnet.env.tmp"
    new.write_text("FLANNEL_NETWORK=10.43.0.0/16\nFLANNEL_IPMASQ=true\n")
    new.rename(subnet)
    d._poll_forwarding()
    glib.run_until(2.6)
    assert d.reconciler.labels == ["start", "flannel-subnet-changed"]
    subnet.unlink()
    d._poll_forwarding()
    glib.run_until(3.2)
    assert d.reconciler.labels[-1] == "flannel-subnet-changed" and len(d.reconciler.labels) == 3, "gone is a change"

    d.reconciler.cni = "calico"
    d.coalescer.request("resync")
    glib.run_until(4.0)
    subnet.write_text("FLANNEL_NETWORK=10.44.0.0/16\nFLANNEL_IPMASQ=true\n")
    d._poll_forwarding()
    glib.run_until(5.0)
    assert d.reconciler.labels[-1] == "resync", "a Calico node's stray subnet file is not followed"
