"""The firewalld layer's contract: what the driver reads, and the operations it executes.

Plain frozen data, no decisions: calfwd/drivers/firewalld.py fills a FirewalldActual and
runs a FirewalldPlan's ops in order; calfwd/plan/firewalld/online.py (decisions) and
calfwd/plan/firewalld/cleanup.py make the plans; calfwd/plan/firewalld/settings.py compares
settings. Settings are firewalld's own dicts (getSettings2 and friends) in plain Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, FrozenSet, Mapping, Optional, Tuple

PSEUDO_ZONES = ("ANY", "HOST")  # policy endpoints that are not zones

# A settings dict frozen into sorted (key, value) pairs; lists become tuples.
Settings = Tuple[Tuple[str, Any], ...]
Binding = Tuple[str, str]  # ("interface" | "source", name)


# ---------------------------------------------------------------------------------------
# What was read


@dataclass(frozen=True)
class FirewalldInfo:
    """firewalld as a whole: for `calfwd status`, HostFacts, the daemon's state wait, and the
    base of doctor's FirewalldState."""

    running: bool = False  # its bus name has an owner and state is RUNNING
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
    # Every other non-stock zone and policy in the permanent config (runtime: {} when loaded):
    # the planner finds by its description what calfwd made under an earlier name.
    other_zones: Tuple[ObjectState, ...] = ()
    other_policies: Tuple[ObjectState, ...] = ()
    # calfwd's host service (permanent and runtime settings, runtime None when not loaded) and
    # the catch-all zone's permanent and runtime settings: read only when desired has one.
    service: Optional["ObjectState"] = None
    catch_all: Optional["ObjectState"] = None

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


# Every operation is a verb on an object ("create" x "zone", ...); the driver dispatches on
# (verb, obj, permanent) in one table. The classes exist so that plans read as sentences.


@dataclass(frozen=True)
class _SettingsOp:
    """Sends a settings dict for one named zone or policy."""

    name: str
    settings: Settings
    detail: str = field(default="", compare=False)
    permanent = True
    verb = ""
    obj = ""

    @property
    def description(self) -> str:
        return _describe(f"{self.verb} {self.obj} '{self.name}' ({_where(self.permanent)})", self.detail)


@dataclass(frozen=True)
class CreateZone(_SettingsOp):
    """config.addZone2: a new zone in the permanent configuration."""

    verb, obj = "create", "zone"


@dataclass(frozen=True)
class UpdateZone(_SettingsOp):
    """config zone update2 with only the changed keys (never interfaces or sources)."""

    verb, obj = "update", "zone"


@dataclass(frozen=True)
class _RemoveOp:
    """Deletes one named zone or policy from the permanent configuration."""

    name: str
    detail: str = field(default="", compare=False)
    permanent = True
    verb = "delete"
    obj = ""

    @property
    def description(self) -> str:
        return _describe(f"delete {self.obj} '{self.name}' (permanent)", self.detail)


@dataclass(frozen=True)
class CreateService(_SettingsOp):
    """config.addService2: calfwd's host service in the permanent configuration."""

    verb, obj = "create", "service"


@dataclass(frozen=True)
class UpdateService(_SettingsOp):
    verb, obj = "update", "service"


@dataclass(frozen=True)
class RemoveService(_RemoveOp):
    obj = "service"


@dataclass(frozen=True)
class RemoveZone(_RemoveOp):
    obj = "zone"


@dataclass(frozen=True)
class AddToZone:
    """Bind one interface or source. Permanent: read-modify-write of just that list."""

    zone: str
    kind: str  # "interface" or "source"
    item: str
    permanent: bool
    verb, obj = "add", "zone-item"

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
    verb, obj = "remove", "zone-item"

    @property
    def description(self) -> str:
        return _describe(f"remove {self.kind} {self.item} from zone '{self.zone}' "
                         f"({_where(self.permanent)})", self.detail)


@dataclass(frozen=True)
class CreatePolicy(_SettingsOp):
    """config.addPolicy: a new policy in the permanent configuration."""

    verb, obj = "create", "policy"


@dataclass(frozen=True)
class UpdatePolicy(_SettingsOp):
    """config policy update with only the changed keys."""

    verb, obj = "update", "policy"


@dataclass(frozen=True)
class RemovePolicy(_RemoveOp):
    obj = "policy"


@dataclass(frozen=True)
class SetPolicyRuntime(_SettingsOp):
    """setPolicySettings with only the changed list/bool keys: firewalld applies the delta."""

    permanent = False
    verb, obj = "update", "policy"


@dataclass(frozen=True)
class Reload:
    """firewalld reload: loads the permanent configuration; never --complete-reload."""

    reasons: Tuple[str, ...] = field(default=(), compare=False)
    permanent = False
    verb, obj = "reload", "firewalld"

    @property
    def description(self) -> str:
        return _describe("reload firewalld once", "; ".join(self.reasons))


Op = Any  # one of the classes above


def _describe(what: str, detail: str) -> str:
    return f"{what}: {detail}" if detail else what


@dataclass(frozen=True)
class FirewalldPlan:
    """ops run in order; conflicts are problems calfwd reports but will not (or cannot) fix;
    blocking: those among them that keep a Calico path shut (never "in sync")."""

    ops: Tuple[Op, ...] = ()
    conflicts: Tuple[str, ...] = ()
    blocking: Tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.ops

    @property
    def reloads(self) -> int:
        return sum(1 for op in self.ops if isinstance(op, Reload))

    @property
    def writes_permanent(self) -> bool:
        return any(op.permanent for op in self.ops)
