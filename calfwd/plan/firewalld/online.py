"""What calfwd changes in firewalld: read state in, an ordered list of operations out.

Pure: the driver (calfwd/drivers/firewalld.py) reads firewalld into a FirewalldActual and
executes the FirewalldPlan (both in model.py); every decision is made here, so it
is testable without root. Settings are compared in settings.py; cleanup is
cleanup.py.

Facts this rests on (firewalld 1.3.3, checked in the lab):
- Zones and policies can only be created in the permanent configuration; firewalld loads
  them at runtime only on a reload. A reload rebuilds firewalld's whole table behind a
  drop-everything-new window, and on firewalld < 2.0 flushes every iptables table (Calico's
  rules), so calfwd reloads at most once per plan and only when nothing else can work.
- At runtime, interfaces and sources (addInterface/addSource...) and a policy's lists
  (setPolicySettings: ports, protocols, ingress/egress zones...) can change in place. A zone's
  or a policy's *target* cannot (INVALID_SETTING), and a policy's *priority* is silently
  ignored by setPolicySettings: those need the permanent value plus a reload.
- Adding an interface or source that another zone holds fails with ZONE_CONFLICT (permanent
  update2 and runtime addInterface alike): that is an admin's binding, reported, never moved.
- A policy is active only when its ingress and egress zones are active (have an interface
  or a source bound). The default zone's catch-all for unbound interfaces does not count.

Modes:
- "permanent": permanent config first (firewalld restores it inside every reload, atomically
  with its own rules), then the same difference at runtime with the runtime setters, or, when
  an object is missing at runtime or a target/priority differs there, one reload instead.
- "runtime": never writes permanent config and never reloads. Runtime changes vanish at every
  reload (the daemon re-applies them). Zones and policies cannot be created at runtime, so a
  missing one is reported with the two ways out: run once in permanent mode, or (for the zone)
  use a stock zone such as trusted.

Ownership: calfwd only writes the permanent config of a zone or policy it created, recognized
by its description (OWNER_MARK). An object of the same name made by someone else is reported
and left alone; so is every stock zone's content except calfwd's own interfaces and sources.
"""

from __future__ import annotations

from typing import AbstractSet, Any, Dict, List, Mapping, Sequence, Tuple

from calfwd.desired import FirewalldDesired, PolicySpec, ZoneSpec
from calfwd.plan.firewalld.model import (PSEUDO_ZONES, AddToZone, Binding, CreatePolicy, CreateZone,
                                         CreateService, FirewalldActual, FirewalldPlan, ObjectState, Op, Reload,
                                         RemoveFromZone, RemovePolicy, RemoveZone, SetPolicyRuntime, UpdatePolicy,
                                         UpdateService, UpdateZone, freeze)
from calfwd.plan.firewalld.settings import (EARLIER, OWNER_MARK, POLICY_BOOLS, POLICY_FIXED, POLICY_LISTS,
                                            diff_text, is_ours, items, members, named_by_others, orphans, policy_changes,
                                            policy_settings, policy_summary, service_changes, service_settings,
                                            zone_settings)



def _elsewhere(bindings: Mapping[Binding, str], item: Binding, zone: str,
               free: AbstractSet[str] = frozenset()) -> str:
    """The zone other than `zone` holding item; calfwd's own orphaned zones (`free`) don't count."""
    other = str(bindings.get(item) or "")
    return "" if other in ("", zone) or other in free else other


def _conflict_text(item: Binding, zone: str, perm: str, rt: str) -> str:
    kind, name = item
    if perm and rt and perm == rt:
        where = f"zone '{perm}' (permanent and runtime)"
    elif perm and rt:
        where = f"zone '{perm}' (permanent) and zone '{rt}' (runtime)"
    elif perm:
        where = f"zone '{perm}' (permanent)"
    else:
        where = f"zone '{rt}' (runtime)"
    return (f"{kind} {name} is bound to {where} by someone else; calfwd wants it in '{zone}' "
            f"and leaves it there (move it: firewall-cmd [--permanent] --zone={zone} "
            f"--change-{kind}={name}; or drop it from calfwd's config)")


def _inactive_warnings(desired: FirewalldDesired, actual: FirewalldActual, specs: Sequence[PolicySpec],
                       covered: str = "") -> List[str]:
    """A policy whose zones have nothing bound is never rendered by firewalld (covered: the
    catch-all zone that gets calfwd's host service instead)."""
    out = []
    for spec in specs:
        for zone in tuple(spec.ingress_zones) + tuple(spec.egress_zones):
            if zone in PSEUDO_ZONES or zone == desired.zone.name or zone in actual.active_zones \
                    or (zone == covered and spec.name == (desired.host_service.name if desired.host_service else "")):
                continue
            out.append(f"policy '{spec.name}' has no effect: zone '{zone}' has no interface or source "
                       "bound at runtime, and firewalld only applies policies between zones that have "
                       "one (its default-zone catch-all does not count). Bind the uplink, e.g. "
                       f"firewall-cmd --permanent --zone={zone} --add-interface=<uplink> and the same "
                       "without --permanent (NetworkManager does this for the interfaces it manages)")
    return out


def _disabled(desired: FirewalldDesired, actual: FirewalldActual) -> List[str]:
    """firewalld 2.4+ can disable a policy (its `disable` flag): loaded, listed, and applying
    nothing. calfwd never turns it back on (someone chose that); it says what stays shut."""
    return [f"policy '{spec.name}' is disabled in firewalld (firewall-cmd --policy={spec.name} "
            f"--info shows it): {_PURPOSE.get(i, 'its traffic')} stays rejected until it is enabled again"
            for i, spec in enumerate(desired.policies)
            if (actual.policy(spec.name).runtime or {}).get("disable")]


_PURPOSE = {0: "forwarding into pods (routed peers, NodePort backends)",
            1: "Calico's host ports (BGP, IP-in-IP, VXLAN, Typha, WireGuard)"}


def _zones_missing(pspec: PolicySpec, zone: str, zone_usable: bool, zones: AbstractSet[str],
                   where: str, why_unusable: str) -> str:
    """Why a policy cannot be planned in either mode because of the zones it names, or ""."""
    refs = [r for r in tuple(pspec.ingress_zones) + tuple(pspec.egress_zones) if r not in PSEUDO_ZONES]
    if zone in refs and not zone_usable:
        return f"policy '{pspec.name}' left alone: it refers to zone '{zone}', {why_unusable} (see above)"
    missing = [r for r in refs if r not in zones]
    if missing:
        return (f"policy '{pspec.name}' left alone: zone '{missing[0]}' does not exist in "
                f"firewalld's {where} configuration")
    return ""


def plan(desired: FirewalldDesired, actual: FirewalldActual) -> FirewalldPlan:
    """The operations that make firewalld match `desired`; empty when it already does."""
    if desired.mode == "runtime":
        return _plan_runtime(desired, actual)
    return _plan_permanent(desired, actual)


def _zone_bindings(desired: FirewalldDesired, actual: FirewalldActual, permanent: bool,
                   free: AbstractSet[str] = frozenset()):
    """calfwd's items that someone else's zone holds, and one conflict line per item."""
    zone = desired.zone.name
    blocked_perm: Dict[Binding, str] = {}
    blocked_rt: Dict[Binding, str] = {}
    conflicts = []
    for item in items(desired.zone):
        perm = _elsewhere(actual.bindings_permanent, item, zone, free) if permanent else ""
        rt = _elsewhere(actual.bindings_runtime, item, zone, free)
        if perm:
            blocked_perm[item] = perm
        if rt:
            blocked_rt[item] = rt
        if perm or rt:
            conflicts.append(_conflict_text(item, zone, perm, rt))
    return blocked_perm, blocked_rt, conflicts


def _runtime_zone_ops(spec: ZoneSpec, runtime: Mapping[str, Any], blocked: Mapping[Binding, str],
                      remove_extras: bool) -> List[Op]:
    """Runtime bindings: add what is missing; in calfwd's own zone also drop what it did not ask for."""
    ops: List[Op] = []
    wanted = items(spec)
    for kind, item in wanted:
        if item not in members(runtime, kind) and (kind, item) not in blocked:
            ops.append(AddToZone(spec.name, kind, item, permanent=False))
    if remove_extras:
        for kind in ("interface", "source"):
            for item in members(runtime, kind):
                if (kind, item) not in wanted:
                    ops.append(RemoveFromZone(spec.name, kind, item, permanent=False,
                                              detail="not in calfwd's config"))
    return ops


def _orphan_ops(desired: FirewalldDesired, actual: FirewalldActual,
                held: Mapping[Binding, str]) -> Tuple[List[Op], List[str], List[str]]:
    """What calfwd made under names the config no longer has, removed once the configured
    objects exist: (ops, reload reasons, conflicts). The items the configured zone wants move
    first (out of the old zone, into the new: firewalld refuses an item in two zones), then the
    old policies go, then the old zones, unless a policy calfwd did not make still names one."""
    zones, policies = orphans(actual, desired.zone.description)
    ops: List[Op] = []
    for (kind, item), old in held.items():
        ops.append(RemoveFromZone(old, kind, item, permanent=True, detail="moving to the configured zone"))
        ops.append(AddToZone(desired.zone.name, kind, item, permanent=True))
    ops += [RemovePolicy(p.name, detail=EARLIER) for p in policies]
    reload = [f"unload policy '{p.name}' ({EARLIER})" for p in policies if p.runtime is not None]
    if held:  # the runtime bindings follow with the reload (a runtime add would conflict)
        reload.append(f"move {', '.join(item for _kind, item in held)} to zone '{desired.zone.name}'")
    conflicts = []
    for oz in zones:
        users = named_by_others(oz.name, actual, desired.zone.description)
        if users:
            conflicts.append(f"zone '{oz.name}' is {EARLIER}, but policy '{users[0]}' (not calfwd's) names "
                             "it: calfwd leaves the zone, since deleting it would make firewalld's next "
                             "reload fail; change that policy, then calfwd removes it")
            continue
        ops.append(RemoveZone(oz.name, detail=EARLIER))
        if oz.runtime is not None:
            reload.append(f"unload zone '{oz.name}' ({EARLIER})")
    return ops, reload, conflicts


def _catch_all(desired: FirewalldDesired, actual: FirewalldActual,
               permanent: bool) -> Tuple[List[Op], List[Op], List[str], List[str], str]:
    """calfwd's host service in the default zone while that zone has nothing bound on a
    firewalld < 2.0 (desired.catch_all_zone): (permanent ops, runtime ops, reload reasons,
    conflicts, the zone now covered or ""). Once something is bound there the host policy
    applies, and calfwd takes its entry out again."""
    svc, zone = desired.host_service, desired.catch_all_zone
    if svc is None or not zone:
        return [], [], [], [], ""
    have = actual.service or ObjectState(svc.name)
    where = actual.catch_all or ObjectState(zone)
    in_perm = svc.name in members(where.permanent, "service")
    in_rt = svc.name in members(where.runtime, "service")
    perm: List[Op] = []
    rt: List[Op] = []
    if zone in actual.active_zones:
        why = f"zone '{zone}' has an interface bound now: policy '{svc.name}' applies"
        if in_perm and permanent:
            perm.append(RemoveFromZone(zone, "service", svc.name, permanent=True, detail=why))
        if in_rt:
            rt.append(RemoveFromZone(zone, "service", svc.name, permanent=False, detail=why))
        return perm, rt, [], [], ""
    if have.permanent is not None and not is_ours(have.permanent, svc.description):
        return [], [], [], [f"service '{svc.name}' exists but was not created by calfwd: calfwd cannot "
                            f"open Calico's host ports in zone '{zone}' for its catch-all"], ""
    if not permanent:
        if have.runtime is None:
            return [], [], [], [f"zone '{zone}' has nothing bound (its catch-all carries the uplink), so "
                                f"firewalld < 2.0 never applies policy '{svc.name}'; runtime mode cannot "
                                "create calfwd's service for it: bind the uplink, or run `calfwd apply` once "
                                "with mode = \"permanent\""], ""
        if not in_rt:
            rt.append(AddToZone(zone, "service", svc.name, permanent=False))
        return [], rt, [], [], zone
    reload: List[str] = []
    detail = f"Calico's host ports for zone '{zone}', whose catch-all the host policy cannot reach"
    if have.permanent is None:
        perm.append(CreateService(svc.name, freeze(service_settings(svc)), detail=detail))
        reload.append(f"service '{svc.name}' is new")
    else:
        changes = service_changes(svc, have.permanent)
        if changes:
            perm.append(UpdateService(svc.name, freeze(changes), detail=", ".join(sorted(changes))))
            reload.append(f"service '{svc.name}' changed")
    if not in_perm:
        perm.append(AddToZone(zone, "service", svc.name, permanent=True))
    if have.runtime is None and not reload:
        reload.append(f"service '{svc.name}' is not loaded at runtime")
    if not reload and not in_rt:
        rt.append(AddToZone(zone, "service", svc.name, permanent=False))
    return perm, rt, reload, [], zone


def _plan_permanent(desired: FirewalldDesired, actual: FirewalldActual) -> FirewalldPlan:
    spec = desired.zone
    z = actual.zone
    orphan_zones, _ = orphans(actual, spec.description)
    blocked_perm, blocked_rt, conflicts = _zone_bindings(desired, actual, permanent=True,
                                                         free={o.name for o in orphan_zones})
    # Items an old zone of calfwd's holds move there only after the configured zone exists.
    held = {(kind, item): oz.name for oz in orphan_zones for kind, item in items(spec)
            if item in members(oz.permanent, kind)}
    perm_ops: List[Op] = []
    rt_ops: List[Op] = []
    reload: List[str] = []
    zone_usable = True
    zones_after = set(actual.zones_permanent)

    if z.permanent is None and not spec.owned:
        conflicts.append(f"zone '{spec.name}' does not exist in firewalld's permanent configuration; "
                         "calfwd never creates stock zones: pick a zone that exists")
        zone_usable = False
    elif spec.owned and not is_ours(z.permanent if z.permanent is not None else z.runtime, spec.description) \
            and (z.permanent is not None or z.runtime is not None):
        conflicts.append(f"zone '{spec.name}' exists but was not created by calfwd (its description "
                         f"does not start with '{OWNER_MARK}'); calfwd will not take it over: delete it "
                         "or set [firewalld] zone to another name")
        zone_usable = False
    elif z.permanent is None:
        allowed = [i for i in items(spec) if i not in blocked_perm and i not in held]
        ifaces = [n for k, n in allowed if k == "interface"]
        sources = [n for k, n in allowed if k == "source"]
        detail = f"target {spec.target}, interfaces {', '.join(ifaces) or '(none)'}"
        if sources:
            detail += f", sources {', '.join(sources)}"
        perm_ops.append(CreateZone(spec.name, freeze(zone_settings(spec, ifaces, sources)), detail=detail))
        zones_after.add(spec.name)
    else:
        if spec.owned:
            changes: Dict[str, Any] = {}
            texts = []
            for key, want in (("target", spec.target), ("description", spec.description)):
                have = str(z.permanent.get(key) or "")
                if have != want:
                    changes[key] = want
                    texts.append(diff_text(key, have, want))
            if changes:
                perm_ops.append(UpdateZone(spec.name, freeze(changes), detail=", ".join(texts)))
        wanted = items(spec)
        for kind, item in wanted:
            if item not in members(z.permanent, kind) and (kind, item) not in blocked_perm \
                    and (kind, item) not in held:
                perm_ops.append(AddToZone(spec.name, kind, item, permanent=True))
        if spec.owned:
            for kind in ("interface", "source"):
                for item in members(z.permanent, kind):
                    if (kind, item) not in wanted:
                        perm_ops.append(RemoveFromZone(spec.name, kind, item, permanent=True,
                                                       detail="not in calfwd's config"))

    if zone_usable:
        if z.runtime is None:
            reload.append(f"zone '{spec.name}' is not loaded at runtime")
        else:
            have_target = str(z.runtime.get("target") or "")
            if spec.owned and have_target != spec.target:
                reload.append(f"zone '{spec.name}' has target {have_target or '(none)'} at runtime, "
                              "which firewalld cannot change without a reload")
            rt_ops.extend(_runtime_zone_ops(spec, z.runtime, blocked_rt, remove_extras=spec.owned))

    usable_specs = []
    for pspec in desired.policies:
        p = actual.policy(pspec.name)
        blocked = _zones_missing(pspec, spec.name, zone_usable, zones_after, "permanent",
                                 "which calfwd cannot use")
        if blocked:
            conflicts.append(blocked)
            continue
        present = p.permanent if p.permanent is not None else p.runtime
        if present is not None and not is_ours(present, pspec.description):
            conflicts.append(f"policy '{pspec.name}' exists but was not created by calfwd (its description "
                             f"does not start with '{OWNER_MARK}'); calfwd will not take it over: delete it "
                             "or choose another policy name in [firewalld]")
            continue
        usable_specs.append(pspec)
        if p.permanent is None:
            settings = {k: v for k, v in policy_settings(pspec).items() if v or k in ("priority", "target")}
            perm_ops.append(CreatePolicy(pspec.name, freeze(settings), detail=policy_summary(pspec)))
        else:
            changes, texts = policy_changes(pspec, p.permanent,
                                             ("target", "priority", "description") + POLICY_LISTS + POLICY_BOOLS)
            if changes:
                perm_ops.append(UpdatePolicy(pspec.name, freeze(changes), detail=", ".join(texts)))
        if p.runtime is None:
            reload.append(f"policy '{pspec.name}' is not loaded at runtime")
            continue
        fixed, texts = policy_changes(pspec, p.runtime, POLICY_FIXED)
        if fixed:
            reload.append(f"policy '{pspec.name}' has {', '.join(texts)} at runtime, "
                          "which firewalld cannot change without a reload")
        changes, texts = policy_changes(pspec, p.runtime, POLICY_LISTS + POLICY_BOOLS)
        if changes:
            rt_ops.append(SetPolicyRuntime(pspec.name, freeze(changes), detail=", ".join(texts)))

    c_perm, c_rt, c_reload, c_conflicts, covered = _catch_all(desired, actual, permanent=True)
    perm_ops += c_perm
    rt_ops += c_rt
    reload += c_reload
    conflicts += c_conflicts
    inactive = _inactive_warnings(desired, actual, usable_specs, covered) + _disabled(desired, actual)
    conflicts.extend(inactive)
    if zone_usable and len(usable_specs) == len(desired.policies):
        # Only once the configured objects can take over: never leave Calico with neither.
        ops, why, orphan_conflicts = _orphan_ops(desired, actual, held)
        perm_ops += ops
        reload += why
        conflicts += orphan_conflicts
    elif held or any(orphans(actual, spec.description)):
        conflicts.append("calfwd's objects from an earlier configuration stay until the configured "
                         "ones can be made (see above)")
    if reload:
        # The reload loads the permanent config, which the ops above make complete:
        # runtime changes first would only be redone by it.
        return FirewalldPlan(tuple(perm_ops) + (Reload(tuple(reload)),), tuple(conflicts), tuple(inactive))
    return FirewalldPlan(tuple(perm_ops + rt_ops), tuple(conflicts), tuple(inactive))


def _plan_runtime(desired: FirewalldDesired, actual: FirewalldActual) -> FirewalldPlan:
    """Runtime only: never a permanent write, never a reload; what only those could fix is reported."""
    spec = desired.zone
    z = actual.zone
    old_zones, old_policies = orphans(actual, spec.description)
    free = {o.name for o in old_zones}
    _perm, blocked_rt, conflicts = _zone_bindings(desired, actual, permanent=False, free=free)
    # calfwd's own zone from an earlier configuration gives up the items at runtime; removing
    # the objects themselves takes a permanent write, which runtime mode never does.
    ops: List[Op] = [RemoveFromZone(actual.bindings_runtime[item], item[0], item[1], permanent=False,
                                    detail="for the configured zone")
                     for item in items(spec) if actual.bindings_runtime.get(item) in free]
    conflicts.extend(f"{kind} '{o.name}' is {EARLIER} and stays in firewalld's permanent configuration "
                     f"(runtime mode never removes it): `calfwd cleanup` removes it, or firewall-cmd "
                     f"--permanent --delete-{kind}={o.name} && firewall-cmd --reload"
                     for kind, group in (("zone", old_zones), ("policy", old_policies)) for o in group)
    zone_usable = z.runtime is not None
    if z.runtime is None:
        if spec.owned:
            conflicts.append(
                f"zone '{spec.name}' does not exist in firewalld's runtime configuration, and firewalld "
                "cannot create zones at runtime (mode = \"runtime\"): run `calfwd apply` once with "
                "[firewalld] mode = \"permanent\" (creates it, reloads firewalld once), or set "
                "[firewalld] zone = \"trusted\" (a stock zone)")
        else:
            conflicts.append(f"zone '{spec.name}' does not exist in firewalld's runtime configuration; "
                             "calfwd never creates stock zones: pick a zone that exists")
    else:
        have_target = str(z.runtime.get("target") or "")
        if spec.owned and have_target != spec.target:
            conflicts.append(
                f"zone '{spec.name}' has target {have_target or '(none)'} at runtime and firewalld cannot "
                "change a target at runtime (mode = \"runtime\"): run `calfwd apply` once with "
                f"[firewalld] mode = \"permanent\", or firewall-cmd --permanent --zone={spec.name} "
                f"--set-target={spec.target} && firewall-cmd --reload")
        # Runtime mode cannot have created the zone: it is calfwd's only if it carries the mark
        # (made by an earlier permanent-mode run); otherwise entries others put there stay.
        mine = spec.owned and is_ours(z.permanent if z.permanent is not None else z.runtime,
                                       spec.description)
        ops.extend(_runtime_zone_ops(spec, z.runtime, blocked_rt, remove_extras=mine))

    usable_specs = []
    for pspec in desired.policies:
        p = actual.policy(pspec.name)
        blocked = _zones_missing(pspec, spec.name, zone_usable, actual.zones_runtime, "runtime",
                                 "which does not exist at runtime")
        if blocked:
            conflicts.append(blocked)
            continue
        if p.runtime is None:
            conflicts.append(
                f"policy '{pspec.name}' does not exist in firewalld's runtime configuration, and firewalld "
                "cannot create policies at runtime (mode = \"runtime\"): run `calfwd apply` once with "
                f"[firewalld] mode = \"permanent\" (creates it, reloads firewalld once), or create it: "
                f"firewall-cmd --permanent --new-policy={pspec.name} (ingress "
                f"{', '.join(pspec.ingress_zones)}, egress {', '.join(pspec.egress_zones)}, "
                f"target {pspec.target}) && firewall-cmd --reload")
            continue
        usable_specs.append(pspec)
        fixed, texts = policy_changes(pspec, p.runtime, POLICY_FIXED)
        if fixed:
            conflicts.append(
                f"policy '{pspec.name}' has {', '.join(texts)} at runtime and firewalld cannot change "
                "that at runtime (mode = \"runtime\"): run `calfwd apply` once with [firewalld] mode = "
                f"\"permanent\", or fix it with firewall-cmd --permanent --policy={pspec.name} ... && "
                "firewall-cmd --reload")
        keys: Tuple[str, ...] = POLICY_LISTS + POLICY_BOOLS
        if not is_ours(p.permanent if p.permanent is not None else p.runtime, pspec.description):
            # Someone else's policy (runtime mode cannot have made it). Its zones decide who
            # reaches what it allows: where they differ from calfwd's, adding Calico's ports to
            # it would open them to other zones (a stock ANY -> HOST policy opened BGP to all).
            wired, texts = policy_changes(pspec, p.runtime, ("ingress_zones", "egress_zones"))
            if wired:
                usable_specs.remove(pspec)
                conflicts.append(f"policy '{pspec.name}' was not created by calfwd and its zones differ "
                                 f"({', '.join(texts)}); calfwd adds nothing to it: create a policy of "
                                 f"calfwd's own (mode = \"permanent\" once) or name another")
                continue
            # Same zones: add calfwd's entries, never remove theirs.
            keys = tuple(k for k in keys if k not in ("ingress_zones", "egress_zones"))
        changes, texts = policy_changes(pspec, p.runtime, keys, additive=keys != POLICY_LISTS + POLICY_BOOLS)
        if changes:
            ops.append(SetPolicyRuntime(pspec.name, freeze(changes), detail=", ".join(texts)))

    _perm, c_rt, _reload, c_conflicts, covered = _catch_all(desired, actual, permanent=False)
    ops += c_rt
    conflicts += c_conflicts
    inactive = _inactive_warnings(desired, actual, usable_specs, covered) + _disabled(desired, actual)
    conflicts.extend(inactive)
    return FirewalldPlan(tuple(ops), tuple(conflicts), tuple(inactive))
