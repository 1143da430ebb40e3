"""blockers.judge: what shuts a Calico path besides calfwd's objects, from hand-made facts."""

from __future__ import annotations

import ipaddress

from calfwd.judge.blockers import Blocker, FirewalldPaths, PathFacts, PolicyFacts, judge
from calfwd.desired import PolicySpec

POOLS = (ipaddress.ip_network("10.244.0.0/16"),)
OURS = (PolicySpec("calfwd-forward", ("ANY",), ("calfwd",), "ACCEPT"),
        PolicySpec("calfwd-host", ("public",), ("HOST",), "CONTINUE"))
OPEN = {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "0"}
LINKS = ("lo", "eth0", "cali0123456789a", "tunl0")


def fw(**changes) -> FirewalldPaths:
    base = dict(active={"calfwd": (("cali+", "tunl0"), ()), "public": (("eth0",), ())},
                targets={"calfwd": "ACCEPT", "public": "default"})
    base.update(changes)
    return FirewalldPaths(**base)


def verdict(firewalld=None, forwarding=None, links=LINKS, pools=POOLS):
    facts = PathFacts(firewalld if firewalld is not None else fw(), forwarding or OPEN, links)
    return judge(facts, zone="calfwd", interfaces=("cali+", "tunl0"), pools=pools, policies=OURS,
                 host_zone="public")


def blocked(found) -> list:
    return [b for b in found if b.blocked]


def test_a_healthy_node_has_nothing_to_say():
    assert verdict() == ()
    assert verdict(firewalld=FirewalldPaths()) == ()


def test_forwarding_off_blocks_only_the_families_in_use():
    (b,) = verdict(forwarding={"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.forwarding": "0"})
    assert b.blocked and b.kind == "forwarding" and "net.ipv4.ip_forward = 0" in b.what
    assert "sysctl -w net.ipv4.ip_forward=1" in b.fix
    v6 = (ipaddress.ip_network("fd00:10:244::/56"),)
    (b6,) = verdict(forwarding={"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.forwarding": "0"}, pools=v6)
    assert "net.ipv6.conf.all.forwarding = 0" in b6.what
    (off,) = verdict(forwarding={"net.ipv6.conf.all.forwarding": ""}, pools=v6)
    assert "IPv6 is disabled" in off.what
    assert verdict(forwarding={"other": "1"}) == ()  # unread: no guess


def test_panic_mode_blocks():
    assert verdict(firewalld=fw(panic=True)) == (
        Blocker("panic", True, "firewalld's panic mode is on: it drops every packet, pods' included",
                "firewall-cmd --panic-off"),)


def test_an_interface_of_calicos_bound_elsewhere_blocks_where_that_zone_drops():
    for target in ("DROP", "REJECT", "%%REJECT%%"):
        found = verdict(firewalld=fw(active={"calfwd": (("cali+",), ()), "drop": (("cali0123456789a",), ())},
                                     targets={"drop": target}))
        assert [b.blocked for b in found] == [True] and "cali0123456789a" in found[0].what
        assert "--zone=drop --remove-interface=cali0123456789a" in found[0].fix
    warned = verdict(firewalld=fw(active={"trusted": (("cali+",), ())}, targets={"trusted": "ACCEPT"}))
    assert [b.blocked for b in warned] == [False]
    # Only interfaces that exist: a binding for a pod that is gone shuts nothing.
    assert verdict(firewalld=fw(active={"drop": (("cali0fffffffff",), ())}, targets={"drop": "DROP"})) == ()
    # The uplink in a dropping zone is not Calico's business.
    assert verdict(firewalld=fw(active={"drop": (("eth0",), ())}, targets={"drop": "DROP"})) == ()


def test_a_pool_bound_as_a_source_elsewhere():
    (b,) = verdict(firewalld=fw(active={"drop": ((), ("10.244.1.0/24",))}, targets={"drop": "DROP"}))
    assert b.blocked and "source 10.244.1.0/24" in b.what
    (w,) = verdict(firewalld=fw(active={"internal": ((), ("10.0.0.0/8",))}, targets={"internal": "default"}))
    assert not w.blocked
    assert verdict(firewalld=fw(active={"drop": ((), ("192.0.2.0/24", "ipset:x", "00:11:22:33:44:55"))},
                                targets={"drop": "DROP"})) == ()


def test_a_policy_asked_before_calfwds_that_drops():
    def one(policy):
        return verdict(firewalld=fw(policies=(policy,)))

    (b,) = one(PolicyFacts("lockdown", -100, "REJECT", ("ANY",), ("ANY",)))
    assert b.blocked and b.kind == "policies" and "egress" in b.what and "into pods" in b.what
    assert "host ports" not in b.what
    (h,) = one(PolicyFacts("no-bgp", -5, "DROP", ("public",), ("HOST",)))
    assert "host ports" in h.what and "egress" not in h.what
    assert one(PolicyFacts("late", 5, "REJECT", ("ANY",), ("ANY",))) == ()  # after every zone and calfwd's
    assert one(PolicyFacts("lockdown", -100, "REJECT", ("ANY",), ("ANY",), disabled=True)) == ()
    assert one(PolicyFacts("lockdown", -100, "ACCEPT", ("ANY",), ("ANY",))) == ()
    assert one(PolicyFacts("lockdown", -100, "REJECT", ("public",), ("HOST",))) != ()
    # Equal priority: firewalld orders by name; 'a-...' comes before 'calfwd-forward'.
    (tie,) = one(PolicyFacts("a-first", -1, "REJECT", ("public",), ("calfwd",)))
    assert "into pods" in tie.what and "egress" not in tie.what
    assert one(PolicyFacts("z-last", -1, "REJECT", ("public",), ("calfwd",))) == ()
    # calfwd's own policies are never judged against themselves.
    assert one(PolicyFacts("calfwd-forward", -1, "REJECT", ("ANY",), ("calfwd",))) == ()


def test_a_rich_rule_that_rejects_inside_a_continue_policy():
    """A CONTINUE (or ACCEPT) policy's rich rules run before its target: one that refuses all
    traffic from or to a whole pool shuts the paths as a REJECT target would; one narrowed to
    a port, another network or an ipset may or may not, and is a warning. (firewalld refuses a
    rejecting rich rule with no element, source or destination: INVALID_RULE.)"""
    pool = ipaddress.ip_network("198.18.64.0/20")

    def one(*rules, target="CONTINUE", priority=-100):
        return verdict(firewalld=fw(policies=(PolicyFacts("baseline", priority, target, ("ANY",), ("ANY",),
                                                          rich_rules=rules),)), pools=(pool,))

    everything = 'rule family="ipv4" destination address="0.0.0.0/0" reject'
    (b,) = one(everything)
    assert b.blocked and f"rich rule '{everything}' rejects" in b.what and "into pods" in b.what
    assert "--remove-rich-rule=" in b.fix
    (d,) = one('rule family="ipv4" source address="198.16.0.0/12" drop', target="ACCEPT")
    assert d.blocked and "drops" in d.what, "a supernet of the pool"
    for narrowed in ('rule family="ipv4" source address="203.0.113.0/24" reject',
                     'rule family="ipv4" source NOT address="203.0.113.0/24" reject',
                     'rule family="ipv4" source ipset="blocklist" drop',
                     'rule family="ipv4" destination address="0.0.0.0/0" port port="443" protocol="tcp" reject',
                     'rule family="ipv6" source address="::/0" service name="ssh" reject'):
        (w,) = one(narrowed)
        assert not w.blocked and "what it matches of" in w.what, narrowed
    assert one('rule family="ipv4" source address="203.0.113.0/24" accept') == ()
    assert one('rule family="ipv4" source address="0.0.0.0/0" log prefix="drop" level="info" accept') == (), \
        "a quoted word is no action"
    assert one(everything, priority=5) == (), "asked after calfwd's: not judged"
    (target,) = one(everything, target="REJECT")
    assert "target REJECT" in target.what, "a rejecting target is said once, as the target"


def test_blocked_first_then_warnings():
    found = verdict(firewalld=fw(panic=True, active={"trusted": (("cali+",), ())}, targets={"trusted": "ACCEPT"}))
    assert [b.blocked for b in found] == [True, False]


def test_which_binding_wins_is_read_from_firewalds_rendered_dispatch():
    """1.x inserts each binding on top (the latest wins); 2.x sorts by zone priority, then zone
    name: 'calfwd' before 'drop', so there the pod's veth stays in calfwd's zone."""
    active = {"calfwd": (("cali+",), ()), "drop": (("cali0123456789a",), ())}
    name_first = fw(active=active, targets={"drop": "DROP"},
                    dispatch=(("cali0123456789a", "drop"), ("cali*", "calfwd")))
    assert [b.blocked for b in verdict(firewalld=name_first)] == [True]
    zone_order = fw(active=active, targets={"drop": "DROP"},
                    dispatch=(("cali*", "calfwd"), ("cali0123456789a", "drop")))
    assert verdict(firewalld=zone_order) == ()
    unread = fw(active=active, targets={"drop": "DROP"})  # the iptables backend: any binding may win
    assert [b.blocked for b in verdict(firewalld=unread)] == [True]


def test_forward_dispatch_as_each_release_renders_it():
    from calfwd.judge.rendered import forward_dispatch

    def rule(iif, target, verb="goto", oif=None):
        expr = [{"match": {"left": {"meta": {"key": "iifname"}}, "op": "==", "right": iif}}]
        if oif:
            expr.append({"match": {"left": {"meta": {"key": "oifname"}}, "op": "==", "right": oif}})
        return {"expr": expr + [{verb: {"target": target}}]}

    zones_1x = [rule("cali0123456789a", "filter_FWD_drop"), rule("cali*", "filter_FWD_calfwd"),
                rule("*", "filter_FWD_public")]
    assert forward_dispatch({("inet", "firewalld", "filter_FORWARD_ZONES"): zones_1x}, {"calfwd", "drop"}) == (
        ("cali0123456789a", "drop"), ("cali*", "calfwd"))
    zones_09 = [rule("cali0123456789a", "filter_FWDI_drop"), rule("cali*", "filter_FWDI_calfwd")]
    assert forward_dispatch({("inet", "firewalld", "filter_FORWARD_IN_ZONES"): zones_09}, {"calfwd", "drop"}) == (
        ("cali0123456789a", "drop"), ("cali*", "calfwd"))
    policies_2x = [rule("cali*", "filter_FWD_policy_calfwd-forward", "jump", "cali*"),
                   rule("cali*", "filter_FWD_calfwd", "jump"), {"expr": [{"accept": None}]},
                   rule("cali0123456789a", "filter_FWD_drop", "jump")]
    assert forward_dispatch({("inet", "firewalld", "filter_FORWARD_POLICIES"): policies_2x},
                            {"calfwd", "drop"}) == (("cali*", "calfwd"), ("cali0123456789a", "drop"))
