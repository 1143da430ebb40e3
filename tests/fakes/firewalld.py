"""The one fake firewalld: permanent and runtime zones, policies and services as dicts, changed
by a plan's ops the way firewalld 1.3.3 does (checked in the lab), so "apply, then plan again"
must come out empty. It is a whole calfwd.drivers.FirewalldDriver, so the planners', cleanup's
and the Reconciler's unit tests share it; a test wanting a firewalld that is stopped, refuses
writes or cannot be asked says so with the constructor's flags or a subclass of its own.
The real daemon is in the lab."""

from __future__ import annotations

import copy
from typing import Any, Callable, Dict, List, Optional, Tuple

from calfwd.config import parse
from calfwd.desired import STOCK_ZONES, HostFacts, desired
from calfwd.drivers.errors import RUNNING, STOPPED
from calfwd.judge.blockers import FirewalldPaths
from calfwd.plan.firewalld import online as fp
from calfwd.plan.firewalld.model import (AddToZone, CreatePolicy, CreateService, CreateZone, FirewalldActual,
                                         FirewalldInfo, FirewalldPlan, ObjectState, Reload, RemoveFromZone, RemovePolicy,
                                         RemoveService, RemoveZone, SetPolicyRuntime, UpdatePolicy,
                                         UpdateService, UpdateZone)

BASE = '[calico]\nip_pools = ["198.18.64.0/20"]\n'
STOCK = ("public", "trusted", "internal", "work", "drop")


def want(extra: str = "", **firewalld: Any):
    text = BASE + extra
    if firewalld:
        text += "[firewalld]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in firewalld.items())
    return desired(parse(text, "calfwd.toml"), HostFacts(True, "1.3.3", "public")).firewalld


def _toml(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else f'"{value}"'


class FakeFirewalld:
    """Permanent and runtime zones/policies as dicts; reload copies permanent to runtime.

    running=False: nobody owns firewalld's bus name. fail: every apply() raises
    RuntimeError(fail) (to prove the layers' independence), or, with fail_on (op types), only
    a plan holding one of them. applied counts apply() calls, ops keeps what they carried."""

    def __init__(self, running: bool = True, version: str = "1.3.3", fail: str = "",
                 fail_on: Tuple[type, ...] = ()) -> None:
        self.running = running
        self.version = version
        self.fail = fail
        self.fail_on = fail_on
        self.applied = 0
        self.ops: List[Any] = []
        self.paths = FirewalldPaths()  # what read_paths() answers
        self.perm_zones: Dict[str, Dict[str, Any]] = {z: {"target": "default", "description": z} for z in STOCK}
        self.perm_zones["trusted"]["target"] = "ACCEPT"
        self.perm_zones["public"]["interfaces"] = ["eth0"]  # as NetworkManager binds the uplink
        self.perm_policies: Dict[str, Dict[str, Any]] = {}
        self.perm_services: Dict[str, Dict[str, Any]] = {}
        self.reload()
        self.reloads = 0

    def reload(self) -> None:
        self.rt_zones = copy.deepcopy(self.perm_zones)
        self.rt_policies = copy.deepcopy(self.perm_policies)
        self.rt_services = copy.deepcopy(getattr(self, "perm_services", {}))
        self.reloads = getattr(self, "reloads", 0) + 1

    # -- firewalld as a whole -------------------------------------------------------------

    def state(self) -> Optional[str]:
        return "RUNNING" if self.running else None

    def state_async(self, done: Callable[[Optional[str], Any], None]) -> None:
        done(self.state(), None)

    def reload_async(self, done: Callable[[Any], None]) -> None:
        self.reload()
        done(None)

    def reachability(self) -> Tuple[str, str]:
        return (RUNNING, "") if self.running else (STOPPED, "")

    def info(self) -> FirewalldInfo:
        return FirewalldInfo(self.running, self.state() or "", self.version if self.running else "", "nftables",
                             "public" if self.running else "")

    def facts(self) -> HostFacts:
        return HostFacts(self.running, self.version, "public")

    def read_paths(self) -> FirewalldPaths:
        return self.paths

    def runtime_zone_target(self, name: str) -> str:
        return str(self.rt_zones.get(name, {}).get("target", "default"))

    def zone_runtime(self, name: str) -> Dict[str, Any]:
        return copy.deepcopy(self.rt_zones.get(name, {}))

    def check_permanent_config(self) -> str:
        return ""

    # -- calfwd's objects -----------------------------------------------------------------

    def read(self, d) -> FirewalldActual:
        items = [("interface", i) for i in d.zone.interfaces] + [("source", s) for s in d.zone.sources]

        def zone_of(zones, kind, item):
            return next((n for n, s in zones.items() if item in s.get(kind + "s", ())), "")
        return FirewalldActual(
            zone=ObjectState(d.zone.name, copy.deepcopy(self.perm_zones.get(d.zone.name)),
                             copy.deepcopy(self.rt_zones.get(d.zone.name))),
            policies=tuple(ObjectState(p.name, copy.deepcopy(self.perm_policies.get(p.name)),
                                       copy.deepcopy(self.rt_policies.get(p.name))) for p in d.policies),
            zones_permanent=frozenset(self.perm_zones), zones_runtime=frozenset(self.rt_zones),
            active_zones=frozenset(n for n, s in self.rt_zones.items() if s.get("interfaces") or s.get("sources")),
            bindings_permanent={i: zone_of(self.perm_zones, *i) for i in items},
            bindings_runtime={i: zone_of(self.rt_zones, *i) for i in items},
            other_zones=tuple(ObjectState(n, copy.deepcopy(z), {} if n in self.rt_zones else None)
                              for n, z in sorted(self.perm_zones.items())
                              if n != d.zone.name and n not in STOCK_ZONES),
            other_policies=tuple(ObjectState(n, copy.deepcopy(p), {} if n in self.rt_policies else None)
                                 for n, p in sorted(self.perm_policies.items())
                                 if n not in {q.name for q in d.policies}),
            service=ObjectState(d.host_service.name, copy.deepcopy(self.perm_services.get(d.host_service.name)),
                                {} if d.host_service.name in self.rt_services else None)
            if d.host_service and d.catch_all_zone else None,
            catch_all=ObjectState(d.catch_all_zone, copy.deepcopy(self.perm_zones.get(d.catch_all_zone)),
                                  copy.deepcopy(self.rt_zones.get(d.catch_all_zone)))
            if d.host_service and d.catch_all_zone else None,
        )

    def apply(self, plan) -> None:
        self.applied += 1
        if self.fail and (not self.fail_on or any(isinstance(op, self.fail_on) for op in plan.ops)):
            raise RuntimeError(self.fail)
        self.ops.extend(plan.ops)
        for op in plan.ops:
            if isinstance(op, (CreateZone, CreatePolicy)):
                target = self.perm_zones if isinstance(op, CreateZone) else self.perm_policies
                assert op.name not in target, "NAME_CONFLICT"
                for kind in ("interfaces", "sources"):
                    for item in dict(op.settings).get(kind, ()):
                        assert not [n for n, z in target.items() if item in z.get(kind, ())], "ZONE_CONFLICT"
                target[op.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in op.settings}
            elif isinstance(op, (UpdateZone, UpdatePolicy)):
                target = self.perm_zones if isinstance(op, UpdateZone) else self.perm_policies
                target[op.name].update({k: list(v) if isinstance(v, tuple) else v for k, v in op.settings})
            elif isinstance(op, CreateService):
                self.perm_services[op.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in op.settings}
            elif isinstance(op, UpdateService):
                self.perm_services[op.name].update({k: list(v) if isinstance(v, tuple) else v for k, v in op.settings})
            elif isinstance(op, RemoveService):
                del self.perm_services[op.name]
            elif isinstance(op, RemoveZone):
                del self.perm_zones[op.name]
            elif isinstance(op, RemovePolicy):
                del self.perm_policies[op.name]
            elif isinstance(op, SetPolicyRuntime):
                assert not {"target", "priority"} & dict(op.settings).keys(), "INVALID_SETTING"
                self.rt_policies[op.name].update({k: list(v) if isinstance(v, tuple) else v
                                                  for k, v in op.settings})
            elif isinstance(op, (AddToZone, RemoveFromZone)):
                zones = self.perm_zones if op.permanent else self.rt_zones
                members = zones[op.zone].setdefault(op.kind + "s", [])
                if isinstance(op, AddToZone) and op.kind == "service":
                    assert op.item in (self.perm_services if op.permanent else self.rt_services), "INVALID_SERVICE"
                    members.append(op.item)
                elif isinstance(op, AddToZone):
                    holder = [n for n, s in zones.items() if op.item in s.get(op.kind + "s", ())]
                    assert not holder, f"ZONE_CONFLICT/ZONE_ALREADY_SET {holder}"
                    members.append(op.item)
                else:
                    members.remove(op.item)
                if not members:  # firewalld omits empty lists from its settings dicts
                    del zones[op.zone][op.kind + "s"]
            elif isinstance(op, Reload):
                self.reload()
            else:
                raise AssertionError(op)


def converge(fw: FakeFirewalld, d) -> FirewalldPlan:
    p = fp.plan(d, fw.read(d))
    fw.apply(p)
    return p
