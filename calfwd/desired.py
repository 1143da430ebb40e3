"""Everything calfwd wants to exist, computed from the config and a few host facts.

Pure: no I/O, so every decision about *what* calfwd makes is testable without root.
The plan modules compare this with what the drivers read; only the drivers touch the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from calfwd.config import Config
from calfwd.config.schema import HOST_PORTS, HOST_PROTOCOLS, WIREGUARD_DEVICES, IPNetwork
from calfwd.judge.guard import version_tuple
from calfwd.judge.cni import CALICO_TUNNELS, FLANNEL_BRIDGE, FLANNEL_DEVICES, CniVerdict

CALFWD_DESCRIPTION = "Managed by calfwd: Calico pod traffic. Edit /etc/calfwd/calfwd.toml, not this."


@dataclass(frozen=True)
class HostFacts:
    """What the desired state depends on that only the running host knows."""

    firewalld_running: bool = False
    firewalld_version: str = ""
    default_zone: str = "public"
    firewalld_state: str = ""  # "RUNNING", "INIT", "FAILED"; "" when nobody owns its name
    wireguard_devices: Tuple[str, ...] = ()  # Calico's WireGuard devices present on the host
    strict_forward_ports: bool = False  # firewalld >= 2.3 with StrictForwardPorts=yes
    firewalld_backend: str = ""  # FirewallBackend, for the metrics' info line
    cni: CniVerdict = CniVerdict()  # which CNI is served (judge/cni.py); the default is Calico


@dataclass(frozen=True)
class NftDesired:
    """calfwd's one nftables table: natOutgoing that firewalld's iptables flush cannot reach."""

    table: str
    # Network objects, parsed once by config/__init__.py; rendered to nft's prefix form without parsing.
    pools4: Tuple[IPNetwork, ...]
    pools6: Tuple[IPNetwork, ...]
    masq4: Tuple[IPNetwork, ...]
    masq6: Tuple[IPNetwork, ...]
    calico_interfaces: Tuple[str, ...]  # nft spelling: 'cali*' for Calico's 'cali+'

    family: str = "inet"
    # Canal and flannel: masquerade as flannel's FLANNEL-POSTRTG does (plan/nftables.py), since
    # there flannel, not Felix, masquerades pod egress.
    flannel_nat: bool = False


@dataclass(frozen=True)
class ZoneSpec:
    """The zone Calico's interfaces are bound to.

    owned: calfwd created it and may set its target and remove it; a stock zone such as
    'trusted' only gets calfwd's interfaces (and sources) added, never anything else changed.
    """

    name: str
    owned: bool
    interfaces: Tuple[str, ...]
    sources: Tuple[str, ...] = ()
    target: str = "ACCEPT"
    description: str = CALFWD_DESCRIPTION


@dataclass(frozen=True)
class PolicySpec:
    """A firewalld policy calfwd owns entirely."""

    name: str
    ingress_zones: Tuple[str, ...]
    egress_zones: Tuple[str, ...]
    target: str
    ports: Tuple[Tuple[str, str], ...] = ()
    protocols: Tuple[str, ...] = ()
    priority: int = -1
    description: str = CALFWD_DESCRIPTION
    rich_rules: Tuple[str, ...] = ()  # in firewalld's own spelling, so reading back compares equal


@dataclass(frozen=True)
class ServiceSpec:
    """Calico's host ports as a firewalld service of calfwd's own, for the one case a policy
    cannot reach (catch_all_zone below). Removal stays exact: one entry in that zone, and the
    service itself."""

    name: str
    ports: Tuple[Tuple[str, str], ...]
    protocols: Tuple[str, ...]
    description: str = CALFWD_DESCRIPTION


@dataclass(frozen=True)
class FirewalldDesired:
    mode: str  # "permanent": firewalld restores it inside its own reloads; "runtime": calfwd does
    zone: ZoneSpec
    policies: Tuple[PolicySpec, ...]
    host_service: Optional[ServiceSpec] = None
    # firewalld < 2.0 applies a policy only between zones with something bound: traffic that
    # reaches the default zone through its catch-all (an uplink bound to no zone, as without
    # NetworkManager) never meets the host policy. When this zone (the default zone, which the
    # host policy names) has nothing bound, the planner puts host_service into it instead: the
    # narrowest ingress that works, exactly the traffic the host policy was meant for.
    catch_all_zone: str = ""


@dataclass(frozen=True)
class Desired:
    nft: NftDesired
    firewalld: Optional[FirewalldDesired]  # None: firewalld management disabled in the config


def nft_interface(name: str) -> str:
    """Calico and firewalld write wildcards as 'cali+'; nftables as 'cali*'."""
    return name[:-1] + "*" if name.endswith("+") else name


def desired_nft(config: Config, cni: CniVerdict = CniVerdict()) -> NftDesired:
    def cidrs(nets, version):
        return tuple(sorted((n for n in nets if n.version == version), key=lambda n: (n.network_address, n.prefixlen)))

    return NftDesired(
        table=config.nft_table,
        pools4=cidrs(config.ip_pools, 4),
        pools6=cidrs(config.ip_pools, 6),
        masq4=cidrs(config.nat_outgoing, 4),
        masq6=cidrs(config.nat_outgoing, 6),
        calico_interfaces=tuple(nft_interface(i) for i in config.interfaces),
        flannel_nat=cni.kind in ("canal", "flannel"),
    )


def desired_firewalld(config: Config, facts: HostFacts) -> FirewalldDesired:
    """Zone for Calico's interfaces, a policy forwarding into it, a policy for Calico's host ports.

    Why a forward policy: traffic forwarded *into* pods (routed peers, NodePort backends) is
    judged by the ingress zone of the uplink, so an ACCEPT zone on cali+ alone does not let it
    through (firewalld issue 527). Why host ports in a policy of calfwd's own rather than in the
    host's zone: removal is then exact (delete the policy) and no stock zone is edited.
    Why pool CIDRs are not sources by default: a source binding wins over interface bindings
    and would accept host-bound traffic from anything on the uplink claiming a pool address;
    local pods and tunnelled peers are already covered by their interfaces.
    """
    fw = config.firewalld
    zone = ZoneSpec(
        name=fw.zone,
        owned=fw.zone not in STOCK_ZONES,
        interfaces=zone_interfaces(config, facts.cni),
        sources=tuple(n.with_prefixlen for n in config.ip_pools if n not in config.withheld_sources)
        if fw.trust_pool_sources else (),
    )
    host_zone = fw.host_zone or facts.default_zone
    ports, protocols = host_ports(config, facts)
    policies = [forward_policy(config, zone)]
    service = None
    catch_all = ""
    if ports or protocols:
        service = ServiceSpec(fw.host_policy, ports, protocols)
        version = version_tuple(facts.firewalld_version)
        if host_zone == facts.default_zone and version is not None and version < (2, 0):
            catch_all = host_zone
        policies.append(PolicySpec(
            name=fw.host_policy,
            ingress_zones=(host_zone,),
            egress_zones=("HOST",),
            target="CONTINUE",
            ports=ports,
            protocols=protocols,
        ))
    return FirewalldDesired(mode=fw.mode, zone=zone, policies=tuple(policies), host_service=service,
                            catch_all_zone=catch_all)



# calico.host_ports that carry Calico's own networking between nodes: on Canal and flannel nodes
# flannel carries it, so these stay shut unless Calico's own networking is in use too.
CALICO_NETWORKING_PORTS = ("bgp", "ipip", "vxlan")


def zone_interfaces(config: Config, cni: CniVerdict) -> Tuple[str, ...]:
    """What calfwd's zone binds, per CNI.

    calico (and unknown): calico.interfaces, as always. canal: those (Calico's tunnel devices
    only while Calico's own networking is in use) plus flannel's devices, through which the
    other nodes' pods arrive. flannel: the bridge its pods hang off and flannel's devices;
    never the veths themselves (`veth+` is every container's, and bridge ports are judged by
    the bridge's zone anyway). flannel's devices at their defaults are bound whether present or
    not, like Calico's, so the zone does not change when flanneld recreates them.
    """
    flannel = tuple(dict.fromkeys(FLANNEL_DEVICES + cni.flannel_devices))
    if cni.kind == "canal":
        calico = tuple(i for i in config.interfaces if cni.calico_networking or i not in CALICO_TUNNELS)
        return calico + tuple(d for d in flannel if d not in calico)
    if cni.kind == "flannel":
        return (FLANNEL_BRIDGE,) + flannel
    return config.interfaces


def host_ports(config: Config, facts: HostFacts) -> Tuple[Tuple[Tuple[str, str], ...], Tuple[str, ...]]:
    """The ports and IP protocols the host policy opens: calico.host_ports (Calico's WireGuard
    ports while its devices exist); on Canal without Calico's networking calico.host_ports
    less BGP, IP-in-IP and VXLAN (4789), plus flannel's backend ports; on flannel those alone."""
    cni = facts.cni
    names = config.host_ports
    if cni.kind == "flannel":
        names = ()
    elif cni.kind == "canal" and not cni.calico_networking:
        names = tuple(n for n in names if n not in CALICO_NETWORKING_PORTS)
    ports = tuple(p for name in names for p in HOST_PORTS.get(name, ()))
    if "wireguard" not in names:
        ports += tuple(WIREGUARD_DEVICES[d] for d in facts.wireguard_devices if d in WIREGUARD_DEVICES)
    if cni.kind in ("canal", "flannel"):
        ports += tuple(p for p in cni.flannel_ports if p not in ports)
    protocols = tuple(p for name in names for p in HOST_PROTOCOLS.get(name, ()))
    return ports, protocols


def forward_policy(config: Config, zone: ZoneSpec) -> PolicySpec:
    """Forwarding from any zone into Calico's zone.

    calfwd's own zone holds only Calico's interfaces, so ACCEPT into it is exactly Calico's
    traffic. A stock zone ('trusted', 'internal') also holds whatever the administrator put
    there: ACCEPT into it would open forwarding from the uplink to all of that. There the
    policy accepts only what is addressed to the pools and lets the rest go on (CONTINUE).
    """
    name = config.firewalld.forward_policy
    if zone.owned:
        return PolicySpec(name=name, ingress_zones=("ANY",), egress_zones=(zone.name,), target="ACCEPT")
    rules = tuple(f'rule family="ipv{net.version}" destination address="{net.with_prefixlen}" accept'
                  for net in config.ip_pools)
    return PolicySpec(name=name, ingress_zones=("ANY",), egress_zones=(zone.name,), target="CONTINUE",
                      rich_rules=rules)


# Zones firewalld ships; calfwd never creates, retargets or removes these.
STOCK_ZONES = frozenset({
    "block", "dmz", "drop", "external", "home", "internal", "nm-shared", "public", "trusted", "work",
    "libvirt", "docker",
})


def desired(config: Config, facts: HostFacts = HostFacts()) -> Desired:
    fw = desired_firewalld(config, facts) if config.firewalld.enabled else None
    return Desired(nft=desired_nft(config, facts.cni), firewalld=fw)
