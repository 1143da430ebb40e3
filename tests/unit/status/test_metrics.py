"""The metrics: counting (Tally), the text format (render), the daemon's file (MetricsFile)
and the atomic write. The real node_exporter and promtool read it in
tests/integration/test_metrics_in_lab.py."""

from __future__ import annotations

import io
import os
import stat

import pytest

from calfwd.judge import guard
from calfwd.status import metrics
from calfwd.desired import HostFacts
from calfwd.drivers import textfile
from calfwd.events import Reporter
from calfwd.status.metrics import Histogram, Snapshot, Tally, render
from calfwd.status.metrics_file import MetricsFile
from calfwd.reconcile import LayerPlan, Outcome

FACTS = HostFacts(firewalld_running=True, firewalld_version="1.3.3", firewalld_backend="nftables",
                  firewalld_state="RUNNING")


def outcome(trigger="resync", verified=True, errors=(), duration=0.02, nft=(), fw=(), fw_blocking=(),
            layers=("nftables", "firewalld")):
    made = {"nftables": LayerPlan("nftables", tuple(nft)),
            "firewalld": LayerPlan("firewalld", tuple(fw), blocking=tuple(fw_blocking))}
    return Outcome(trigger, tuple(made[name] for name in layers), tuple(errors), verified, duration,
                   0.001, FACTS)


SNAPSHOT = Snapshot(
    version="0.1.0", firewalld_version="1.3.3", firewalld_backend="nftables", firewalld_running=True,
    in_sync=(("nftables", True), ("firewalld", False)),
    reconciles=((("resync", "verified"), 3), (("start", "failed"), 1)),
    duration=Histogram((0.01, 0.1), (1, 2, 1), 0.5625), firewalld_reloads=2, firewalld_restarts=1,
    flushes=((("calico", "reload"), 1),), conflicts=0, table_repairs=4, last_success=1764547200.25,
    flush_guard_installed=False, cni="canal")

EXPECTED = """\
# HELP calfwd_info calfwd's version, and firewalld's version and backend at the last reconcile (empty when firewalld was not running).
# TYPE calfwd_info gauge
calfwd_info{version="0.1.0",firewalld_version="1.3.3",firewalld_backend="nftables"} 1
# HELP calfwd_cni_info 1 for the CNI calfwd served at the last reconcile (calico, canal, flannel; unknown is served as calico).
# TYPE calfwd_cni_info gauge
calfwd_cni_info{kind="canal"} 1
# HELP calfwd_firewalld_running 1 when firewalld was RUNNING at the last reconcile.
# TYPE calfwd_firewalld_running gauge
calfwd_firewalld_running 1
# HELP calfwd_in_sync 1 when the layer was as configured after the last reconcile (read, nothing blocking, changes verified).
# TYPE calfwd_in_sync gauge
calfwd_in_sync{layer="nftables"} 1
calfwd_in_sync{layer="firewalld"} 0
# HELP calfwd_reconciles_total Reconciles by trigger and result (verified, not-verified, failed).
# TYPE calfwd_reconciles_total counter
calfwd_reconciles_total{trigger="resync",result="verified"} 3
calfwd_reconciles_total{trigger="start",result="failed"} 1
# HELP calfwd_reconcile_duration_seconds How long a reconcile took, firewalld's reload included.
# TYPE calfwd_reconcile_duration_seconds histogram
calfwd_reconcile_duration_seconds_bucket{le="0.01"} 1
calfwd_reconcile_duration_seconds_bucket{le="0.1"} 3
calfwd_reconcile_duration_seconds_bucket{le="+Inf"} 4
calfwd_reconcile_duration_seconds_sum 0.5625
calfwd_reconcile_duration_seconds_count 4
# HELP calfwd_last_success_timestamp_seconds Unix time of the last verified reconcile.
# TYPE calfwd_last_success_timestamp_seconds gauge
calfwd_last_success_timestamp_seconds 1764547200.25
# HELP calfwd_firewalld_reloads_total firewalld reloads seen (its Reloaded signal; calfwd's own reloads included).
# TYPE calfwd_firewalld_reloads_total counter
calfwd_firewalld_reloads_total 2
# HELP calfwd_firewalld_restarts_total firewalld starts seen while calfwd ran (a new owner of its D-Bus name).
# TYPE calfwd_firewalld_restarts_total counter
calfwd_firewalld_restarts_total 1
# HELP calfwd_flushes_total Flushes of Calico's or kube-proxy's top-level rules seen, by owner and cause (firewalld's start, reload, stop, or not-firewalld).
# TYPE calfwd_flushes_total counter
calfwd_flushes_total{owner="calico",cause="reload"} 1
# HELP calfwd_flush_guard_installed 1 when calfwd's flush-guard drop-in for firewalld.service is in place and current (it takes effect at firewalld's next restart).
# TYPE calfwd_flush_guard_installed gauge
calfwd_flush_guard_installed 0
# HELP calfwd_conflicts Conflicts the last reconcile found (see the journal's conflict events).
# TYPE calfwd_conflicts gauge
calfwd_conflicts 0
# HELP calfwd_table_repairs_total Times calfwd restored its own nftables table after someone else changed it.
# TYPE calfwd_table_repairs_total counter
calfwd_table_repairs_total 4
"""


def test_a_known_snapshot_renders_exactly():
    assert render(SNAPSHOT) == EXPECTED


def test_before_the_first_reconcile_families_without_series_are_left_out():
    text = render(Tally("0.1.0").snapshot())
    assert "calfwd_in_sync" not in text and "calfwd_last_success_timestamp_seconds" not in text
    assert "calfwd_cni_info" not in text  # no verdict before the first reconcile
    # Counters are there from the start at 0, so that increase() counts the first event.
    assert 'calfwd_reconciles_total{trigger="firewalld-reloaded",result="failed"} 0\n' in text
    assert 'calfwd_flushes_total{owner="kube-proxy",cause="stop"} 0\n' in text
    assert "calfwd_reconcile_duration_seconds_count 0\n" in text


def test_label_values_and_help_text_are_escaped():
    assert metrics.escape_label('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert metrics.escape_help('one\\two\nthree "q"') == 'one\\\\two\\nthree "q"'
    odd = Tally('1.0 "beta"\\x\n')
    assert 'version="1.0 \\"beta\\"\\\\x\\n"' in render(odd.snapshot())
    lines = metrics.family("calfwd_x", "gauge", "a\nb", [((("k", "v\n"),), 1)])
    assert lines == ["# HELP calfwd_x a\\nb", "# TYPE calfwd_x gauge", 'calfwd_x{k="v\\n"} 1']


def test_numbers_in_the_text_format():
    assert [metrics.number(v) for v in (0, 3, 1.0, 0.005, 2.5, float("inf"), True, False, 1764547200.123456)] == [
        "0", "3", "1", "0.005", "2.5", "+Inf", "1", "0", "1764547200.123456"]


def test_histogram_buckets_are_cumulative_and_upper_bounds_inclusive():
    tally = Tally("0.1.0", bounds=(0.01, 0.1, 1.0))
    for seconds in (0.004, 0.01, 0.05, 0.1, 0.5, 7.0):
        tally.reconciled(outcome(duration=seconds), now=1.0)
    text = render(tally.snapshot())
    assert ('calfwd_reconcile_duration_seconds_bucket{le="0.01"} 2\n'
            'calfwd_reconcile_duration_seconds_bucket{le="0.1"} 4\n'
            'calfwd_reconcile_duration_seconds_bucket{le="1"} 5\n'
            'calfwd_reconcile_duration_seconds_bucket{le="+Inf"} 6\n'
            'calfwd_reconcile_duration_seconds_sum 7.664\n'
            'calfwd_reconcile_duration_seconds_count 6\n') in text


def test_reconciles_by_trigger_and_result_and_the_last_success():
    tally = Tally("0.1.0")
    tally.reconciled(outcome("start"), now=100.0)
    tally.reconciled(outcome("resync", verified=False, errors=("firewalld: no answer",)), now=160.0)
    tally.reconciled(outcome("firewalld-reloaded", verified=False, fw_blocking=("FAILED",)), now=170.0)
    tally.reconciled(outcome("some-new-trigger"), now=180.0)
    snap = tally.snapshot()
    counts = dict(snap.reconciles)
    assert counts[("start", "verified")] == 1 and counts[("resync", "failed")] == 1
    assert counts[("firewalld-reloaded", "not-verified")] == 1 and counts[("some-new-trigger", "verified")] == 1
    assert counts[("resync", "verified")] == 0
    assert snap.last_success == 180.0
    assert (snap.firewalld_version, snap.firewalld_backend, snap.firewalld_running) == ("1.3.3", "nftables", True)


@pytest.mark.parametrize("case, expected", [
    (outcome(), (True, True)),
    (outcome(nft=("add table",), verified=True), (True, True)),  # changed, then verified
    (outcome(nft=("add table",), verified=False), (False, True)),  # changed, not verified
    (outcome(errors=("firewalld: cannot read its state: timeout",), verified=False, layers=("nftables",)),
     (True, False)),
    (outcome(fw_blocking=("firewalld is in state FAILED",), verified=False), (True, False)),
    (outcome(errors=("nftables: permission denied",), verified=False, layers=("firewalld",)), (False, True)),
])
def test_in_sync_per_layer(case, expected):
    assert metrics.layers_in_sync(case) == (("nftables", expected[0]), ("firewalld", expected[1]))


def test_events_counted_by_kind_and_flushes_by_each_owner():
    tally = Tally("0.1.0")
    assert tally.event("firewalld-reloaded", {"sender": ":1.5"})
    assert tally.event("table-repaired", {"table": "calfwd"})
    assert tally.event("calico-flushed", {"cause": "reload", "owners": ["Calico", "kube-proxy"]})
    assert tally.event("kube-proxy-flushed", {"cause": None, "owners": ["kube-proxy"]})
    assert not tally.event("reconciled", {}) and not tally.event("conflict", {})
    snap = tally.snapshot()
    flushes = dict(snap.flushes)
    assert flushes[("calico", "reload")] == 1 and flushes[("kube-proxy", "reload")] == 1
    assert flushes[("kube-proxy", "not-firewalld")] == 1 and flushes[("calico", "start")] == 0
    assert (snap.firewalld_reloads, snap.table_repairs) == (1, 1)


# -- the daemon's file -------------------------------------------------------------------

class Writes:
    def __init__(self, fail=False):
        self.fail = fail
        self.done = []

    def __call__(self, path, text):
        if self.fail:
            raise PermissionError(30, "Read-only file system")
        self.done.append((path, text))


def keeper(path="/var/lib/prometheus/node-exporter/calfwd.prom", fail=False):
    stream = io.StringIO()
    reporter = Reporter(stream=stream, journal=None)
    requests = []
    writes = Writes(fail)
    box = {"path": path}
    kept = MetricsFile(reporter, lambda: box["path"], lambda: requests.append(1), clock=lambda: 42.0,
                       write=writes)
    kept.guard(INSTALLED)
    requests.clear()
    return kept, reporter, stream, requests, writes, box


INSTALLED = guard.GuardVerdict("not-in-effect", guard.WARNING, "installed, firewalld started without it",
                               installed=True)


def test_the_guard_gauge_is_the_daemons_verdict_on_the_guard():
    """calfwd_flush_guard_installed follows guard.assess()'s verdict (the one doctor gives),
    not a reading of its own: installed and current is 1 whatever else the verdict says."""
    kept, _reporter, _stream, requests, writes, _box = keeper()
    assert kept.tally.flush_guard_installed is True
    kept.guard(guard.GuardVerdict("ok", guard.OK, "installed and in effect", installed=True))
    assert requests == [], "nothing changed: no write asked"
    for verdict in (guard.GuardVerdict("stale", guard.WARNING, "hides the wrong binaries"),
                    guard.GuardVerdict("missing", guard.WARNING, "does not exist"), None):
        kept.guard(INSTALLED)
        kept.guard(verdict)
        kept.write()
        assert "calfwd_flush_guard_installed 0\n" in writes.done[-1][1], verdict
    kept.guard(INSTALLED)
    kept.write()
    assert "calfwd_flush_guard_installed 1\n" in writes.done[-1][1]


def test_events_the_reporter_emits_are_counted_and_ask_for_a_write():
    kept, reporter, _stream, requests, writes, _box = keeper()
    reporter.emit("firewalld-reloaded", "firewalld reloaded", sender=":1.9")
    reporter.emit("signal-ignored", "hidden at info level, still not a metric", sender=":1.10")
    assert len(requests) == 1
    kept.reconciled(outcome("firewalld-reloaded"))
    kept.firewalld_restarted()
    assert len(requests) == 3
    kept.write()
    (path, text), = writes.done
    assert path.endswith("calfwd.prom")
    assert "calfwd_firewalld_reloads_total 1\n" in text and "calfwd_firewalld_restarts_total 1\n" in text
    assert "calfwd_flush_guard_installed 1\n" in text and "calfwd_last_success_timestamp_seconds 42\n" in text


def test_without_a_textfile_nothing_is_requested_or_written():
    kept, reporter, _stream, requests, writes, _box = keeper(path="")
    reporter.emit("firewalld-reloaded", "firewalld reloaded")
    kept.reconciled(outcome())
    kept.write()
    assert requests == [] and writes.done == []


def test_a_failed_write_is_reported_once_until_a_write_succeeds():
    kept, reporter, stream, requests, writes, box = keeper(fail=True)
    for _ in range(3):
        kept.write()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("calfwd[metrics-write-failed] cannot write the metrics file "
                                                   "/var/lib/prometheus/node-exporter/calfwd.prom: Read-only")
    assert requests == []  # its own event asks for no write (no loop)
    writes.fail = False
    kept.write()
    writes.fail = True
    kept.write()
    assert len(stream.getvalue().splitlines()) == 2
    box["path"] = "/elsewhere/calfwd.prom"  # a new path is a new problem
    kept.write()
    assert len(stream.getvalue().splitlines()) == 3


def test_atomic_write_replaces_the_file_readable_by_all_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "calfwd.prom"
    path.write_text("old\n")
    old_umask = os.umask(0o077)  # the unit's UMask=
    try:
        textfile.write_atomic(str(path), "calfwd_conflicts 0\n")
    finally:
        os.umask(old_umask)
    assert path.read_text() == "calfwd_conflicts 0\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["calfwd.prom"]


def test_atomic_write_to_a_missing_directory_raises_and_leaves_nothing(tmp_path):
    with pytest.raises(OSError):
        textfile.write_atomic(str(tmp_path / "missing" / "calfwd.prom"), "x\n")
    assert os.listdir(tmp_path) == []


def test_a_path_no_longer_configured_is_removed_not_left_stale(tmp_path):
    first, second = tmp_path / "a.prom", tmp_path / "b.prom"
    box = {"path": str(first)}
    reporter = Reporter(stream=io.StringIO(), journal=None)
    requests = []
    kept = MetricsFile(reporter, lambda: box["path"], lambda: requests.append(1))
    kept.reconciled(outcome())
    kept.write()
    assert first.exists()
    box["path"] = str(second)  # SIGHUP with another path
    kept.write()
    assert not first.exists() and second.exists()
    box["path"] = ""  # metrics turned off
    before = len(requests)
    kept.reconciled(outcome())
    assert len(requests) == before + 1  # one more write, to remove it
    kept.write()
    assert os.listdir(tmp_path) == []
    kept.reconciled(outcome())
    assert len(requests) == before + 1  # off: nothing more


def test_the_verdict_is_a_state_set_and_flushed_owners_are_gauges():
    from calfwd.status.metrics import Tally, render

    tally = Tally("9.9")
    assert "calfwd_health" not in render(tally.snapshot()), "no verdict yet: no series"
    assert tally.verdict("blocked", ["kube-proxy"]) is True
    assert tally.verdict("blocked", ["kube-proxy"]) is False, "unchanged: no write asked for"
    text = render(tally.snapshot())
    for line in ('calfwd_health{state="ok"} 0', 'calfwd_health{state="blocked"} 1',
                 'calfwd_health{state="error"} 0', 'calfwd_flushed{owner="calico"} 0',
                 'calfwd_flushed{owner="kube-proxy"} 1'):
        assert line in text.splitlines(), line
    tally.verdict("ok", [])
    assert 'calfwd_health{state="ok"} 1' in render(tally.snapshot()).splitlines()


# -- cleanup removes only the file calfwd wrote: never follows, never waits on what is there ----

def calfwds(path) -> str:
    textfile.write_atomic(str(path), render(SNAPSHOT))
    return path.read_text()


def test_cleanup_removes_the_metrics_file_calfwd_wrote(tmp_path, no_hang):
    from calfwd.status.metrics_file import remove_written

    path = tmp_path / "calfwd.prom"
    calfwds(path)
    assert remove_written(str(path)) == ("removed", "")
    assert not path.exists()
    assert remove_written(str(path)) == ("", ""), "nothing there: nothing to say"


def test_cleanup_leaves_a_fifo_a_link_a_device_and_anothers_file_alone_and_says_so(tmp_path, no_hang):
    from calfwd.status.metrics_file import remove_written

    ours = tmp_path / "ours.prom"
    text = calfwds(ours)
    fifo, link, device, foreign, anothers = (tmp_path / f"{n}.prom" for n in
                                             ("fifo", "link", "device", "foreign", "anothers"))
    os.mkfifo(fifo)
    link.symlink_to(ours)
    os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null's numbers
    foreign.write_text("# HELP node_something else's\n")
    anothers.write_text(text)
    os.chown(anothers, 65534, 65534)
    for path, why in ((fifo, "a FIFO"), (link, "a symbolic link"), (device, "a character device"),
                      (foreign, "does not start like calfwd's metrics"), (anothers, "owned by uid 65534")):
        removed, left = remove_written(str(path))
        assert removed == "" and why in left and str(path) in left and "\n" not in left, (path, left)
        assert os.path.lexists(path)
    assert ours.read_text() == text, "the link's target untouched"


def test_the_cni_served_at_the_last_reconcile_is_one_series():
    from dataclasses import replace
    from calfwd.judge.cni import CniVerdict
    tally = Tally("0.1.0")
    tally.reconciled(outcome(), now=1.0)
    assert 'calfwd_cni_info{kind="calico"} 1\n' in render(tally.snapshot())
    canal = Outcome("resync", (), (), True, 0.01, 0.001, replace(FACTS, cni=CniVerdict("canal", "seen")))
    tally.reconciled(canal, now=2.0)
    text = render(tally.snapshot())
    assert 'calfwd_cni_info{kind="canal"} 1\n' in text and 'kind="calico"' not in text
