"""kube-proxy's iptables mode, the part a flush takes first: its chains, its top-level jumps
and its canary, as kube-proxy (1.28+) writes them with iptables-nft.

kube-proxy ensures these jumps with `iptables -C`/`-I` and rewrites its own KUBE-* chains with
`iptables-restore --noflush`; it recreates everything when its KUBE-PROXY-CANARY chain (in
mangle, nat and filter) disappears, which it checks every --iptables-sync-period (30 s).
Services themselves are not simulated here: the cluster lab adds those (issue 12).
"""

from __future__ import annotations

import shlex
from typing import Dict, List, Tuple

from .netns import Netns

CHAINS: Dict[str, Tuple[str, ...]] = {
    "mangle": ("KUBE-PROXY-CANARY", "KUBE-KUBELET-CANARY"),
    "nat": ("KUBE-PROXY-CANARY", "KUBE-SERVICES", "KUBE-POSTROUTING", "KUBE-NODEPORTS", "KUBE-MARK-MASQ"),
    "filter": ("KUBE-PROXY-CANARY", "KUBE-SERVICES", "KUBE-FORWARD", "KUBE-EXTERNAL-SERVICES",
               "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL"),
}
# (table, builtin chain, rule spec): the jumps kube-proxy keeps at the top of the builtins.
JUMPS: Tuple[Tuple[str, str, str], ...] = (
    ("nat", "PREROUTING", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "OUTPUT", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "POSTROUTING", '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'),
    ("filter", "INPUT", '-m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS'),
    ("filter", "FORWARD", '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" '
                          '-j KUBE-SERVICES'),
    ("filter", "OUTPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" '
                         '-j KUBE-SERVICES'),
)
# Bodies of the chains that matter for the jumps' meaning (kube-proxy's own, abridged).
BODIES: Tuple[Tuple[str, str, str], ...] = (
    ("nat", "KUBE-MARK-MASQ", "-j MARK --set-xmark 0x4000/0x4000"),
    ("nat", "KUBE-POSTROUTING", "-m mark ! --mark 0x4000/0x4000 -j RETURN"),
    ("nat", "KUBE-POSTROUTING", "-j MARK --set-xmark 0x4000/0x0"),
    ("nat", "KUBE-POSTROUTING", '-m comment --comment "kubernetes service traffic requiring SNAT" '
                                "-j MASQUERADE --random-fully"),
    ("filter", "KUBE-FORWARD", "-m conntrack --ctstate INVALID -j DROP"),
    ("filter", "KUBE-FORWARD", '-m comment --comment "kubernetes forwarding rules" -m mark --mark '
                               "0x4000/0x4000 -j ACCEPT"),
)


class KubeProxySim:
    """install() / restore() (kube-proxy's resync after its canary vanished) / present()."""

    def __init__(self, netns: Netns, families: Tuple[int, ...] = (4,)):
        self.netns = netns
        self.families = families

    def install(self) -> None:
        self.restore()

    def restore(self) -> None:
        for family in self.families:
            lines: List[str] = []
            for table, chains in CHAINS.items():
                lines.append("*" + table)
                lines += [":%s - [0:0]" % c for c in chains]
                lines += ["-A %s %s" % (c, spec) for t, c, spec in BODIES if t == table]
                lines += ["-I %s 1 %s" % (c, spec) for t, c, spec in JUMPS
                          if t == table and not self._exists(family, t, c, spec)]
                lines.append("COMMIT")
            restore = "iptables-nft-restore" if family == 4 else "ip6tables-nft-restore"
            self.netns.run(restore, "--noflush", input="\n".join(lines) + "\n")

    def present(self) -> bool:
        return all(self._exists(f, t, c, spec) for f in self.families for t, c, spec in JUMPS)

    def _exists(self, family: int, table: str, chain: str, spec: str) -> bool:
        cmd = "iptables-nft" if family == 4 else "ip6tables-nft"
        return self.netns.run(cmd, "-w", "-t", table, "-C", chain, *shlex.split(spec),
                              check=False).returncode == 0
