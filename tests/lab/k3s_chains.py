"""The iptables chains of a k3s node's other writers: kube-router's network policy and the
portmap plugin's hostPorts, in the layout their code writes (docs/rke2-k3s-facts.md sections 3
and 6, from cloudnativelabs/kube-router and containernetworking/plugins).

- KubeRouterSim: the three top-level chains in filter, each entered from its base chain by a
  rule inserted first, with kube-router's comment and rule hash. No NetworkPolicy exists, so
  the chains hold nothing: what a firewalld flush takes is the jumps. restore() is
  kube-router's sync (every 5 minutes on k3s).
- PortmapSim: one pod's hostPort as the plugin's iptables backend writes it at the pod's ADD:
  CNI-HOSTPORT-DNAT from PREROUTING and OUTPUT for local destinations, the pod's CNI-DN-*
  chain with the hairpin and localhost marks and the DNAT, CNI-HOSTPORT-SETMARK and
  CNI-HOSTPORT-MASQ (inserted first in POSTROUTING). Nothing re-creates them after a flush:
  there is no restore() on purpose.
Each writes through one `iptables-nft-restore --noflush`, as those programs do.
"""

from __future__ import annotations

import hashlib
from typing import List

from .netns import Netns

ROUTER_CHAINS = (("INPUT", "KUBE-ROUTER-INPUT"), ("FORWARD", "KUBE-ROUTER-FORWARD"),
                 ("OUTPUT", "KUBE-ROUTER-OUTPUT"))
MARK = "0x2000/0x2000"  # portmap's masquerade mark (bit 13, its default)


def _restore(netns: Netns, lines: List[str]) -> None:
    netns.run("iptables-nft-restore", "--noflush", input="\n".join(lines) + "\n")


class KubeRouterSim:
    def __init__(self, netns: Netns):
        self.netns = netns

    def install(self) -> None:
        self.restore()

    def restore(self) -> None:
        """kube-router's sync: the chains ensured, a missing jump inserted at the top again."""
        lines = ["*filter"] + [f":{chain} - [0:0]" for _base, chain in ROUTER_CHAINS]
        for base, chain in ROUTER_CHAINS:
            if not self._jump_present(base, chain):
                digest = hashlib.sha256(f"{base}{chain}".encode()).hexdigest()[:16].upper()
                lines.append(f'-I {base} 1 -m comment --comment "kube-router netpol - {digest}" -j {chain}')
        _restore(self.netns, lines + ["COMMIT"])

    def _jump_present(self, base: str, chain: str) -> bool:
        listing = self.netns.run("iptables-nft", "-w", "-t", "filter", "-S", base, check=False)
        return listing.returncode == 0 and f"-j {chain}" in listing.stdout

    def present(self) -> bool:
        return all(self._jump_present(base, chain) for base, chain in ROUTER_CHAINS)


class PortmapSim:
    """hostPort host_port/tcp on the node to pod_ip:pod_port, for container `container`."""

    def __init__(self, netns: Netns, host_port: int, pod_ip: str, pod_port: int,
                 container: str = "4f1c0a9e2b7d", network: str = "cbr0"):
        self.netns = netns
        self.host_port, self.pod_ip, self.pod_port = host_port, pod_ip, pod_port
        self.container, self.network = container, network
        # CNI-DN- and a hash of network name and container id, cut to iptables' 28 characters.
        self.chain = "CNI-DN-" + hashlib.sha512(f"{network}{container}".encode()).hexdigest()[:21]

    def install(self) -> None:
        """The pod's ADD."""
        port = str(self.host_port)
        dnat_comment = f'-m comment --comment "dnat name: \\"{self.network}\\" id: \\"{self.container}\\""'
        _restore(self.netns, [
            "*nat",
            ":CNI-HOSTPORT-DNAT - [0:0]", ":CNI-HOSTPORT-SETMARK - [0:0]", ":CNI-HOSTPORT-MASQ - [0:0]",
            f":{self.chain} - [0:0]",
            "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
            "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
            '-I POSTROUTING 1 -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ',
            f'-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark {MARK}',
            f"-A CNI-HOSTPORT-MASQ -m mark --mark {MARK} -j MASQUERADE",
            f"-A CNI-HOSTPORT-DNAT -p tcp {dnat_comment} -m multiport --dports {port} -j {self.chain}",
            f"-A {self.chain} -s {self.pod_ip}/32 -p tcp -m tcp --dport {port} -j CNI-HOSTPORT-SETMARK",
            f"-A {self.chain} -s 127.0.0.1/32 -p tcp -m tcp --dport {port} -j CNI-HOSTPORT-SETMARK",
            f"-A {self.chain} -p tcp -m tcp --dport {port} -j DNAT --to-destination {self.pod_ip}:{self.pod_port}",
            "COMMIT"])

    def present(self) -> bool:
        listing = self.netns.run("iptables-nft", "-w", "-t", "nat", "-S", "PREROUTING", check=False)
        return listing.returncode == 0 and "-j CNI-HOSTPORT-DNAT" in listing.stdout
