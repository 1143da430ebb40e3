"""Felix on one cluster node: the real dumps, plus what Felix adds once the node has peers.

iptables dataplane: CalicoSim (calico.py) loads calico-iptables-save-1.txt, a VXLAN node with
no peers. Its cali-INPUT therefore ends VXLAN in "Drop IPv4 VXLAN packets from non-allowed
hosts" with nothing allowed before it. With peers Felix renders allow rules in front of that
drop, matching ip sets of the other nodes' addresses; `felix_dump` writes that node's dump
with them (shaped like the cali-OUTPUT VXLAN rule in calico-iptables-save-2.txt and the IPIP
rule in calico-iptables-save-3.txt, with today's set names) and with the nat masquerade rule
on this node's tunnel device. The raw table's NOTRACK of 4789/udp stays as Felix writes it:
firewalld then judges every VXLAN packet as new, since none is tracked.

nftables dataplane: calico-nft-ruleset-1.txt loaded verbatim (`table ip calico`), then, as
libnftables JSON (never as rule text), this cluster's set elements and the per-workload
dispatch entries and chains Felix adds for each local pod (empty maps in the dump).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence

from .calico import DUMP, CalicoSim, Workload, load_nft_dataplane
from .netns import Netns

VXLAN_DROP = '"Drop IPv4 VXLAN packets from non-allowed hosts"'
MASQ_TUNNEL = '-A cali-POSTROUTING -o vxlan.calico '
# What Felix renders in cali-INPUT, in front of the VXLAN drop, once other nodes exist.
ALLOW_RULES: Dict[str, str] = {
    "vxlan": ('-A cali-INPUT -p udp -m comment --comment "cali:lab-vxlan-in" -m comment --comment '
              '"Allow IPv4 VXLAN packets from allowed hosts" -m multiport --dports 4789 '
              '-m set --match-set cali40all-vxlan-net src -m addrtype --dst-type LOCAL -j ACCEPT'),
    "ipip": ('-A cali-INPUT -p ipencap -m comment --comment "cali:lab-ipip-in" -m comment --comment '
             '"Allow IPIP packets from Calico hosts" -m set --match-set cali40all-hosts-net src '
             '-m addrtype --dst-type LOCAL -j ACCEPT\n'
             '-A cali-INPUT -p ipencap -m comment --comment "cali:lab-ipip-drop" -m comment --comment '
             '"Drop IPIP packets from non-Calico hosts" -j DROP'),
    "wireguard": ('-A cali-INPUT -p udp -m comment --comment "cali:lab-wg-in" -m comment --comment '
                  '"Allow incoming IPv4 Wireguard packets" -m multiport --dports 51820 '
                  '-m addrtype --dst-type LOCAL -j ACCEPT'),
}
VXLAN_ALLOW_OUT = ('-A cali-OUTPUT -p udp -m comment --comment "cali:lab-vxlan-out" -m comment --comment '
                   '"Allow IPv4 VXLAN packets to other allowed hosts" -m multiport --dports 4789 '
                   '-m addrtype --src-type LOCAL -m set --match-set cali40all-vxlan-net dst -j ACCEPT')


def felix_dump(encap: str, device: str, base: str) -> str:
    """The iptables dump Felix would write on a node with peers, for one encapsulation."""
    lines: List[str] = []
    for line in base.splitlines():
        if line.startswith("-A cali-INPUT ") and VXLAN_DROP in line:
            lines += ALLOW_RULES.get(encap, "").splitlines()
        if line.startswith(MASQ_TUNNEL):
            if encap == "none":
                continue  # no tunnel device, no tunnel masquerade
            line = line.replace("-o vxlan.calico ", "-o %s " % device)
        if line.startswith("-A cali-OUTPUT -m comment --comment \"cali:6T0hFtymUtXMOfEV\"") and encap == "vxlan":
            lines.append(VXLAN_ALLOW_OUT)
        lines.append(line)
    return "\n".join(lines) + "\n"


def peer_sets(netns: Netns, peers: Sequence[str], hosts: Sequence[str]) -> None:
    """Felix's ip sets of other nodes: VXLAN sources (peers) and Calico hosts (all nodes)."""
    script = []
    for name, members in (("cali40all-vxlan-net", peers), ("cali40all-hosts-net", hosts)):
        script += ["create %s hash:net family inet -exist" % name, "flush %s" % name]
        script += ["add %s %s" % (name, ip) for ip in members]
    netns.run("ipset", "restore", input="\n".join(script) + "\n")


class IptablesFelix(CalicoSim):
    """CalicoSim fed with this node's derived dump and its peers' ip sets."""

    def __init__(self, netns: Netns, workdir: Path, encap: str, device: str, pool: str,
                 workload: Workload, peers: Sequence[str], hosts: Sequence[str]):
        path = Path(workdir) / "felix-iptables-save.txt"
        path.write_text(felix_dump(encap, device, DUMP.read_text()))
        super().__init__(netns, (pool,), (), (workload,), dump=path)
        self.peers, self.hosts = tuple(peers), tuple(hosts)

    def restore(self) -> None:
        peer_sets(self.netns, self.peers, self.hosts)
        super().restore()


def _mark() -> dict:
    return {"meta": {"key": "mark"}}


def _rule(chain: str, *expr: dict) -> dict:
    return {"add": {"rule": {"family": "ip", "table": "calico", "chain": chain, "expr": list(expr)}}}


def _mark_is(bits: int) -> dict:
    return {"match": {"op": "==", "left": {"&": [_mark(), bits]}, "right": bits}}


def workload_commands(wl: Workload) -> List[dict]:
    """Felix's nft workload chains for one pod (the iptables ones of calico.py, in nft form)."""
    cmds: List[dict] = []
    for direction, dispatch in (("fw", "filter-cali-from-wl-dispatch"), ("tw", "filter-cali-to-wl-dispatch")):
        chain = "filter-cali-%s-%s" % (direction, wl.iface)
        cmds.append({"add": {"chain": {"family": "ip", "table": "calico", "name": chain}}})
        cmds.append(_rule(chain, {"match": {"op": "in", "left": {"ct": {"key": "state"}},
                                            "right": ["established", "related"]}}, {"accept": None}))
        cmds.append(_rule(chain, {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "invalid"}},
                          {"drop": None}))
        cmds.append(_rule(chain, {"mangle": {"key": _mark(), "value": {"&": [_mark(), 0xFFFCFFFF]}}}))
        if direction == "fw":  # "Drop VXLAN/IPinIP encapped packets originating in workloads"
            cmds.append(_rule(chain, {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}},
                                                "right": 4789}}, {"drop": None}))
            cmds.append(_rule(chain, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "protocol"}},
                                                "right": 4}}, {"drop": None}))
        cmds.append(_rule(chain, {"mangle": {"key": _mark(), "value": {"|": [_mark(), 0x10000]}}}))  # profile: allow
        cmds.append(_rule(chain, _mark_is(0x10000), {"return": None}))
        cmds.append(_rule(chain, {"drop": None}))
        cmds.append({"add": {"element": {"family": "ip", "table": "calico", "name": dispatch,
                                         "elem": [[wl.iface, {"goto": {"target": chain}}]]}}})
    return cmds


def set_commands(name: str, members: Sequence[str]) -> List[dict]:
    cmds: List[dict] = [{"flush": {"set": {"family": "ip", "table": "calico", "name": name}}}]
    elems: List[object] = []
    for member in members:
        addr, _, length = member.partition("/")
        elems.append({"prefix": {"addr": addr, "len": int(length)}} if length else addr)
    if elems:
        cmds.append({"add": {"element": {"family": "ip", "table": "calico", "name": name, "elem": elems}}})
    return cmds


class NftFelix:
    """Felix's native nftables dataplane on one node. Not flushed by firewalld: restore() reloads
    the table only when it is gone (as Felix would after an `nft flush ruleset`)."""

    def __init__(self, netns: Netns, pool: str, workload: Workload, this_host: Sequence[str],
                 peers: Sequence[str]):
        self.netns, self.pool, self.workload = netns, pool, workload
        self.this_host, self.peers = tuple(this_host), tuple(peers)

    def install(self) -> None:
        self.netns.run("nft", "delete", "table", "ip", "calico", check=False)
        load_nft_dataplane(self.netns)
        cmds = (set_commands("cali40this-host", ("127.0.0.1",) + self.this_host)
                + set_commands("cali40all-ipam-pools", (self.pool,))
                + set_commands("cali40masq-ipam-pools", (self.pool,))
                + set_commands("cali40all-vxlan-net", self.peers)
                + workload_commands(self.workload))
        self.netns.run("nft", "-j", "-f", "-", input=json.dumps({"nftables": cmds}))

    def present(self) -> bool:
        return self.netns.run("nft", "list", "table", "ip", "calico", check=False).returncode == 0

    def restore(self) -> None:
        if not self.present():
            self.install()
