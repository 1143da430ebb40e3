"""Felix-flush detection, with a fake nftables read (the runner: test_flushcommand.py)."""

from __future__ import annotations

from typing import Any, Dict

from calfwd import config as cfg
from calfwd.watch.flushes import (CAUSE_GRACE, SETTLE, Flush, FlushTracker, flushed_message,
                               watched_jumps)
from fakes.loop import Clock

CONFIG = cfg.parse('[calico]\nip_pools = ["10.244.0.0/16"]\n', "/etc/calfwd/calfwd.toml")


def jump(target: str, verdict: str = "jump") -> Dict[str, Any]:
    return {"expr": [{"xt": {"type": "match", "name": "comment"}}, {verdict: {"target": target}}]}


FELIX = watched_jumps({("ip", "filter", "FORWARD"): [jump("cali-FORWARD"), {"expr": [{"accept": None}]}],
                       ("ip", "nat", "POSTROUTING"): [jump("cali-POSTROUTING", "goto")],
                       ("ip6", "filter", "FORWARD"): [jump("cali-FORWARD")]})
KUBE = watched_jumps({("ip", "filter", "FORWARD"): [jump("KUBE-FORWARD")],
                      ("ip", "nat", "PREROUTING"): [jump("KUBE-SERVICES")],
                      ("ip", "mangle", "KUBE-PROXY-CANARY"): []})
NOTHING: frozenset = frozenset()


def settle(tracker: FlushTracker, clock: Clock, limit: float = 60.0):
    """Advance to each due time until the episode is reported (or nothing is due)."""
    while True:
        due = tracker.due()
        if due is None or clock.now > 1000.0 + limit:
            return None
        clock.now = max(clock.now, due)
        flush = tracker.poll()
        if flush is not None:
            return flush


def test_watched_jumps():
    assert FELIX == {"ip filter FORWARD -> cali-FORWARD", "ip nat POSTROUTING -> cali-POSTROUTING",
                     "ip6 filter FORWARD -> cali-FORWARD"}
    assert KUBE == {"ip filter FORWARD -> KUBE-FORWARD", "ip nat PREROUTING -> KUBE-SERVICES",
                    "ip mangle KUBE-PROXY-CANARY (chain)"}
    assert watched_jumps({("ip", "filter", "FORWARD"): [jump("ACCEPT-SOMETHING"), jump("my-chain")]}) == NOTHING


def test_a_loss_during_a_reload_is_one_flush_blamed_on_the_reload():
    clock = Clock(1000.0)
    t = FlushTracker(clock)
    t.observe(FELIX | KUBE)
    t.begin("reload")  # firewalld's drop table appeared
    clock.advance(0.05)
    t.observe(FELIX - {"ip filter FORWARD -> cali-FORWARD"})  # ip filter first ...
    clock.advance(1.0)  # ... a slow reload: still one episode while firewalld is busy
    assert t.poll() is None
    t.observe(NOTHING)  # ... then ip nat and ip6
    t.end("reload")
    flush = settle(t, clock)
    assert flush == Flush(FELIX | KUBE, "reload", ("Calico", "kube-proxy"))
    assert settle(t, clock) is None and t.flushes == 1


def test_the_cause_may_arrive_after_the_loss():
    """firewalld's stop flushes first and releases its bus name afterwards; in the fallback
    a reconcile can read the loss before the Reloaded signal is dispatched (0.1's race)."""
    for cause in ("stop", "reload"):
        clock = Clock(1000.0)
        t = FlushTracker(clock)
        t.observe(FELIX)
        clock.advance(10)
        t.observe(NOTHING)
        clock.advance(SETTLE + 0.1)
        assert t.poll() is None, "unknown cause: waits for firewalld's news"
        t.end(cause)
        assert settle(t, clock).cause == cause


def test_no_firewalld_activity_means_someone_else():
    clock = Clock(1000.0)
    t = FlushTracker(clock)
    t.end("reload")
    clock.advance(60)  # long ago: not "just finished"
    t.observe(FELIX)
    t.observe(NOTHING)
    flush = settle(t, clock)
    assert flush.cause is None and clock.now >= 1060 + SETTLE + CAUSE_GRACE - 1e-9


def test_restores_are_followed_so_every_flush_counts():
    """No resync-sized blind spot: each observation is compared with the one before."""
    clock = Clock(1000.0)
    t = FlushTracker(clock)
    reports = []
    for _ in range(5):
        t.observe(FELIX)  # Felix restored
        clock.advance(0.5)
        t.begin("reload")
        t.observe(NOTHING)
        t.end("reload")
        reports.append(settle(t, clock))
        clock.advance(1)
    assert [r.cause for r in reports] == ["reload"] * 5


def test_calico_never_in_nft_tables_never_warns():
    clock = Clock(1000.0)
    t = FlushTracker(clock)
    for _ in range(3):
        t.begin("start")
        t.observe(NOTHING)  # legacy iptables or Felix's native table: no jumps here
        t.end("start")
    assert t.due() is None and settle(t, clock) is None


def test_start_in_progress_wins_over_an_older_reload():
    clock = Clock(1000.0)
    t = FlushTracker(clock)
    t.observe(FELIX)
    t.end("reload")
    clock.advance(1)
    t.begin("start")
    t.observe(NOTHING)
    clock.advance(0.3)
    t.end("start")
    assert settle(t, clock).cause == "start"


def test_a_later_activity_does_not_take_over_the_blame():
    """firewalld's start flushed; calfwd's own zone-creating reload began before the episode
    was reported: it stays the start's flush."""
    clock = Clock(1000.0)
    t = FlushTracker(clock)
    t.observe(FELIX)
    t.begin("start")
    t.observe(NOTHING)
    t.end("start")
    clock.advance(0.1)
    t.begin("reload")
    clock.advance(0.5)
    t.end("reload")
    assert settle(t, clock).cause == "start"


def test_the_bus_confirming_a_reload_late_does_not_make_it_recent():
    clock = Clock(1000.0)
    t = FlushTracker(clock)
    t.observe(FELIX)
    t.begin("reload")  # the monitor: firewalld's drop table appeared ...
    clock.advance(0.3)
    t.end("reload")  # ... and went
    clock.advance(0.16)
    t.end("reload")  # the bus's Reloaded, late
    clock.advance(0.1)
    t.observe(NOTHING)  # firewalld's stop flushes: not the reload's doing
    clock.advance(0.05)
    t.end("stop")  # its name released
    assert settle(t, clock).cause == "stop"


def test_flushed_message():
    text = flushed_message(Flush(FELIX, "start", ("Calico",)), "1.3.3", 90)
    assert text.startswith("firewalld 1.3.3 flushed Calico's iptables rules on start (gone: ")
    assert "within 90 s" in text and "calfwd guard enable" in text and ">= 2.0" in text
    assert "Services" not in text
    both = flushed_message(Flush(FELIX | KUBE, "reload", ("Calico", "kube-proxy")), "", 180, "Started x")
    assert both.startswith("firewalld flushed Calico's and kube-proxy's iptables rules on reload")
    assert "cluster DNS" in both and "NodePorts" in both and "30 s" in both and both.endswith(". Started x")
    other = flushed_message(Flush(KUBE, None, ("kube-proxy",)), "1.3.3", 180)
    assert other.startswith("kube-proxy's iptables rules were removed, not during a firewalld")
    assert "flush ruleset" in other and "guard" not in other and "dataplane switch" in other


def test_a_drop_table_left_behind_is_not_a_reload_forever():
    """firewalld's panic mode (or a crash) leaves its drop table: 'reload' ends by itself."""
    from calfwd.watch.flushes import MAX_BUSY

    clock = Clock(1000.0)
    t = FlushTracker(clock)
    t.observe(FELIX)
    t.begin("reload")
    clock.advance(MAX_BUSY + 1)
    assert not t.busy("reload")
    t.observe(NOTHING)  # an admin's iptables -F while panic mode is on
    assert settle(t, clock).cause is None


def test_a_firewalld_flush_stays_an_outage_until_each_owner_puts_its_jumps_back():
    clock = Clock(1000.0)
    t = FlushTracker(clock, wall=lambda: 1700000000.0)
    t.observe(FELIX | KUBE)
    t.begin("reload")
    t.observe(NOTHING)
    t.end("reload")
    assert t.outages() == (), "not yet reported: the episode is still open"
    assert settle(t, clock).cause == "reload"
    calico, kube = t.outages()
    assert (calico.owner, calico.missing, calico.cause, calico.since) == ("Calico", FELIX, "reload", 1700000000.0)
    assert (kube.owner, kube.missing) == ("kube-proxy", KUBE)
    t.observe(FELIX)  # Felix's refresh put its rules back; kube-proxy has not yet
    assert [o.owner for o in t.outages()] == ["kube-proxy"]
    some = frozenset(sorted(KUBE)[:1])
    t.observe(FELIX | some)
    assert t.outages()[0].missing == KUBE - some
    t.observe(FELIX | KUBE)
    assert t.outages() == ()


def test_a_loss_firewalld_did_not_cause_is_reported_but_no_outage():
    """Felix leaving iptables for its nftables dataplane never puts the jumps back."""
    clock = Clock(1000.0)
    t = FlushTracker(clock)
    t.observe(FELIX)
    clock.advance(5)
    t.observe(NOTHING)
    assert settle(t, clock).cause is None
    assert t.outages() == ()


def test_jumps_back_before_the_episode_closes_are_no_outage():
    clock = Clock(1000.0)
    t = FlushTracker(clock)
    t.observe(FELIX)
    t.begin("reload")
    t.observe(NOTHING)
    t.end("reload")
    t.observe(FELIX)  # Felix was quick
    assert settle(t, clock).cause == "reload"
    assert t.outages() == ()
