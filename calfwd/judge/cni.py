"""Which CNI this node runs: plain Calico, Canal (Calico policy + flannel's VXLAN) or flannel.

Pure: drivers/hostnet.py (links, BGP routes) and the Reconciler (Felix's rules, the subnet
file) gather CniFacts; judge() turns them into a CniVerdict that desired.py builds the zone
and the host ports from. Without the Kubernetes API the node still shows which CNI it runs:

- flannel's devices (`flannel.<VNI>`, `flannel-v6.<VNI>`, `flannel-wg`, `flannel-wg-v6`)
  exist only where flanneld runs (RKE2's Canal, k3s);
- Felix's rules (its nftables table `calico`, or its `cali-` chains in iptables-nft) and the
  `cali*` veths of Calico's CNI plugin exist only where Calico enforces policy;
- k3s's flannel hangs its pods off the bridge `cni0`.

So flannel's device with Calico present is Canal, flannel's device (or `cni0` with flannel's
subnet file) without Calico is flannel, and Calico alone is Calico. The subnet file alone is
never enough: on RKE2 it lives inside the flannel container (docs/rke2-k3s-facts.md section 2)
and a Calico node may carry a stale one. Calico's own networking (IP-in-IP on an up `tunl0`,
`vxlan.calico`, `vxlan-v6.calico`, or BIRD's routes for BGP) decides whether a Canal node
still needs Calico's BGP/IP-in-IP/VXLAN ports; `tunl0` counts only when up, since the ipip
module creates it (down) wherever it is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

KINDS = ("calico", "canal", "flannel", "unknown")
CONFIGURABLE = ("auto", "calico", "canal", "flannel")
AUTO = "auto"

FLANNEL_BRIDGE = "cni0"  # the bridge plugin's default name, k3s's pods' bridge
# flannel's devices at their defaults (VNI 1): bound to calfwd's zone whether present or not,
# so the zone does not change when flanneld (re)creates them.
FLANNEL_DEVICES = ("flannel.1", "flannel-v6.1", "flannel-wg", "flannel-wg-v6")
# flannel's WireGuard backend: device -> the port it listens on (flannel's defaults).
FLANNEL_WIREGUARD = {"flannel-wg": 51820, "flannel-wg-v6": 51821}
VXLAN_DEFAULT_PORT = 8472  # the kernel's default, which flannel keeps when its Port is 0
CALICO_TUNNELS = ("tunl0", "vxlan.calico", "vxlan-v6.calico")


def is_flannel_device(name: str) -> bool:
    """flannel.<VNI>, flannel-v6.<VNI>, flannel-wg, flannel-wg-v6."""
    if name in FLANNEL_WIREGUARD:
        return True
    for prefix in ("flannel.", "flannel-v6."):
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return True
    return False


def is_calico_workload(name: str) -> bool:
    """A veth of Calico's CNI plugin (cali + 11 hex digits); not 'calico' tunnel devices."""
    return name.startswith("cali") and not name.startswith("calico") and "." not in name


@dataclass(frozen=True)
class Link:
    """One interface as `ip -d -j link` shows it: kind is its linkinfo kind ("vxlan",
    "bridge", "wireguard", "veth", "" when none), port a VXLAN device's UDP port."""

    name: str
    kind: str = ""
    port: Optional[int] = None
    up: bool = False


@dataclass(frozen=True)
class CniFacts:
    """What the node shows. links: every interface ("" kind when only the name is known).
    felix: Felix's rules seen (True), looked for and not seen (False), not readable (None).
    error: why the links could not be read in detail ("" when they could)."""

    links: Tuple[Link, ...] = ()
    felix: Optional[bool] = False
    subnet_file: str = ""
    subnet_file_exists: bool = False
    bird_routes: bool = False
    error: str = ""


@dataclass(frozen=True)
class CniVerdict:
    """kind: one of KINDS ("unknown" is treated as Calico, today's behaviour); why: one line.
    flannel_devices: flannel's devices present; vxlan_ports: their UDP ports;
    wireguard_devices: flannel's WireGuard devices present; calico_networking: Calico's own
    IP-in-IP, VXLAN or BGP is in use (its host ports stay open)."""

    kind: str = "calico"
    why: str = "not judged"
    flannel_devices: Tuple[str, ...] = ()
    vxlan_ports: Tuple[int, ...] = ()
    wireguard_devices: Tuple[str, ...] = ()
    calico_networking: bool = True

    def line(self) -> str:
        return f"cni: {self.kind} ({self.why})"

    @property
    def flannel_ports(self) -> Tuple[Tuple[str, str], ...]:
        """The UDP ports flannel's backend receives on: the VXLAN devices' ports, the WireGuard
        devices' ports; VXLAN's default when no device shows which backend is used (yet)."""
        ports = sorted(set(self.vxlan_ports) | {FLANNEL_WIREGUARD[d] for d in self.wireguard_devices})
        return tuple((str(p), "udp") for p in (ports or [VXLAN_DEFAULT_PORT]))


def judge(facts: CniFacts, configured: str = AUTO) -> CniVerdict:
    """The CNI to serve, and why in one line: the configured kind when one is set (with the
    backend the node shows), else as the module's docstring says. Calico whenever in doubt,
    which is what calfwd did before it knew of any other CNI."""
    names = {link.name for link in facts.links}
    flannel = tuple(sorted(n for n in names if is_flannel_device(n)))
    ports = tuple(sorted({link.port or VXLAN_DEFAULT_PORT for link in facts.links
                          if link.name in flannel and link.name not in FLANNEL_WIREGUARD}))
    wireguard = tuple(d for d in FLANNEL_WIREGUARD if d in names)
    tunnels = [link.name for link in facts.links if link.name in CALICO_TUNNELS
               and (link.up or link.name != "tunl0")]
    calico_net = bool(tunnels) or facts.bird_routes

    def verdict(kind: str, why: str) -> CniVerdict:
        return CniVerdict(kind, why, flannel, ports, wireguard, calico_net)

    if configured != AUTO:
        return verdict(configured, f'configured ([cni] kind = "{configured}")')

    workloads = sorted(n for n in names if is_calico_workload(n))
    calico_seen: List[str] = []
    if facts.felix:
        calico_seen.append("Felix's rules")
    if workloads:
        calico_seen.append(f"{len(workloads)} cali* interface" + ("s" if len(workloads) > 1 else ""))
    calico = " and ".join(calico_seen)
    net_why = _calico_networking_why(tunnels, facts.bird_routes)
    if facts.error and not names:
        return verdict("unknown", f"cannot read the links ({facts.error}): treated as Calico")
    if flannel:
        devices = ", ".join(flannel)
        if calico:
            also = f"; Calico's own networking too ({net_why})" if calico_net else ""
            return verdict("canal", f"flannel's {devices} with Calico's policy ({calico}){also}")
        if FLANNEL_BRIDGE in names:
            return verdict("flannel", f"flannel's {devices} and the bridge {FLANNEL_BRIDGE}, no Calico")
        if facts.felix is None:
            return verdict("unknown", f"flannel's {devices} present but Felix's rules unreadable: serving "
                           "Calico; set [cni] kind")
        return verdict("flannel", f"flannel's {devices}, no Calico")
    subnet = f"flannel's subnet file {facts.subnet_file}"
    if FLANNEL_BRIDGE in names and facts.subnet_file_exists and not calico:
        return verdict("flannel", f"the bridge {FLANNEL_BRIDGE} and {subnet}, no flannel device "
                       "(host-gw backend), no Calico")
    stray = f"; {subnet} ignored: no flannel device" if facts.subnet_file_exists else ""
    if calico or calico_net:
        seen = calico or net_why
        return verdict("calico", f"Calico ({seen}), no flannel device{stray}")
    felix = "Felix's rules unread" if facts.felix is None else "no Felix's rules"
    return verdict("calico", f"not detected yet (no Calico, flannel or bridge device, {felix}): "
                   f"serving Calico{stray}")


def _calico_networking_why(tunnels: List[str], bird: bool) -> str:
    parts = list(tunnels) + (["BIRD's BGP routes"] if bird else [])
    return ", ".join(parts)
