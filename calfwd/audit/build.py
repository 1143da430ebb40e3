"""`calfwd audit`: what calfwd makes this host accept, forward and masquerade, and why.

Pure: built from what `calfwd status` already read (the layers' plans and what they were
made from, reconcile.LayerPlan.read) plus a few host facts (audit/reads.py), so the page a
reviewer files shows what is in effect, not what the config hopes for. Rendered as text for
people (audit/render.py) and as JSON for tools; both sorted, so equal hosts give equal pages.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from calfwd.audit.items import NOT_CALFWDS, Item, Owners, accepted
from calfwd.config import Config
from calfwd.desired import Desired, HostFacts
from calfwd.config.schema import HOST_PORTS, HOST_PROTOCOLS, WIREGUARD_DEVICES

FEATURES = {  # host_ports names: the Calico feature each one carries
    "bgp": "BGP peering: Calico's BIRD on the other nodes exchanges pod routes with this one",
    "ipip": "IP-in-IP encapsulation (IP protocol 4): pod traffic between nodes in Calico's IPIP mode",
    "vxlan": "VXLAN encapsulation: pod traffic between nodes in Calico's VXLAN mode",
    "wireguard": "WireGuard: Calico's encrypted pod traffic between nodes (51820 IPv4, 51821 IPv6)",
    "typha": "Typha: Felix on the other nodes connects to calico-typha running here",
}
INTERFACES = {  # Calico's interface names (Felix's defaults) and what each carries
    "cali+": "Calico's pod interfaces (one veth per pod on this node)",
    "tunl0": "Calico's IP-in-IP tunnel (pod traffic from other nodes)",
    "vxlan.calico": "Calico's VXLAN tunnel, IPv4 (pod traffic from other nodes)",
    "vxlan-v6.calico": "Calico's VXLAN tunnel, IPv6 (pod traffic from other nodes)",
    "wireguard.cali": "Calico's WireGuard tunnel, IPv4 (pod traffic from other nodes)",
    "wg-v6.cali": "Calico's WireGuard tunnel, IPv6 (pod traffic from other nodes)",
}
CNI_INTERFACES = {  # Canal and flannel: the devices judge/cni.py adds to calfwd's zone
    "cni0": "the bridge flannel's pods hang off (k3s); its ports are the pods' veths",
    "flannel.1": "flannel's VXLAN device, IPv4 (pod traffic from other nodes)",
    "flannel-v6.1": "flannel's VXLAN device, IPv6 (pod traffic from other nodes)",
    "flannel-wg": "flannel's WireGuard device, IPv4 (pod traffic from other nodes)",
    "flannel-wg-v6": "flannel's WireGuard device, IPv6 (pod traffic from other nodes)",
}


@dataclass(frozen=True)
class Observed:
    """What audit/reads.py read beside the plan; a read that failed is in `unreadable`."""

    hostname: str
    date: str  # UTC, ISO 8601
    version: str  # calfwd's
    backend: str = ""  # firewalld's FirewallBackend
    default_zone_target: str = ""
    check: str = "not run"  # firewalld's check of its permanent configuration: ok | failed | not run
    check_output: str = ""
    nft_text: str = ""  # calfwd's table as `nft list table` prints it
    guard_dropin: str = ""  # calfwd's flush-guard drop-in, when installed
    # firewalld.conf's settings that act on pods' traffic outside calfwd's objects (settings())
    firewalld_settings: Tuple[Tuple[str, str], ...] = ()
    unreadable: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Entry:
    """One of calfwd's objects as it is in effect (firewalld's runtime, the kernel's table)."""

    kind: str  # zone | policy | service | nftables table
    name: str
    summary: str
    why: str
    items: Tuple[Item, ...] = ()
    present: bool = True


@dataclass(frozen=True)
class Audit:
    host: str
    date: str
    version: str
    config_path: str
    firewalld: Tuple[Tuple[str, str], ...]  # (fact, value): state, version, backend, default_zone, ...
    firewalld_note: str  # why there are no firewalld entries, when there are none
    entries: Tuple[Entry, ...]
    nft_rules: Tuple[str, ...]
    untouched: Tuple[str, ...]
    check: str
    check_output: str
    differences: Tuple[str, ...]
    unreadable: Tuple[str, ...]
    cni: Tuple[str, str] = ("calico", "not judged")  # (kind, why): judge/cni.py's verdict

    @property
    def ok(self) -> bool:
        """What is in effect is what calfwd wants, all of it was read, and firewalld's own
        check passed (or could not run because firewalld is not used)."""
        return not self.differences and not self.unreadable and self.check != "failed"


# -- building -----------------------------------------------------------------------------


def build(config: Config, want: Desired, facts: HostFacts, layers: Sequence[Any], seen: Observed) -> Audit:
    nft = next(layer for layer in layers if layer.layer == "nftables")
    fw = next(layer for layer in layers if layer.layer == "firewalld")
    entries: List[Entry] = []
    note = fw.note or (f"could not be read: {fw.error}" if fw.error else "")
    actual = fw.read
    if want.firewalld is not None and actual is not None:
        entries += _firewalld_entries(config, want, facts, actual)
    if nft.read is not None or not nft.error:
        entries.append(_nft_entry(config, want, nft.read))
    # A conflict (an interface someone bound elsewhere, a zone of that name not calfwd's) is
    # something calfwd wants that is not in effect: a difference here, even where status,
    # which only says whether calfwd has work left, calls it in sync.
    differences = tuple(f"{layer.layer}: {line}" for layer in layers
                        for line in _unique(tuple(layer.actions) + tuple(layer.conflicts) + tuple(layer.blocking)))
    unreadable = tuple(f"{layer.layer}: {layer.error}" for layer in layers if layer.error) + seen.unreadable
    rules = tuple(line.rstrip().replace("\t", "    ") for line in seen.nft_text.splitlines() if line.strip())
    return Audit(
        host=seen.hostname, date=seen.date, version=seen.version, config_path=config.path,
        firewalld=_firewalld_facts(config, facts, seen), firewalld_note=note, entries=tuple(entries),
        nft_rules=rules, untouched=_untouched(config, want, facts, actual, seen), check=seen.check,
        check_output=seen.check_output.strip(), differences=differences, unreadable=unreadable,
        cni=(facts.cni.kind, facts.cni.why))


def _unique(lines: Tuple[str, ...]) -> Tuple[str, ...]:
    return tuple(dict.fromkeys(lines))


def _firewalld_facts(config: Config, facts: HostFacts, seen: Observed) -> Tuple[Tuple[str, str], ...]:
    if not config.firewalld.enabled:
        return (("managed_by_calfwd", "no ([firewalld] enabled = false)"),)
    if not facts.firewalld_running:
        return (("state", facts.firewalld_state or "not running"),)
    return (("state", "running"), ("version", facts.firewalld_version), ("backend", seen.backend or "?"),
            ("default_zone", facts.default_zone),
            ("default_zone_target", _target(seen.default_zone_target) if seen.default_zone_target else "?")) \
        + seen.firewalld_settings


def settings(conf: Mapping[str, str], version: str) -> Tuple[Tuple[str, str], ...]:
    """firewalld 2.x's settings that act on pods' forwarded traffic beside calfwd's objects, as
    firewalld.conf has them (doctor judges them: doctor/ruleset_checks.py), each only on the
    release that has it: ReloadPolicy (2.1+), NftablesFlowtable (2.0+), StrictForwardPorts
    (2.3+)."""
    from calfwd.doctor.ruleset_checks import (FLOWTABLE_SINCE, RELOAD_POLICY_SINCE, flowtable_devices,
                                              parse_reload_policy)
    from calfwd.judge.guard import version_tuple
    have = version_tuple(version)
    if have is None:
        return ()
    out: List[Tuple[str, str]] = []
    if have >= RELOAD_POLICY_SINCE:
        raw = conf.get("ReloadPolicy", "")
        parsed = parse_reload_policy(raw)
        forward = (parsed or parse_reload_policy("") or {}).get("FORWARD", "DROP")
        shown = raw or "unset (INPUT:DROP,FORWARD:DROP,OUTPUT:DROP)"
        fate = {"DROP": "dropped", "REJECT": "rejected", "ACCEPT": "accepted unfiltered"}[forward]
        out.append(("reload_policy", f"{shown}: new forwarded connections during a reload are {fate}"
                    + ("" if parsed is not None else " (not valid: firewalld uses its default)")))
    if have >= FLOWTABLE_SINCE:
        devices = flowtable_devices(conf.get("NftablesFlowtable"))
        out.append(("nftables_flowtable", " ".join(devices) + ": their established flows skip every other "
                    "table's forward and postrouting" if devices else "off"))
    if have >= (2, 3):
        strict = conf.get("StrictForwardPorts", "no").strip().lower() == "yes"
        out.append(("strict_forward_ports", "yes: every DNAT not firewalld's own (Services, NodePorts) is "
                    "rejected" if strict else "no"))
    return tuple(out)


def _target(target: str) -> str:
    """firewalld spells two targets in its own way; say what they do."""
    return {"default": "default (rejects what no rule accepts)",
            "%%REJECT%%": "REJECT"}.get(target, target)


def _firewalld_entries(config: Config, want: Desired, facts: HostFacts, actual: Any) -> List[Entry]:
    fwd = want.firewalld
    assert fwd is not None
    out = [_zone_entry(config, fwd.zone, actual, fwd.zone.interfaces)]
    forward, *host = fwd.policies
    out.append(_forward_entry(config, forward, actual.policy(forward.name).runtime))
    if host:
        out.append(_host_entry(config, facts, host[0], actual.policy(host[0].name).runtime))
    if fwd.catch_all_zone and fwd.host_service is not None:
        out.append(_catch_all_entry(config, facts, fwd.host_service.name, fwd.catch_all_zone, actual))
    return out


def _zone_entry(config: Config, spec: Any, actual: Any, wanted: Sequence[str] = ()) -> Entry:
    runtime = actual.zone.runtime
    if spec.owned:
        if runtime is None:
            return Entry("zone", spec.name, "NOT loaded in firewalld", _ZONE_WHY, present=False)
        owners: Dict[Tuple[str, str], Tuple[str, str]] = {("target", "ACCEPT"): (
            "what arrives on calfwd's interfaces and sources is accepted here and judged by Felix", "zone")}
        for kind, key in (("interface", "interfaces"), ("source", "sources")):
            for name in runtime.get(key) or ():
                item = _binding_item(config, kind, str(name), wanted)
                if item.key:
                    owners[(kind, item.value)] = (item.why, item.key)
        summary = (f"made by calfwd; target {runtime.get('target') or '?'}: everything arriving on "
                   "these interfaces (or from these sources) is accepted, to this host and forwarded")
        return Entry("zone", spec.name, summary, _ZONE_WHY, accepted(runtime, owners))
    bound = [b for b, zone in actual.bindings_runtime.items() if zone == spec.name]
    summary = ("firewalld's own zone; calfwd only binds Calico's interfaces to it, "
               "its target and other settings stay as they are")
    items = tuple(sorted((_binding_item(config, kind, name, wanted) for kind, name in bound),
                         key=lambda i: (i.kind, i.value)))
    return Entry("zone", spec.name, summary, _ZONE_WHY, items)


_ZONE_WHY = ("traffic from pods on this node and from other nodes' pods through Calico's tunnels "
             "arrives on these interfaces; Calico's own policy (Felix) judges it, not firewalld")


def _binding_item(config: Config, kind: str, name: str, wanted: Sequence[str] = ()) -> Item:
    """wanted: the interfaces the desired zone holds (flannel's devices on Canal and flannel)."""
    if kind == "source":
        if name in {n.with_prefixlen for n in config.ip_pools} and config.firewalld.trust_pool_sources:
            return Item("source", name, "a Calico IP pool trusted as a source: anything from these "
                        "addresses is accepted, whichever interface it comes in on", "trust_pool_sources")
        return Item("source", name, NOT_CALFWDS, "")
    if name in config.interfaces:
        return Item("interface", name, INTERFACES.get(name, "one of Calico's interfaces, as configured"),
                    "interfaces")
    if name in wanted and name in CNI_INTERFACES:
        return Item("interface", name, CNI_INTERFACES[name], "cni.kind")
    return Item("interface", name, NOT_CALFWDS, "")


def _forward_entry(config: Config, spec: Any, runtime: Optional[Mapping[str, Any]]) -> Entry:
    why = ("firewalld judges forwarded traffic by the zone it came in on (the uplink's zone), not by "
           "calfwd's zone: without this, traffic routed into pods from other nodes (pod-to-pod, "
           "NodePort and Service backends) is rejected (firewalld issue 527)")
    if runtime is None:
        return Entry("policy", spec.name, "NOT loaded in firewalld", why, present=False)
    summary = (f"forwarded traffic from {_zones(runtime.get('ingress_zones'), spec.ingress_zones)} to "
               f"{_zones(runtime.get('egress_zones'), spec.egress_zones)}; target {runtime.get('target') or '?'}")
    owners: Dict[Tuple[str, str], Tuple[str, str]] = {
        ("rich rule", r): ("forwarding to a Calico IP pool", "ip_pools") for r in spec.rich_rules}
    owners[("target", spec.target)] = (
        "only the rich rules listed here accept; the rest goes on to the zones' own rules"
        if spec.rich_rules else "everything forwarded into calfwd's zone is accepted", "zone")
    if not spec.rich_rules:
        summary += " (calfwd's zone holds only Calico's interfaces, so this is only traffic to pods)"
    return Entry("policy", spec.name, summary, why, accepted(runtime, owners))


def _zones(names: Any, wanted: Sequence[str]) -> str:
    """The zones a policy joins; any that calfwd did not ask for is marked as such."""
    shown = {"ANY": "any zone", "HOST": "this host (HOST)"}
    names = [str(n) for n in names or ()]
    if not names:
        return "no zone"
    return ", ".join(shown.get(n, f"zone {n}") + ("" if n in wanted else " (NOT in calfwd's config)")
                     for n in sorted(names))


def _host_owners(config: Config, facts: HostFacts) -> Owners:
    """Why each of Calico's host ports and protocols is accepted, and which key asks for it."""
    owners: Dict[Tuple[str, str], Tuple[str, str]] = {}
    for name, pairs in HOST_PORTS.items():
        for port, proto in pairs:
            if name in config.host_ports:
                owners[("port", f"{port}/{proto}")] = (FEATURES[name], f"host_ports: {name}")
    for device, (port, proto) in sorted(WIREGUARD_DEVICES.items()):
        if device in facts.wireguard_devices:
            owners.setdefault(("port", f"{port}/{proto}"),
                              (FEATURES["wireguard"], f"(Calico's device {device} exists on this host)"))
    for name, protos in HOST_PROTOCOLS.items():
        for p in protos:
            if name in config.host_ports:
                owners[("protocol", str(p))] = (FEATURES[name], f"host_ports: {name}")
    if facts.cni.kind in ("canal", "flannel"):
        for port, proto in facts.cni.flannel_ports:
            owners[("port", f"{port}/{proto}")] = (
                "flannel's backend (VXLAN, or WireGuard): pod traffic between nodes on a "
                f"{facts.cni.kind} node", "cni.kind")
    return owners


def _host_entry(config: Config, facts: HostFacts, spec: Any, runtime: Optional[Mapping[str, Any]]) -> Entry:
    why = ("Calico's traffic to this host from the other nodes, accepted from the zone the uplink is in "
           "whatever that zone's target is (a STIG host's default zone drop included)")
    if runtime is None:
        return Entry("policy", spec.name, "NOT loaded in firewalld", why, present=False)
    summary = (f"traffic from {_zones(runtime.get('ingress_zones'), spec.ingress_zones)} to "
               f"{_zones(runtime.get('egress_zones'), spec.egress_zones)}; target {runtime.get('target') or '?'} "
               "(anything else goes on to the zone's own rules)")
    owners = dict(_host_owners(config, facts))
    owners[("target", spec.target)] = ("accepts only the ports and protocols listed here; the rest goes on "
                                       "to the zone's own rules", "host_ports")
    return Entry("policy", spec.name, summary, why, accepted(runtime, owners))


def _catch_all_entry(config: Config, facts: HostFacts, name: str, zone: str, actual: Any) -> Entry:
    why = (f"firewalld < 2.0 applies a policy only between zones with an interface or source bound; zone "
           f"{zone} has none, so traffic reaches it only through its catch-all (an uplink bound to no zone), "
           f"where policy {config.firewalld.host_policy} never applies: the same ports go into that zone as "
           "this service")
    service, where = actual.service, actual.catch_all
    in_zone = where is not None and name in [str(s) for s in (where.runtime or {}).get("services") or ()]
    if service is None or service.runtime is None or not in_zone:
        return Entry("service", name, f"NOT in effect in zone {zone}", why, present=False)
    return Entry("service", name, f"made by calfwd; added to zone {zone} (the default zone); as firewalld has "
                 "it loaded (runtime)", why, accepted(service.runtime, _host_owners(config, facts)))


def _nft_entry(config: Config, want: Desired, listing: Optional[List[Dict[str, Any]]]) -> Entry:
    d = want.nft
    name = f"{d.family} {d.table}"
    why = ("natOutgoing: traffic from pods to addresses outside every pool leaves with this host's "
           "address. Felix has the same rule in iptables, but firewalld <= 1.x flushes it at every "
           "reload and restart; firewalld never touches this table")
    if listing is None:
        return Entry("nftables table", name, "NOT present", why, present=False)
    items = []
    for obj in listing:
        body = obj.get("set") or {}
        if body.get("name") in ("masq4", "masq6"):
            items += [Item("masquerade source", _elem(e), "a Calico IP pool with natOutgoing", "nat_outgoing")
                      for e in body.get("elem") or ()]
    items.sort(key=lambda i: (ipaddress.ip_network(i.value).version, ipaddress.ip_network(i.value)))
    return Entry("nftables table", name, "made by calfwd; masquerades pod traffic leaving the pools, "
                 "nothing else (it accepts and drops nothing)", why, tuple(items))


def _elem(elem: Any) -> str:
    if isinstance(elem, dict) and "prefix" in elem:
        return str(ipaddress.ip_network(f"{elem['prefix']['addr']}/{elem['prefix']['len']}"))
    return str(ipaddress.ip_network(str(elem)))


def _untouched(config: Config, want: Desired, facts: HostFacts, actual: Any, seen: Observed) -> Tuple[str, ...]:
    lines = []
    fwd = want.firewalld
    if fwd is not None and facts.firewalld_running:
        target = _target(seen.default_zone_target) if seen.default_zone_target else "?"
        extra = (f", except that calfwd's service {fwd.host_service.name} is added to it (above)"
                 if fwd.catch_all_zone == facts.default_zone and fwd.host_service is not None else "")
        lines.append(f"the default zone {facts.default_zone} and its target {target}: not changed{extra}")
        loaded = {str(z) for z in (actual.zones_runtime if actual is not None else ())}
        others = sorted(loaded - {facts.default_zone} - ({fwd.zone.name} if fwd.zone.owned else set()))
        if others:
            lines.append("the other zones (" + ", ".join(others) + "): not changed"
                         + ("" if fwd.zone.owned else f"; zone {fwd.zone.name} gets only Calico's interfaces"))
        lines.append("every other firewalld policy and service: not changed")
    lines += [
        "firewalld's own nftables table (inet firewalld): never written; calfwd talks to firewalld over "
        "D-Bus only, never through its direct interface or passthroughs",
        "Felix's and kube-proxy's rules (iptables chains cali-*, KUBE-*; their nftables tables): never "
        "changed; calfwd only reads Felix's chains to notice when firewalld flushed them",
    ]
    if seen.guard_dropin:
        lines.append(f"firewalld.service is unchanged but for calfwd's drop-in {seen.guard_dropin} (the flush "
                     "guard): it opens nothing; it hides the iptables tools from firewalld so that its "
                     "reloads do not flush Felix's and kube-proxy's iptables rules")
    return tuple(lines)
