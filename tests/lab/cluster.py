"""The Cluster: two Calico nodes on an underlay, the external proxy, kube-proxy's Services.

    pod1 ==veth== (cali...) node1 (eth0) ==\\                  /== (eth0) node2 (cali...) ==veth== pod2
                                            [br0 in lan] -- proxy (eth0)
                                          node1 <== encapsulation ==> node2

- nodeN: its own private bus, firewalld (not started by default), Felix's rules (iptables
  dump or nftables dataplane, felix.py), kube-proxy (services.py), the tunnel (encap.py); an
  echo server on 179/tcp standing for BIRD. Default route via the proxy (proxy ARP for
  169.254.1.1 needs one), which does not forward.
- podN: a /32 from nodeN's block behind a `cali...` veth (MAC ee:ee:ee:ee:ee:ee, proxy ARP),
  `default via 169.254.1.1`, as Calico's CNI plugin builds it. Echo server on pod_port.
- proxy: outside the cluster, no route to the pools: pod egress works only masqueraded
  (natOutgoing). Echo server on proxy_port; also the external client of the NodePort.
- Services: ClusterIP `default/web:http` and NodePort `default/web-np:http`, each backed by
  pod2 (on the *other* node from pod1 and from node1's NodePort).

The uplink eth0 is either bound to the default zone in firewalld's permanent configuration
("bound": what NetworkManager does on RHEL, done here offline with firewall-offline-cmd, as
image builds do) or left to the default zone's catch-all ("unbound": no NetworkManager).

Each node is a ClusterNode with what lab.calfwd's Calfwd and footprint() expect of a Lab
(node, bus, firewalld, workdir, addr), so calfwd runs on each node exactly as in the Lab.
With flush_guard=True, starting calfwd on a node first runs `calfwd guard auto`, as the
package's %post does, so the drop-in (where this firewalld flushes) is in effect from
firewalld's next start: a node as the package leaves it.
IPv4 only: the pools' IPv6 half appears in calfwd's config, nowhere else.

cni="canal" builds RKE2's Canal instead: flannel's VXLAN (`flannel.1`, 8472/udp) between the
nodes, flannel's masquerade (flannel.py's FlannelSim, the node's block as its lease, the
pool as flannel's network, no forward rules: RKE2 turns them off), and Felix in policy-only
mode, its sets holding calico-node's unused default pool (192.168.0.0/16, natOutgoing) and no
tunnel of its own. calfwd runs the fleet's one-line config, `ip_pools = "auto"`.

cni="flannel" builds k3s's flannel: no Felix at all; each node's lease is a /24 of the pool
(k3s's node-cidr-mask-size), held by the real bridge `cni0` as its gateway address .1 (the
bridge plugin with isGateway, as flannel's CNI plugin delegates to it); the pod's veth
(`veth...`) is a port of cni0, the pod has its address /24 and `default via` .1. flannel.1
(8472/udp) between the nodes as for Canal; flannel's masquerade and its forward rules (k3s
keeps them), and flannel's subnet file in the node's workdir (where k3s writes
/run/flannel/subnet.env); calfwd's config is the same one line with `[flannel] subnet_file`
pointed at it.

On Canal and flannel each pod also has a hostPort (portmap.py: the CNI portmap plugin's DNAT
of node:host_port to pod:pod_port), written when the cluster is built; nothing re-creates it
after a flush, so resync() leaves it alone (PortmapSim.install() is the pod recreated).
"""

from __future__ import annotations

import ipaddress
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Optional, Tuple, Union

from calfwd.judge import guard

from . import probe
from .calfwd import Calfwd
from .calico import Workload
from .dbus import PrivateBus
from .encap import ENCAPSULATIONS, TUNNELS, Endpoint, Tunnel, wireguard_keys
from .felix import IptablesFelix, NftFelix
from .firewalld import Firewalld
from .flannel import FlannelSim
from .portmap import PortmapSim
from .netns import PREFIX, NamespaceGroup, Netns, add_veth, unique_id
from .services import KubeProxy, Service
from . import versions
from .topology import CALICO_GW4, CALICO_MAC

DATAPLANES = ("iptables", "nftables")
CNIS = ("calico", "canal", "flannel")
FLANNEL_CNIS = ("canal", "flannel")  # flannel's VXLAN between the nodes, portmap's hostPorts
K3S_LEASE_PREFIX = 24  # k3s's --node-cidr-mask-size (IPv4) default
CANAL_DEFAULT_POOL = "192.168.0.0/16"  # calico-node's default-ipv4-ippool: unused on Canal
AUTO_CONFIG = '[calico]\nip_pools = "auto"\n'

UPLINKS = ("bound", "unbound")
UPLINK = "eth0"


@dataclass(frozen=True)
class ClusterAddressing:
    """IPv4 from 198.18.0.0/15: underlay 198.18.0.0/24, pool 198.18.64.0/20 (a /26 block per
    node), services 198.18.96.0/24."""
    pool_v4: str = "198.18.64.0/20"
    pool_v6: str = "2001:db8:64::/64"  # in calfwd's config only (minimal_config names both)
    block_prefix: int = 26
    underlay_prefix: int = 24
    underlay_base: str = "198.18.0.0"
    proxy_v4: str = "198.18.0.3"
    proxy_port: int = 3128
    pod_port: int = 8080
    bgp_port: int = 179
    cluster_ip: str = "198.18.96.10"
    nodeport_cluster_ip: str = "198.18.96.11"
    service_port: int = 80
    node_port: int = 30080
    host_port: int = 8081  # Canal and flannel: each pod's hostPort (portmap), to its pod_port

    def endpoint(self, index: int) -> Endpoint:
        """Node `index` (1, 2): underlay .index, block number index-1, tunnel address its first."""
        pool = ipaddress.ip_network(self.pool_v4)
        block = list(pool.subnets(new_prefix=self.block_prefix))[index - 1]
        return Endpoint(name="node%d" % index,
                        underlay=str(ipaddress.ip_address(self.underlay_base) + index),
                        block=str(block), tunnel_ip=str(block.network_address),
                        vtep_mac="66:cf:77:00:00:%02x" % index)

    def pod_ip(self, index: int) -> str:
        return str(ipaddress.ip_network(self.endpoint(index).block).network_address + 10)


class ClusterNode:
    """One node and its pod. Attributes named as Lab's, for Calfwd(node) and footprint(node)."""

    def __init__(self, cluster: "Cluster", index: int):
        self.index = index
        self.endpoint = cluster.addr.endpoint(index)
        self.name = self.endpoint.name
        self.addr = cluster.addr
        self.workdir = cluster.workdir / self.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        bus_name = "%s-%s" % (cluster.id, self.name)
        env = {"DBUS_SYSTEM_BUS_ADDRESS": "unix:abstract=/calfwd-test/%s" % bus_name}
        self.node = Netns("%s%s-%s" % (PREFIX, cluster.id, self.name), env)
        self.pod = Netns("%s%s-pod%d" % (PREFIX, cluster.id, index))
        veth = "veth" if cluster.cni == "flannel" else "cali"  # the bridge plugin's name, or Calico's
        self.workload = Workload(veth + "%s%02d" % (cluster.id, index) + "0" * 3, cluster.addr.pod_ip(index))
        self.bus = PrivateBus(self.node, self.workdir, bus_name)
        self.firewalld = Firewalld(self.node, self.bus, self.workdir, build=cluster.firewalld_build)
        self.felix: Union[IptablesFelix, NftFelix, None] = None
        self.flannel: Optional[FlannelSim] = None
        self.subnet_file = self.workdir / "subnet.env"  # flannel's (k3s: /run/flannel/subnet.env)
        self.config = {"canal": AUTO_CONFIG,  # calfwd's, when none is given
                       "flannel": AUTO_CONFIG + '[flannel]\nsubnet_file = "%s"\n' % self.subnet_file,
                       }.get(cluster.cni)
        self.portmap: Optional[PortmapSim] = None
        self.kube: Optional[KubeProxy] = None
        self.tunnel: Optional[Tunnel] = None
        self.calfwd: Optional[Calfwd] = None
        self.flush_guard = cluster.flush_guard

    @property
    def pod_ip(self) -> str:
        return self.workload.ipv4

    def start_calfwd(self, config: Optional[str] = None) -> Calfwd:
        """calfwd's daemon on this node (minimal config by default), after its first reconcile;
        with the cluster's flush_guard, `calfwd guard auto` first."""
        self.calfwd = Calfwd(self, config or self.config)
        if self.flush_guard:
            self.install_guard()
        self.calfwd.start()
        return self.calfwd

    def install_guard(self) -> None:
        """`calfwd guard auto` (the package's %post); its drop-in's paths are hidden from
        firewalld from its next start on, as systemd would after a daemon-reload."""
        done = self.calfwd.cli("guard", "auto")
        if done.returncode != 0:
            raise RuntimeError("calfwd guard auto on %s: %s%s" % (self.name, done.stdout, done.stderr))
        dropin = Path(self.calfwd.env[guard.DROPIN_ENV])
        if dropin.exists():
            self.firewalld.inaccessible_paths = guard.parse_dropin(dropin.read_text())


class Cluster(NamespaceGroup):
    """Build with start() or `with Cluster(...) as cluster:`; close() tears everything down."""

    def __init__(self, workdir: Optional[Path] = None, encap: str = "vxlan", dataplane: str = "iptables",
                 uplink: str = "bound", zone: str = "public", calfwd: bool = True,
                 addr: ClusterAddressing = ClusterAddressing(), flush_guard: bool = False,
                 firewalld: str = versions.OWN, cni: str = "calico"):
        if cni not in CNIS:
            raise ValueError("cni %r: not one of %s" % (cni, ", ".join(CNIS)))
        if cni in FLANNEL_CNIS:
            encap = "flannel"  # Canal's and k3s's networking is flannel's
        elif encap == "flannel":
            raise ValueError("encap 'flannel' is Canal's or flannel's: use cni='canal' or 'flannel'")
        if cni == "flannel":
            addr = replace(addr, block_prefix=K3S_LEASE_PREFIX)
        self.cni = cni
        for value, allowed, what in ((encap, ENCAPSULATIONS, "encap"), (dataplane, DATAPLANES, "dataplane"),
                                     (uplink, UPLINKS, "uplink")):
            if value not in allowed:
                raise ValueError("%s %r: not one of %s" % (what, value, ", ".join(allowed)))
        if dataplane == "nftables" and encap != "vxlan":
            raise ValueError("dataplane 'nftables' comes from a VXLAN node's dump: encap must be vxlan")
        # Which firewalld both nodes run: the machine's, or a Debian release's unpacked tree
        # (versions.py; fetched once into its cache). Both nodes run the same one.
        self.firewalld_build = versions.fetch(firewalld)
        self.id = unique_id()
        self.encap, self.dataplane, self.uplink, self.zone, self.addr = encap, dataplane, uplink, zone, addr
        self.with_calfwd = calfwd  # paths.step_start starts calfwd on both nodes before firewalld
        self.flush_guard = flush_guard  # ClusterNode.start_calfwd runs `calfwd guard auto` first
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="calfwd-cluster-"))
        self.lan = Netns("%s%s-lan" % (PREFIX, self.id))
        self.proxy = Netns("%s%s-proxy" % (PREFIX, self.id))
        self.nodes: Tuple[ClusterNode, ...] = (ClusterNode(self, 1), ClusterNode(self, 2))
        self.services = (
            Service("default/web:http", addr.cluster_ip, addr.service_port, self.node2.pod_ip, addr.pod_port),
            Service("default/web-np:http", addr.nodeport_cluster_ip, addr.service_port, self.node2.pod_ip,
                    addr.pod_port, node_port=addr.node_port),
        )

    @property
    def node1(self) -> ClusterNode:
        return self.nodes[0]

    @property
    def node2(self) -> ClusterNode:
        return self.nodes[1]

    @property
    def namespaces(self) -> List[Netns]:
        return [ns for n in self.nodes for ns in (n.node, n.pod)] + [self.proxy, self.lan]

    def describe(self) -> str:
        tunnels = [n.tunnel for n in self.nodes if n.tunnel is not None]
        standin = " (userspace stand-in)" if any(t.standin for t in tunnels) else ""
        return "cni=%s encap=%s%s dataplane=%s uplink=%s zone=%s firewalld=%s" % (
            self.cni, self.encap, standin, self.dataplane, self.uplink, self.zone, self.firewalld_build.version)

    def start(self) -> "Cluster":
        try:
            for ns in self.namespaces:
                ns.create()
            self._underlay()
            for node in self.nodes:
                self._node(node)
            self._tunnels()
            probe.start_echo_server(self.proxy, self.addr.proxy_port)
            for node in self.nodes:
                probe.start_echo_server(node.pod, self.addr.pod_port)
                probe.start_echo_server(node.node, self.addr.bgp_port)
                node.bus.start()
                self._felix(node)
                node.kube = KubeProxy(node.node, self.services, self.addr.pool_v4)
                node.kube.install()
                if self.cni in FLANNEL_CNIS:
                    node.portmap = PortmapSim(node.node, self.addr.host_port, node.pod_ip, self.addr.pod_port,
                                              "%s-pod%d" % (self.id, node.index))
                    node.portmap.install()
                self._firewalld_config(node)
        except BaseException:
            self.close()
            raise
        return self


    # -- what happens in a cluster ---------------------------------------------------------

    def resync(self) -> None:
        """Felix's refresh, kube-proxy's canary check and flannel's resync, on every node (all
        come lazily). portmap has none: a flushed hostPort stays gone."""
        for node in self.nodes:
            if node.felix is not None:
                node.felix.restore()
            node.kube.resync()
            if node.flannel is not None:
                node.flannel.restore()
                if self.cni == "flannel":
                    node.flannel.forward_rules()

    # -- building blocks -------------------------------------------------------------------

    def _underlay(self) -> None:
        a = self.addr
        self.lan.run("ip", "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        hosts = [(n.node, n.name, n.endpoint.underlay) for n in self.nodes] + [(self.proxy, "proxy", a.proxy_v4)]
        for ns, port, ip in hosts:
            add_veth(self.lan, port, ns, UPLINK)
            self.lan.run("ip", "link", "set", port, "master", "br0", "up")
            ns.run("ip", "addr", "add", "%s/%d" % (ip, a.underlay_prefix), "dev", UPLINK)
            ns.run("ip", "link", "set", UPLINK, "up")
        self.lan.run("ip", "link", "set", "br0", "up")
        for node in self.nodes:
            node.node.run("ip", "route", "add", "default", "via", a.proxy_v4)

    def _node(self, node: ClusterNode) -> None:
        ns, pod, cali = node.node, node.pod, node.workload.iface
        ns.sysctl("net.ipv4.ip_forward", 1)
        ns.sysctl("net.ipv6.conf.all.forwarding", 1)  # Felix turns both on; calfwd's config names a v6 pool
        if self.cni == "flannel":
            self._bridge_pod(node)
            return
        add_veth(ns, cali, pod, "eth0", a_mac=CALICO_MAC)
        ns.sysctl("net.ipv4.conf.%s.proxy_arp" % cali, 1)
        ns.sysctl("net.ipv4.neigh.%s.proxy_delay" % cali, 0)
        ns.run("ip", "link", "set", cali, "up")
        if self.cni != "canal":  # Canal's host-local IPAM makes no block route
            ns.run("ip", "route", "add", "blackhole", node.endpoint.block, "proto", "bird")
        ns.run("ip", "route", "add", node.pod_ip + "/32", "dev", cali, "scope", "link")
        pod.run("ip", "addr", "add", node.pod_ip + "/32", "dev", "eth0")
        pod.run("ip", "link", "set", "eth0", "up")
        pod.run("ip", "route", "add", "default", "via", CALICO_GW4, "dev", "eth0", "onlink")

    def _bridge_pod(self, node: ClusterNode) -> None:
        """k3s: the bridge cni0 holds the lease's .1, the pod's veth is its port (the bridge
        plugin, isGateway), the pod has its address with the lease's prefix, default via .1."""
        ns, pod, veth = node.node, node.pod, node.workload.iface
        lease = ipaddress.ip_network(node.endpoint.block)
        gateway = str(lease.network_address + 1)
        ns.run("ip", "link", "add", "cni0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        ns.run("ip", "addr", "add", "%s/%d" % (gateway, lease.prefixlen), "dev", "cni0")
        ns.run("ip", "link", "set", "cni0", "up")
        add_veth(ns, veth, pod, "eth0")
        ns.run("ip", "link", "set", veth, "master", "cni0", "up")
        pod.run("ip", "addr", "add", "%s/%d" % (node.pod_ip, lease.prefixlen), "dev", "eth0")
        pod.run("ip", "link", "set", "eth0", "up")
        pod.run("ip", "route", "add", "default", "via", gateway, "dev", "eth0")

    def _tunnels(self) -> None:
        keys = {}
        if self.encap == "wireguard":
            keys = {n.name: wireguard_keys(n.node) for n in self.nodes}
        endpoints = [replace(n.endpoint, public_key=keys.get(n.name, ("", ""))[1]) for n in self.nodes]
        for node, local in zip(self.nodes, endpoints):
            peers = [e for e in endpoints if e.name != local.name]
            extra = {"private_key": keys[node.name][0]} if keys else {}
            node.tunnel = TUNNELS[self.encap](node.node, node.workdir, local, peers, UPLINK, **extra)
            node.tunnel.build()

    def _felix(self, node: ClusterNode) -> None:
        peers = [n.endpoint.underlay for n in self.nodes if n is not node]
        if self.cni == "canal":  # policy only: no tunnel of Felix's, its unused default pool
            hosts = [n.endpoint.underlay for n in self.nodes]
            node.felix = IptablesFelix(node.node, node.workdir, "none", UPLINK, CANAL_DEFAULT_POOL,
                                       node.workload, peers, hosts)
            node.felix.install()
            node.flannel = FlannelSim(node.node, self.addr.pool_v4, node.endpoint.block)
            node.flannel.install()
            return
        if self.cni == "flannel":  # k3s: no Felix; flannel's masquerade and forward rules, its file
            node.flannel = FlannelSim(node.node, self.addr.pool_v4, node.endpoint.block)
            node.flannel.install()
            node.flannel.forward_rules()
            node.flannel.write_subnet_file(node.subnet_file)
            return
        if self.dataplane == "nftables":
            node.felix = NftFelix(node.node, self.addr.pool_v4, node.workload,
                                  (node.endpoint.underlay, node.endpoint.tunnel_ip), peers)
        else:
            hosts = [n.endpoint.underlay for n in self.nodes]
            node.felix = IptablesFelix(node.node, node.workdir, self.encap, node.tunnel.device,
                                       self.addr.pool_v4, node.workload, peers, hosts)
        node.felix.install()

    def _firewalld_config(self, node: ClusterNode) -> None:
        """Default zone in firewalld.conf; "bound": eth0 in it, permanently, set offline."""
        node.firewalld.configure(DefaultZone=self.zone)
        if self.uplink == "bound":
            node.node.run("firewall-offline-cmd", "--system-config", str(node.firewalld.config_dir),
                          "--zone=%s" % self.zone, "--add-interface=%s" % UPLINK)
