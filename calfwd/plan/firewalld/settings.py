"""Normalising and comparing firewalld's settings, so that spelling never looks like a change.

Pure. firewalld omits empty lists, False and 0 from its settings dicts, lists ports in any
order and range split, and the planner must see none of that as a difference. Also what
calfwd sends for its own zone and policies, and how it recognises them as its own.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from calfwd.desired import PolicySpec, ZoneSpec
from calfwd.plan.firewalld.model import Binding

OWNER_MARK = "Managed by calfwd"

# Policy keys calfwd owns entirely (lists and the one boolean); anything not desired is emptied.
POLICY_LISTS = ("ingress_zones", "egress_zones", "ports", "protocols", "services", "source_ports",
                "icmp_blocks", "forward_ports", "rich_rules")
POLICY_BOOLS = ("masquerade",)
# What firewalld cannot change at runtime: only a reload applies the permanent value.
POLICY_FIXED = ("target", "priority")


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


def policy_value(settings: Mapping[str, Any], key: str) -> Any:
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


def diff_text(key: str, have: Any, want: Any) -> str:
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


def service_settings(spec: Any) -> Dict[str, Any]:
    """What addService2 gets for calfwd's host service (a desired.ServiceSpec)."""
    return {"short": spec.name, "description": spec.description, "ports": canonical_ports(spec.ports),
            "protocols": tuple(spec.protocols)}


def service_changes(spec: Any, have: Mapping[str, Any]) -> Dict[str, Any]:
    """The keys of calfwd's service whose value differs (ports compared by number)."""
    want = service_settings(spec)
    return {key: want[key] for key in ("description", "ports", "protocols")
            if policy_value(have, key) != policy_value(want, key)}


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
        "rich_rules": tuple(spec.rich_rules),
    }
    for key in POLICY_LISTS:
        settings.setdefault(key, ())
    for key in POLICY_BOOLS:
        settings.setdefault(key, False)
    return settings


def policy_summary(spec: PolicySpec) -> str:
    parts = [f"{', '.join(spec.ingress_zones)} -> {', '.join(spec.egress_zones)}",
             f"target {spec.target}", f"priority {spec.priority}"]
    if spec.ports:
        parts.append("ports " + " ".join(f"{p}/{proto}" for p, proto in canonical_ports(spec.ports)))
    if spec.protocols:
        parts.append("protocols " + " ".join(spec.protocols))
    if spec.rich_rules:
        parts.append("rich rules " + "; ".join(spec.rich_rules))
    return ", ".join(parts)


def policy_changes(spec: PolicySpec, have: Mapping[str, Any], keys: Sequence[str],
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
        h, w = policy_value(have, key), policy_value({key: want_value}, key)
        if h != w:
            changes[key] = want_value
            texts.append(diff_text(key, h, w))
    return changes, texts


EARLIER = "calfwd's, from an earlier configuration"


def orphans(actual: Any, description: str) -> Tuple[Tuple[Any, ...], Tuple[Any, ...]]:
    """(zones, policies) calfwd made under names the config no longer has: found by their
    description, never by name, so a rename in the config leaves nothing behind."""
    return (tuple(o for o in actual.other_zones if is_ours(o.permanent, description)),
            tuple(o for o in actual.other_policies if is_ours(o.permanent, description)))


def named_by_others(zone: str, actual: Any, description: str) -> List[str]:
    """Policies calfwd did not make that name `zone`: deleting it would make firewalld's next
    reload (and start) fail on them."""
    return [p.name for p in actual.other_policies
            if not is_ours(p.permanent, description)
            and zone in tuple((p.permanent or {}).get("ingress_zones") or ()) + tuple((p.permanent or {}).get("egress_zones") or ())]


def is_ours(settings: Optional[Mapping[str, Any]], description: str) -> bool:
    text = str((settings or {}).get("description") or "")
    return text.startswith(OWNER_MARK) or bool(description and text == description)


def items(spec: ZoneSpec) -> List[Binding]:
    return [("interface", i) for i in spec.interfaces] + [("source", s) for s in spec.sources]


def members(settings: Optional[Mapping[str, Any]], kind: str) -> Tuple[str, ...]:
    return tuple(str(x) for x in ((settings or {}).get(kind + "s") or ()))


def send_value(key: str, value: Any) -> Any:
    if key in POLICY_BOOLS:
        return bool(value)
    return tuple(tuple(v) if isinstance(v, (list, tuple)) else v for v in (value or ()))
