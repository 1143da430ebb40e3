"""Reading back what firewalld rendered (issue 12 item 4): the literal-wildcard bug of firewalld
1.0.0-1.2.0, on rules as libnftables lists them. The recorded rulesets themselves are loaded
into a real kernel in tests/integration/test_firewalld_rendered.py."""

from __future__ import annotations

from calfwd.judge import rendered as r


def rule(right):
    return {"expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": right}},
                     {"jump": {"target": "filter_FWD_policy_calfwd-forward"}}]}


def test_a_wildcard_rendered_literally_is_found_once():
    bad = rule({"set": ["cali+", "tunl0", "vxlan.calico"]})
    chains = {r.DISPATCH_CHAINS[0]: [bad], r.DISPATCH_CHAINS[1]: [rule("cali+")]}
    (line,) = r.rendering_problems(chains, "1.2.0", "calfwd-forward")
    assert "firewalld 1.2.0 renders the wildcard interface(s) cali+ literally" in line
    assert "'calfwd-forward' never applies" in line and "1.2.1" in line


def test_nfts_own_wildcard_spelling_is_fine():
    chains = {r.DISPATCH_CHAINS[0]: [rule("cali*"), rule({"set": ["tunl0", "cali*"]})]}
    assert r.rendering_problems(chains, "1.3.3", "calfwd-forward") == []
    assert r.rendering_problems({}, "", "calfwd-forward") == []


def test_firewalld_0_9_renders_it_too_but_its_zone_target_still_forwards():
    chains = {r.DISPATCH_CHAINS[0]: [rule({"set": ["cali+"]})]}
    assert r.rendering_problems(chains, "0.9.3", "calfwd-forward") == []


def test_on_0_9_a_zone_whose_target_drops_blocks_routed_traffic_into_pods():
    """Measured on 0.9.3 (cluster lab, no encapsulation): default zone drop, pods cannot reach
    each other across nodes; default zone public, they can."""
    chains = {r.DISPATCH_CHAINS[0]: [rule({"set": ["cali+"]})]}
    (line,) = r.rendering_problems(chains, "0.9.3", "calfwd-forward", ("drop",))
    assert "firewalld 0.9.3 renders the wildcard interface(s) cali+ literally" in line
    assert "zone(s) 'drop' drop (target DROP or REJECT) routed traffic into pods" in line
    assert "VXLAN, IP-in-IP or WireGuard devices is not affected" in line
    fine = {r.DISPATCH_CHAINS[0]: [rule("cali*")]}
    assert r.rendering_problems(fine, "0.9.3", "calfwd-forward", ("drop",)) == []
