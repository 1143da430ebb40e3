"""What `calfwd cleanup` removes from firewalld: calfwd's own objects and entries, nothing else.

Pure, like the planner: read state in (FirewalldActual), operations out (FirewalldPlan).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

from calfwd.desired import FirewalldDesired
from calfwd.plan.firewalld.model import (FirewalldActual, FirewalldPlan, Op, Reload, RemoveFromZone, RemoveService,
                                         RemovePolicy, RemoveZone, SetPolicyRuntime, freeze)
from calfwd.plan.firewalld.settings import (EARLIER, POLICY_LISTS, diff_text, is_ours, items, members,
                                            canonical_ports, named_by_others, orphans, policy_settings,
                                            policy_value, send_value)



def cleanup_plan(desired: FirewalldDesired, actual: FirewalldActual) -> FirewalldPlan:
    """What `calfwd cleanup` does: remove what calfwd made, nothing else.

    Permanent mode: delete calfwd's policies, then its zone (a zone a policy still names
    would make the next reload fail), from the permanent config; then reload once if any
    of them is loaded at runtime, since only a reload unloads a zone or a policy. In a stock
    zone, only calfwd's interfaces and sources are removed (permanent and runtime, no reload).
    Objects not carrying calfwd's description are left alone and reported.

    Runtime mode: the runtime state of calfwd's items and policy lists goes back to what the
    permanent config says (calfwd's runtime-only changes are undone, what someone made
    permanent stays). A zone or policy carrying calfwd's mark in the permanent config was left
    by an earlier run in permanent mode (runtime mode cannot create one): it is deleted as in
    permanent mode, with one reload if it is loaded, or firewalld would bring it back.
    """
    base = _cleanup_runtime(desired, actual) if desired.mode == "runtime" else _cleanup_permanent(desired, actual)
    return _with_service(_with_orphans(base, desired, actual), desired, actual)


def _with_service(base: FirewalldPlan, desired: FirewalldDesired, actual: FirewalldActual) -> FirewalldPlan:
    """calfwd's host service: out of the catch-all zone (runtime and permanent), then gone.
    A service of that name calfwd did not make is left alone."""
    svc, have, where = desired.host_service, actual.service, actual.catch_all
    if svc is None or have is None or where is None:
        return base
    if have.permanent is not None and not is_ours(have.permanent, svc.description):
        return FirewalldPlan(base.ops, base.conflicts + (f"service '{svc.name}' left alone: it was not "
                                                          "created by calfwd",))
    ops: List[Op] = []
    if svc.name in members(where.runtime, "service"):
        ops.append(RemoveFromZone(where.name, "service", svc.name, permanent=False))
    if svc.name in members(where.permanent, "service"):
        ops.append(RemoveFromZone(where.name, "service", svc.name, permanent=True))
    if have.permanent is not None:
        ops.append(RemoveService(svc.name))
    if not ops:
        return base
    head = [op for op in base.ops if not isinstance(op, Reload)]
    tail = tuple(op for op in base.ops if isinstance(op, Reload))
    return FirewalldPlan(tuple(ops) + tuple(head) + tail, base.conflicts)


def _with_orphans(base: FirewalldPlan, desired: FirewalldDesired, actual: FirewalldActual) -> FirewalldPlan:
    """Also what calfwd made under names the config no longer has (found by its description):
    its policies first, its zones last, one reload for everything loaded."""
    zones, policies = orphans(actual, desired.zone.description)
    if not zones and not policies:
        return base
    ops = [op for op in base.ops if not isinstance(op, Reload)]
    reasons = [r for op in base.ops if isinstance(op, Reload) for r in op.reasons]
    reasons += [f"unload {kind} '{o.name}' ({EARLIER})" for kind, group in (("policy", policies), ("zone", zones))
                for o in group if o.runtime is not None]
    notes = list(base.conflicts)
    kept = {z.name for z in zones if named_by_others(z.name, actual, desired.zone.description)}
    notes += [f"zone '{name}' ({EARLIER}) left alone: a policy calfwd did not make names it" for name in sorted(kept)]
    reasons = [r for r in reasons if not any(f"zone '{name}'" in r for name in kept)]
    ops = [RemovePolicy(p.name, detail=EARLIER) for p in policies] + ops + \
          [RemoveZone(z.name, detail=EARLIER) for z in zones if z.name not in kept]
    tail: Tuple[Op, ...] = (Reload(tuple(reasons)),) if reasons else ()
    return FirewalldPlan(tuple(ops) + tail, tuple(notes))


def _cleanup_permanent(desired: FirewalldDesired, actual: FirewalldActual) -> FirewalldPlan:
    spec = desired.zone
    z = actual.zone
    ops: List[Op] = []
    rt_ops: List[Op] = []
    notes: List[str] = []
    reload: List[str] = []

    for pspec in desired.policies:
        p = actual.policy(pspec.name)
        present = p.permanent if p.permanent is not None else p.runtime
        if present is None:
            continue
        if not is_ours(present, pspec.description):
            notes.append(f"policy '{pspec.name}' left alone: it was not created by calfwd")
            continue
        if p.permanent is not None:
            ops.append(RemovePolicy(pspec.name))
        if p.runtime is not None:
            reload.append(f"unload policy '{pspec.name}'")

    if spec.owned:
        present = z.permanent if z.permanent is not None else z.runtime
        if present is not None and not is_ours(present, spec.description):
            notes.append(f"zone '{spec.name}' left alone: it was not created by calfwd")
        elif present is not None and named_by_others(spec.name, actual, spec.description):
            notes.append(f"zone '{spec.name}' left alone: policy '{named_by_others(spec.name, actual, spec.description)[0]}' "
                         "(not calfwd's) names it, and deleting it would make firewalld's next reload fail")
        elif present is not None:
            if z.permanent is not None:
                ops.append(RemoveZone(spec.name))
            if z.runtime is not None:
                reload.append(f"unload zone '{spec.name}'")
    else:
        for kind, item in items(spec):
            if item in members(z.permanent, kind):
                ops.append(RemoveFromZone(spec.name, kind, item, permanent=True))
            if item in members(z.runtime, kind):
                rt_ops.append(RemoveFromZone(spec.name, kind, item, permanent=False))

    # Runtime unbinds first: with FlushAllOnReload=no a reload keeps runtime interface bindings.
    tail: Tuple[Op, ...] = (Reload(tuple(reload)),) if reload else ()
    return FirewalldPlan(tuple(rt_ops + ops) + tail, tuple(notes))


def _cleanup_runtime(desired: FirewalldDesired, actual: FirewalldActual) -> FirewalldPlan:
    spec = desired.zone
    z = actual.zone
    ops: List[Op] = []
    removals: List[Op] = []
    notes: List[str] = []
    reload: List[str] = []
    if z.runtime is not None:
        wanted = items(spec)
        for kind in ("interface", "source"):
            keep = set(members(z.permanent, kind))
            for item in members(z.runtime, kind):
                if item in keep or (not spec.owned and (kind, item) not in wanted):
                    continue
                ops.append(RemoveFromZone(spec.name, kind, item, permanent=False))
    for pspec in desired.policies:
        p = actual.policy(pspec.name)
        if p.permanent is not None and is_ours(p.permanent, pspec.description):
            removals.append(RemovePolicy(pspec.name))
            if p.runtime is not None:
                reload.append(f"unload policy '{pspec.name}'")
            continue
        if p.runtime is None:
            continue
        changes, texts = _calfwds_runtime_entries(pspec, p.runtime, p.permanent or {})
        if changes:
            ops.append(SetPolicyRuntime(pspec.name, freeze(changes), detail=", ".join(texts)))
    if spec.owned and z.permanent is not None:
        if is_ours(z.permanent, spec.description):
            removals.append(RemoveZone(spec.name))
            if z.runtime is not None:
                reload.append(f"unload zone '{spec.name}'")
        else:
            notes.append(f"zone '{spec.name}' left alone: it was not created by calfwd")
    tail: Tuple[Op, ...] = (Reload(tuple(reload)),) if reload else ()
    return FirewalldPlan(tuple(ops + removals) + tail, tuple(notes))


def _calfwds_runtime_entries(pspec: Any, runtime: Mapping[str, Any],
                             permanent: Mapping[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """Someone else's policy in runtime mode: take out only the entries calfwd adds (its ports,
    protocols, rich rules) that the permanent configuration does not have. Whatever else is
    there at runtime (an administrator's own runtime entries) stays."""
    want = policy_settings(pspec)
    changes: Dict[str, Any] = {}
    texts: List[str] = []
    for key in POLICY_LISTS:
        if key in ("ingress_zones", "egress_zones") or not want.get(key):
            continue
        have = [v for v in runtime.get(key) or ()]
        if key == "ports":  # firewalld merges adjacent ports: 5472/tcp + 5473/tcp = 5472-5473/tcp
            keep: Sequence[Any] = _ports_without(have, _ports_without(want[key], permanent.get(key) or ()))
            if policy_value({key: keep}, key) == policy_value(runtime, key):
                continue
            changes[key] = send_value(key, keep)
            texts.append(diff_text(key, policy_value(runtime, key), policy_value({key: keep}, key)))
            continue
        mine = {_entry(v) for v in want[key]} - {_entry(v) for v in permanent.get(key) or ()}
        keep = [v for v in have if _entry(v) not in mine]
        if len(keep) != len(have):
            changes[key] = send_value(key, keep)
            texts.append(diff_text(key, policy_value(runtime, key), policy_value({key: keep}, key)))
    return changes, texts


def _entry(value: Any) -> Any:
    return tuple(str(x) for x in value) if isinstance(value, (list, tuple)) else str(value)


def _ports_without(ports: Any, minus: Any) -> Tuple[Tuple[str, str], ...]:
    """`ports` less every port number in `minus`, by number and protocol, whatever ranges
    either is spelled in; what remains in firewalld's merged spelling."""
    def numbers(entries: Any) -> Dict[Tuple[str, str], bool]:
        out: Dict[Tuple[str, str], bool] = {}
        for port, proto in entries or ():
            low, _, high = str(port).partition("-")
            if low.isdigit() and (high.isdigit() or not high):
                for n in range(int(low), int(high or low) + 1):
                    out[(str(n), str(proto))] = True
            else:
                out[(str(port), str(proto))] = True  # a named port: compared as it is
        return out
    gone = numbers(minus)
    return canonical_ports(tuple(k for k in numbers(ports) if k not in gone))
