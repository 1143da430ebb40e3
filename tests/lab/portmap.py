"""A pod's hostPort on a Canal or flannel node, as the CNI `portmap` plugin writes it.

RKE2's Canal and k3s's flannel chain the portmap plugin after the main plugin; for a pod with
a hostPort it writes, through iptables (nat table, IPv4 here):

- PREROUTING and OUTPUT: `-m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT` (appended);
- CNI-HOSTPORT-DNAT: `-p tcp -m multiport --dports <hostPort> -j CNI-DN-<hash>` per pod;
- CNI-DN-<hash>: hairpin and localhost sources marked for masquerade (CNI-HOSTPORT-SETMARK,
  mark bit 13, 0x2000), then `DNAT --to-destination <pod IP>:<containerPort>`;
- POSTROUTING: `-j CNI-HOSTPORT-MASQ`, which masquerades what carries the mark.

(The rule structure of containernetworking/plugins' plugins/meta/portmap README, read at the
copy vendored in k3s-io/k3s.) Nothing re-creates these rules when they disappear: portmap runs
only when the pod is created (rancher/rke2#10469). So there is no resync here; install() again
is the pod being recreated.
"""

from __future__ import annotations

import hashlib
import shlex

from .netns import Netns

MARK = "0x2000/0x2000"


class PortmapSim:
    def __init__(self, netns: Netns, host_port: int, pod_ip: str, pod_port: int, container_id: str):
        self.netns, self.host_port, self.pod_ip, self.pod_port = netns, host_port, pod_ip, pod_port
        self.container_id = container_id
        # The per-pod chain's name is a hash of the network's name and the container's id.
        self.chain = "CNI-DN-" + hashlib.sha512(("cbr0" + container_id).encode()).hexdigest()[:17]

    def rules(self) -> list:
        dn, hp, pod = self.chain, self.host_port, "%s:%d" % (self.pod_ip, self.pod_port)
        comment = '-m comment --comment "dnat name: \\"cbr0\\" id: \\"%s\\""' % self.container_id
        return [
            '-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" '
            "-j MARK --set-xmark %s" % MARK,
            '-A CNI-HOSTPORT-MASQ -m mark --mark %s -j MASQUERADE' % MARK,
            "-A CNI-HOSTPORT-DNAT -p tcp %s -m multiport --dports %d -j %s" % (comment, hp, dn),
            "-A %s -s %s/32 -p tcp -m tcp --dport %d -j CNI-HOSTPORT-SETMARK" % (dn, self.pod_ip, hp),
            "-A %s -s 127.0.0.1/32 -p tcp -m tcp --dport %d -j CNI-HOSTPORT-SETMARK" % (dn, hp),
            "-A %s -p tcp -m tcp --dport %d -j DNAT --to-destination %s" % (dn, hp, pod),
        ]

    JUMPS = (
        ("PREROUTING", "-m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT"),
        ("OUTPUT", "-m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT"),
        ("POSTROUTING", '-m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ'),
    )

    def install(self) -> None:
        """The pod (re)created: chains created or flushed, missing jumps appended, one restore."""
        lines = ["*nat"] + [":%s - [0:0]" % c for c in
                            ("CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-DNAT", self.chain)]
        lines += ["-A %s %s" % (chain, spec) for chain, spec in self.JUMPS if not self._exists(chain, spec)]
        lines += self.rules() + ["COMMIT"]
        self.netns.run("iptables-nft-restore", "--noflush", input="\n".join(lines) + "\n")

    def present(self) -> bool:
        """The PREROUTING jump and the pod's DNAT there (what a firewalld flush removes)."""
        return self._exists(*self.JUMPS[0]) and self.netns.run(
            "iptables-nft", "-w", "-t", "nat", "-S", self.chain, check=False).returncode == 0

    def _exists(self, chain: str, spec: str) -> bool:
        return self.netns.run("iptables-nft", "-w", "-t", "nat", "-C", chain, *shlex.split(spec),
                              check=False).returncode == 0
