"""What `calfwd apply --offline` writes into firewalld's files, as firewall-offline-cmd runs.

Pure. The files as read (DiskConfig) become the FirewalldActual the online planner takes,
with nothing loaded at runtime; that planner decides, so offline and online can never want
different things (orphans of a rename, someone else's zone of calfwd's name, the catch-all
service of firewalld < 2.0). Only its permanent operations are kept (no runtime exists, no
reload is needed: firewalld loads its files when it starts), each spelled as the tool's
options. The tool, not calfwd, writes the XML: firewalld validates what it is given.

"Bound" here means bound in the files. NetworkManager binds the uplink at runtime, which no
file shows: where that matters (calfwd's service in the default zone of firewalld < 2.0), the
first online run takes it out again, in place, without a reload.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple

from calfwd.desired import STOCK_ZONES, FirewalldDesired
from calfwd.plan.firewalld import online as fw_plan
from calfwd.plan.firewalld.model import (AddToZone, CreatePolicy, CreateService, CreateZone, FirewalldActual,
                                         ObjectState, Op, RemoveFromZone, RemovePolicy, RemoveService,
                                         RemoveZone, UpdatePolicy, UpdateService, UpdateZone)
from calfwd.plan.firewalld.settings import items, members
from calfwd.config.schema import RESERVED_POLICIES

Args = Tuple[str, ...]  # one run of firewall-offline-cmd, without the tool and --system-config


@dataclass(frozen=True)
class DiskConfig:
    """firewalld's permanent configuration from its files: settings dicts as firewalld's D-Bus
    getSettings would give them, the user directory's files over the shipped ones."""

    directory: str
    zones: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    policies: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    services: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One planned operation and the tool runs that carry it out, in order."""

    description: str
    runs: Tuple[Args, ...]


@dataclass(frozen=True)
class OfflineApply:
    steps: Tuple[Step, ...] = ()
    conflicts: Tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.steps


def disk_actual(desired: FirewalldDesired, disk: DiskConfig) -> FirewalldActual:
    """The files as the online planner's input: permanent only, nothing at runtime."""
    name = desired.zone.name
    held: Dict[Tuple[str, str], str] = {}
    for zone in [name] + sorted(z for z in disk.zones if z != name):
        for kind, item in items(desired.zone):
            if item in members(disk.zones.get(zone), kind):
                held.setdefault((kind, item), zone)
    wanted = {p.name for p in desired.policies}
    service = catch_all = None
    if desired.host_service is not None and desired.catch_all_zone:
        service = ObjectState(desired.host_service.name, disk.services.get(desired.host_service.name))
        catch_all = ObjectState(desired.catch_all_zone, disk.zones.get(desired.catch_all_zone))
    return FirewalldActual(
        zone=ObjectState(name, disk.zones.get(name)),
        policies=tuple(ObjectState(p.name, disk.policies.get(p.name)) for p in desired.policies),
        zones_permanent=frozenset(disk.zones),
        active_zones=frozenset(z for z, s in disk.zones.items() if members(s, "interface") or members(s, "source")),
        bindings_permanent={i: held.get(i, "") for i in items(desired.zone)},
        other_zones=tuple(ObjectState(z, disk.zones[z]) for z in sorted(set(disk.zones) - {name} - STOCK_ZONES)),
        other_policies=tuple(ObjectState(p, disk.policies[p])
                             for p in sorted(set(disk.policies) - wanted - RESERVED_POLICIES)),
        service=service, catch_all=catch_all)


def offline_apply_plan(desired: FirewalldDesired, disk: DiskConfig) -> OfflineApply:
    """The online permanent-mode plan for these files, as tool runs. Conflicts about zones with
    nothing bound are left out: only the runtime knows (NetworkManager binds at runtime)."""
    plan = fw_plan.plan(replace(desired, mode="permanent"), disk_actual(desired, disk))
    steps = tuple(Step(op.description, tuple(offline_runs(op, _have(op, disk))))
                  for op in plan.ops if op.permanent)
    return OfflineApply(steps, tuple(c for c in plan.conflicts if c not in plan.blocking))


def _have(op: Op, disk: DiskConfig) -> Mapping[str, Any]:
    table = {"zone": disk.zones, "policy": disk.policies, "service": disk.services}.get(op.obj, {})
    return table.get(getattr(op, "name", ""), {})


# ---------------------------------------------------------------------------------------
# Operations as firewall-offline-cmd options. `--opt=value` so a value is never an option;
# one kind of option per run: the tool silently ignores all but one of --set-target and
# --set-description given together.

_OPTION = {"interfaces": "interface", "sources": "source", "services": "service", "ports": "port",
           "protocols": "protocol", "source_ports": "source-port", "icmp_blocks": "icmp-block",
           "forward_ports": "forward-port", "rich_rules": "rich-rule",
           "ingress_zones": "ingress-zone", "egress_zones": "egress-zone"}
_SCALARS = (("target", "--set-target"), ("priority", "--set-priority"), ("short", "--set-short"),
            ("description", "--set-description"))


def removal_args(op: Op) -> List[str]:
    """A removal (what cleanup runs, too) as one run's options."""
    if isinstance(op, RemovePolicy):
        return [f"--delete-policy={op.name}"]
    if isinstance(op, RemoveZone):
        return [f"--delete-zone={op.name}"]
    if isinstance(op, RemoveService):
        return [f"--delete-service={op.name}"]
    if isinstance(op, RemoveFromZone) and op.permanent and op.kind == "service":
        # Not --remove-service: that is a lokkit option (the default zone), refused with --zone.
        return [f"--zone={op.zone}", f"--remove-service-from-zone={op.item}"]
    if isinstance(op, RemoveFromZone) and op.permanent:
        return [f"--zone={op.zone}", f"--remove-{op.kind}={op.item}"]
    raise ValueError(f"firewall-offline-cmd cannot: {op.description}")


def offline_runs(op: Op, have: Optional[Mapping[str, Any]] = None) -> List[Args]:
    """One permanent operation as tool runs; `have`: the object's settings as on disk (updates
    name what to remove)."""
    if isinstance(op, AddToZone) and op.permanent:
        return [(f"--zone={op.zone}", f"--add-{op.kind}={op.item}")]
    if isinstance(op, (CreateZone, CreatePolicy, CreateService)):
        create = (f"--new-{op.obj}={op.name}",)
        return [create] + _settings_runs(op.obj, op.name, dict(op.settings), {})
    if isinstance(op, (UpdateZone, UpdatePolicy, UpdateService)):
        return _settings_runs(op.obj, op.name, dict(op.settings), have or {})
    return [tuple(removal_args(op))]


def _settings_runs(obj: str, name: str, want: Mapping[str, Any], have: Mapping[str, Any]) -> List[Args]:
    select = f"--{obj}={name}"
    runs: List[Args] = [(select, f"{flag}={want[key]}") for key, flag in _SCALARS if key in want]
    for key, option in _OPTION.items():
        if key not in want:
            continue
        wanted = [_spell(key, v) for v in want[key] or ()]
        present = [_spell(key, v) for v in have.get(key) or ()]
        gone = [v for v in present if v not in wanted]
        new = [v for v in wanted if v not in present]
        if gone:
            remove = "--remove-service-from-" + obj if key == "services" else f"--remove-{option}"
            runs.append((select,) + tuple(f"{remove}={v}" for v in gone))
        if new:
            runs.append((select,) + tuple(f"--add-{option}={v}" for v in new))
    if "masquerade" in want and bool(want["masquerade"]) != bool(have.get("masquerade")):
        runs.append((select, "--add-masquerade" if want["masquerade"] else "--remove-masquerade"))
    return runs


def _spell(key: str, value: Any) -> str:
    """One list entry as the tool spells it: '179/tcp'; 'port=80:proto=tcp:toport=8080'."""
    if key in ("ports", "source_ports"):
        return "/".join(str(v) for v in value)
    if key == "forward_ports":
        port, proto, to_port, to_addr = (tuple(str(v) for v in value) + ("", "", "", ""))[:4]
        return f"port={port}:proto={proto}" + (f":toport={to_port}" if to_port else "") + \
            (f":toaddr={to_addr}" if to_addr else "")
    return str(value)
