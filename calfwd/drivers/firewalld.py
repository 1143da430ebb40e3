"""The only code that talks to firewalld: its D-Bus API, through dbus-python.

Never the direct interface or passthroughs (doctor's Reader only lists them), never nftables:
firewalld's table is firewalld's.

Every call goes through `bus.call_blocking` addressed to the well-known name
org.fedoraproject.FirewallD1, with an explicit timeout, instead of through proxy objects:
the bus routes each message to whoever owns the name *now*, so after a firewalld restart
nothing points at the dead owner (a dbus-python proxy binds to the unique name it resolved
at creation), there is no introspection round trip, and a hung firewalld costs at most
`timeout` seconds per call instead of dbus-python's default 25. Inside `budget(seconds)` (the
daemon's reconciles) every blocking call shares one deadline: a hung firewalld costs the
whole reconcile at most that long, however many calls it makes.

Config objects (/org/fedoraproject/FirewallD1/config/zone/N) are renumbered by every reload,
so each operation looks its object up by name right before using it.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import dbus

from calfwd.judge.blockers import FirewalldPaths, PolicyFacts
from calfwd.desired import STOCK_ZONES, FirewalldDesired, HostFacts
from calfwd.drivers import FirewalldDriver
from calfwd.drivers import budget as budgets
# The errors and the reachability vocabulary live in a module without bindings; named here
# too, where callers and tests have always found them.
from calfwd.drivers.budget import Deadline, budget  # noqa: F401
from calfwd.drivers.errors import (ABSENT, DENIED, NO_BUS, NOT_ANSWERING, RUNNING, SILENT,  # noqa: F401
                                   STOPPED, UNREACHABLE, FirewalldError, Unreachable, explained,
                                   reachability)
from calfwd.config.schema import RESERVED_POLICIES
from calfwd.plan.firewalld.model import (AddToZone, FirewalldActual, FirewalldInfo, FirewalldPlan, ObjectState,
                                         RemoveFromZone)

BUS_NAME = "org.fedoraproject.FirewallD1"
PATH = "/org/fedoraproject/FirewallD1"
CONFIG_PATH = PATH + "/config"
MAIN = BUS_NAME
ZONE = BUS_NAME + ".zone"
POLICY = BUS_NAME + ".policy"
CONFIG = BUS_NAME + ".config"
CONFIG_ZONE = BUS_NAME + ".config.zone"
CONFIG_POLICY = BUS_NAME + ".config.policy"
CONFIG_SERVICE = BUS_NAME + ".config.service"
PROPERTIES = "org.freedesktop.DBus.Properties"

# D-Bus types of the settings-dict keys (firewalld's IMPORT_EXPORT_STRUCTURE for zones and policies).
SIGNATURES = {
    "version": "s", "short": "s", "description": "s", "target": "s",
    "services": "as", "icmp_blocks": "as", "interfaces": "as", "sources": "as", "rules_str": "as",
    "rich_rules": "as", "protocols": "as", "ingress_zones": "as", "egress_zones": "as",
    "ports": "a(ss)", "source_ports": "a(ss)", "forward_ports": "a(ssss)",
    "masquerade": "b", "icmp_block_inversion": "b", "forward": "b",
    "priority": "i",
}

_explained = explained


def _spent(action: str, deadline: Deadline) -> FirewalldError:
    error = FirewalldError(action, message=f"no answer within the {deadline.seconds:g} s calfwd "
                           "gives firewalld in one reconcile")
    error.kind = SILENT
    return _explained(error)


def system_bus() -> Any:
    """The system bus; raises dbus's DBusException when it cannot be reached."""
    return dbus.SystemBus()


def connect() -> FirewalldDriver:
    """A client on the system bus; without a bus, one whose every answer is that error."""
    try:
        return Firewalld(system_bus())
    except dbus.exceptions.DBusException as exc:
        return Unreachable(exc.get_dbus_name() or "", exc.get_dbus_message() or str(exc))


class Firewalld:
    """firewalld on a dbus.Bus connection (the caller makes dbus.SystemBus())."""

    def __init__(self, bus: Any, timeout: float = 5.0, reload_timeout: float = 60.0) -> None:
        self.bus = bus
        self.timeout = timeout
        # A reload rebuilds every zone and policy; on a big config it takes seconds.
        self.reload_timeout = reload_timeout

    # -- plumbing ------------------------------------------------------------------------

    def _call(self, action: str, path: str, interface: str, method: str, signature: Optional[str] = None,
              *args: Any, timeout: Optional[float] = None, bus_name: str = BUS_NAME) -> Any:
        wait = self.timeout if timeout is None else timeout
        deadline = budgets.current()
        if deadline is not None:
            left = deadline.left()
            if left <= 0:
                raise _spent(action, deadline)
            wait = min(wait, left)
        try:
            reply = self.bus.call_blocking(bus_name, path, interface, method, signature, args, timeout=wait)
        except dbus.exceptions.DBusException as exc:
            raise _explained(FirewalldError(action, exc.get_dbus_name() or "",
                                            exc.get_dbus_message() or "")) from None
        return _py(reply)

    def _get(self, path: str, interface: str, prop: str) -> Any:
        return self._call(f"read property {prop}", path, PROPERTIES, "Get", "ss", interface, prop)

    # -- facts ---------------------------------------------------------------------------

    def has_owner(self) -> bool:
        return bool(self._call("ask the bus who owns " + BUS_NAME, "/org/freedesktop/DBus",
                               "org.freedesktop.DBus", "NameHasOwner", "s", BUS_NAME,
                               bus_name="org.freedesktop.DBus"))

    def state(self) -> Optional[str]:
        """'RUNNING', 'INIT', 'FAILED'; None when nobody owns the name (stopped: nothing to do).

        Raises FirewalldError (with .kind) when calfwd cannot know: the owner does not answer,
        the bus is unreachable, or calfwd is not authorised. A starting firewalld owns its name
        before it has applied its rules and answers only once it has, so this blocks up to
        `timeout`; the daemon asks with state_async instead.
        """
        try:
            if not self.has_owner():
                return None
            return str(self._get(PATH, MAIN, "state"))
        except FirewalldError as exc:
            if exc.kind == ABSENT:  # it left between the two calls
                return None
            raise

    def state_async(self, done: Callable[[Optional[str], Optional[FirewalldError]], None]) -> None:
        """state() without blocking the caller's main loop: done(state, error) runs on it."""
        def reply(value: Any) -> None:
            done(str(value), None)

        def error(exc: Any) -> None:
            err = FirewalldError("read property state", exc.get_dbus_name() or "", exc.get_dbus_message() or "")
            done(None, None) if err.kind == ABSENT else done(None, _explained(err))
        self.bus.call_async(BUS_NAME, PATH, PROPERTIES, "Get", "ss", (MAIN, "state"), reply, error,
                            timeout=self.timeout)

    def reload_async(self, done: Callable[[Optional[FirewalldError]], None]) -> None:
        """firewalld's reload without blocking the caller's main loop: a reload of a big
        configuration takes seconds, and a hung firewalld would hold the loop (and SIGTERM,
        and the watchdog) for reload_timeout. done(error) runs on the loop when it is over."""
        def error(exc: Any) -> None:
            done(_explained(FirewalldError("reload firewalld", exc.get_dbus_name() or "",
                                           exc.get_dbus_message() or "")))
        self.bus.call_async(BUS_NAME, PATH, MAIN, "reload", "", (), lambda *_: done(None), error,
                            timeout=self.reload_timeout)

    def running(self) -> bool:
        return self.state() == "RUNNING"

    def reachability(self) -> Tuple[str, str]:
        """(RUNNING | STOPPED | UNREACHABLE | NOT_ANSWERING, why) for `calfwd cleanup`, which may
        edit firewalld's files only when nobody owns its name."""
        try:
            state = self.state()
        except FirewalldError as exc:
            return reachability(exc.kind), str(exc)  # ABSENT never: state() says None
        if state is None:
            return STOPPED, "nobody owns " + BUS_NAME
        if state != "RUNNING":
            return NOT_ANSWERING, f"firewalld is in state {state}"
        return RUNNING, ""

    def info(self) -> FirewalldInfo:
        state = self.state()  # raises when calfwd cannot know
        if state is None:
            return FirewalldInfo(running=False)
        if state != "RUNNING":
            return FirewalldInfo(running=False, state=state)
        return FirewalldInfo(
            running=True,
            state=state,
            version=str(self._get(PATH, MAIN, "version")),
            backend=str(self._get(CONFIG_PATH, CONFIG, "FirewallBackend")),
            default_zone=str(self._call("read the default zone", PATH, MAIN, "getDefaultZone")),
        )

    def facts(self) -> HostFacts:
        """What desired() needs; the runtime default zone is the one traffic meets."""
        info = self.info()
        if not info.running:
            return HostFacts(firewalld_state=info.state)
        return HostFacts(firewalld_running=True, firewalld_version=info.version,
                         default_zone=info.default_zone or HostFacts().default_zone,
                         firewalld_state=info.state, strict_forward_ports=self._strict_forward_ports(),
                         firewalld_backend=info.backend)

    def _strict_forward_ports(self) -> bool:
        """firewalld.conf's StrictForwardPorts as firewalld runs it (2.3+; older ones lack it)."""
        try:
            return str(self._get(CONFIG_PATH, CONFIG, "StrictForwardPorts")).lower() == "yes"
        except FirewalldError as exc:
            if exc.kind in (SILENT, DENIED, NO_BUS):
                raise
            return False  # no such property: this firewalld has no such setting

    # -- reading -------------------------------------------------------------------------

    def read(self, desired: FirewalldDesired) -> FirewalldActual:
        """Everything plan() and cleanup_plan() look at: calfwd's zone and policies, permanent
        and runtime, and where each of calfwd's interfaces and sources is bound."""
        zones_perm = frozenset(self._call("list permanent zones", CONFIG_PATH, CONFIG, "getZoneNames"))
        zones_rt = frozenset(self._call("list runtime zones", PATH, ZONE, "getZones"))
        active_bindings = self._call("list active zones", PATH, ZONE, "getActiveZones")
        active = frozenset(active_bindings)
        policies_perm = set(self._call("list permanent policies", CONFIG_PATH, CONFIG, "getPolicyNames"))
        policies_rt = set(self._call("list runtime policies", PATH, POLICY, "getPolicies"))

        name = desired.zone.name
        zone = ObjectState(
            name,
            permanent=self._zone_permanent(name) if name in zones_perm else None,
            runtime=self._call(f"read runtime zone '{name}'", PATH, ZONE, "getZoneSettings2", "s", name)
            if name in zones_rt else None,
        )
        policies = tuple(ObjectState(
            spec.name,
            permanent=self._policy_permanent(spec.name) if spec.name in policies_perm else None,
            runtime=self._call(f"read runtime policy '{spec.name}'", PATH, POLICY, "getPolicySettings",
                               "s", spec.name) if spec.name in policies_rt else None,
        ) for spec in desired.policies)

        bindings_perm: Dict[Tuple[str, str], str] = {}
        bindings_rt: Dict[Tuple[str, str], str] = {}
        items = [("interface", i) for i in desired.zone.interfaces] + \
                [("source", s) for s in desired.zone.sources]
        # Runtime: a zone holding a binding is active by definition, so getActiveZones (already
        # read) knows every runtime binding. Permanent: ask only for items that are not already
        # in calfwd's own zone. Saves two D-Bus round trips per item in the steady state.
        held_rt = {(kind, str(item)): str(z) for z, bound in active_bindings.items()
                   for kind, key in (("interface", "interfaces"), ("source", "sources"))
                   for item in bound.get(key, ())}
        own_perm = {("interface", str(i)) for i in (zone.permanent or {}).get("interfaces", ())} | \
                   {("source", str(i)) for i in (zone.permanent or {}).get("sources", ())}
        for kind, item in items:
            bindings_rt[(kind, item)] = held_rt.get((kind, item), "")
            if (kind, item) in own_perm:
                bindings_perm[(kind, item)] = name
                continue
            method = "getZoneOfInterface" if kind == "interface" else "getZoneOfSource"
            bindings_perm[(kind, item)] = str(self._call(
                f"find the permanent zone of {kind} {item}", CONFIG_PATH, CONFIG, method, "s", item))
        wanted_policies = {spec.name for spec in desired.policies}
        other_zones = tuple(
            ObjectState(z, permanent=self._zone_permanent(z), runtime={} if z in zones_rt else None)
            for z in sorted(zones_perm - {name} - STOCK_ZONES))
        other_policies = tuple(
            ObjectState(p, permanent=self._policy_permanent(p), runtime={} if p in policies_rt else None)
            for p in sorted(policies_perm - wanted_policies - RESERVED_POLICIES))
        service, catch_all = self._read_catch_all(desired, zones_perm, zones_rt)
        return FirewalldActual(zone=zone, policies=policies, zones_permanent=zones_perm,
                               zones_runtime=zones_rt, active_zones=active,
                               bindings_permanent=bindings_perm, bindings_runtime=bindings_rt,
                               other_zones=other_zones, other_policies=other_policies,
                               service=service, catch_all=catch_all)

    def read_paths(self) -> FirewalldPaths:
        """What decides Calico's paths at runtime besides calfwd's objects (judge/blockers.py): panic
        mode, every active zone's bindings and target, every runtime policy's rank and target."""
        panic = bool(self._call("query panic mode", PATH, MAIN, "queryPanicMode"))
        active = self._call("list active zones", PATH, ZONE, "getActiveZones")
        bound = {str(z): (tuple(str(i) for i in v.get("interfaces", ())), tuple(str(s) for s in v.get("sources", ())))
                 for z, v in active.items()}
        targets = {z: self.runtime_zone_target(z) for z in bound}
        policies = []
        for name in sorted(self._call("list runtime policies", PATH, POLICY, "getPolicies")):
            s = self._call(f"read runtime policy '{name}'", PATH, POLICY, "getPolicySettings", "s", name)
            policies.append(PolicyFacts(str(name), int(s.get("priority", 0)), str(s.get("target", "CONTINUE")),
                                        tuple(str(z) for z in s.get("ingress_zones", ())),
                                        tuple(str(z) for z in s.get("egress_zones", ())),
                                        disabled=bool(s.get("disable", False)),
                                        rich_rules=tuple(str(r) for r in s.get("rich_rules", ()))))
        return FirewalldPaths(panic=panic, active=bound, targets=targets, policies=tuple(policies))

    def zone_runtime(self, name: str) -> Dict[str, Any]:
        """One zone as traffic meets it now (the audit reads the default zone's target)."""
        return self._call(f"read runtime zone '{name}'", PATH, ZONE, "getZoneSettings2", "s", name)

    def check_permanent_config(self) -> str:
        """firewalld's own check of its permanent configuration: what `firewall-cmd --check-config`
        asks it over the bus (0.9 to 2.x). "" when clean, else firewalld's error; raises when
        the question could not be asked (no bus, denied, no answer)."""
        try:
            self._call("check the permanent configuration", PATH, MAIN, "checkPermanentConfig")
        except FirewalldError as exc:
            if exc.kind:
                raise
            return exc.message or str(exc)
        return ""

    def _zone_path(self, name: str) -> str:
        return str(self._call(f"find permanent zone '{name}'", CONFIG_PATH, CONFIG, "getZoneByName", "s", name))

    def _policy_path(self, name: str) -> str:
        return str(self._call(f"find permanent policy '{name}'", CONFIG_PATH, CONFIG, "getPolicyByName",
                              "s", name))

    def _service_path(self, name: str) -> str:
        return str(self._call(f"find permanent service '{name}'", CONFIG_PATH, CONFIG, "getServiceByName",
                              "s", name))

    def _read_catch_all(self, desired: FirewalldDesired, zones_perm: Any, zones_rt: Any) -> Tuple[Any, Any]:
        """calfwd's host service and the catch-all zone, only when desired has one. The service's
        runtime settings are what firewalld loaded at its last reload: what the audit shows."""
        svc, zone = desired.host_service, desired.catch_all_zone
        if svc is None or not zone:
            return None, None
        names = set(self._call("list permanent services", CONFIG_PATH, CONFIG, "getServiceNames"))
        loaded = set(self._call("list runtime services", PATH, MAIN, "listServices"))
        service = ObjectState(svc.name, permanent=self._call(
            f"read permanent service '{svc.name}'", self._service_path(svc.name), CONFIG_SERVICE, "getSettings2")
            if svc.name in names else None,
            runtime=self._call(f"read runtime service '{svc.name}'", PATH, MAIN, "getServiceSettings2", "s",
                               svc.name) if svc.name in loaded else None)
        where = ObjectState(
            zone, permanent=self._zone_permanent(zone) if zone in zones_perm else None,
            runtime=self._call(f"read runtime zone '{zone}'", PATH, ZONE, "getZoneSettings2", "s", zone)
            if zone in zones_rt else None)
        return service, where

    def runtime_zone_target(self, name: str) -> str:
        """The zone's target as loaded ("default", "ACCEPT", "DROP", "%%REJECT%%", ...)."""
        settings = self._call(f"read runtime zone '{name}'", PATH, ZONE, "getZoneSettings2", "s", name)
        return str(settings.get("target", "default"))

    def _zone_permanent(self, name: str) -> Dict[str, Any]:
        return self._call(f"read permanent zone '{name}'", self._zone_path(name), CONFIG_ZONE, "getSettings2")

    def _policy_permanent(self, name: str) -> Dict[str, Any]:
        return self._call(f"read permanent policy '{name}'", self._policy_path(name), CONFIG_POLICY,
                          "getSettings")

    # -- changing ------------------------------------------------------------------------

    def apply(self, plan: FirewalldPlan) -> None:
        """Run the operations in order; the first failure stops and raises FirewalldError."""
        for op in plan.ops:
            handler = self._handlers().get((op.verb, op.obj, op.permanent))
            if handler is None:
                raise FirewalldError(op.description, text=f"{op.description}: unknown operation")
            handler(op)

    def _handlers(self) -> Dict[Tuple[str, str, bool], Callable[[Any], None]]:
        """(verb, object, permanent) -> how firewalld does it: the one dispatch table."""
        return {
            ("create", "zone", True): self._settings_call(lambda op: CONFIG_PATH, CONFIG, "addZone2", True),
            ("update", "zone", True): self._settings_call(lambda op: self._zone_path(op.name), CONFIG_ZONE,
                                                          "update2", False),
            ("create", "policy", True): self._settings_call(lambda op: CONFIG_PATH, CONFIG, "addPolicy", True),
            ("update", "policy", True): self._settings_call(lambda op: self._policy_path(op.name), CONFIG_POLICY,
                                                            "update", False),
            ("update", "policy", False): self._settings_call(lambda op: PATH, POLICY, "setPolicySettings", True),
            ("create", "service", True): self._settings_call(lambda op: CONFIG_PATH, CONFIG, "addService2", True),
            ("update", "service", True): self._settings_call(lambda op: self._service_path(op.name), CONFIG_SERVICE,
                                                             "update2", False),
            ("delete", "service", True): lambda op: self._remove(op, self._service_path, CONFIG_SERVICE,
                                                                  "INVALID_SERVICE"),
            ("delete", "zone", True): lambda op: self._remove(op, self._zone_path, CONFIG_ZONE, "INVALID_ZONE"),
            ("delete", "policy", True): lambda op: self._remove(op, self._policy_path, CONFIG_POLICY,
                                                                 "INVALID_POLICY"),
            ("add", "zone-item", True): self._do_AddToZone,
            ("add", "zone-item", False): self._do_AddToZone,
            ("remove", "zone-item", True): self._do_RemoveFromZone,
            ("remove", "zone-item", False): self._do_RemoveFromZone,
            ("reload", "firewalld", False): lambda op: self._call(op.description, PATH, MAIN, "reload",
                                                                  timeout=self.reload_timeout),
        }

    def _settings_call(self, path: Callable[[Any], str], interface: str, method: str,
                       named: bool) -> Callable[[Any], None]:
        """A settings dict sent to one zone or policy (named: the call also takes its name)."""
        def send(op: Any) -> None:
            args = (op.name, _settings(op.settings)) if named else (_settings(op.settings),)
            self._call(op.description, path(op), interface, method, "sa{sv}" if named else "a{sv}", *args)
        return send

    def _remove(self, op: Any, find: Any, interface: str, missing: str) -> None:
        """Delete a permanent zone or policy; one that is already gone counts as done."""
        try:
            path = find(op.name)
        except FirewalldError as exc:
            if exc.code == missing:
                return
            raise
        self._call(op.description, path, interface, "remove")

    def _do_AddToZone(self, op: AddToZone) -> None:
        method = "Interface" if op.kind == "interface" else "Source"
        if op.permanent:
            # update2 with just this one list, read right before: config zone addInterface
            # would also rewrite ifcfg files under /etc/sysconfig (firewalld's NM-less helper).
            key = op.kind + "s"
            path = self._zone_path(op.zone)
            current = list(self._call(op.description, path, CONFIG_ZONE, "getSettings2").get(key, ()))
            if op.item in current:
                return
            try:
                self._call(op.description, path, CONFIG_ZONE, "update2", "a{sv}",
                           _settings({key: tuple(current) + (op.item,)}))
            except FirewalldError as exc:
                if exc.code == "ZONE_CONFLICT":
                    raise self._conflict(op, exc, CONFIG_PATH, CONFIG) from None
                raise
            return
        try:
            if op.kind == "service":  # timeout 0: for good (until the next reload)
                self._call(op.description, PATH, ZONE, "addService", "ssi", op.zone, op.item, 0)
            else:
                self._call(op.description, PATH, ZONE, "add" + method, "ss", op.zone, op.item)
        except FirewalldError as exc:
            if exc.code in ("ZONE_ALREADY_SET", "ALREADY_ENABLED"):
                return  # already ours
            if exc.code == "ZONE_CONFLICT":
                raise self._conflict(op, exc, PATH, ZONE) from None
            raise

    def _do_RemoveFromZone(self, op: RemoveFromZone) -> None:
        method = "Interface" if op.kind == "interface" else "Source"
        if op.permanent:
            key = op.kind + "s"
            try:
                path = self._zone_path(op.zone)
            except FirewalldError as exc:
                if exc.code == "INVALID_ZONE":
                    return
                raise
            current = list(self._call(op.description, path, CONFIG_ZONE, "getSettings2").get(key, ()))
            if op.item not in current:
                return
            self._call(op.description, path, CONFIG_ZONE, "update2", "a{sv}",
                       _settings({key: tuple(x for x in current if x != op.item)}))
            return
        try:
            self._call(op.description, PATH, ZONE, "remove" + ("Service" if op.kind == "service" else method), "ss",
                       op.zone, op.item)
        except FirewalldError as exc:
            # Not bound anywhere, or bound to another zone: either way it is not in ours.
            if exc.code in ("UNKNOWN_INTERFACE", "UNKNOWN_SOURCE", "ZONE_CONFLICT", "NOT_ENABLED"):
                return
            raise

    def _conflict(self, op: Any, exc: FirewalldError, path: str, interface: str) -> FirewalldError:
        """ZONE_CONFLICT raised while applying (someone bound it since the plan was made)."""
        method = "getZoneOfInterface" if op.kind == "interface" else "getZoneOfSource"
        try:
            other = str(self._call("find the zone of " + op.item, path, interface, method, "s", op.item))
        except FirewalldError:
            other = ""
        where = "permanent" if op.permanent else "runtime"
        text = (f"{op.kind} {op.item} is bound to zone '{other or '?'}' ({where}) by someone else; "
                f"calfwd wants it in '{op.zone}' and leaves it there")
        return FirewalldError(op.description, exc.dbus_name, exc.message, text=text)


class Reader(Firewalld):
    """The client with the read-only extras `calfwd doctor` needs (made by
    drivers.firewalld_reader). It lists direct rules READ-ONLY: doctor and `guard enable` must
    know whether any exist (they switch firewalld 2.x's flush back on; the guard would break
    them). calfwd never adds, changes or removes direct rules or passthroughs."""

    def config_property(self, name: str) -> Optional[str]:
        """A firewalld.conf setting as firewalld sees it; None where this version lacks it."""
        try:
            return str(self._get(CONFIG_PATH, CONFIG, name))
        except FirewalldError as exc:
            if "InvalidArgs" in exc.dbus_name or "does not exist" in exc.message:
                return None
            raise

    def runtime_direct(self) -> Tuple[str, ...]:
        # Read-only listing (see above).
        direct = BUS_NAME + ".direct"
        chains = self._call("list direct chains", PATH, direct, "getAllChains")
        rules = self._call("list direct rules", PATH, direct, "getAllRules")
        passes = self._call("list passthroughs", PATH, direct, "getAllPassthroughs")
        return (tuple(f"runtime chain {c[0]} {c[1]} {c[2]}" for c in chains)
                + tuple(f"runtime rule {r[0]} {r[1]} {r[2]} {' '.join(r[4])}" for r in rules)
                + tuple(f"runtime passthrough {p[0]} {' '.join(p[1])}" for p in passes))

    def pid(self) -> Optional[int]:
        try:
            return int(self._call("find firewalld's process", "/org/freedesktop/DBus",
                                  "org.freedesktop.DBus", "GetConnectionUnixProcessID", "s",
                                  BUS_NAME, bus_name="org.freedesktop.DBus"))
        except FirewalldError:
            return None


# ---------------------------------------------------------------------------------------


def _py(value: Any) -> Any:
    """dbus-python types to plain Python: lists and structs become tuples."""
    if isinstance(value, dbus.Boolean):
        return bool(value)
    if isinstance(value, (dbus.Int16, dbus.Int32, dbus.Int64, dbus.UInt16, dbus.UInt32, dbus.UInt64,
                          dbus.Byte)):
        return int(value)
    if isinstance(value, (dbus.String, dbus.ObjectPath, dbus.Signature)):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _py(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_py(v) for v in value)
    return value


def _settings(settings: Any) -> dbus.Dictionary:
    """A settings dict (or fwplan.Settings pairs) typed for a{sv}: empty lists need a signature."""
    pairs = settings.items() if isinstance(settings, Mapping) else settings
    out = {}
    for key, value in pairs:
        sig = SIGNATURES.get(key)
        if sig is None:
            raise ValueError(f"calfwd does not know the D-Bus type of firewalld setting {key!r}")
        out[key] = _typed(sig, value)
    return dbus.Dictionary(out, signature="sv")


def _typed(sig: str, value: Any) -> Any:
    if sig == "s":
        return dbus.String(value)
    if sig == "b":
        return dbus.Boolean(bool(value))
    if sig == "i":
        return dbus.Int32(int(value))
    if sig == "as":
        return dbus.Array([dbus.String(v) for v in value], signature="s")
    inner = sig[2:-1]  # "a(ss)" -> "ss"
    return dbus.Array([dbus.Struct(tuple(dbus.String(x) for x in v), signature=inner) for v in value],
                      signature="(%s)" % inner)

