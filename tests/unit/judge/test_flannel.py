"""judge/flannel.py: flannel's network from its subnet file and from its masquerade rules, as
recorded from flannel's own writers (tests/fixtures/flannel). Pure."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from calfwd.judge import flannel
from calfwd.judge.pools import PoolState

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "flannel"
PATH = "/run/flannel/subnet.env"
V4, V6 = ipaddress.ip_network("10.42.0.0/16"), ipaddress.ip_network("fd00:42::/56")
LEASE4, LEASE6 = ipaddress.ip_network("10.42.1.0/24"), ipaddress.ip_network("fd00:42:0:1::/64")


def chains(name: str) -> dict:
    """A recorded `nft -j list ruleset` as drivers/nftables.read_chains returns it."""
    out: dict = {}
    for obj in json.loads((FIXTURES / name).read_text())["nftables"]:
        rule = obj.get("rule")
        if rule:
            out.setdefault((rule["family"], rule["table"], rule["chain"]), []).append(rule)
    return {ref: rules for ref, rules in out.items() if ref in flannel.RULE_CHAINS}


def parse(text: str) -> flannel.FlannelNetwork:
    return flannel.parse_subnet_file(text, PATH)


def test_the_subnet_files_flannel_writes():
    v4 = parse((FIXTURES / "subnet.env.v4").read_text())
    assert (v4.networks, v4.leases, v4.masq, v4.problem) == ((V4,), (LEASE4,), (V4,), "")
    assert v4.source == f"flannel's subnet file {PATH}"
    dual = parse((FIXTURES / "subnet.env.dual").read_text())
    assert (dual.networks, dual.leases, dual.masq) == ((V4, V6), (LEASE4, LEASE6), (V4, V6))


def test_quoted_values_a_comment_and_no_masquerade():
    got = parse('# written by hand\nFLANNEL_NETWORK="10.42.0.0/16"\nFLANNEL_IPMASQ=false\n')
    assert (got.networks, got.masq, got.problem) == ((V4,), (), "")


def test_k3s_placeholder_for_no_ipv6_is_no_network():
    got = parse("FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_IPV6_NETWORK=::/0\nFLANNEL_IPMASQ=true\n")
    assert got.networks == (V4,) and got.problem == ""


@pytest.mark.parametrize("text, why", [
    ("FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_SUBNET=10.42.1.1/24\n", "half-written: no FLANNEL_IPMASQ line"),
    ("FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_IPMASQ=tr", "half-written: the last line has no end"),
    ("FLANNEL_NETWORK=10.42.0.0/16\n\x00\x17garbage\nFLANNEL_IPMASQ=true\n", "line 2: '\\x00\\x17garbage' is not KEY=value"),
    ("FLANNEL_NETWORK=10.42.0.300/16\nFLANNEL_IPMASQ=true\n", "FLANNEL_NETWORK: '10.42.0.300/16' is not an IPv4 network"),
    ("FLANNEL_NETWORK=0.0.0.0/0\nFLANNEL_IPMASQ=true\n", "FLANNEL_NETWORK: 0.0.0.0/0: no pod network can be that"),
    ("FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_IPMASQ=yes\n", "FLANNEL_IPMASQ: 'yes' is neither true nor false"),
    ("FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", "neither FLANNEL_NETWORK nor FLANNEL_IPV6_NETWORK"),
    ("FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_SUBNET=10.99.1.1/24\nFLANNEL_IPMASQ=true\n",
     "the lease 10.99.1.0/24 is outside flannel's network 10.42.0.0/16"),
    ("", "half-written: no FLANNEL_IPMASQ line"),
])
def test_a_bad_subnet_file_says_why_and_names_the_file(text, why):
    got = parse(text)
    assert got.networks == () and got.problem.startswith(f"{PATH}: "), got
    assert why in got.problem, got.problem


def test_iptables_mode_rules_as_iptables_nft_writes_them():
    got = flannel.from_rules(chains("iptables-nft.ruleset.json"))
    assert (got.networks, got.leases, got.masq, got.problem) == ((V4, V6), (LEASE4, LEASE6), (V4, V6), "")
    assert got.source == "flannel's iptables rules (FLANNEL-POSTRTG)"


def test_nftables_mode_rules_from_flannels_own_tables():
    got = flannel.from_rules(chains("nft-ruleset.dual.json"))
    assert (got.networks, got.masq, got.problem) == ((V4, V6), (V4, V6), "")
    assert got.source == "flannel's nftables tables"


def test_no_rules_and_rules_without_the_masquerade():
    assert flannel.from_rules({}).networks == ()
    only_returns = {ref: [r for r in rules if not any("xt" in e and e["xt"]["type"] == "target" for e in r["expr"])]
                    for ref, rules in chains("iptables-nft.ruleset.json").items()}
    assert flannel.from_rules(only_returns).networks == ()


def test_a_masquerade_of_everything_is_refused():
    rules = chains("nft-ruleset.dual.json")
    text = json.dumps(rules[("ip", "flannel-ipv4", "postrtg")]).replace('"10.42.0.0", "len": 16', '"0.0.0.0", "len": 0')
    got = flannel.from_rules({("ip", "flannel-ipv4", "postrtg"): json.loads(text)})
    assert got.networks == () and "masquerade 0.0.0.0/0, which no pod network can be" in got.problem


# -- resolve ---------------------------------------------------------------------------

RULES = flannel.from_rules(chains("iptables-nft.ruleset.json"))
KNOWN = PoolState((V4,), (V4,), "flannel's iptables rules (FLANNEL-POSTRTG)", follows=flannel.FLANNEL)


def test_the_file_wins_and_ipv6_is_masqueraded_only_where_flannel_is_seen_to():
    dual = parse((FIXTURES / "subnet.env.dual").read_text())
    without_rules = flannel.resolve(dual, None, None)
    assert (without_rules.pools, without_rules.masq) == ((V4, V6), (V4,)), "k3s masquerades IPv6 only if asked"
    with_rules = flannel.resolve(dual, RULES, None)
    assert (with_rules.pools, with_rules.masq, with_rules.problem) == ((V4, V6), (V4, V6), "")
    kept = flannel.resolve(dual, None, PoolState((V4, V6), (V4, V6), "applied before (calfwd's table)"))
    assert kept.masq == (V4, V6), "IPv6 masquerade applied before stays while flannel's rules are flushed"
    assert with_rules.describe() == (f"auto -> 10.42.0.0/16 (natOutgoing), fd00:42::/56 (natOutgoing) "
                                     f"(flannel's subnet file {PATH})")


def test_without_a_file_the_rules_give_the_pools():
    got = flannel.resolve(None, RULES, None)
    assert (got.pools, got.masq, got.source) == ((V4, V6), (V4, V6), "flannel's iptables rules (FLANNEL-POSTRTG)")


def test_flushed_rules_keep_the_last_pools_and_say_so():
    got = flannel.resolve(None, flannel.from_rules({}), KNOWN, looked="no subnet file")
    assert (got.pools, got.masq) == ((V4,), (V4,))
    assert got.problem == ("flannel's network not found (no subnet file) (keeping the pools read before from "
                           "flannel's iptables rules (FLANNEL-POSTRTG))")


def test_nothing_known_yet_masquerades_nothing_and_says_until_when():
    got = flannel.resolve(None, flannel.from_rules({}), None)
    assert got.pools == () and got.masq == ()
    assert got.describe() == ("auto: flannel's network not found: calfwd masquerades no pod traffic and opens "
                              "no pool until flannel's network is known")


def test_a_garbled_file_keeps_the_last_pools_even_beside_rules():
    bad = parse("FLANNEL_NETWORK=garbage\nFLANNEL_IPMASQ=true\n")
    got = flannel.resolve(bad, RULES, KNOWN)
    assert (got.pools, got.masq) == ((V4,), (V4,))
    assert got.problem.startswith(f"cannot read flannel's network: {PATH}: FLANNEL_NETWORK: 'garbage'")
    first = flannel.resolve(bad, RULES, None)
    assert first.pools == () and first.describe().endswith("until they can be read")
