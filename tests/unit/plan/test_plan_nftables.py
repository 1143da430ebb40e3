"""Rendering calfwd's table and planning against what nft lists: pure, no root."""

from __future__ import annotations

import copy
import json

from calfwd import config as cfg
from calfwd.desired import desired_nft
from calfwd.plan import nftables as p


def nft(pools='["10.244.0.0/16", "fd00:10::/64"]', extra=""):
    return desired_nft(cfg.parse(f"[calico]\nip_pools = {pools}\nnat_outgoing = true\n{extra}", "t"))


def listing(d):
    """What nft 1.0.6 lists for the rendered table: handles, /32 as an address, flags as a string."""
    out = []
    for handle, obj in enumerate(copy.deepcopy(p.render(d)), start=1):
        (kind, body), = obj.items()
        body["handle"] = handle
        if kind == "set":
            body["elem"] = [e["prefix"]["addr"] if e["prefix"]["len"] in (32, 128) else e
                            for e in body.get("elem", [])][::-1]
            if not body["elem"]:
                del body["elem"]
        if kind == "rule":
            for expr in body["expr"]:
                if "masquerade" in expr:
                    expr["masquerade"]["flags"] = "fully-random"
        out.append(obj)
    return out


def test_render_is_plain_json_with_integer_priority():
    objs = p.render(nft())
    json.dumps(objs)
    chain = [o["chain"] for o in objs if "chain" in o][0]
    assert chain["prio"] == 100 and isinstance(chain["prio"], int) and chain["hook"] == "postrouting"


def test_rule_count_does_not_grow_with_pools():
    few = p.render(nft('["10.1.0.0/16"]'))
    many = p.render(nft("[" + ", ".join(f'"10.{i // 256}.{i % 256}.0/24"' for i in range(1000)) + "]"))
    rules = lambda objs: [o for o in objs if "rule" in o]
    assert len(rules(few)) == len(rules(many))
    pools4 = [o["set"] for o in many if "set" in o and o["set"]["name"] == "pools4"][0]
    assert len(pools4["elem"]) == 1000


def test_masquerade_rules_match_pool_source_and_non_pool_destination():
    rules = [o["rule"] for o in p.render(nft()) if "rule" in o]
    masq = [r for r in rules if any("masquerade" in e for e in r["expr"])]
    assert len(masq) == 2
    v4 = masq[0]["expr"]
    assert v4[0]["match"] == {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@masq4"}
    assert v4[1]["match"] == {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "@pools4"}
    returns = [r for r in rules if {"return": None} in r["expr"]]
    assert [r["expr"][0]["match"]["right"] for r in returns][:2] == ["cali*", "tunl0"]
    # Calico interfaces are exempted before the masquerade rules are reached.
    assert rules.index(returns[-1]) < rules.index(masq[0])


def test_no_felix_names_or_marks():
    text = json.dumps(p.render(nft()))
    assert "cali-" not in text and "cali:" not in text and "mark" not in text


def test_absent_table_plans_a_replace():
    plan = p.plan(nft(), None)
    assert not plan.empty and "missing" in plan.reasons[0]
    cmds = plan.batch["nftables"]
    assert cmds[0] == {"add": {"table": {"family": "inet", "name": "calfwd"}}}
    assert cmds[1] == {"delete": {"table": {"family": "inet", "name": "calfwd"}}}
    assert cmds[2] == {"add": {"table": {"family": "inet", "name": "calfwd"}}}


def test_listing_of_the_same_table_plans_nothing():
    d = nft('["10.244.0.0/16", "10.9.9.9/32", "fd00:10::/64", "fd00:11::1/128"]')
    assert p.plan(d, listing(d)).empty


def test_flushed_chain_is_drift():
    d = nft()
    actual = [o for o in listing(d) if "rule" not in o]
    plan = p.plan(d, actual)
    assert not plan.empty and any("natOutgoing" in r for r in plan.reasons)


def test_changed_pools_are_drift():
    plan = p.plan(nft('["10.1.0.0/16"]'), listing(nft('["10.2.0.0/16"]')))
    assert not plan.empty and any("pools4" in r for r in plan.reasons)


def test_foreign_rule_in_our_table_is_drift():
    d = nft()
    actual = listing(d) + [{"rule": {"family": "inet", "table": "calfwd", "chain": "postrouting", "handle": 99,
                                     "expr": [{"accept": None}]}}]
    plan = p.plan(d, actual)
    assert any(r.startswith("unexpected rule") for r in plan.reasons)


def test_cleanup_plan():
    assert p.cleanup_plan("inet", "calfwd", None).empty
    batch = p.cleanup_plan("inet", "calfwd", listing(nft())).batch
    assert batch["nftables"][-1] == {"delete": {"table": {"family": "inet", "name": "calfwd"}}}


# -- whose table is it (issue 11 items 1 and 9) ------------------------------------------------

def _admins_table(name="calfwd"):
    """An administrator's own table that happens to have calfwd's configured name."""
    return [{"table": {"family": "inet", "name": name, "handle": 1}},
            {"chain": {"family": "inet", "table": name, "name": "input", "handle": 1, "type": "filter",
                       "hook": "input", "prio": 0, "policy": "drop"}},
            {"rule": {"family": "inet", "table": name, "chain": "input", "handle": 2,
                      "expr": [{"accept": None}]}}]


def test_a_table_calfwd_did_not_make_is_never_replaced():
    plan = p.plan(nft(), _admins_table())
    assert plan.empty and plan.reasons == ()
    assert len(plan.conflicts) == 1 and "was not made by calfwd" in plan.conflicts[0]


def test_a_table_calfwd_did_not_make_is_never_deleted():
    plan = p.cleanup_plan("inet", "calfwd", _admins_table())
    assert plan.empty and "was not made by calfwd" in plan.conflicts[0]
    assert not p.owned([{"table": {"family": "inet", "name": "calfwd"}}]), "an empty table is not proof"


def test_the_mark_is_rendered_and_survives_a_flush_of_the_rules():
    d = nft()
    listed = listing(d)
    assert any(o.get("set", {}).get("name") == p.MARK_SET for o in listed) and p.owned(listed)
    flushed = [o for o in listed if "rule" not in o]  # `nft flush table` takes rules only
    assert p.owned(flushed)
    assert not p.plan(d, flushed).empty, "and it is repaired"


def test_a_table_from_calfwd_0_1_without_the_mark_is_adopted_and_marked():
    d = nft()
    legacy = [o for o in listing(d) if o.get("set", {}).get("name") != p.MARK_SET]
    assert p.owned(legacy)
    plan = p.plan(d, legacy)
    assert plan.reasons == (f"missing set {p.MARK_SET}",) and plan.conflicts == ()


def test_tables_made_under_an_earlier_name_go_in_the_same_transaction():
    d = nft()
    plan = p.plan(d, listing(d), orphans=("calfwd_old",))
    assert plan.batch == {"nftables": [{"delete": {"table": {"family": "inet", "name": "calfwd_old"}}}]}
    plan = p.plan(d, None, orphans=("calfwd_old",))
    assert plan.batch["nftables"][-1] == {"delete": {"table": {"family": "inet", "name": "calfwd_old"}}}
    assert plan.batch["nftables"][0] == {"add": {"table": {"family": "inet", "name": "calfwd"}}}
    cleanup = p.cleanup_plan("inet", "calfwd", None, orphans=("calfwd_old",))
    assert cleanup.reasons == ("remove table inet calfwd_old (calfwd's, from an earlier configuration)",)


def test_on_canal_and_flannel_the_masquerade_follows_flannels_rules():
    """flannel's FLANNEL-POSTRTG (tests/fixtures/flannel): kube-proxy's marked packets return,
    multicast is never masqueraded; the Calico rendering keeps its shape."""
    from dataclasses import replace
    calico = p.render(nft())
    objs = p.render(replace(nft(), flannel_nat=True))
    rules = [o["rule"] for o in objs if "rule" in o]
    mark = [r for r in rules if r["expr"][0]["match"]["left"] == {"&": [{"meta": {"key": "mark"}}, 0x4000]}]
    assert len(mark) == 1 and mark[0]["expr"][0]["match"]["right"] == 0x4000 and mark[0]["expr"][1] == {"return": None}
    masq = [r["expr"] for r in rules if any("masquerade" in e for e in r["expr"])]
    assert rules.index(mark[0]) < rules.index(next(r for r in rules if any("masquerade" in e for e in r["expr"])))
    assert masq[0][2]["match"] == {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                                   "right": {"prefix": {"addr": "224.0.0.0", "len": 4}}}
    assert masq[1][2]["match"]["right"] == {"prefix": {"addr": "ff00::", "len": 8}}
    assert [o for o in objs if "rule" not in o] == [o for o in calico if "rule" not in o], "the same sets and chain"
    assert not any("&" in json.dumps(o) or "224.0.0.0" in json.dumps(o) for o in calico)
    d = replace(nft(), flannel_nat=True)
    assert p.plan(d, listing(d)).empty, "what nft lists back is in sync"
    assert not p.plan(d, listing(nft())).empty, "a Calico-shaped table is rewritten"
