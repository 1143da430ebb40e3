"""The Lab: a Calico node with firewalld, a pod, an outside proxy and a routed peer.

    pod (eth0) ==veth== (caliXXXXXXXXXXX) node (eth0) ==veth== [br0 in lan] == proxy (eth0)
                                                                            == peer  (eth0)

- node: forwarding on; private bus; firewalld (not started by default); Calico rules.
- pod: /32 and /128 from the pools, `default via 169.254.1.1 dev eth0 onlink` and
  `default via fe80::ecee:eeff:feee:eeee` (the node-side veth has MAC ee:ee:ee:ee:ee:ee
  and proxy ARP, exactly as Calico's CNI plugin sets it up). Echo server on pod_port.
- proxy: on the LAN, no route back to the pools: pod egress works only masqueraded
  (Felix's natOutgoing). Echo server on proxy_port.
- peer: on the LAN with routes to the pools via the node: reaches the pod unNATed.
  It is also the node's default gateway (it does not forward).
- lan: just a bridge joining the three LAN veths.
"""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from . import probe
from .calico import CalicoSim, Workload
from .dbus import PrivateBus
from .firewalld import Firewalld
from .netns import PREFIX, NamespaceGroup, Netns, add_veth, unique_id
from .versions import FirewalldBuild

CALICO_MAC = "ee:ee:ee:ee:ee:ee"
CALICO_GW4 = "169.254.1.1"
CALICO_GW6 = "fe80::ecee:eeff:feee:eeee"  # link-local of CALICO_MAC (EUI-64)


@dataclass(frozen=True)
class Addressing:
    """All addresses: IPv4 from 198.18.0.0/15, IPv6 from 2001:db8::/32."""
    pool_v4: str = "198.18.64.0/20"
    block_v4: str = "198.18.64.0/26"
    pod_v4: str = "198.18.64.10"
    pool_v6: str = "2001:db8:64::/64"
    block_v6: str = "2001:db8:64::/122"
    pod_v6: str = "2001:db8:64::10"
    lan_prefix_v4: int = 24
    node_v4: str = "198.18.0.1"
    proxy_v4: str = "198.18.0.2"
    peer_v4: str = "198.18.0.3"
    lan_prefix_v6: int = 64
    node_v6: str = "2001:db8:0:1::1"
    proxy_v6: str = "2001:db8:0:1::2"
    peer_v6: str = "2001:db8:0:1::3"
    proxy_port: int = 3128
    pod_port: int = 8080


class Lab(NamespaceGroup):
    """Build with start() or `with Lab(workdir) as lab:`; close() always tears everything down."""

    def __init__(self, workdir: Optional[Path] = None, addr: Addressing = Addressing(),
                 backend: str = "nftables", calico: bool = True, uplink: str = "eth0",
                 firewalld: Optional[FirewalldBuild] = None):
        self.id = unique_id()
        self._own_workdir = workdir is None  # removed on close(); pass one to keep the logs
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="calfwd-lab-"))
        self.addr = addr
        self.bus_name = self.id
        self.bus_address = "unix:abstract=/calfwd-test/%s" % self.bus_name
        env = {"DBUS_SYSTEM_BUS_ADDRESS": self.bus_address}  # reachable only from node
        self.node, self.pod, self.proxy, self.peer, self.lan = (
            Netns("%s%s-%s" % (PREFIX, self.id, role), env)
            for role in ("node", "pod", "proxy", "peer", "lan"))
        self.uplink = uplink  # the LAN side of node, proxy and peer; node's default routes go out of it
        self.workload = Workload("cali" + secrets.token_hex(6)[:11], addr.pod_v4, addr.pod_v6)
        self.bus = PrivateBus(self.node, self.workdir, self.bus_name)
        self.firewalld = Firewalld(self.node, self.bus, self.workdir, backend=backend, build=firewalld)
        self.calico = CalicoSim(self.node, (addr.pool_v4,), (addr.pool_v6,), (self.workload,))
        self._install_calico = calico

    @property
    def namespaces(self) -> List[Netns]:
        return [self.node, self.pod, self.proxy, self.peer, self.lan]

    def start(self) -> "Lab":
        try:
            for ns in self.namespaces:
                ns.create()
            self._lan()
            self._node()
            self._pod()
            self.bus.start()
            probe.start_echo_server(self.proxy, self.addr.proxy_port)
            probe.start_echo_server(self.pod, self.addr.pod_port)
            if self._install_calico:
                self.calico.install()
        except BaseException:
            self.close()
            raise
        return self

    def connect(self, src: Netns, dst_ip: str, port: int, timeout: float = 1.0) -> bool:
        return probe.connect(src, dst_ip, port, timeout)

    def pod_to_proxy(self, v6: bool = False, timeout: float = 1.0) -> bool:
        dst = self.addr.proxy_v6 if v6 else self.addr.proxy_v4
        return self.connect(self.pod, dst, self.addr.proxy_port, timeout)

    def peer_to_pod(self, v6: bool = False, timeout: float = 1.0) -> bool:
        dst = self.addr.pod_v6 if v6 else self.addr.pod_v4
        return self.connect(self.peer, dst, self.addr.pod_port, timeout)

    # "Traffic works" in the incident's sense: a new connection attempted within `within`
    # seconds succeeds. Attempts are short (ATTEMPT) so that one attempt that hits firewalld's
    # drop-everything-new reload window does not use up the whole budget.
    def pod_reaches_proxy(self, within: float = 1.0, v6: bool = False) -> bool:
        return probe.eventually(lambda: self.pod_to_proxy(v6, timeout=probe.ATTEMPT), within)

    def peer_reaches_pod(self, within: float = 1.0, v6: bool = False) -> bool:
        return probe.eventually(lambda: self.peer_to_pod(v6, timeout=probe.ATTEMPT), within)

    # -- building blocks ---------------------------------------------------------------

    def _lan(self) -> None:
        a = self.addr
        self.lan.run("ip", "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        hosts = ((self.node, "node", a.node_v4, a.node_v6), (self.proxy, "proxy", a.proxy_v4, a.proxy_v6),
                 (self.peer, "peer", a.peer_v4, a.peer_v6))
        for ns, port, v4, v6 in hosts:
            add_veth(self.lan, port, ns, self.uplink)
            self.lan.run("ip", "link", "set", port, "master", "br0", "up")
            ns.run("ip", "addr", "add", "%s/%d" % (v4, a.lan_prefix_v4), "dev", self.uplink)
            ns.run("ip", "addr", "add", "%s/%d" % (v6, a.lan_prefix_v6), "dev", self.uplink, "nodad")
            ns.run("ip", "link", "set", self.uplink, "up")
        self.lan.run("ip", "link", "set", "br0", "up")
        for family, pool, node, peer in (("-4", a.pool_v4, a.node_v4, a.peer_v4),
                                         ("-6", a.pool_v6, a.node_v6, a.peer_v6)):
            self.peer.run("ip", family, "route", "add", pool, "via", node)
            # The node needs a default route: proxy ARP answers for 169.254.1.1 only if it is
            # routable through another interface. The peer plays the LAN's router.
            self.node.run("ip", family, "route", "add", "default", "via", peer)

    def _node(self) -> None:
        a, cali = self.addr, self.workload.iface
        for key in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv6.conf.default.forwarding"):
            self.node.sysctl(key, 1)
        add_veth(self.node, cali, self.pod, "eth0", a_mac=CALICO_MAC)
        self.node.sysctl("net.ipv4.conf.%s.proxy_arp" % cali, 1)
        self.node.sysctl("net.ipv4.neigh.%s.proxy_delay" % cali, 0)
        self.node.sysctl("net.ipv6.conf.%s.accept_dad" % cali, 0)
        self.node.run("ip", "link", "set", cali, "up")
        self.node.run("ip", "-4", "route", "add", "blackhole", a.block_v4, "proto", "80")
        self.node.run("ip", "-6", "route", "add", "blackhole", a.block_v6, "proto", "80")
        self.node.run("ip", "-4", "route", "add", a.pod_v4 + "/32", "dev", cali, "scope", "link")
        self.node.run("ip", "-6", "route", "add", a.pod_v6 + "/128", "dev", cali)

    def _pod(self) -> None:
        a = self.addr
        self.pod.sysctl("net.ipv6.conf.eth0.accept_dad", 0)
        self.pod.run("ip", "addr", "add", a.pod_v4 + "/32", "dev", "eth0")
        self.pod.run("ip", "addr", "add", a.pod_v6 + "/128", "dev", "eth0", "nodad")
        self.pod.run("ip", "link", "set", "eth0", "up")
        self.pod.run("ip", "-4", "route", "add", "default", "via", CALICO_GW4, "dev", "eth0", "onlink")
        self.pod.run("ip", "-6", "route", "add", "default", "via", CALICO_GW6, "dev", "eth0")
