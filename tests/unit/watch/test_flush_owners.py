"""The flush watch on Canal and flannel nodes: flannel's, kube-router's and portmap's jumps are
watched beside Felix's and kube-proxy's, each named with its owner and how it comes back.
flannel's jumps are read from the recorded iptables-nft listing (tests/fixtures/flannel)."""

from __future__ import annotations

import json
from pathlib import Path

from calfwd.status import health
from calfwd.watch.flushes import (FLANNEL, KUBE_ROUTER, PORTMAP, Flush, FlushTracker, event_kind,
                                  flushed_message, owner, watched_jumps)
from fakes.loop import Clock

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "flannel"


def base_chains(name: str) -> dict:
    """The iptables base chains of a recorded `nft -j list ruleset`, as the watch reads them."""
    out: dict = {}
    for obj in json.loads((FIXTURES / name).read_text())["nftables"]:
        rule = obj.get("rule")
        if rule and rule["chain"] in ("FORWARD", "POSTROUTING", "PREROUTING", "OUTPUT", "INPUT"):
            out.setdefault((rule["family"], rule["table"], rule["chain"]), []).append(rule)
    return out


def jump(target: str):
    return {"expr": [{"jump": {"target": target}}]}


FLANNEL_JUMPS = watched_jumps(base_chains("iptables-nft.ruleset.json"))
ROUTER = watched_jumps({("ip", "filter", "FORWARD"): [jump("KUBE-ROUTER-FORWARD")],
                        ("ip", "filter", "INPUT"): [jump("KUBE-ROUTER-INPUT")]})
HOSTPORT = watched_jumps({("ip", "nat", "PREROUTING"): [jump("CNI-HOSTPORT-DNAT")],
                          ("ip", "nat", "POSTROUTING"): [jump("CNI-HOSTPORT-MASQ")]})


def test_flannels_jumps_as_iptables_nft_lists_them_are_watched():
    assert FLANNEL_JUMPS == {"ip filter FORWARD -> FLANNEL-FWD", "ip nat POSTROUTING -> FLANNEL-POSTRTG",
                             "ip6 filter FORWARD -> FLANNEL-FWD", "ip6 nat POSTROUTING -> FLANNEL-POSTRTG"}


def test_each_jump_has_its_owner():
    assert {owner(j) for j in FLANNEL_JUMPS} == {FLANNEL}
    assert {owner(j) for j in ROUTER} == {KUBE_ROUTER}, "KUBE-ROUTER-* is kube-router's, not kube-proxy's"
    assert {owner(j) for j in HOSTPORT} == {PORTMAP}
    assert owner("ip filter FORWARD -> KUBE-FORWARD") == "kube-proxy"
    assert owner("ip mangle KUBE-PROXY-CANARY (chain)") == "kube-proxy"
    assert owner("ip filter FORWARD -> cali-FORWARD") == "Calico"


def test_a_reload_on_a_k3s_node_is_one_flush_of_three_owners_with_each_remedy():
    clock = Clock(1000.0)
    t = FlushTracker(clock, wall=lambda: 1700000000.0)
    t.observe(FLANNEL_JUMPS | ROUTER | HOSTPORT)
    t.begin("reload")
    t.observe(frozenset())
    t.end("reload")
    while t.due() is not None:
        clock.now = max(clock.now, t.due())
        flush = t.poll()
        if flush is not None:
            break
    assert flush == Flush(FLANNEL_JUMPS | ROUTER | HOSTPORT, "reload", (FLANNEL, KUBE_ROUTER, PORTMAP))
    assert event_kind(flush) == "cni-flushed"
    text = flushed_message(flush, "1.3.3", 180)
    assert text.startswith("firewalld 1.3.3 flushed flannel's and kube-router's and portmap's iptables rules on reload")
    assert "until its resync, within --iptables-resync (5 s by default; k3s: 60 s" in text
    assert "kube-router's network policy (KUBE-ROUTER-*) is not enforced until its next sync, within its " \
           "--iptables-sync-period (5 min by default)" in text
    assert "hostPorts stay shut until each such pod is recreated" in text
    assert [o.owner for o in t.outages()] == [FLANNEL, KUBE_ROUTER, PORTMAP]
    assert "flannel's masquerade and forward rules are gone" in health.outage_text(t.outages()[0])
    t.observe(FLANNEL_JUMPS | ROUTER)  # flannel's resync and kube-router's sync; portmap never
    assert [o.owner for o in t.outages()] == [PORTMAP]


def test_the_event_kind_keeps_calicos_and_kube_proxys_names():
    assert event_kind(Flush(frozenset(), "reload", ("Calico", FLANNEL))) == "calico-flushed"
    assert event_kind(Flush(frozenset(), "reload", ("kube-proxy", FLANNEL))) == "kube-proxy-flushed"


def test_a_status_file_carries_the_new_owners():
    doc = {"flushed": [{"owner": FLANNEL, "missing": ["ip nat POSTROUTING -> FLANNEL-POSTRTG"], "cause": "reload",
                        "since": 1.0}, {"owner": "someone", "missing": [], "cause": "reload", "since": 1.0}]}
    assert [o.owner for o in health.daemon_outages(doc)] == [FLANNEL]
