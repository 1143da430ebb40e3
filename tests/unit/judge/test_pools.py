"""ip_pools = "auto": Felix's set members to pools (judge/pools.py), the config, and the Reconciler
filling the pools in before the pure desired state is computed."""

from __future__ import annotations

import ipaddress

import pytest

from calfwd import config as cfg
from calfwd.judge import pools
from calfwd.desired import desired_firewalld, HostFacts
from calfwd.judge.pools import FelixSets, PoolState
from calfwd.reconcile import Reconciler

from fakes.nft import FakeNft

net = ipaddress.ip_network
PATH = "/etc/calfwd/calfwd.toml"
AUTO = '[calico]\nip_pools = "auto"\n'

IPSET_SAVE = """create cali40all-ipam-pools hash:net family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x5a1e0c3d
add cali40all-ipam-pools 10.244.0.0/16
add cali40all-ipam-pools 10.96.5.7
"""


def test_ipset_save_members():
    assert pools.ipset_members(IPSET_SAVE, "cali40all-ipam-pools") == ("10.244.0.0/16", "10.96.5.7")
    assert pools.ipset_members(IPSET_SAVE, "cali40masq-ipam-pools") == ()


def test_nft_members_in_every_form_nft_prints():
    assert pools.nft_member({"prefix": {"addr": "192.168.0.0", "len": 16}}) == "192.168.0.0/16"
    assert pools.nft_member("10.1.2.3") == "10.1.2.3"
    assert pools.nft_member({"range": ["10.0.0.0", "10.0.1.255"]}) == "10.0.0.0-10.0.1.255"
    assert pools.nft_member({"elem": {"val": {"prefix": {"addr": "fd00::", "len": 64}}, "counter": {}}}) == "fd00::/64"


def test_both_families_and_which_masquerade():
    state = pools.resolve(FelixSets(pools.IPSET, {
        "cali40all-ipam-pools": ("10.244.0.0/16", "10.245.0.0/16"),
        "cali40masq-ipam-pools": ("10.244.0.0/16",),
        "cali60all-ipam-pools": ("fd00:10:244::/48",),
        "cali60masq-ipam-pools": ("fd00:10:244::/48",),
    }))
    assert state.known and not state.problem
    assert state.pools == (net("10.244.0.0/16"), net("10.245.0.0/16"), net("fd00:10:244::/48"))
    assert state.masq == (net("10.244.0.0/16"), net("fd00:10:244::/48"))
    assert state.describe() == ("auto -> 10.244.0.0/16 (natOutgoing), 10.245.0.0/16, "
                                "fd00:10:244::/48 (natOutgoing) (Felix's ip sets)")


def test_newer_felix_names_and_natoutgoing_pools_without_pods():
    """Newer Felix releases call the set of every pool network-ip-pools, and keep natOutgoing
    pools that hold no pods (LoadBalancer-only) in the masq set alone."""
    state = pools.resolve(FelixSets(pools.NFTABLES, {
        "cali40network-ip-pools": ("10.0.0.0/16",),
        "cali40masq-ipam-pools": ("10.0.0.0/16", "10.20.40.64/27"),
    }))
    assert state.pools == (net("10.0.0.0/16"),)
    assert state.masq == (net("10.0.0.0/16"), net("10.20.40.64/27"))
    assert state.describe() == ("auto -> 10.0.0.0/16 (natOutgoing), 10.20.40.64/27 (natOutgoing only) "
                                "(Felix's nftables sets)")
    assert "cali40network-ip-pools" in pools.SET_NAMES and "cali60network-ip-pools" in pools.SET_NAMES


def test_single_addresses_ranges_and_overlaps_become_pools_nft_accepts():
    state = pools.resolve(FelixSets(pools.NFTABLES, {
        "cali40all-ipam-pools": ("10.0.0.0/8", "10.1.0.0/16", "192.168.5.9", "172.16.0.0-172.16.1.255"),
    }))
    assert state.pools == (net("10.0.0.0/8"), net("172.16.0.0/23"), net("192.168.5.9/32"))
    assert state.masq == ()


def test_members_no_pod_network_can_be_are_left_out_and_named():
    state = pools.resolve(FelixSets(pools.IPSET, {
        "cali40all-ipam-pools": ("0.0.0.0/0", "10.244.0.0/16"),
        "cali40masq-ipam-pools": ("0.0.0.0/0", "10.244.0.0/16"),
    }))
    assert state.pools == state.masq == (net("10.244.0.0/16"),)
    assert state.refused == ("0.0.0.0/0",)
    assert "left out: 0.0.0.0/0" in state.describe()


def test_a_refused_range_is_refused_whole_not_in_part():
    """A range spans many networks; were only its bad pieces refused, the rest (192.0.0.0/3,
    240.0.0.0/5, ...) would become pools while describe() says the member is left out."""
    state = pools.resolve(FelixSets(pools.IPSET, {
        "cali40all-ipam-pools": ("0.0.0.0-255.255.255.254", "10.244.0.0/16"),
        "cali40masq-ipam-pools": ("0.0.0.0-255.255.255.254", "10.244.0.0/16"),
    }))
    assert state.pools == state.masq == (net("10.244.0.0/16"),)
    assert state.refused == ("0.0.0.0-255.255.255.254",)
    assert "left out: 0.0.0.0-255.255.255.254" in state.describe()


@pytest.mark.parametrize("found, says", [
    (FelixSets("", {}, why="no ip set cali40all-ipam-pools"), "Felix's sets not found (no ip set cali40all-ipam-pools)"),
    (FelixSets(pools.IPSET, {"cali40all-ipam-pools": (), "cali40masq-ipam-pools": ()}), "Felix's ip sets are empty"),
    (FelixSets(pools.IPSET, {"cali40masq-ipam-pools": ("10.1.0.0/16",)}), "Felix's ip sets are empty"),
])
def test_bad_states_are_no_pools_and_one_line_why(found, says):
    state = pools.resolve(found)
    assert not state.known and state.pools == state.masq == ()
    assert says in state.problem
    assert state.describe().startswith("auto: ") and pools.EMPTY_LAYER in state.describe()


@pytest.mark.parametrize("member, says", [
    ("bogus", "cali40all-ipam-pools in Felix's ip sets holds 'bogus', which is not an IPv4 network"),
    ("fd00::/64", "holds 'fd00::/64', which is not an IPv4 network"),
])
def test_a_member_that_is_no_network_is_an_unreadable_read(member, says):
    """One garbled member is no word from Felix that the pools are gone: like any failed read
    it keeps the pools known before, and says it cannot read the sets (not "until Felix has run")."""
    found = FelixSets(pools.IPSET, {"cali40all-ipam-pools": ("10.244.0.0/16", member),
                                    "cali40masq-ipam-pools": ("10.244.0.0/16",)})
    before = PoolState((net("10.244.0.0/16"), net("10.250.0.0/16")), (net("10.244.0.0/16"),), pools.IPSET)
    kept = pools.resolve(found, before)
    assert kept.pools == before.pools and kept.masq == before.masq
    assert kept.problem.startswith(pools.UNREADABLE) and says in kept.problem
    assert kept.problem.endswith("(keeping the pools read before from Felix's ip sets)")
    none = pools.resolve(found)
    assert not none.known and none.problem.startswith(pools.UNREADABLE)
    assert none.describe().endswith(pools.UNREADABLE_LAYER) and pools.EMPTY_LAYER not in none.describe()


@pytest.mark.parametrize("sets, says", [
    ({"cali40all-ipam-pools": ("0.0.0.0/0",), "cali40masq-ipam-pools": ("0.0.0.0/0",)},
     "cali40all-ipam-pools in Felix's ip sets holds only '0.0.0.0/0', which no pod network can be"),
    # natOutgoing alone: the pools would stay, but masquerading would be dropped
    ({"cali40all-ipam-pools": ("10.244.0.0/16",), "cali40masq-ipam-pools": ("0.0.0.0/0", "0.0.0.0/0")},
     "cali40masq-ipam-pools in Felix's ip sets holds only '0.0.0.0/0', which no pod network can be"),
])
def test_a_set_holding_only_refused_members_is_an_unreadable_read(sets, says):
    """Refusing every member of a set would empty it: the pools gone, or natOutgoing dropped, on
    Felix's word for something calfwd refuses. Like a garbled member, it keeps the pools known
    before and names the member (not "are empty", not "until Felix has run")."""
    before = PoolState((net("10.244.0.0/16"),), (net("10.244.0.0/16"),), pools.IPSET)
    kept = pools.resolve(FelixSets(pools.IPSET, sets), before)
    assert kept.pools == before.pools and kept.masq == before.masq
    assert kept.problem == f"{pools.UNREADABLE}: {says} (keeping the pools read before from Felix's ip sets)"
    none = pools.resolve(FelixSets(pools.IPSET, sets))
    assert not none.known and none.problem == f"{pools.UNREADABLE}: {says}"
    assert none.describe().endswith(pools.UNREADABLE_LAYER) and "empty" not in none.describe()


def test_more_members_than_the_cap_is_an_unreadable_read():
    """A set holding more members than a cluster has pools is no list of pools: the read is
    unreadable (the pools known before are kept) and none of its members is parsed."""
    many = tuple(f"10.{i // 256}.{i % 256}.0/24" for i in range(pools.MAX_MEMBERS + 1))
    before = PoolState((net("10.244.0.0/16"),), (net("10.244.0.0/16"),), pools.NFTABLES)
    kept = pools.resolve(FelixSets(pools.NFTABLES, {"cali40all-ipam-pools": ("10.244.0.0/16",),
                                                    "cali40masq-ipam-pools": many[:-1] + ("bogus",)}), before)
    assert kept.pools == before.pools and kept.masq == before.masq
    assert kept.problem == (f"{pools.UNREADABLE}: cali40masq-ipam-pools in Felix's nftables sets holds "
                            f"{pools.MAX_MEMBERS + 1} members, more than the {pools.MAX_MEMBERS} pools calfwd "
                            "reads from one set (keeping the pools read before from Felix's nftables sets)")
    assert not pools.resolve(FelixSets(pools.NFTABLES, {"cali40all-ipam-pools": many})).known
    at_cap = pools.resolve(FelixSets(pools.NFTABLES, {"cali40all-ipam-pools": many[:-1],
                                                      "cali40masq-ipam-pools": many[:-1]}))
    assert len(at_cap.pools) == len(at_cap.masq) == pools.MAX_MEMBERS and not at_cap.problem


def test_nested_duplicate_and_adjacent_members_merge_in_one_pass():
    state = pools.resolve(FelixSets(pools.NFTABLES, {"cali40all-ipam-pools": (
        "10.1.2.0/24", "10.0.0.0/8", "10.0.0.0/8", "10.0.0.0/16", "11.0.0.0/8", "11.0.0.0/9",
        "192.168.0.0/24", "192.168.1.0/24", "192.168.0.128/25", "12.0.0.1"),
        "cali60all-ipam-pools": ("fd00::/64", "fd00::/48", "fd01::/64")}))
    assert state.pools == (net("10.0.0.0/8"), net("11.0.0.0/8"), net("12.0.0.1/32"), net("192.168.0.0/24"),
                           net("192.168.1.0/24"), net("fd00::/48"), net("fd01::/64"))


def test_unreadable_keeps_the_pools_read_before_and_says_so():
    before = PoolState((net("10.244.0.0/16"),), (net("10.244.0.0/16"),), pools.IPSET)
    kept = pools.unreadable("ipset list -n: timed out", before)
    assert kept.pools == before.pools and kept.masq == before.masq
    assert "cannot read Felix's sets: ipset list -n: timed out" in kept.problem
    assert not pools.unreadable("boom", None).known
    assert pools.unreadable("boom", None).describe().endswith(pools.UNREADABLE_LAYER)
    assert not pools.unreadable("boom", PoolState(problem="Felix's sets not found")).known


def test_sets_absent_after_pools_were_known_keep_them_only_empty_sets_clear():
    """Felix's sets gone (`ip calico` deleted, calico-node reinstalled, `nft flush ruleset`) is
    no word that the pools are gone: natOutgoing must not flap. An existing, empty set is."""
    before = PoolState((net("10.244.0.0/16"), net("fd00::/64")), (net("10.244.0.0/16"),), pools.NFTABLES)
    absent = FelixSets("", {}, why="no cali40/cali60 set")
    kept = pools.resolve(absent, before)
    assert (kept.pools, kept.masq) == (before.pools, before.masq)
    assert kept.problem == ("Felix's sets not found (no cali40/cali60 set) "
                            "(keeping the pools read before from Felix's nftables sets)")
    assert pools.event_for(kept, before.key()) == "pools-unknown"
    assert pools.event_for(pools.resolve(absent, kept), kept.key()) is None, "once, not per resync"
    assert not pools.resolve(absent).known, "before any pools were known, absent is empty"
    empty = pools.resolve(FelixSets(pools.NFTABLES, {"cali40all-ipam-pools": (), "cali40masq-ipam-pools": (),
                                                     "cali60all-ipam-pools": ()}), before)
    assert not empty.known and "are empty" in empty.problem
    # One family's table gone, the other's there: that family keeps its pools.
    v6_only = pools.resolve(FelixSets(pools.NFTABLES, {"cali60all-ipam-pools": ("fd00::/64", "fd01::/64"),
                                                       "cali60masq-ipam-pools": ()}), before)
    assert v6_only.pools == (net("10.244.0.0/16"), net("fd00::/64"), net("fd01::/64"))
    assert v6_only.masq == (net("10.244.0.0/16"),)
    assert v6_only.problem == ("Felix's IPv4 sets not found (keeping the IPv4 pools read before "
                               "from Felix's nftables sets)")


def test_events_once_per_change_not_per_resync():
    known = PoolState((net("10.244.0.0/16"),), (), pools.IPSET)
    assert pools.event_for(known, None) == "pools-changed"
    assert pools.event_for(known, known.key()) is None
    absent = PoolState(problem="Felix's sets not found")
    assert pools.event_for(absent, known.key()) == "pools-unknown"
    assert pools.event_for(PoolState(problem="Felix's sets not found"), absent.key()) is None
    grown = PoolState((net("10.244.0.0/16"), net("10.250.0.0/16")), (), pools.IPSET)
    assert pools.event_for(grown, known.key()) == "pools-changed"


# -- the config -----------------------------------------------------------------------------

def test_auto_in_the_config():
    config = cfg.parse(AUTO, PATH)
    assert config.auto_pools and config.ip_pools == () and config.nat_outgoing == ()
    assert not cfg.parse('[calico]\nip_pools = ["10.1.0.0/16"]\n', PATH).auto_pools


@pytest.mark.parametrize("text, line", [
    (AUTO + "nat_outgoing = true\n", f'{PATH}: calico.nat_outgoing: must be left out with ip_pools = "auto"'),
    (AUTO + "nat_outgoing = false\n", f'{PATH}: calico.nat_outgoing: must be left out with ip_pools = "auto"'),
    ('[calico]\nip_pools = "automatic"\n', f'{PATH}: calico.ip_pools: must be an array of pool CIDRs or "auto"'),
    ('[calico]\nip_pools = "10.1.0.0/16"\n', f'{PATH}: calico.ip_pools: must be an array of pool CIDRs or "auto"'),
])
def test_auto_refusals_are_one_line_each(text, line):
    with pytest.raises(cfg.ConfigError) as err:
        cfg.parse(text, PATH)
    assert len(err.value.problems) == 1 and err.value.problems[0].startswith(line), err.value.problems


# -- the Reconciler -------------------------------------------------------------------------

def _nft_sets(table):
    body = {o["set"]["name"]: o["set"] for o in table if "set" in o}
    return {name: tuple(pools.nft_member(e) for e in body[name].get("elem", ())) for name in
            ("pools4", "masq4", "pools6", "masq6")}


def test_reconciler_puts_felix_pools_into_calfwd_table_and_follows_them():
    found = {"sets": FelixSets(pools.IPSET, {"cali40all-ipam-pools": ("10.244.0.0/16",),
                                             "cali40masq-ipam-pools": ("10.244.0.0/16",)})}
    nft = FakeNft()
    r = Reconciler(nft, felix_sets=lambda: found["sets"])
    config = cfg.parse(AUTO + "[firewalld]\nenabled = false\n", PATH)
    outcome = r.reconcile(config, "start")
    assert outcome.verified and outcome.pools is not None and outcome.pools.known
    assert _nft_sets(nft.tables_[("inet", "calfwd")]) == {
        "pools4": ("10.244.0.0/16",), "masq4": ("10.244.0.0/16",), "pools6": (), "masq6": ()}
    found["sets"] = FelixSets(pools.IPSET, {"cali40all-ipam-pools": ("10.244.0.0/16", "10.250.0.0/16"),
                                            "cali40masq-ipam-pools": ("10.244.0.0/16",),
                                            "cali60all-ipam-pools": ("fd00::/64",),
                                            "cali60masq-ipam-pools": ("fd00::/64",)})
    outcome = r.reconcile(config, "resync")
    assert nft.batches == 2 and outcome.verified
    assert _nft_sets(nft.tables_[("inet", "calfwd")]) == {
        "pools4": ("10.244.0.0/16", "10.250.0.0/16"), "masq4": ("10.244.0.0/16",),
        "pools6": ("fd00::/64",), "masq6": ("fd00::/64",)}


def test_reconciler_with_felix_absent_or_unreadable():
    state = {"sets": FelixSets("", {}, why="nothing there")}

    def read():
        if isinstance(state["sets"], Exception):
            raise state["sets"]
        return state["sets"]
    nft = FakeNft()
    r = Reconciler(nft, felix_sets=read)
    config = cfg.parse(AUTO + "[firewalld]\nenabled = false\n", PATH)
    outcome = r.reconcile(config, "start")
    assert outcome.errors == () and outcome.pools is not None and not outcome.pools.known
    assert set(_nft_sets(nft.tables_[("inet", "calfwd")]).values()) == {()}, "masquerades nothing"
    state["sets"] = FelixSets(pools.NFTABLES, {"cali40all-ipam-pools": ("10.244.0.0/16",)})
    assert r.reconcile(config, "resync").pools.known
    state["sets"] = RuntimeError("ipset list -n: timed out")
    batches = nft.batches
    outcome = r.reconcile(config, "resync")
    assert nft.batches == batches and "timed out" in outcome.pools.problem, "a failed read keeps the pools"
    assert _nft_sets(nft.tables_[("inet", "calfwd")])["pools4"] == ("10.244.0.0/16",)


def test_a_garbled_member_never_removes_natoutgoing():
    """A new process (calfwd apply, a restarted daemon) whose first read meets a member that is
    no network keeps the pools in calfwd's table, as for any failed read."""
    nft = FakeNft()
    config = cfg.parse(AUTO + "[firewalld]\nenabled = false\n", PATH)
    good = FelixSets(pools.IPSET, {"cali40all-ipam-pools": ("10.244.0.0/16",),
                                   "cali40masq-ipam-pools": ("10.244.0.0/16",)})
    assert Reconciler(nft, felix_sets=lambda: good).reconcile(config, "cli").verified
    garbled = FelixSets(pools.IPSET, {"cali40all-ipam-pools": ("10.244.0.0/16", "10.1.2.3-bogus"),
                                      "cali40masq-ipam-pools": ("10.244.0.0/16",)})
    batches = nft.batches
    outcome = Reconciler(nft, felix_sets=lambda: garbled).reconcile(config, "cli")
    assert nft.batches == batches and outcome.verified
    assert _nft_sets(nft.tables_[("inet", "calfwd")])["masq4"] == ("10.244.0.0/16",)
    assert outcome.pools.problem.startswith(pools.UNREADABLE) and "10.1.2.3-bogus" in outcome.pools.problem


def test_a_set_of_refused_members_never_removes_natoutgoing():
    nft = FakeNft()
    config = cfg.parse(AUTO + "[firewalld]\nenabled = false\n", PATH)
    good = FelixSets(pools.IPSET, {"cali40all-ipam-pools": ("10.244.0.0/16",),
                                   "cali40masq-ipam-pools": ("10.244.0.0/16",)})
    assert Reconciler(nft, felix_sets=lambda: good).reconcile(config, "cli").verified
    refused = FelixSets(pools.IPSET, {"cali40all-ipam-pools": ("10.244.0.0/16",),
                                      "cali40masq-ipam-pools": ("0.0.0.0/0",)})
    batches = nft.batches
    outcome = Reconciler(nft, felix_sets=lambda: refused).reconcile(config, "cli")
    assert nft.batches == batches and outcome.verified
    assert _nft_sets(nft.tables_[("inet", "calfwd")])["masq4"] == ("10.244.0.0/16",)
    assert outcome.pools.problem.startswith(pools.UNREADABLE) and "'0.0.0.0/0'" in outcome.pools.problem


def test_felix_sets_vanishing_never_remove_natoutgoing():
    """Pools known (by this process, or in calfwd's table for a new one), then Felix's sets
    absent: calfwd's table stays as it is; only an existing, empty set empties it."""
    sets = {"now": FelixSets(pools.IPSET, {"cali40all-ipam-pools": ("10.244.0.0/16",),
                                           "cali40masq-ipam-pools": ("10.244.0.0/16",)})}
    nft = FakeNft()
    config = cfg.parse(AUTO + "[firewalld]\nenabled = false\n", PATH)
    r = Reconciler(nft, felix_sets=lambda: sets["now"])
    assert r.reconcile(config, "start").verified
    sets["now"] = FelixSets("", {}, why="nothing there")
    batches = nft.batches
    outcome = r.reconcile(config, "resync")
    assert nft.batches == batches and outcome.verified and "Felix's sets not found" in outcome.pools.problem
    restarted = Reconciler(nft, felix_sets=lambda: sets["now"]).reconcile(config, "start")
    assert nft.batches == batches and restarted.pools.pools == (net("10.244.0.0/16"),)
    assert "keeping the pools applied before (calfwd's table)" in restarted.pools.problem
    assert _nft_sets(nft.tables_[("inet", "calfwd")])["masq4"] == ("10.244.0.0/16",)
    sets["now"] = FelixSets(pools.IPSET, {"cali40all-ipam-pools": (), "cali40masq-ipam-pools": ()})
    assert not r.reconcile(config, "resync").pools.known
    assert set(_nft_sets(nft.tables_[("inet", "calfwd")]).values()) == {()}


def test_stock_zone_opens_nothing_while_no_pool_is_known():
    config = cfg.parse(AUTO + '[firewalld]\nzone = "trusted"\n', PATH)
    policy = desired_firewalld(config, HostFacts()).policies[0]
    assert policy.target == "CONTINUE" and policy.rich_rules == ()
    found = FelixSets(pools.IPSET, {"cali40all-ipam-pools": ("10.244.0.0/16",)})
    resolved = Reconciler(FakeNft(), felix_sets=lambda: found).resolve(config)
    assert desired_firewalld(resolved, HostFacts()).policies[0].rich_rules == (
        'rule family="ipv4" destination address="10.244.0.0/16" accept',)


def test_a_new_process_that_cannot_read_felix_keeps_what_calfwd_applied():
    """`calfwd apply`, or a restarted daemon: no pools read yet, Felix's sets unreadable. The
    pools in calfwd's own table stay; a failed read never takes natOutgoing away."""
    nft = FakeNft()
    config = cfg.parse(AUTO + "[firewalld]\nenabled = false\n", PATH)
    found = FelixSets(pools.IPSET, {"cali40all-ipam-pools": ("10.244.0.0/16", "10.250.0.0/16"),
                                    "cali40masq-ipam-pools": ("10.244.0.0/16",)})
    assert Reconciler(nft, felix_sets=lambda: found).reconcile(config, "cli").verified

    def broken():
        raise RuntimeError("ipset save cali40all-ipam-pools: timed out")
    batches = nft.batches
    outcome = Reconciler(nft, felix_sets=broken).reconcile(config, "cli")
    assert nft.batches == batches and outcome.verified
    assert outcome.pools.pools == (net("10.244.0.0/16"), net("10.250.0.0/16"))
    assert outcome.pools.masq == (net("10.244.0.0/16"),)
    assert "timed out (keeping the pools applied before (calfwd's table))" in outcome.pools.problem
    assert not Reconciler(FakeNft(), felix_sets=broken).reconcile(config, "cli").pools.known
