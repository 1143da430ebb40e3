"""The firewalld planner, without firewalld: FakeFirewalld applies plans to dicts the way
firewalld 1.3.3 does (checked in the lab), so "apply, then plan again" must come out empty."""

from __future__ import annotations

import copy
from typing import Any, Dict

import pytest

from calfwd.config import parse
from calfwd.desired import CALFWD_DESCRIPTION, STOCK_ZONES, HostFacts, desired
from calfwd.plan.firewalld import online as fp
from calfwd.plan.firewalld import cleanup as fc
from calfwd.plan.firewalld import settings as fs
from calfwd.plan.firewalld.model import (AddToZone, CreatePolicy, CreateService, CreateZone, RemoveService, UpdateService, FirewalldActual, FirewalldPlan, ObjectState,
                                   Reload, RemoveFromZone, RemovePolicy, RemoveZone, SetPolicyRuntime,
                                   UpdatePolicy, UpdateZone)

from fakes.firewalld import BASE, STOCK, FakeFirewalld, converge, want  # noqa: F401


# ---------------------------------------------------------------------------------------


def test_from_scratch_creates_zone_and_policies_then_reloads_once():
    d = want()
    p = fp.plan(d, FakeFirewalld().read(d))
    assert [type(op) for op in p.ops] == [CreateZone, CreatePolicy, CreatePolicy, Reload]
    zone = dict(p.ops[0].settings)
    assert zone["target"] == "ACCEPT" and zone["description"] == CALFWD_DESCRIPTION
    assert zone["interfaces"] == ("cali+", "tunl0", "vxlan.calico", "vxlan-v6.calico", "wireguard.cali",
                                  "wg-v6.cali")
    fwd, host = dict(p.ops[1].settings), dict(p.ops[2].settings)
    assert (fwd["ingress_zones"], fwd["egress_zones"], fwd["target"]) == (("ANY",), ("calfwd",), "ACCEPT")
    assert (host["ingress_zones"], host["egress_zones"], host["target"]) == (("public",), ("HOST",), "CONTINUE")
    assert host["protocols"] == ("4",)
    assert set(host["ports"]) == {("179", "tcp"), ("4789", "udp"), ("5473", "tcp")}
    assert p.conflicts == () and p.reloads == 1
    assert all(op.description for op in p.ops)


def test_apply_then_plan_again_is_empty_without_another_reload():
    fw, d = FakeFirewalld(), want()
    converge(fw, d)
    assert fw.reloads == 1
    again = fp.plan(d, fw.read(d))
    assert again.empty and again.conflicts == ()


def test_wireguard_ports_as_one_range_are_no_difference():
    fw, d = FakeFirewalld(), want('host_ports = ["wireguard", "bgp"]\n')
    converge(fw, d)
    assert ["51820-51821", "udp"] in [list(x) for x in fw.perm_policies["calfwd-host"]["ports"]]
    # An admin (or firewalld) spelling the range as two ports is the same thing.
    fw.rt_policies["calfwd-host"]["ports"] = [("179", "tcp"), ("51820", "udp"), ("51821", "udp")]
    assert fp.plan(d, fw.read(d)).empty


def test_changed_config_changes_only_the_difference_at_once_without_reload():
    fw = FakeFirewalld()
    converge(fw, want())
    d = want('interfaces = ["cali+", "tunl0", "ovl8"]\nhost_ports = ["bgp", "ipip", "vxlan"]\n')
    p = converge(fw, d)
    assert not any(isinstance(op, (Reload, CreateZone, CreatePolicy)) for op in p.ops)
    assert AddToZone("calfwd", "interface", "ovl8", True) in p.ops
    assert AddToZone("calfwd", "interface", "ovl8", False) in p.ops
    assert RemoveFromZone("calfwd", "interface", "vxlan.calico", True) in p.ops
    assert RemoveFromZone("calfwd", "interface", "vxlan.calico", False) in p.ops
    update = [op for op in p.ops if isinstance(op, UpdatePolicy)]
    runtime = [op for op in p.ops if isinstance(op, SetPolicyRuntime)]
    assert [dict(op.settings) for op in update] == [{"ports": (("179", "tcp"), ("4789", "udp"))}]
    assert [dict(op.settings) for op in runtime] == [{"ports": (("179", "tcp"), ("4789", "udp"))}]
    assert "-5473/tcp" in update[0].description
    # Permanent first, then runtime.
    kinds = [op.permanent for op in p.ops]
    assert kinds == sorted(kinds, reverse=True)
    assert fp.plan(d, fw.read(d)).empty


def test_nothing_is_added_twice():
    fw, d = FakeFirewalld(), want()
    fw.perm_zones["calfwd"] = {"target": "ACCEPT", "description": CALFWD_DESCRIPTION, "interfaces": ["cali+"]}
    fw.rt_zones["calfwd"] = copy.deepcopy(fw.perm_zones["calfwd"])
    fw.rt_zones["calfwd"]["interfaces"].append("tunl0")  # already there at runtime only
    p = fp.plan(d, fw.read(d))
    added = [(op.item, op.permanent) for op in p.ops if isinstance(op, AddToZone)]
    assert ("cali+", True) not in added and ("cali+", False) not in added
    assert ("tunl0", True) in added and ("tunl0", False) not in added
    assert len(added) == len(set(added))
    fw.apply(p)
    fw.apply(fp.plan(d, fw.read(d)))
    assert fw.perm_zones["calfwd"]["interfaces"].count("cali+") == 1


def test_interface_bound_elsewhere_is_reported_not_moved():
    fw, d = FakeFirewalld(), want()
    for zones in (fw.perm_zones, fw.rt_zones):
        zones["internal"]["interfaces"] = ["tunl0"]
    p = converge(fw, d)
    assert "tunl0" not in dict(p.ops[0].settings)["interfaces"]
    [conflict] = p.conflicts
    assert "tunl0" in conflict and "'internal'" in conflict and "'calfwd'" in conflict
    assert fw.perm_zones["internal"]["interfaces"] == ["tunl0"] == fw.rt_zones["internal"]["interfaces"]
    again = fp.plan(d, fw.read(d))
    assert again.empty and again.conflicts == p.conflicts


def test_runtime_only_binding_elsewhere_is_reported_and_left_at_runtime():
    fw, d = FakeFirewalld(), want()
    converge(fw, d)
    fw.rt_zones["calfwd"]["interfaces"].remove("tunl0")
    fw.rt_zones["work"]["interfaces"] = ["tunl0"]
    p = fp.plan(d, fw.read(d))
    assert p.empty
    assert len(p.conflicts) == 1 and "zone 'work' (runtime)" in p.conflicts[0]


def test_source_conflict_names_both_zones():
    fw, d = FakeFirewalld(), want(trust_pool_sources=True)
    fw.perm_zones["internal"]["sources"] = ["198.18.64.0/20"]
    p = fp.plan(d, fw.read(d))
    assert any("source 198.18.64.0/20" in c and "'internal' (permanent)" in c for c in p.conflicts)
    assert "sources" not in dict(p.ops[0].settings)


def test_stock_zone_only_gets_calfwds_entries():
    fw = FakeFirewalld()
    admin = {"target": "ACCEPT", "description": "trusted", "interfaces": ["eth5"], "sources": ["198.18.200.0/24"],
             "services": ["ssh"]}
    fw.perm_zones["trusted"] = copy.deepcopy(admin)
    fw.rt_zones["trusted"] = copy.deepcopy(admin)
    d = want(zone="trusted")
    p = converge(fw, d)
    assert not any(isinstance(op, (CreateZone, UpdateZone, RemoveZone, RemoveFromZone)) for op in p.ops)
    assert {op.zone for op in p.ops if isinstance(op, AddToZone)} == {"trusted"}
    trusted = fw.perm_zones["trusted"]
    assert trusted["interfaces"][0] == "eth5" and trusted["sources"] == admin["sources"]
    assert trusted["services"] == ["ssh"] and trusted["target"] == "ACCEPT"
    assert fp.plan(d, fw.read(d)).empty

    clean = fc.cleanup_plan(d, fw.read(d))
    assert not any(isinstance(op, RemoveZone) for op in clean.ops)
    removed = {op.item for op in clean.ops if isinstance(op, RemoveFromZone)}
    assert removed == set(d.zone.interfaces)
    fw.apply(clean)
    assert fw.perm_zones["trusted"] == admin and fw.rt_zones["trusted"] == admin
    assert "calfwd-forward" not in fw.perm_policies and "calfwd-forward" not in fw.rt_policies


def test_a_missing_stock_zone_is_not_created():
    fw, d = FakeFirewalld(), want(zone="docker")
    p = fp.plan(d, fw.read(d))
    assert not any(isinstance(op, (CreateZone, AddToZone)) for op in p.ops)
    assert any("'docker' does not exist" in c for c in p.conflicts)
    assert not any(isinstance(op, CreatePolicy) and op.name == "calfwd-forward" for op in p.ops)


def test_foreign_zone_and_policy_of_the_same_name_are_not_taken_over():
    fw, d = FakeFirewalld(), want()
    fw.perm_zones["calfwd"] = {"target": "DROP", "description": "the admin's"}
    fw.perm_policies["calfwd-host"] = {"target": "REJECT", "description": "mine", "ingress_zones": ["public"],
                                       "egress_zones": ["HOST"], "priority": -5}
    fw.reload()
    p = fp.plan(d, fw.read(d))
    assert not any(getattr(op, "name", getattr(op, "zone", None)) in ("calfwd", "calfwd-host") for op in p.ops)
    assert not any(isinstance(op, Reload) for op in p.ops)
    assert sum("not created by calfwd" in c for c in p.conflicts) == 2
    assert any("calfwd-forward" in c and "left alone" in c for c in p.conflicts)
    clean = fc.cleanup_plan(d, fw.read(d))
    assert clean.empty and len(clean.conflicts) == 2


@pytest.mark.parametrize("damage", ["zone-target", "policy-priority", "policy-target", "policy-missing"])
def test_what_runtime_setters_cannot_fix_costs_exactly_one_reload(damage):
    fw, d = FakeFirewalld(), want()
    converge(fw, d)
    if damage == "zone-target":
        fw.perm_zones["calfwd"]["target"] = fw.rt_zones["calfwd"]["target"] = "DROP"
    elif damage == "policy-priority":
        fw.rt_policies["calfwd-host"]["priority"] = -10
    elif damage == "policy-target":
        fw.perm_policies["calfwd-forward"]["target"] = fw.rt_policies["calfwd-forward"]["target"] = "REJECT"
    else:
        del fw.rt_policies["calfwd-host"]
    fw.rt_zones["calfwd"]["interfaces"].remove("tunl0")  # a runtime difference too
    p = converge(fw, d)
    assert p.reloads == 1 and isinstance(p.ops[-1], Reload)
    assert not any(isinstance(op, (SetPolicyRuntime,)) or getattr(op, "permanent", True) is False
                   for op in p.ops[:-1])
    assert fp.plan(d, fw.read(d)).empty


def test_many_missing_objects_still_one_reload():
    fw, d = FakeFirewalld(), want(zone="trusted")
    converge(fw, d)
    fw.rt_policies.clear()
    fw.perm_policies["calfwd-host"]["target"] = "ACCEPT"
    p = fp.plan(d, fw.read(d))
    assert p.reloads == 1 and len(p.ops) == 2


def test_permanent_only_objects_are_created_without_reload_when_runtime_has_them():
    """Someone deleted the permanent zone without reloading: write it back, no reload needed."""
    fw, d = FakeFirewalld(), want()
    converge(fw, d)
    del fw.perm_zones["calfwd"]
    p = converge(fw, d)
    assert [type(op) for op in p.ops] == [CreateZone]
    assert fp.plan(d, fw.read(d)).empty


# -- runtime mode --------------------------------------------------------------------------


def _prepared(zone: str = "trusted") -> FakeFirewalld:
    """An admin made the policies permanently (runtime mode cannot create them)."""
    fw = FakeFirewalld()
    forward = fs.policy_settings(want(zone=zone).policies[0])  # a stock zone: pools only
    fw.perm_policies["calfwd-forward"] = {"target": forward["target"], "priority": -1, "ingress_zones": ["ANY"],
                                          "egress_zones": [zone], "rich_rules": list(forward["rich_rules"])}
    fw.perm_policies["calfwd-host"] = {"target": "CONTINUE", "priority": -1, "ingress_zones": ["public"],
                                       "egress_zones": ["HOST"], "services": ["ssh"]}
    fw.reload()
    return fw


def test_runtime_mode_applies_at_runtime_only():
    fw, d = _prepared(), want(zone="trusted", mode="runtime")
    perm_before = copy.deepcopy((fw.perm_zones, fw.perm_policies))
    p = converge(fw, d)
    assert p.ops and not p.writes_permanent and p.reloads == 0 and p.conflicts == ()
    assert (fw.perm_zones, fw.perm_policies) == perm_before
    assert "cali+" in fw.rt_zones["trusted"]["interfaces"]
    host = fw.rt_policies["calfwd-host"]
    assert "4" in host["protocols"] and "ssh" in host["services"]  # not calfwd's policy: additive
    assert fp.plan(d, fw.read(d)).empty
    fw.reload()  # runtime changes vanish; the plan notices
    assert not fp.plan(d, fw.read(d)).empty


@pytest.mark.parametrize("setup", ["scratch", "prepared-trusted", "converged-permanent", "foreign-bindings"])
def test_runtime_mode_never_writes_permanent_config_or_reloads(setup):
    fw = _prepared() if setup == "prepared-trusted" else FakeFirewalld()
    zone = "trusted" if setup == "prepared-trusted" else "calfwd"
    if setup == "converged-permanent":
        converge(fw, want())
        fw.rt_zones["calfwd"]["interfaces"] = ["eth9"]
        fw.rt_policies["calfwd-host"]["ports"] = []
        fw.rt_zones["calfwd"]["target"] = "DROP"
    if setup == "foreign-bindings":
        fw.rt_zones["internal"]["interfaces"] = ["cali+"]
    d = want(zone=zone, mode="runtime")
    p = fp.plan(d, fw.read(d))
    assert not p.writes_permanent and p.reloads == 0
    clean = fc.cleanup_plan(d, fw.read(d))
    if setup == "converged-permanent":  # only deleting what an earlier permanent-mode run made
        assert {type(op) for op in clean.ops if op.permanent} == {RemovePolicy, RemoveZone}
        assert clean.reloads == 1
    else:
        assert not clean.writes_permanent and clean.reloads == 0


def test_runtime_mode_missing_zone_and_policies_say_how_to_fix():
    fw, d = FakeFirewalld(), want(mode="runtime")
    p = fp.plan(d, fw.read(d))
    assert p.empty
    zone_msg = next(c for c in p.conflicts if c.startswith("zone 'calfwd'"))
    assert 'mode = "permanent"' in zone_msg and "trusted" in zone_msg
    host_msg = next(c for c in p.conflicts if c.startswith("policy 'calfwd-host'"))
    assert 'mode = "permanent"' in host_msg and "--new-policy=calfwd-host" in host_msg


def test_runtime_mode_target_it_cannot_change_is_reported():
    fw = FakeFirewalld()
    converge(fw, want())
    fw.rt_zones["calfwd"]["target"] = "DROP"
    d = want(mode="runtime")
    p = fp.plan(d, fw.read(d))
    assert p.empty and any("target DROP" in c and "--set-target=ACCEPT" in c for c in p.conflicts)


# -- cleanup -------------------------------------------------------------------------------


def test_cleanup_removes_policies_before_the_zone_then_reloads_once():
    fw, d = FakeFirewalld(), want()
    before = copy.deepcopy(fw.perm_zones)
    converge(fw, d)
    p = fc.cleanup_plan(d, fw.read(d))
    assert [type(op) for op in p.ops] == [RemovePolicy, RemovePolicy, RemoveZone, Reload]
    fw.apply(p)
    assert fw.perm_zones == before and fw.rt_zones == before
    assert not fw.perm_policies and not fw.rt_policies
    assert fc.cleanup_plan(d, fw.read(d)).empty


def test_cleanup_of_nothing_is_empty():
    fw, d = FakeFirewalld(), want()
    assert fc.cleanup_plan(d, fw.read(d)).empty


def test_runtime_cleanup_restores_runtime_to_permanent():
    fw, d = _prepared(), want(zone="trusted", mode="runtime")
    converge(fw, d)
    p = fc.cleanup_plan(d, fw.read(d))
    assert not p.writes_permanent and p.reloads == 0
    fw.apply(p)
    assert fw.rt_zones == fw.perm_zones
    for name, perm in fw.perm_policies.items():
        for key in fs.POLICY_LISTS:
            assert fs.policy_value(perm, key) == fs.policy_value(fw.rt_policies[name], key), (name, key)


def test_runtime_cleanup_takes_out_only_what_calfwd_added_to_someone_elses_policy():
    """Issue 11 item 8: cleanup reset the whole runtime policy to its permanent state, taking an
    administrator's own runtime entries with calfwd's."""
    fw, d = _prepared(), want(zone="trusted", mode="runtime")
    converge(fw, d)
    fw.rt_policies["calfwd-host"]["ports"].append(("8443", "tcp"))  # the administrator's, at runtime
    fw.apply(fc.cleanup_plan(d, fw.read(d)))
    ports = fs.policy_value(fw.rt_policies["calfwd-host"], "ports")
    assert ports == fs.policy_value({"ports": [("8443", "tcp")]}, "ports"), ports
    assert fs.policy_value(fw.rt_policies["calfwd-host"], "services") == ("ssh",)


def test_runtime_cleanup_removes_what_an_earlier_permanent_mode_run_left():
    """Switched to mode = "runtime" after a permanent-mode run: calfwd's permanent zone and
    policies go too (firewalld would restore them at its next reload), with one reload."""
    fw = FakeFirewalld()
    before = copy.deepcopy(fw.perm_zones)
    converge(fw, want())  # permanent mode once: calfwd's zone is in the permanent config
    d = want(mode="runtime")
    fw.rt_zones["calfwd"]["interfaces"].append("eth9")
    p = fc.cleanup_plan(d, fw.read(d))
    assert p.ops[0] == RemoveFromZone("calfwd", "interface", "eth9", False)
    assert [type(op) for op in p.ops[1:]] == [RemovePolicy, RemovePolicy, RemoveZone, Reload]
    assert p.conflicts == ()
    fw.apply(p)
    assert fw.perm_zones == before and fw.rt_zones == before
    assert not fw.perm_policies and not fw.rt_policies
    assert fc.cleanup_plan(d, fw.read(d)).empty


def test_runtime_cleanup_leaves_an_unmarked_zone_of_calfwds_name():
    fw, d = FakeFirewalld(), want(mode="runtime")
    fw.perm_zones["calfwd"] = {"target": "ACCEPT", "description": "the admin's"}
    fw.reload()
    p = fc.cleanup_plan(d, fw.read(d))
    assert p.empty and p.conflicts == ("zone 'calfwd' left alone: it was not created by calfwd",)


# -- details -------------------------------------------------------------------------------


def test_inactive_host_zone_is_reported():
    fw, d = FakeFirewalld(), want(host_zone="work")  # named in the config: not the catch-all
    p = fp.plan(d, fw.read(d))
    [warning] = p.conflicts
    assert "calfwd-host" in warning and "'work'" in warning and "no interface or source" in warning


def test_the_default_zones_catch_all_gets_calicos_host_ports_as_calfwds_service():
    """Issue 12 item 2: firewalld 1.x never applies a policy to traffic that reaches the default
    zone through its catch-all (the uplink bound to no zone): VXLAN and BGP were rejected."""
    fw, d = FakeFirewalld(), want()
    del fw.perm_zones["public"]["interfaces"]
    fw.reload()
    assert d.catch_all_zone == "public"
    p = converge(fw, d)
    assert p.conflicts == (), p.conflicts
    assert "calfwd-host" in fw.rt_zones["public"]["services"] and "calfwd-host" in fw.perm_zones["public"]["services"]
    svc = fw.perm_services["calfwd-host"]
    assert ("179", "tcp") in [tuple(x) for x in svc["ports"]] and svc["description"] == CALFWD_DESCRIPTION
    assert fp.plan(d, fw.read(d)).empty
    # NetworkManager binds the uplink: the policy applies, calfwd's entry goes.
    fw.perm_zones["public"]["interfaces"] = ["eth0"]
    fw.rt_zones["public"]["interfaces"] = ["eth0"]
    converge(fw, d)
    assert "services" not in fw.rt_zones["public"] and "services" not in fw.perm_zones["public"]
    assert fp.plan(d, fw.read(d)).empty


def test_firewalld_2_applies_policies_to_the_catch_all_and_gets_no_service():
    d = desired(parse(BASE, "calfwd.toml"), HostFacts(True, "2.3.1", "public")).firewalld
    assert d.catch_all_zone == "" and d.host_service is not None


def test_host_zone_that_does_not_exist_leaves_the_policy_alone():
    fw, d = FakeFirewalld(), want(host_zone="nosuch")
    p = fp.plan(d, fw.read(d))
    assert not any(getattr(op, "name", "") == "calfwd-host" for op in p.ops)
    assert any("'nosuch' does not exist" in c for c in p.conflicts)


def test_owned_policy_extras_are_removed_everywhere():
    fw, d = FakeFirewalld(), want()
    converge(fw, d)
    for policies in (fw.perm_policies, fw.rt_policies):
        policies["calfwd-host"]["services"] = ["ssh"]
        policies["calfwd-host"]["masquerade"] = True
    p = converge(fw, d)
    assert [type(op) for op in p.ops] == [UpdatePolicy, SetPolicyRuntime]
    assert dict(p.ops[0].settings) == {"services": (), "masquerade": False}
    assert fp.plan(d, fw.read(d)).empty


def test_canonical_ports():
    assert fs.canonical_ports([("51821", "udp"), ("179", "tcp"), ("51820", "udp"), ("4789", "udp")]) == (
        ("179", "tcp"), ("4789", "udp"), ("51820-51821", "udp"))
    assert fs.canonical_ports([("1-5", "tcp"), ("3-9", "tcp"), ("http", "tcp")]) == (
        ("1-9", "tcp"), ("http", "tcp"))


def test_ops_are_frozen_and_descriptions_say_where():
    op = AddToZone("calfwd", "interface", "cali+", permanent=False)
    with pytest.raises(Exception):
        op.zone = "x"  # type: ignore[misc]
    assert op.description == "add interface cali+ to zone 'calfwd' (runtime)"
    assert Reload(("a",)) == Reload(("b",))


def test_runtime_mode_does_not_rewire_someone_elses_policy():
    fw = _prepared()
    fw.rt_policies["calfwd-forward"]["ingress_zones"] = ["public"]
    d = want(zone="trusted", mode="runtime")
    p = fp.plan(d, fw.read(d))
    assert not any(getattr(op, "name", "") == "calfwd-forward" for op in p.ops)
    assert any("calfwd-forward" in c and "ingress_zones +ANY -public" in c for c in p.conflicts)


def test_runtime_mode_adds_nothing_to_someone_elses_policy_whose_zones_differ():
    """Issue 11 item 8: a stock-like ANY -> HOST policy got BGP and Typha, open to every zone
    although host_zone said 'public'."""
    fw = _prepared()
    fw.rt_policies["calfwd-host"]["ingress_zones"] = ["ANY"]
    d = want(zone="trusted", mode="runtime")
    p = fp.plan(d, fw.read(d))
    assert not any(getattr(op, "name", "") == "calfwd-host" for op in p.ops), p.ops
    assert any("calfwd-host" in c and "adds nothing" in c for c in p.conflicts), p.conflicts


def test_runtime_mode_adds_its_ports_to_someone_elses_policy_with_the_same_zones():
    fw = _prepared()
    d = want(zone="trusted", mode="runtime")
    p = fp.plan(d, fw.read(d))
    (op,) = [op for op in p.ops if getattr(op, "name", "") == "calfwd-host"]
    assert "ssh" in dict(op.settings).get("services", ("ssh",)) and dict(op.settings)["ports"]


def test_a_stock_zone_gets_forwarding_to_the_pools_only():
    """Issue 11 item 3: ANY -> 'trusted' ACCEPT opened forwarding from the uplink to every
    interface and source an administrator had put in 'trusted'."""
    forward = want(zone="trusted").policies[0]
    assert forward.egress_zones == ("trusted",) and forward.target == "CONTINUE"
    assert forward.rich_rules and all(r.endswith(" accept") and "destination address=" in r
                                      for r in forward.rich_rules)
    own = want().policies[0]
    assert own.target == "ACCEPT" and own.rich_rules == (), "calfwd's own zone holds Calico's interfaces only"



# -- renamed in the config (issue 11 item 9) ------------------------------------------------


def test_renaming_the_zone_and_policies_moves_everything_and_leaves_nothing_behind():
    """0.1 left the old ACCEPT zone holding cali+ forever, then called it someone else's."""
    fw = FakeFirewalld()
    converge(fw, want())
    renamed = want(zone="pods", forward_policy="pods-forward", host_policy="pods-host")
    p = fp.plan(renamed, fw.read(renamed))
    assert p.conflicts == (), p.conflicts
    assert p.reloads == 1
    fw.apply(p)
    assert "calfwd" not in fw.perm_zones and "calfwd" not in fw.rt_zones
    assert set(fw.perm_policies) == {"pods-forward", "pods-host"}
    assert "cali+" in fw.perm_zones["pods"]["interfaces"] and "cali+" in fw.rt_zones["pods"]["interfaces"]
    assert fp.plan(renamed, fw.read(renamed)).empty


def test_cleanup_finds_what_calfwd_made_under_an_earlier_name():
    fw = FakeFirewalld()
    converge(fw, want(zone="pods", forward_policy="pods-forward"))
    d = want()
    fw.apply(fc.cleanup_plan(d, fw.read(d)))
    assert "pods" not in fw.perm_zones and not fw.perm_policies and "pods" not in fw.rt_zones


def test_an_administrators_zone_is_never_taken_for_an_orphan():
    fw = FakeFirewalld()
    fw.perm_zones["mgmt"] = {"target": "ACCEPT", "description": "management", "interfaces": ["eth1"]}
    fw.reload()
    d = want()
    assert all(getattr(op, "name", "") != "mgmt" for op in fp.plan(d, fw.read(d)).ops)
    assert all(getattr(op, "name", "") != "mgmt" for op in fc.cleanup_plan(d, fw.read(d)).ops)


def test_runtime_mode_frees_the_old_zones_items_and_says_it_cannot_remove_it():
    fw = FakeFirewalld()
    converge(fw, want())
    renamed = want(zone="trusted", mode="runtime")
    p = fp.plan(renamed, fw.read(renamed))
    assert RemoveFromZone("calfwd", "interface", "cali+", permanent=False) in p.ops
    assert any("zone 'calfwd' is calfwd's, from an earlier configuration" in c for c in p.conflicts)
    assert not any("by someone else" in c for c in p.conflicts), p.conflicts


def test_an_old_zone_an_administrators_policy_still_names_is_kept_and_reported():
    """Review: deleting it would make firewalld's next reload and start fail (INVALID_ZONE)."""
    fw = FakeFirewalld()
    converge(fw, want())
    fw.perm_policies["pods-to-db"] = {"target": "ACCEPT", "ingress_zones": ["calfwd"], "egress_zones": ["public"],
                                      "description": "the admin's"}
    fw.reload()
    renamed = want(zone="pods")
    p = fp.plan(renamed, fw.read(renamed))
    assert RemoveZone("calfwd") not in p.ops
    assert any("'pods-to-db' (not calfwd's) names it" in c for c in p.conflicts), p.conflicts
    fw.apply(p)
    assert "cali+" in fw.perm_zones["pods"]["interfaces"] and "cali+" not in fw.perm_zones["calfwd"].get("interfaces", [])


def test_a_rename_creates_the_new_objects_before_anything_old_goes():
    """Review: a rename failing half-way must not leave Calico's interfaces in no zone."""
    fw = FakeFirewalld()
    converge(fw, want())
    renamed = want(zone="pods", forward_policy="pods-forward", host_policy="pods-host")
    ops = list(fp.plan(renamed, fw.read(renamed)).ops)
    first_removal = min(i for i, op in enumerate(ops) if isinstance(op, (RemoveFromZone, RemovePolicy, RemoveZone)))
    created = [i for i, op in enumerate(ops) if isinstance(op, (CreateZone, CreatePolicy))]
    assert created and max(created) < first_removal, [op.description for op in ops]


def test_nothing_old_goes_while_the_configured_zone_cannot_be_made():
    fw = FakeFirewalld()
    converge(fw, want())
    fw.perm_zones["pods"] = {"target": "DROP", "description": "someone else's pods zone"}
    fw.reload()
    renamed = want(zone="pods")
    p = fp.plan(renamed, fw.read(renamed))
    assert not any(isinstance(op, (RemoveZone, RemovePolicy)) for op in p.ops), p.ops
    assert "cali+" in fw.perm_zones["calfwd"]["interfaces"]


def test_runtime_cleanup_finds_calfwds_port_inside_a_range_firewalld_merged():
    """Review: firewalld merges 5472/tcp (the admin's) and 5473/tcp (calfwd's) into 5472-5473/tcp;
    cleanup removed only exact matches and left Typha's port open."""
    fw, d = _prepared(), want(zone="trusted", mode="runtime")
    converge(fw, d)
    rt = fw.rt_policies["calfwd-host"]
    rt["ports"] = [p for p in rt["ports"] if tuple(p) != ("5473", "tcp")] + [("5472-5473", "tcp")]
    fw.apply(fc.cleanup_plan(d, fw.read(d)))
    assert fs.policy_value(fw.rt_policies["calfwd-host"], "ports") == fs.policy_value({"ports": [("5472", "tcp")]}, "ports")


def test_cleanup_takes_calfwds_service_out_of_the_default_zone_and_deletes_it():
    fw, d = FakeFirewalld(), want()
    del fw.perm_zones["public"]["interfaces"]
    fw.reload()
    converge(fw, d)
    fw.apply(fc.cleanup_plan(d, fw.read(d)))
    assert not fw.perm_services and "services" not in fw.perm_zones["public"] and "services" not in fw.rt_zones["public"]
    assert "calfwd" not in fw.perm_zones


def test_a_service_of_calfwds_name_it_did_not_make_is_never_used_nor_deleted():
    fw, d = FakeFirewalld(), want()
    del fw.perm_zones["public"]["interfaces"]
    fw.perm_services["calfwd-host"] = {"description": "the admin's", "ports": [["8443", "tcp"]]}
    fw.reload()
    p = fp.plan(d, fw.read(d))
    assert any("service 'calfwd-host' exists but was not created by calfwd" in c for c in p.conflicts)
    assert not any(getattr(op, "obj", "") == "service" for op in p.ops)
    c = fc.cleanup_plan(d, fw.read(d))
    assert not any(isinstance(op, RemoveService) for op in c.ops)


def test_a_disabled_policy_or_an_unused_host_zone_keeps_the_plan_from_being_in_sync():
    """Issue 12 item 5: "in sync" only when calfwd's objects exist and firewalld applies them."""
    fw, d = FakeFirewalld(), want()
    converge(fw, d)
    assert fp.plan(d, fw.read(d)).blocking == ()
    fw.rt_policies["calfwd-host"]["disable"] = True  # firewalld 2.4+: firewall-cmd --policy=... --set-disable
    p = fp.plan(d, fw.read(d))
    assert len(p.blocking) == 1 and "calfwd-host' is disabled" in p.blocking[0] and "BGP" in p.blocking[0]
    d = want(host_zone="work")
    assert any("has no effect" in b for b in fp.plan(d, FakeFirewalld().read(d)).blocking)
