"""What calfwd changes in firewalld: read state in, an ordered list of operations out.

Pure: the driver (calfwd/drivers/firewalld.py) reads firewalld into a FirewalldActual and
executes the FirewalldPlan; every decision is made here, so it is testable without root.

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

from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from calfwd.desired import FirewalldDesired, PolicySpec, ZoneSpec

OWNER_MARK = "Managed by calfwd"
PSEUDO_ZONES = ("ANY", "HOST")  # policy endpoints that are not zones

# A settings dict frozen into sorted (key, value) pairs; lists become tuples.
Settings = Tuple[Tuple[str, Any], ...]
Binding = Tuple[str, str]  # ("interface" | "source", name)

# Policy keys calfwd owns entirely (lists and the one boolean); anything not desired is emptied.
POLICY_LISTS = ("ingress_zones", "egress_zones", "ports", "protocols", "services", "source_ports",
                "icmp_blocks", "forward_ports", "rich_rules")
POLICY_BOOLS = ("masquerade",)
# What firewalld cannot change at runtime: only a reload applies the permanent value.
POLICY_FIXED = ("target", "priority")


# ---------------------------------------------------------------------------------------
# What was read


@dataclass(frozen=True)
class FirewalldInfo:
    """firewalld as a whole: for `calfwd status`, HostFacts and the daemon's state wait."""

    running: bool  # its bus name has an owner and state is RUNNING
    state: str = ""  # "RUNNING", "INIT", "FAILED"; "" when nobody owns the bus name
    version: str = ""
    backend: str = ""  # FirewallBackend: "nftables" or "iptables"
    default_zone: str = ""


@dataclass(frozen=True)
class ObjectState:
    """One zone or policy: its permanent and its runtime settings, None where it does not exist.

    Settings are firewalld's settings dicts (getSettings2 / getZoneSettings2, policy
    getSettings / getPolicySettings) in plain Python: lists as tuples, structs as tuples.
    firewalld omits empty lists and zero values from these dicts.
    """

    name: str
    permanent: Optional[Mapping[str, Any]] = None
    runtime: Optional[Mapping[str, Any]] = None


@dataclass(frozen=True)
class FirewalldActual:
    """Everything the planner looks at, read in one pass (the driver's read())."""

    zone: ObjectState
    policies: Tuple[ObjectState, ...] = ()
    zones_permanent: FrozenSet[str] = frozenset()
    zones_runtime: FrozenSet[str] = frozenset()
    active_zones: FrozenSet[str] = frozenset()  # runtime zones with an interface or source
    # For each of calfwd's interfaces and sources: the zone holding it ("" = none).
    bindings_permanent: Mapping[Binding, str] = field(default_factory=dict)
    bindings_runtime: Mapping[Binding, str] = field(default_factory=dict)

    def policy(self, name: str) -> ObjectState:
        for state in self.policies:
            if state.name == name:
                return state
        return ObjectState(name)


# ---------------------------------------------------------------------------------------
# Operations: executed in order by the driver. `detail` only feeds the description.


def freeze(settings: Mapping[str, Any]) -> Settings:
    """A settings dict as sorted pairs, so operations stay immutable and comparable."""
    def value(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return tuple(value(x) for x in v)
        return v
    return tuple(sorted((k, value(v)) for k, v in settings.items()))


def _where(permanent: bool) -> str:
    return "permanent" if permanent else "runtime"


@dataclass(frozen=True)
class _SettingsOp:
    """Sends a settings dict for one named zone or policy; subclasses name the D-Bus call."""

    name: str
    settings: Settings
    detail: str = field(default="", compare=False)
    permanent = True
    action = ""

    @property
    def description(self) -> str:
        return _describe(f"{self.action} '{self.name}' ({_where(self.permanent)})", self.detail)


@dataclass(frozen=True)
class CreateZone(_SettingsOp):
    """config.addZone2: a new zone in the permanent configuration."""

    action = "create zone"


@dataclass(frozen=True)
class UpdateZone(_SettingsOp):
    """config zone update2 with only the changed keys (never interfaces or sources)."""

    action = "update zone"


@dataclass(frozen=True)
class _RemoveOp:
    """Deletes one named zone or policy from the permanent configuration."""

    name: str
    permanent = True
    kind = ""

    @property
    def description(self) -> str:
        return f"delete {self.kind} '{self.name}' (permanent)"


@dataclass(frozen=True)
class RemoveZone(_RemoveOp):
    kind = "zone"


@dataclass(frozen=True)
class AddToZone:
    """Bind one interface or source. Permanent: read-modify-write of just that list."""

    zone: str
    kind: str  # "interface" or "source"
    item: str
    permanent: bool

    @property
    def description(self) -> str:
        return f"add {self.kind} {self.item} to zone '{self.zone}' ({_where(self.permanent)})"


@dataclass(frozen=True)
class RemoveFromZone:
    zone: str
    kind: str
    item: str
    permanent: bool
    detail: str = field(default="", compare=False)

    @property
    def description(self) -> str:
        return _describe(f"remove {self.kind} {self.item} from zone '{self.zone}' "
                         f"({_where(self.permanent)})", self.detail)


@dataclass(frozen=True)
class CreatePolicy(_SettingsOp):
    """config.addPolicy: a new policy in the permanent configuration."""

    action = "create policy"


@dataclass(frozen=True)
class UpdatePolicy(_SettingsOp):
    """config policy update with only the changed keys."""

    action = "update policy"


@dataclass(frozen=True)
class RemovePolicy(_RemoveOp):
    kind = "policy"


@dataclass(frozen=True)
class SetPolicyRuntime(_SettingsOp):
    """setPolicySettings with only the changed list/bool keys: firewalld applies the delta."""

    permanent = False
    action = "update policy"


@dataclass(frozen=True)
class Reload:
    """firewalld reload: loads the permanent configuration; never --complete-reload."""

    reasons: Tuple[str, ...] = field(default=(), compare=False)
    permanent = False

    @property
    def description(self) -> str:
        return _describe("reload firewalld once", "; ".join(self.reasons))


Op = Any  # one of the classes above


def _describe(what: str, detail: str) -> str:
    return f"{what}: {detail}" if detail else what


@dataclass(frozen=True)
class FirewalldPlan:
    """ops run in order; conflicts are problems calfwd reports but will not (or cannot) fix."""

    ops: Tuple[Op, ...] = ()
    conflicts: Tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.ops

    @property
    def reloads(self) -> int:
        return sum(1 for op in self.ops if isinstance(op, Reload))

    @property
    def writes_permanent(self) -> bool:
        return any(op.permanent for op in self.ops)


# ---------------------------------------------------------------------------------------
# Normalizing what firewalld returns, so spelling never looks like a difference.


def _strings(value: Any) -> Tuple[str, ...]:
    return tuple(sorted(set(str(v) for v in (value or ()))))


def _port_key(ports: Any) -> Tuple[Any, ...]:
    """Ports as merged numeric ranges per protocol: 51820/udp + 51821/udp == 51820-51821/udp."""
    ranges: Dict[str, List[Tuple[int, int]]] = {}
    names = set()
    for port, proto in (ports or ()):
        low, _, high = str(port).partition("-")
        try:
            a, b = int(low), int(high or low)
        except ValueError:  # a service-style port name: compared literally
            names.add((str(proto), str(port)))
            continue
        ranges.setdefault(str(proto), []).append((min(a, b), max(a, b)))
    merged = []
    for proto in sorted(ranges):
        spans = sorted(ranges[proto])
        cur_a, cur_b = spans[0]
        for a, b in spans[1:]:
            if a <= cur_b + 1:
                cur_b = max(cur_b, b)
            else:
                merged.append((proto, cur_a, cur_b))
                cur_a, cur_b = a, b
        merged.append((proto, cur_a, cur_b))
    return tuple(merged) + tuple(sorted(names))


def canonical_ports(ports: Any) -> Tuple[Tuple[str, str], ...]:
    """The spelling calfwd sends: merged ranges, sorted by protocol then port."""
    return _expand(_port_key(ports))


def _tuples(value: Any) -> Tuple[Tuple[str, ...], ...]:
    return tuple(sorted(set(tuple(str(x) for x in v) for v in (value or ()))))


def _policy_value(settings: Mapping[str, Any], key: str) -> Any:
    """A comparable value of one policy key; firewalld omits empty lists, False and 0."""
    value = settings.get(key)
    if key == "ports":
        return _port_key(value)
    if key in ("source_ports", "forward_ports"):
        return _tuples(value)
    if key in POLICY_LISTS:
        return _strings(value)
    if key in POLICY_BOOLS:
        return bool(value)
    if key == "priority":
        return int(value or 0)
    return str(value or "")


def _expand(key: Tuple[Any, ...]) -> Tuple[Tuple[str, str], ...]:
    """Back from _port_key entries to (port, proto) pairs."""
    out = []
    for entry in key:
        if len(entry) == 3:
            proto, a, b = entry
            out.append((str(a) if a == b else f"{a}-{b}", proto))
        else:
            out.append((entry[1], entry[0]))
    return tuple(out)


def _diff_text(key: str, have: Any, want: Any) -> str:
    """'ports +4789/udp -5473/tcp' for lists, 'target DROP -> ACCEPT' for scalars."""
    if key == "description":
        return "description"
    if not isinstance(want, tuple):
        return f"{key} {have if have != '' else '(none)'} -> {want}"
    if key == "ports":
        h = set(f"{p}/{proto}" for p, proto in _expand(have))
        w = set(f"{p}/{proto}" for p, proto in _expand(want))
    else:
        h = set("/".join(v) if isinstance(v, tuple) else v for v in have)
        w = set("/".join(v) if isinstance(v, tuple) else v for v in want)
    parts = [f"+{x}" for x in sorted(w - h)] + [f"-{x}" for x in sorted(h - w)]
    return f"{key} {' '.join(parts)}"


# ---------------------------------------------------------------------------------------
# Desired settings


def zone_settings(spec: ZoneSpec, interfaces: Sequence[str], sources: Sequence[str]) -> Dict[str, Any]:
    """What addZone2 gets for calfwd's own zone."""
    settings: Dict[str, Any] = {"target": spec.target, "description": spec.description}
    if interfaces:
        settings["interfaces"] = tuple(interfaces)
    if sources:
        settings["sources"] = tuple(sources)
    return settings


def policy_settings(spec: PolicySpec) -> Dict[str, Any]:
    """The full policy as calfwd wants it; keys calfwd owns but does not use are empty."""
    settings: Dict[str, Any] = {
        "target": spec.target,
        "priority": spec.priority,
        "description": spec.description,
        "ingress_zones": tuple(spec.ingress_zones),
        "egress_zones": tuple(spec.egress_zones),
        "ports": canonical_ports(spec.ports),
        "protocols": tuple(spec.protocols),
    }
    for key in POLICY_LISTS:
        settings.setdefault(key, ())
    for key in POLICY_BOOLS:
        settings.setdefault(key, False)
    return settings


def _policy_summary(spec: PolicySpec) -> str:
    parts = [f"{', '.join(spec.ingress_zones)} -> {', '.join(spec.egress_zones)}",
             f"target {spec.target}", f"priority {spec.priority}"]
    if spec.ports:
        parts.append("ports " + " ".join(f"{p}/{proto}" for p, proto in canonical_ports(spec.ports)))
    if spec.protocols:
        parts.append("protocols " + " ".join(spec.protocols))
    return ", ".join(parts)


def _policy_changes(spec: PolicySpec, have: Mapping[str, Any], keys: Sequence[str],
                    additive: bool = False) -> Tuple[Dict[str, Any], List[str]]:
    """The keys among `keys` whose value differs, with the value to send and a text.

    additive: for a policy calfwd did not create, lists only gain calfwd's entries
    (nothing is removed) and booleans are left as they are.
    """
    want = policy_settings(spec)
    changes: Dict[str, Any] = {}
    texts: List[str] = []
    for key in keys:
        if additive and key in POLICY_BOOLS:
            continue
        if additive and key in POLICY_LISTS:
            merged = tuple(have.get(key) or ()) + tuple(want[key])
            want_value: Any = canonical_ports(merged) if key == "ports" else \
                tuple(dict.fromkeys(tuple(v) if isinstance(v, (list, tuple)) else v for v in merged))
        else:
            want_value = want[key]
        h, w = _policy_value(have, key), _policy_value({key: want_value}, key)
        if h != w:
            changes[key] = want_value
            texts.append(_diff_text(key, h, w))
    return changes, texts


def _is_ours(settings: Optional[Mapping[str, Any]], description: str) -> bool:
    text = str((settings or {}).get("description") or "")
    return text.startswith(OWNER_MARK) or bool(description and text == description)


def _items(spec: ZoneSpec) -> List[Binding]:
    return [("interface", i) for i in spec.interfaces] + [("source", s) for s in spec.sources]


def _members(settings: Optional[Mapping[str, Any]], kind: str) -> Tuple[str, ...]:
    return tuple(str(x) for x in ((settings or {}).get(kind + "s") or ()))


def _elsewhere(bindings: Mapping[Binding, str], item: Binding, zone: str) -> str:
    other = str(bindings.get(item) or "")
    return "" if other in ("", zone) else other


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


def _inactive_warnings(desired: FirewalldDesired, actual: FirewalldActual, specs: Sequence[PolicySpec]) -> List[str]:
    """A policy whose zones have nothing bound is never rendered by firewalld."""
    out = []
    for spec in specs:
        for zone in tuple(spec.ingress_zones) + tuple(spec.egress_zones):
            if zone in PSEUDO_ZONES or zone == desired.zone.name or zone in actual.active_zones:
                continue
            out.append(f"policy '{spec.name}' has no effect: zone '{zone}' has no interface or source "
                       "bound at runtime, and firewalld only applies policies between zones that have "
                       "one (its default-zone catch-all does not count). Bind the uplink, e.g. "
                       f"firewall-cmd --permanent --zone={zone} --add-interface=<uplink> and the same "
                       "without --permanent (NetworkManager does this for the interfaces it manages)")
    return out


# ---------------------------------------------------------------------------------------
# Planning


def plan(desired: FirewalldDesired, actual: FirewalldActual) -> FirewalldPlan:
    """The operations that make firewalld match `desired`; empty when it already does."""
    if desired.mode == "runtime":
        return _plan_runtime(desired, actual)
    return _plan_permanent(desired, actual)


def _zone_bindings(desired: FirewalldDesired, actual: FirewalldActual, permanent: bool):
    """calfwd's items that someone else's zone holds, and one conflict line per item."""
    zone = desired.zone.name
    blocked_perm: Dict[Binding, str] = {}
    blocked_rt: Dict[Binding, str] = {}
    conflicts = []
    for item in _items(desired.zone):
        perm = _elsewhere(actual.bindings_permanent, item, zone) if permanent else ""
        rt = _elsewhere(actual.bindings_runtime, item, zone)
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
    wanted = _items(spec)
    for kind, item in wanted:
        if item not in _members(runtime, kind) and (kind, item) not in blocked:
            ops.append(AddToZone(spec.name, kind, item, permanent=False))
    if remove_extras:
        for kind in ("interface", "source"):
            for item in _members(runtime, kind):
                if (kind, item) not in wanted:
                    ops.append(RemoveFromZone(spec.name, kind, item, permanent=False,
                                              detail="not in calfwd's config"))
    return ops


def _plan_permanent(desired: FirewalldDesired, actual: FirewalldActual) -> FirewalldPlan:
    spec = desired.zone
    z = actual.zone
    blocked_perm, blocked_rt, conflicts = _zone_bindings(desired, actual, permanent=True)
    perm_ops: List[Op] = []
    rt_ops: List[Op] = []
    reload: List[str] = []
    zone_usable = True
    zones_after = set(actual.zones_permanent)

    if z.permanent is None and not spec.owned:
        conflicts.append(f"zone '{spec.name}' does not exist in firewalld's permanent configuration; "
                         "calfwd never creates stock zones: pick a zone that exists")
        zone_usable = False
    elif spec.owned and not _is_ours(z.permanent if z.permanent is not None else z.runtime, spec.description) \
            and (z.permanent is not None or z.runtime is not None):
        conflicts.append(f"zone '{spec.name}' exists but was not created by calfwd (its description "
                         f"does not start with '{OWNER_MARK}'); calfwd will not take it over: delete it "
                         "or set [firewalld] zone to another name")
        zone_usable = False
    elif z.permanent is None:
        allowed = [i for i in _items(spec) if i not in blocked_perm]
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
                    texts.append(_diff_text(key, have, want))
            if changes:
                perm_ops.append(UpdateZone(spec.name, freeze(changes), detail=", ".join(texts)))
        wanted = _items(spec)
        for kind, item in wanted:
            if item not in _members(z.permanent, kind) and (kind, item) not in blocked_perm:
                perm_ops.append(AddToZone(spec.name, kind, item, permanent=True))
        if spec.owned:
            for kind in ("interface", "source"):
                for item in _members(z.permanent, kind):
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
        refs = [r for r in tuple(pspec.ingress_zones) + tuple(pspec.egress_zones) if r not in PSEUDO_ZONES]
        if spec.name in refs and not zone_usable:
            conflicts.append(f"policy '{pspec.name}' left alone: it refers to zone '{spec.name}', "
                             "which calfwd cannot use (see above)")
            continue
        missing = [r for r in refs if r not in zones_after]
        if missing:
            conflicts.append(f"policy '{pspec.name}' left alone: zone '{missing[0]}' does not exist in "
                             "firewalld's permanent configuration")
            continue
        present = p.permanent if p.permanent is not None else p.runtime
        if present is not None and not _is_ours(present, pspec.description):
            conflicts.append(f"policy '{pspec.name}' exists but was not created by calfwd (its description "
                             f"does not start with '{OWNER_MARK}'); calfwd will not take it over: delete it "
                             "or choose another policy name in [firewalld]")
            continue
        usable_specs.append(pspec)
        if p.permanent is None:
            settings = {k: v for k, v in policy_settings(pspec).items() if v or k in ("priority", "target")}
            perm_ops.append(CreatePolicy(pspec.name, freeze(settings), detail=_policy_summary(pspec)))
        else:
            changes, texts = _policy_changes(pspec, p.permanent,
                                             ("target", "priority", "description") + POLICY_LISTS + POLICY_BOOLS)
            if changes:
                perm_ops.append(UpdatePolicy(pspec.name, freeze(changes), detail=", ".join(texts)))
        if p.runtime is None:
            reload.append(f"policy '{pspec.name}' is not loaded at runtime")
            continue
        fixed, texts = _policy_changes(pspec, p.runtime, POLICY_FIXED)
        if fixed:
            reload.append(f"policy '{pspec.name}' has {', '.join(texts)} at runtime, "
                          "which firewalld cannot change without a reload")
        changes, texts = _policy_changes(pspec, p.runtime, POLICY_LISTS + POLICY_BOOLS)
        if changes:
            rt_ops.append(SetPolicyRuntime(pspec.name, freeze(changes), detail=", ".join(texts)))

    conflicts.extend(_inactive_warnings(desired, actual, usable_specs))
    if reload:
        # The reload loads the permanent config, which the ops above make complete:
        # runtime changes first would only be redone by it.
        return FirewalldPlan(tuple(perm_ops) + (Reload(tuple(reload)),), tuple(conflicts))
    return FirewalldPlan(tuple(perm_ops + rt_ops), tuple(conflicts))


def _plan_runtime(desired: FirewalldDesired, actual: FirewalldActual) -> FirewalldPlan:
    """Runtime only: never a permanent write, never a reload; what only those could fix is reported."""
    spec = desired.zone
    z = actual.zone
    _perm, blocked_rt, conflicts = _zone_bindings(desired, actual, permanent=False)
    ops: List[Op] = []
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
        mine = spec.owned and _is_ours(z.permanent if z.permanent is not None else z.runtime,
                                       spec.description)
        ops.extend(_runtime_zone_ops(spec, z.runtime, blocked_rt, remove_extras=mine))

    usable_specs = []
    for pspec in desired.policies:
        p = actual.policy(pspec.name)
        refs = [r for r in tuple(pspec.ingress_zones) + tuple(pspec.egress_zones) if r not in PSEUDO_ZONES]
        if spec.name in refs and not zone_usable:
            conflicts.append(f"policy '{pspec.name}' left alone: it refers to zone '{spec.name}', "
                             "which does not exist at runtime (see above)")
            continue
        missing = [r for r in refs if r not in actual.zones_runtime]
        if missing:
            conflicts.append(f"policy '{pspec.name}' left alone: zone '{missing[0]}' does not exist in "
                             "firewalld's runtime configuration")
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
        fixed, texts = _policy_changes(pspec, p.runtime, POLICY_FIXED)
        if fixed:
            conflicts.append(
                f"policy '{pspec.name}' has {', '.join(texts)} at runtime and firewalld cannot change "
                "that at runtime (mode = \"runtime\"): run `calfwd apply` once with [firewalld] mode = "
                f"\"permanent\", or fix it with firewall-cmd --permanent --policy={pspec.name} ... && "
                "firewall-cmd --reload")
        keys = POLICY_LISTS + POLICY_BOOLS
        if not _is_ours(p.permanent if p.permanent is not None else p.runtime, pspec.description):
            # Someone else's policy (runtime mode cannot have made it): add calfwd's entries,
            # never remove theirs, never rewire its zones ('ANY' mixes with no other zone).
            keys = tuple(k for k in keys if k not in ("ingress_zones", "egress_zones"))
            wired, texts = _policy_changes(pspec, p.runtime, ("ingress_zones", "egress_zones"))
            if wired:
                conflicts.append(f"policy '{pspec.name}' was not created by calfwd and its zones differ "
                                 f"({', '.join(texts)}); calfwd adds its entries but leaves its zones alone")
        changes, texts = _policy_changes(pspec, p.runtime, keys, additive=keys != POLICY_LISTS + POLICY_BOOLS)
        if changes:
            ops.append(SetPolicyRuntime(pspec.name, freeze(changes), detail=", ".join(texts)))

    conflicts.extend(_inactive_warnings(desired, actual, usable_specs))
    return FirewalldPlan(tuple(ops), tuple(conflicts))


# ---------------------------------------------------------------------------------------
# Cleanup


def cleanup_plan(desired: FirewalldDesired, actual: FirewalldActual) -> FirewalldPlan:
    """What `calfwd cleanup` does: remove what calfwd made, nothing else.

    Permanent mode: delete calfwd's policies, then its zone (a zone a policy still names
    would make the next reload fail), from the permanent config; then reload once if any
    of them is loaded at runtime, since only a reload unloads a zone or a policy. In a stock
    zone, only calfwd's interfaces and sources are removed (permanent and runtime, no reload).
    Objects not carrying calfwd's description are left alone and reported.

    Runtime mode: no permanent write, no reload. The runtime state of calfwd's items and
    policy lists goes back to what the permanent config says (calfwd's runtime-only changes
    are undone, what someone made permanent stays); a calfwd zone or policy that exists in
    the permanent config is reported, since firewalld restores it at its next reload.
    """
    if desired.mode == "runtime":
        return _cleanup_runtime(desired, actual)
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
        if not _is_ours(present, pspec.description):
            notes.append(f"policy '{pspec.name}' left alone: it was not created by calfwd")
            continue
        if p.permanent is not None:
            ops.append(RemovePolicy(pspec.name))
        if p.runtime is not None:
            reload.append(f"unload policy '{pspec.name}'")

    if spec.owned:
        present = z.permanent if z.permanent is not None else z.runtime
        if present is not None and not _is_ours(present, spec.description):
            notes.append(f"zone '{spec.name}' left alone: it was not created by calfwd")
        elif present is not None:
            if z.permanent is not None:
                ops.append(RemoveZone(spec.name))
            if z.runtime is not None:
                reload.append(f"unload zone '{spec.name}'")
    else:
        for kind, item in _items(spec):
            if item in _members(z.permanent, kind):
                ops.append(RemoveFromZone(spec.name, kind, item, permanent=True))
            if item in _members(z.runtime, kind):
                rt_ops.append(RemoveFromZone(spec.name, kind, item, permanent=False))

    # Runtime unbinds first: with FlushAllOnReload=no a reload keeps runtime interface bindings.
    tail: Tuple[Op, ...] = (Reload(tuple(reload)),) if reload else ()
    return FirewalldPlan(tuple(rt_ops + ops) + tail, tuple(notes))


def _cleanup_runtime(desired: FirewalldDesired, actual: FirewalldActual) -> FirewalldPlan:
    spec = desired.zone
    z = actual.zone
    ops: List[Op] = []
    notes: List[str] = []
    if z.runtime is not None:
        wanted = _items(spec)
        for kind in ("interface", "source"):
            keep = set(_members(z.permanent, kind))
            for item in _members(z.runtime, kind):
                if item in keep or (not spec.owned and (kind, item) not in wanted):
                    continue
                ops.append(RemoveFromZone(spec.name, kind, item, permanent=False))
    if spec.owned and z.permanent is not None and _is_ours(z.permanent, spec.description):
        notes.append(f"zone '{spec.name}' stays in firewalld's permanent configuration (mode = \"runtime\" "
                     "never writes it) and comes back at the next reload: run cleanup with [firewalld] "
                     f"mode = \"permanent\", or firewall-cmd --permanent --delete-zone={spec.name}")
    for pspec in desired.policies:
        p = actual.policy(pspec.name)
        if p.runtime is None:
            continue
        if p.permanent is not None:
            base: Mapping[str, Any] = p.permanent
            if _is_ours(p.permanent, pspec.description):
                notes.append(f"policy '{pspec.name}' stays in firewalld's permanent configuration (mode = "
                             "\"runtime\" never writes it): run cleanup with [firewalld] mode = "
                             f"\"permanent\", or firewall-cmd --permanent --delete-policy={pspec.name}")
        else:
            base = {}
        changes: Dict[str, Any] = {}
        texts = []
        for key in POLICY_LISTS + POLICY_BOOLS:
            h, w = _policy_value(p.runtime, key), _policy_value(base, key)
            if h != w:
                changes[key] = _send_value(key, base.get(key))
                texts.append(_diff_text(key, h, w))
        if changes:
            ops.append(SetPolicyRuntime(pspec.name, freeze(changes), detail=", ".join(texts)))
    return FirewalldPlan(tuple(ops), tuple(notes))


def _send_value(key: str, value: Any) -> Any:
    if key in POLICY_BOOLS:
        return bool(value)
    return tuple(tuple(v) if isinstance(v, (list, tuple)) else v for v in (value or ()))
