"""kube-proxy's Services on a cluster node (iptables mode), on top of kubeproxy.KubeProxySim.

KubeProxySim writes kube-proxy's chains, top-level jumps and canary; this adds the Service
chains kube-proxy 1.28+ renders for a ClusterIP and a NodePort (KUBE-SVC-, KUBE-SEP-,
KUBE-EXT-, their entries in KUBE-SERVICES and KUBE-NODEPORTS), with chain names hashed from
the service port name as kube-proxy does. `resync()` is kube-proxy's periodic canary check
(every 30 s by default): it rewrites everything only once KUBE-PROXY-CANARY is gone.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import List, Optional, Sequence

from .kubeproxy import CHAINS, KubeProxySim
from .netns import Netns

NODEPORTS_LAST = ('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be '
                  'the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')


@dataclass(frozen=True)
class Service:
    """One service port with one endpoint: `name` as kube-proxy writes it, e.g. default/web:http."""
    name: str
    cluster_ip: str
    port: int
    backend_ip: str
    backend_port: int
    node_port: Optional[int] = None

    def chain(self, prefix: str, extra: str = "") -> str:
        digest = hashlib.sha256((self.name + "tcp" + extra).encode()).digest()
        return prefix + base64.b32encode(digest).decode()[:16]


def service_rules(services: Sequence[Service], cluster_cidr: str) -> List[str]:
    """iptables-restore lines for the nat table (chains declared, so --noflush rewrites them)."""
    chains = ["KUBE-SERVICES", "KUBE-NODEPORTS"]
    rules: List[str] = []
    for svc in services:
        svc_chain, sep = svc.chain("KUBE-SVC-"), svc.chain("KUBE-SEP-", svc.backend_ip)
        ext = svc.chain("KUBE-EXT-")
        chains += [svc_chain, sep]
        comment = '-m comment --comment "%s cluster IP"' % svc.name
        rules += [
            "-A KUBE-SERVICES -d %s/32 -p tcp %s -m tcp --dport %d -j %s" % (svc.cluster_ip, comment, svc.port, svc_chain),
            "-A %s ! -s %s -d %s/32 -p tcp %s -m tcp --dport %d -j KUBE-MARK-MASQ"
            % (svc_chain, cluster_cidr, svc.cluster_ip, comment, svc.port),
            '-A %s -m comment --comment "%s -> %s:%d" -j %s' % (svc_chain, svc.name, svc.backend_ip,
                                                                svc.backend_port, sep),
            '-A %s -s %s/32 -m comment --comment "%s" -j KUBE-MARK-MASQ' % (sep, svc.backend_ip, svc.name),
            '-A %s -p tcp -m comment --comment "%s" -m tcp -j DNAT --to-destination %s:%d'
            % (sep, svc.name, svc.backend_ip, svc.backend_port),
        ]
        if svc.node_port:
            chains.append(ext)
            rules += [
                '-A KUBE-NODEPORTS -p tcp -m comment --comment "%s" -m tcp --dport %d -j %s'
                % (svc.name, svc.node_port, ext),
                '-A %s -m comment --comment "masquerade traffic for %s external destinations" -j KUBE-MARK-MASQ'
                % (ext, svc.name),
                "-A %s -j %s" % (ext, svc_chain),
            ]
    rules.append(NODEPORTS_LAST)
    return ["*nat"] + [":%s - [0:0]" % c for c in chains] + rules + ["COMMIT"]


class KubeProxy:
    """kube-proxy on one node: install(), resync() (its canary check), present()."""

    def __init__(self, netns: Netns, services: Sequence[Service], cluster_cidr: str):
        self.netns = netns
        self.base = KubeProxySim(netns, families=(4,))
        self.services = tuple(services)
        self.cluster_cidr = cluster_cidr

    def install(self) -> None:
        self.base.restore()
        lines = service_rules(self.services, self.cluster_cidr)
        self.netns.run("iptables-nft-restore", "--noflush", input="\n".join(lines) + "\n")

    def canary_present(self) -> bool:
        return all(self.netns.run("iptables-nft", "-w", "-t", table, "-S", "KUBE-PROXY-CANARY",
                                  check=False).returncode == 0
                   for table, chains in CHAINS.items() if "KUBE-PROXY-CANARY" in chains)

    def present(self) -> bool:
        return self.base.present() and self.canary_present()

    def resync(self) -> bool:
        """What kube-proxy does when its canary check fires; True if it had to rewrite."""
        if self.canary_present():
            return False
        self.install()
        return True
