"""flannel's part of a Canal or flannel node in the lab, as flannel's code writes it.

FlannelSim puts flannel's masquerade rules (iptables mode, `--ip-masq`) into the node's
iptables-nft nat tables exactly as tests/fixtures/flannel/iptables-save.v4 records them,
with the lab's networks in place of the fixture's: chain FLANNEL-POSTRTG created (or
flushed), the POSTROUTING jump appended, then the six rules, through one
`iptables-nft-restore --noflush` as flannel runs it. restore() is flannel's resync (every 5 s
on RKE2's Canal, 60 s on k3s): it re-runs the whole bootstrap when any rule is missing, and
touches nothing when all are there (flannel's ipTablesRulesExist check, pkg/trafficmngr/
iptables/iptables.go). Rewriting them anyway deletes and re-adds the jump, which calfwd's
flush watch may see as a loss when the two events reach it in separate batches (seen once on
2.3.1 under load: a "flush" on a firewalld that flushes nothing).
add_vxlan() makes flannel's device; write_subnet_file() writes subnet.env as flannel does
(keys in flannel's order, by rename).
"""

from __future__ import annotations

import ipaddress
import os
import shlex
from pathlib import Path
from typing import List

from .netns import Netns

COMMENT = '-m comment --comment "flanneld masq"'


class FlannelSim:
    def __init__(self, netns: Netns, network: str, lease: str, random_fully: bool = True):
        self.netns = netns
        self.network = str(ipaddress.ip_network(network))
        self.lease = str(ipaddress.ip_network(lease))
        self.random_fully = random_fully

    def rules(self) -> List[str]:
        """flannel's masqRules for IPv4, in its order (docs/rke2-k3s-facts.md section 1)."""
        n, l = self.network, self.lease
        rf = " --random-fully" if self.random_fully else ""
        return [
            f"-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 {COMMENT} -j RETURN",
            f"-A FLANNEL-POSTRTG -s {l} -d {n} {COMMENT} -j RETURN",
            f"-A FLANNEL-POSTRTG -s {n} -d {l} {COMMENT} -j RETURN",
            f"-A FLANNEL-POSTRTG ! -s {n} -d {l} {COMMENT} -j RETURN",
            f"-A FLANNEL-POSTRTG -s {n} ! -d 224.0.0.0/4 {COMMENT} -j MASQUERADE{rf}",
            f"-A FLANNEL-POSTRTG ! -s {n} -d {n} {COMMENT} -j MASQUERADE{rf}",
        ]

    def install(self) -> None:
        self.restore()

    def restore(self) -> None:
        """Nothing when every rule is there (flannel checks each one first); else the bootstrap."""
        if self.present_jump() and all(self._exists("nat", rule) for rule in self.rules()):
            return
        jump = f"-A POSTROUTING {COMMENT} -j FLANNEL-POSTRTG"
        lines = ["*nat", ":FLANNEL-POSTRTG - [0:0]"]
        if self.present_jump():
            lines.append(jump.replace("-A ", "-D ", 1))  # flannel deletes what exists, then appends
        lines += [jump] + self.rules() + ["COMMIT"]
        self.netns.run("iptables-nft-restore", "--noflush", input="\n".join(lines) + "\n")

    def present_jump(self) -> bool:
        return self.netns.run("iptables-nft", "-w", "-t", "nat", "-C", "POSTROUTING", "-m", "comment",
                              "--comment", "flanneld masq", "-j", "FLANNEL-POSTRTG", check=False).returncode == 0

    def present(self) -> bool:
        """The jump and the masquerade of pod egress both there (what a firewalld flush removes)."""
        if not self.present_jump():
            return False
        listing = self.netns.run("iptables-nft", "-w", "-t", "nat", "-S", "FLANNEL-POSTRTG", check=False)
        return listing.returncode == 0 and f"-s {self.network} ! -d 224.0.0.0/4" in listing.stdout

    def forward_rules(self) -> None:
        """flannel's FORWARD accepts (--iptables-forward-rules, on by default and on k3s; RKE2's
        Canal turns it off), one iptables-nft-restore as flannel writes them; nothing when all
        are there (flannel's forward resync checks first, as restore())."""
        comment = '-m comment --comment "flanneld forward"'
        jump = f"-A FORWARD {comment} -j FLANNEL-FWD"
        rules = [f"-A FLANNEL-FWD -s {self.network} {comment} -j ACCEPT",
                 f"-A FLANNEL-FWD -d {self.network} {comment} -j ACCEPT"]
        present = self._exists("filter", jump)
        if present and all(self._exists("filter", rule) for rule in rules):
            return
        lines = ["*filter", ":FLANNEL-FWD - [0:0]"] + ([jump.replace("-A ", "-D ", 1)] if present else [])
        lines += [jump] + rules + ["COMMIT"]
        self.netns.run("iptables-nft-restore", "--noflush", input="\n".join(lines) + "\n")

    def _exists(self, table: str, rule: str) -> bool:
        """`iptables -C` for a rule written as "-A CHAIN spec"."""
        args = shlex.split(rule)
        return self.netns.run("iptables-nft", "-w", "-t", table, "-C", *args[1:], check=False).returncode == 0

    def flush(self) -> None:
        """What firewalld 0.9 and 1.x do to iptables' tables on start, reload and stop."""
        self.netns.run("iptables-nft", "-w", "-t", "nat", "-F")
        self.netns.run("iptables-nft", "-w", "-t", "nat", "-X")

    def add_vxlan(self, uplink: str, name: str = "flannel.1") -> None:
        """flannel's VXLAN device (VNI 1, the kernel's port 8472), left down: up, the kernel's
        VXLAN socket would hold 8472."""
        self.netns.run("ip", "link", "add", name, "type", "vxlan", "id", "1", "dstport", "8472", "nolearning",
                       "dev", uplink)

    def write_subnet_file(self, path: Path, ipmasq: bool = True, mtu: int = 1450) -> None:
        lease = ipaddress.ip_network(self.lease)
        first = f"{lease.network_address + 1}/{lease.prefixlen}"
        text = (f"FLANNEL_NETWORK={self.network}\nFLANNEL_SUBNET={first}\nFLANNEL_MTU={mtu}\n"
                f"FLANNEL_IPMASQ={'true' if ipmasq else 'false'}\n")
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


def make_k3s_node(lab, sim: "FlannelSim") -> None:
    """Turns the lab's Calico node into a k3s flannel node (call before anything else runs):
    the pod's veth becomes a port of the bridge `cni0`, which holds the lease's first address
    (flannel's CNI plugin delegates to the bridge plugin with isGateway), the pod routes by it,
    and flannel.1 exists. IPv4 only, as k3s masquerades IPv6 only when asked."""
    node, pod, veth = lab.node, lab.pod, lab.workload.iface
    lease = ipaddress.ip_network(sim.lease)
    gateway = str(lease.network_address + 1)
    node.run("ip", "link", "add", "cni0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
    node.run("ip", "addr", "add", f"{gateway}/{lease.prefixlen}", "dev", "cni0")
    node.run("ip", "link", "set", "cni0", "up")
    node.run("ip", "-4", "route", "del", lab.addr.pod_v4 + "/32", "dev", veth)
    node.run("ip", "-4", "route", "del", "blackhole", lab.addr.block_v4)
    node.run("ip", "-6", "route", "del", lab.addr.pod_v6 + "/128", "dev", veth)
    node.run("ip", "-6", "route", "del", "blackhole", lab.addr.block_v6)
    node.run("ip", "link", "set", veth, "down")
    node.run("ip", "link", "set", veth, "name", "veth" + veth[4:12])
    node.run("ip", "link", "set", "veth" + veth[4:12], "master", "cni0", "up")
    pod.run("ip", "-4", "route", "replace", "default", "via", gateway, "dev", "eth0", "onlink")
    sim.add_vxlan(lab.uplink)
