"""Which `nft --json monitor` lines concern calfwd. The lines are nft 1.0.6's real output
(recorded in a scratch namespace: calfwd's table, iptables-nft jumps, Felix's and firewalld's
chains); the classifier must pass its own, the jumps' and firewalld's table events, and
drop everything else before parsing JSON."""

from __future__ import annotations

import json

from calfwd.watch.kernel_events import FIREWALLD, JUMPS, LOST, OWN, POOLS, classify, rule_body, watched_chain_refs

LINES = {
    # calfwd's own table, every kind of object
    '{"add": {"table": {"family": "inet", "name": "calfwd", "handle": 1}}}': OWN,
    '{"delete": {"table": {"family": "inet", "name": "calfwd", "handle": 1}}}': OWN,
    '{"add": {"chain": {"family": "inet", "table": "calfwd", "name": "postrouting", "handle": 1, '
    '"type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}}': OWN,
    '{"delete": {"rule": {"family": "inet", "table": "calfwd", "chain": "postrouting", "handle": 2, '
    '"expr": [{"masquerade": null}]}}}': OWN,
    '{"delete": {"set": {"family": "inet", "name": "pools4", "table": "calfwd", "type": "invalid", '
    '"handle": 3}}}': OWN,
    '{"add": {"element": {"family": "inet", "table": "calfwd", "name": "masq4", "elem": {"set": '
    '[{"prefix": {"addr": "10.0.0.0", "len": 8}}]}}}}': OWN,
    # Felix's and kube-proxy's top-level jumps, their tables, the canary
    '{"insert": {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 4, "expr": '
    '[{"counter": {"packets": 0, "bytes": 0}}, {"jump": {"target": "cali-FORWARD"}}]}}}': JUMPS,
    '{"delete": {"rule": {"family": "ip6", "table": "nat", "chain": "POSTROUTING", "handle": 9, '
    '"expr": [{"jump": {"target": "cali-POSTROUTING"}}]}}}': JUMPS,
    '{"delete": {"table": {"family": "ip", "name": "filter", "handle": 2}}}': JUMPS,
    '{"delete": {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 1}}}': JUMPS,
    '{"create": {"chain": {"family": "ip", "table": "mangle", "name": "KUBE-PROXY-CANARY", "handle": 7}}}': JUMPS,
    '{"add": {"rule": {"family": "ip", "table": "nat", "chain": "PREROUTING", "handle": 4, "expr": '
    '[{"xt": {"type": "match", "name": "comment"}}, {"jump": {"target": "KUBE-SERVICES"}}]}}}': JUMPS,
    # firewalld's tables, as whole tables
    '{"add": {"table": {"family": "inet", "name": "firewalld_policy_drop", "handle": 11}}}': FIREWALLD,
    '{"delete": {"table": {"family": "inet", "name": "firewalld", "handle": 10}}}': FIREWALLD,
    # Felix's pool sets and its tables (nftables dataplane; recorded from the real dump)
    '{"add": {"table": {"family": "ip", "name": "calico", "handle": 1}}}': POOLS,
    '{"add": {"set": {"family": "ip", "name": "cali40all-ipam-pools", "table": "calico", "type": "ipv4_addr", '
    '"handle": 42, "flags": ["interval"]}}}': POOLS,
    '{"add": {"element": {"family": "ip", "table": "calico", "name": "cali40all-ipam-pools", "elem": {"set": '
    '[{"prefix": {"addr": "10.9.0.0", "len": 16}}]}}}}': POOLS,
    '{"delete": {"element": {"family": "ip6", "table": "calico", "name": "cali60masq-ipam-pools", "elem": '
    '{"set": [{"prefix": {"addr": "fd00::", "len": 64}}]}}}}': POOLS,
    # nft telling us it missed events
    "# ERROR: We lost some netlink events!": LOST,
    # the churn that must cost nothing
    '{"add": {"rule": {"family": "ip", "table": "filter", "chain": "cali-fw-cali1234567890a", '
    '"handle": 77, "expr": [{"jump": {"target": "cali-pro-kns.default"}}]}}}': None,
    '{"delete": {"rule": {"family": "ip", "table": "nat", "chain": "KUBE-SVC-ABCDEF", "handle": 5, '
    '"expr": [{"jump": {"target": "KUBE-SEP-XYZ"}}]}}}': None,
    '{"create": {"chain": {"family": "ip", "table": "filter", "name": "cali-tw-cali1234567890a", "handle": 9}}}': None,
    '{"add": {"rule": {"family": "inet", "table": "firewalld", "chain": "filter_INPUT", "handle": 30, '
    '"expr": [{"accept": null}]}}}': None,
    '{"add": {"chain": {"family": "inet", "table": "firewalld", "name": "filter_IN_public", "handle": 31}}}': None,
    '{"add": {"rule": {"family": "ip", "table": "calico", "chain": "nat-cali-nat-outgoing", "handle": 63, '
    '"expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, '
    '"right": "@cali40masq-ipam-pools"}}]}}}': None,
    '{"add": {"element": {"family": "ip", "table": "calico", "name": "cali40all-vxlan-net", "elem": '
    '{"set": ["10.128.0.208"]}}}}': None,
    '{"add": {"table": {"family": "ip", "name": "calfwd", "handle": 41}}}': None,  # wrong family
    '{"add": {"rule": {"family": "ip", "table": "raw", "chain": "PREROUTING", "handle": 3, "expr": []}}}': None,
    "": None,
    "Error: Operation not permitted": None,  # nft's error: the driver reports it when nft exits
}


def test_classify_every_recorded_line():
    for line, concern in LINES.items():
        if line.startswith("{"):
            json.loads(line)  # the fixtures are what nft prints: valid JSON
        event = classify(line, "inet", "calfwd")
        assert (event.concern if event else None) == concern, line


def test_fields_and_another_table_name():
    event = classify('{"delete": {"table": {"family": "inet", "name": "firewalld_policy_drop", "handle": 3}}}',
                     "inet", "calfwd")
    assert (event.verb, event.kind, event.table) == ("delete", "table", "firewalld_policy_drop")
    line = '{"delete": {"rule": {"family": "inet", "table": "edge", "chain": "postrouting", "handle": 2}}}'
    assert classify(line, "inet", "calfwd") is None
    assert classify(line, "inet", "edge").concern == OWN


def test_watched_chains_cover_the_jumps_and_the_canary():
    refs = set(watched_chain_refs())
    for family in ("ip", "ip6"):
        assert {(family, "filter", "FORWARD"), (family, "nat", "POSTROUTING"), (family, "nat", "PREROUTING"),
                (family, "filter", "INPUT"), (family, "mangle", "KUBE-PROXY-CANARY")} <= refs
    assert len(refs) == 18


def test_only_what_an_event_touched_is_read_again():
    from calfwd.watch.kernel_events import refs_of

    rule = classify('{"delete": {"rule": {"family": "ip6", "table": "nat", "chain": "POSTROUTING", '
                    '"handle": 9}}}', "inet", "calfwd")
    assert refs_of(rule) == (("ip6", "nat", "POSTROUTING"),)
    table = classify('{"delete": {"table": {"family": "ip", "name": "filter", "handle": 2}}}', "inet", "calfwd")
    assert refs_of(table) == (("ip", "filter", "FORWARD"), ("ip", "filter", "INPUT"),
                              ("ip", "filter", "KUBE-PROXY-CANARY"), ("ip", "filter", "OUTPUT"))


def test_a_rule_event_carries_its_handle_and_only_a_jump_is_parsed():
    added = ('{"add": {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 4, '
             '"expr": [{"jump": {"target": "cali-FORWARD"}}]}}}')
    event = classify(added, "inet", "calfwd")
    assert event.concern == JUMPS and event.handle == 4
    assert rule_body(added, event)["expr"] == [{"jump": {"target": "cali-FORWARD"}}]
    other = added.replace('{"jump": {"target": "cali-FORWARD"}}', '{"accept": null}')
    assert rule_body(other, classify(other, "inet", "calfwd")) == {}
    chain = '{"delete": {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 1}}}'
    assert classify(chain, "inet", "calfwd").handle is None
