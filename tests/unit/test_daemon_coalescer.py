"""The daemon's burst coalescing, with a fake clock and a fake GLib timer queue."""

from __future__ import annotations

import heapq

from calfwd.daemon import Coalescer


class FakeGLib:
    """timeout_add on a virtual clock: run() advances time to each due timer."""

    def __init__(self):
        self.now = 0.0
        self.timers = []
        self._seq = 0

    def timeout_add(self, ms, callback, *args):
        self._seq += 1
        heapq.heappush(self.timers, (self.now + ms / 1000, self._seq, callback, args))
        return self._seq

    def run_until(self, t):
        while self.timers and self.timers[0][0] <= t:
            due, _seq, callback, args = heapq.heappop(self.timers)
            self.now = due
            callback(*args)
        self.now = t


def make(holdoff=0.5):
    glib = FakeGLib()
    runs = []
    c = Coalescer(lambda trigger: runs.append((glib.now, trigger)), holdoff, glib, clock=lambda: glib.now)
    return glib, c, runs


def test_first_request_runs_at_once():
    glib, c, runs = make()
    c.request("start")
    glib.run_until(0.0)
    assert runs == [(0.0, "start")]


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
    assert [t for _, t in runs] == ["a", "b"]
    assert runs[1][0] == 0.5


def test_spaced_requests_each_run_immediately():
    glib, c, runs = make()
    for t in (0.0, 1.0, 2.0):
        glib.run_until(t)
        c.request("resync")
        glib.run_until(t)
    assert [when for when, _ in runs] == [0.0, 1.0, 2.0]
