"""What `calfwd cleanup` removes from firewalld's files while firewalld is stopped.

Pure: the zone and policy files as read (OnDisk) in, an OfflinePlan out; the driver
(drivers/firewalld_offline.py) runs it with firewall-offline-cmd. calfwd's objects are found
by the description mark it writes, not by the configured names, so a zone or policy an older
config named differently goes too; one with calfwd's name but without the mark stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Set, Tuple

from calfwd.desired import CALFWD_DESCRIPTION, FirewalldDesired
from calfwd.plan.firewalld.model import Op, RemoveFromZone, RemovePolicy, RemoveService, RemoveZone
from calfwd.plan.firewalld.settings import is_ours, items


@dataclass(frozen=True)
class DiskObject:
    """One zones/NAME.xml or policies/NAME.xml, as far as cleanup needs it."""

    name: str
    description: str = ""
    interfaces: Tuple[str, ...] = ()
    sources: Tuple[str, ...] = ()
    zones: Tuple[str, ...] = ()  # a policy's ingress and egress zones
    services: Tuple[str, ...] = ()  # a zone's services
    unreadable: str = ""  # why the file could not be parsed; "" when it was
    marked: bool = False  # calfwd's mark appears in the raw text (what is left to go by when unreadable)

    @property
    def ours(self) -> bool:
        return is_ours({"description": self.description}, CALFWD_DESCRIPTION)

    def members(self, kind: str) -> Tuple[str, ...]:
        return self.interfaces if kind == "interface" else self.sources


@dataclass(frozen=True)
class OnDisk:
    """firewalld's user configuration directory (/etc/firewalld): only its own zone and policy
    files; the stock ones under /usr/lib/firewalld never carry calfwd's mark or bindings."""

    directory: str
    zones: Tuple[DiskObject, ...] = ()
    policies: Tuple[DiskObject, ...] = ()
    services: Tuple[DiskObject, ...] = ()


@dataclass(frozen=True)
class OfflinePlan:
    """ops run in order; remains: calfwd's objects left in place, each with why (cleanup then
    fails); left_alone: objects with calfwd's configured names that calfwd did not make."""

    ops: Tuple[Op, ...] = ()
    remains: Tuple[str, ...] = ()
    left_alone: Tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.ops and not self.remains


def offline_cleanup_plan(desired: FirewalldDesired, disk: OnDisk) -> OfflinePlan:
    """calfwd's interfaces and sources out of a stock zone first, then its policies, then its
    zones (a zone a policy still names makes firewalld fail to load its configuration).

    A marked zone that a policy calfwd did not make still names is kept and reported: deleting
    it would make firewalld fail at its next start.
    """
    ops: List[Op] = []
    remains: List[str] = []
    left_alone: List[str] = []
    spec = desired.zone
    policy_names = {p.name for p in desired.policies}

    if not spec.owned:
        for z in disk.zones:
            if z.name == spec.name and not z.unreadable:
                ops.extend(RemoveFromZone(spec.name, kind, item, permanent=True)
                           for kind, item in items(spec) if item in z.members(kind))

    staying: Set[str] = set()
    for p in disk.policies:
        if p.unreadable:
            if p.marked or p.name in policy_names:
                remains.append(f"policy '{p.name}' not removed: {p.unreadable}")
        elif p.ours:
            ops.append(RemovePolicy(p.name))
            continue
        elif p.name in policy_names:
            left_alone.append(f"policy '{p.name}' left alone: it was not created by calfwd")
        staying.update(p.zones)

    for z in disk.zones:
        if z.unreadable:
            if z.marked or (spec.owned and z.name == spec.name):
                remains.append(f"zone '{z.name}' not removed: {z.unreadable}")
        elif z.ours:
            if z.name in staying:
                users = ", ".join(sorted(f"'{p.name}'" for p in disk.policies if z.name in p.zones and not p.ours))
                remains.append(f"zone '{z.name}' not removed: policy {users} (not calfwd's) names it, "
                               "and firewalld fails to load a policy whose zone is gone")
            else:
                ops.append(RemoveZone(z.name))
        elif spec.owned and z.name == spec.name:
            left_alone.append(f"zone '{z.name}' left alone: it was not created by calfwd")

    # calfwd's host service (the default zone's catch-all): out of every zone, then gone.
    for svc in disk.services:
        if svc.unreadable:
            if svc.marked:
                remains.append(f"service '{svc.name}' not removed: {svc.unreadable}")
            continue
        if not svc.ours:
            continue
        ops[:0] = [RemoveFromZone(z.name, "service", svc.name, permanent=True)
                   for z in disk.zones if svc.name in z.services and not z.unreadable]
        ops.append(RemoveService(svc.name))
    return OfflinePlan(tuple(ops), tuple(remains), tuple(left_alone))
