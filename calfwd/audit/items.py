"""What one firewalld zone, policy or service lets in, one Item per setting that does.

The audit lists every such setting of calfwd's objects, not only those calfwd sets: what
someone else added to them is exactly what a reviewer must see, marked NOT_CALFWDS.
Settings that only narrow (icmp blocks without inversion, a service's destination) are not
listed; masquerade is, as it lets forwarded traffic out under this host's address.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Tuple

NOT_CALFWDS = "NOT in calfwd's config: someone else added it to calfwd's object"

# (kind, value) -> (why, config key): why calfwd wants the items it wants.
Owners = Mapping[Tuple[str, str], Tuple[str, str]]


@dataclass(frozen=True)
class Item:
    """One thing let through: an interface, a port, a protocol, a rule; why; which config key."""

    kind: str  # interface | source | port | protocol | service | rich rule | target | ... | masquerade source
    value: str
    why: str
    key: str  # the config key that asks for it; "" when calfwd's config does not


def _pair(value: Any) -> str:
    port, proto = value
    return f"{port}/{proto}"


def _forward(value: Any) -> str:
    port, proto, to_port, to_addr = (tuple(value) + ("", "", "", ""))[:4]
    return f"port={port}:proto={proto}:toport={to_port}:toaddr={to_addr}"


# firewalld's settings keys (zone getZoneSettings2, policy getPolicySettings, service
# getServiceSettings2; 0.9 to 2.x) whose every entry lets traffic in.
_LISTS: Tuple[Tuple[str, str, Callable[[Any], str]], ...] = (
    ("interfaces", "interface", str),
    ("sources", "source", str),
    ("services", "service", str),
    ("includes", "service", str),  # a service's included services
    ("ports", "port", _pair),
    ("protocols", "protocol", str),
    ("source_ports", "source port", _pair),
    ("forward_ports", "forward port", _forward),
    ("rich_rules", "rich rule", str),  # policies
    ("rules_str", "rich rule", str),  # zones
    ("modules", "helper", str),  # conntrack helpers accept their related connections
    ("helpers", "helper", str),
)


def accepted(settings: Mapping[str, Any], owners: Owners) -> Tuple[Item, ...]:
    """Every setting in `settings` that lets traffic in, sorted; those `owners` does not name
    are marked as not calfwd's."""
    found: List[Tuple[str, str]] = [(kind, show(raw)) for key, kind, show in _LISTS
                                    for raw in settings.get(key) or ()]
    if settings.get("masquerade"):
        found.append(("masquerade", "on"))
    if settings.get("icmp_block_inversion"):  # the icmp types listed are then the ones accepted
        found.append(("icmp block inversion", "on"))
        found += [("icmp type", str(t)) for t in settings.get("icmp_blocks") or ()]
    if settings.get("target"):
        found.append(("target", str(settings["target"])))
    unique: Dict[Tuple[str, str], None] = dict.fromkeys(found)
    items = [Item(kind, value, *owners.get((kind, value), (NOT_CALFWDS, ""))) for kind, value in unique]
    return tuple(sorted(items, key=lambda i: (i.kind, _number(i.value))))


def _number(value: str) -> Tuple[int, str]:
    number = value.split("/")[0].split("-")[0]
    return (int(number) if number.isdigit() else 0, value)
