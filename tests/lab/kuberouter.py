"""kube-router's network-policy chains on a k3s node, in the layout its code writes
(docs/rke2-k3s-facts.md section 3, from cloudnativelabs/kube-router). portmap's hostPorts are
tests/lab/portmap.py.

KubeRouterSim: the three top-level chains in filter, each entered from its base chain by a
rule inserted first, with kube-router's comment and rule hash. No NetworkPolicy exists, so
the chains hold nothing: what a firewalld flush takes is the jumps. restore() is
kube-router's sync (every 5 minutes on k3s).
It writes through one `iptables-nft-restore --noflush`, as kube-router does.
"""

from __future__ import annotations

import hashlib
from typing import List

from .netns import Netns

ROUTER_CHAINS = (("INPUT", "KUBE-ROUTER-INPUT"), ("FORWARD", "KUBE-ROUTER-FORWARD"),
                 ("OUTPUT", "KUBE-ROUTER-OUTPUT"))


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
