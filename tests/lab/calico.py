"""Calico (Felix, iptables-nft mode) simulated from a real Felix dump.

The base ruleset is the verbatim `iptables-save` of a real Felix node
(shared/fixtures/calico/calico-iptables-save-1.txt). On top of it we add what Felix
renders for one workload (dispatch entries and `cali-fw-`/`cali-tw-` chains, shaped
like the workload chain in calico-iptables-save-2.txt with a minimal allow-all
profile) and the natOutgoing rule exactly as the fixtures README gives it.

IPv6 is the same ruleset with the v6 ip set names, which is how Felix renders it
(same templates, `cali60*` sets): a derived approximation, not a recorded dump.

Everything goes through `iptables-nft-restore` / `ip6tables-nft-restore` (the nft
variant explicitly), so the rules land in the nft tables `ip filter`, `ip nat`, ...
that firewalld 1.x flushes.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .netns import Netns

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "calico"
DUMP = FIXTURES / "calico-iptables-save-1.txt"

NAT_OUTGOING_V4 = ('-A cali-nat-outgoing -m comment --comment "cali:flqWnvo8yq4ULQLa" '
                   '-m set --match-set cali40masq-ipam-pools src '
                   '-m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE --random-fully')


@dataclass(frozen=True)
class Workload:
    """One local pod as Felix sees it: host-side veth name and its addresses."""
    iface: str
    ipv4: str
    ipv6: Optional[str] = None


@dataclass(frozen=True)
class Rule:
    table: str
    chain: str
    spec: str  # everything after "-A <chain> ", quoted as iptables-save prints it

    @property
    def args(self) -> List[str]:
        return shlex.split(self.spec)

    @property
    def jumps_to_calico(self) -> bool:
        args = self.args
        return any(a in ("-j", "-g") and t.startswith("cali-") for a, t in zip(args, args[1:]))


@dataclass(frozen=True)
class Ruleset:
    """Parsed iptables-save text: chains per table and rules in order."""
    chains: Dict[str, Tuple[str, ...]]  # table -> user chains (builtins omitted)
    rules: Tuple[Rule, ...]

    @classmethod
    def parse(cls, text: str) -> "Ruleset":
        chains: Dict[str, List[str]] = {}
        rules: List[Rule] = []
        table = ""
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("*"):
                table = line[1:]
                chains.setdefault(table, [])
            elif line.startswith(":"):
                name, policy = line[1:].split()[:2]
                if policy == "-":
                    chains[table].append(name)
            elif line.startswith("-A "):
                _, chain, spec = line.split(" ", 2)
                rules.append(Rule(table, chain, spec))
        return cls({t: tuple(c) for t, c in chains.items()}, tuple(rules))

    def builtin_rules(self, table: str) -> List[Rule]:
        return [r for r in self.rules if r.table == table and r.chain not in self.chains[table]]

    def chain_rules(self, table: str) -> List[Rule]:
        return [r for r in self.rules if r.table == table and r.chain in self.chains[table]]


# A workload chain as in calico-iptables-save-2.txt, with the profile jumps replaced by
# a minimal allow-all profile (sets the accept mark 0x10000 that FORWARD then accepts).
WORKLOAD_HEAD = (
    '-m comment --comment "cali:lab-est" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
    '-m comment --comment "cali:lab-inv" -m conntrack --ctstate INVALID -j DROP',
    '-m comment --comment "cali:lab-clr" -j MARK --set-xmark 0x0/0x30000',
)
FROM_WORKLOAD_ONLY = (
    '-p udp -m comment --comment "cali:lab-vxl" -m comment --comment '
    '"Drop VXLAN encapped packets originating in workloads" -m multiport --dports 4789 -j DROP',
    '-p ipencap -m comment --comment "cali:lab-ipip" -m comment --comment '
    '"Drop IPinIP encapped packets originating in workloads" -j DROP',
)
WORKLOAD_TAIL = (
    '-m comment --comment "cali:lab-pro" -m comment --comment "lab profile: allow all" '
    '-j MARK --set-xmark 0x10000/0x10000',
    '-m comment --comment "cali:lab-ret" -m comment --comment "Return if profile accepted" '
    '-m mark --mark 0x10000/0x10000 -j RETURN',
    '-m comment --comment "cali:lab-drp" -m comment --comment "Drop if no profiles matched" -j DROP',
)


def workload_rules(wl: Workload) -> str:
    """What Felix adds to `filter` for one workload: dispatch entries and its two chains."""
    fw, tw = "cali-fw-" + wl.iface, "cali-tw-" + wl.iface
    lines = [":%s - [0:0]" % fw, ":%s - [0:0]" % tw,
             '-A cali-from-wl-dispatch -i %s -m comment --comment "cali:lab-from-wl" -g %s' % (wl.iface, fw),
             '-A cali-to-wl-dispatch -o %s -m comment --comment "cali:lab-to-wl" -g %s' % (wl.iface, tw)]
    for chain, middle in ((fw, FROM_WORKLOAD_ONLY), (tw, ())):
        lines += ["-A %s %s" % (chain, spec) for spec in WORKLOAD_HEAD + middle + WORKLOAD_TAIL]
    return "\n".join(lines)


def felix_ruleset(base: str, workloads: Tuple[Workload, ...], family: int, nat_outgoing: bool) -> Ruleset:
    """Felix's whole ruleset for one family: base dump + workloads + natOutgoing."""
    text = base if family == 4 else base.replace("cali40", "cali60")
    extra = "\n".join(workload_rules(wl) for wl in workloads)
    text = text.replace("*filter\n", "*filter\n" + extra + "\n", 1) if extra else text
    if nat_outgoing:
        rule = NAT_OUTGOING_V4 if family == 4 else NAT_OUTGOING_V4.replace("cali40", "cali60")
        text = text.replace("*nat\n", "*nat\n" + rule + "\n", 1)
    ruleset = Ruleset.parse(text)
    # Stable sort: the dump's "Unknown interface" DROPs move behind the workload entries.
    return Ruleset(ruleset.chains, tuple(sorted(ruleset.rules, key=_unknown_interface_drop)))


def _unknown_interface_drop(rule: Rule) -> bool:
    return rule.chain.endswith("-wl-dispatch") and "Unknown interface" in rule.spec


class CalicoSim:
    """install(), restore() (Felix's resync), present(), remove_nat_outgoing()."""

    def __init__(self, netns: Netns, pools_v4: Tuple[str, ...], pools_v6: Tuple[str, ...],
                 workloads: Tuple[Workload, ...], dump: Path = DUMP, variant: str = "nft"):
        self.netns = netns
        self.variant = variant  # "nft" (iptables-nft, what firewalld 1.x flushes) or "legacy"
        self.pools = {4: tuple(pools_v4), 6: tuple(pools_v6)}
        self.workloads = tuple(workloads)
        self.base = dump.read_text()
        self.nat_outgoing = True

    @property
    def families(self) -> Tuple[int, ...]:
        return tuple(f for f in (4, 6) if self.pools[f])

    def ruleset(self, family: int) -> Ruleset:
        return felix_ruleset(self.base, self.workloads, family, self.nat_outgoing)

    def install(self) -> None:
        self.restore()

    def restore(self) -> None:
        """What Felix's periodic resync does: ip sets, its chains, its jumps, all re-applied.

        Like Felix (iptables-restore --noflush) it rewrites only its own `cali-*` chains and
        inserts its top-level jumps where missing; other rules in the tables are kept.
        """
        for family in self.families:
            self._sync_ipsets(family)
            self._restore(family)

    def present(self) -> bool:
        """All of Felix's rules in the builtin chains (cali-FORWARD, cali-POSTROUTING...) there?"""
        return not self.missing()

    def missing(self) -> List[Rule]:
        out = []
        for family in self.families:
            ruleset = self.ruleset(family)
            for table in ruleset.chains:
                out += [r for r in ruleset.builtin_rules(table) if not self._exists(family, r)]
        return out

    def remove_nat_outgoing(self) -> None:
        """natOutgoing switched off on the pool: masquerade rule gone, and stays gone on restore()."""
        self.nat_outgoing = False
        for family in self.families:
            self._restore(family)

    def _sync_ipsets(self, family: int) -> None:
        inet = "inet" if family == 4 else "inet6"
        masq = self.pools[family] if self.nat_outgoing else ()
        for name, members in (("all-ipam-pools", self.pools[family]), ("masq-ipam-pools", masq)):
            setname = "cali%d0%s" % (family, name)
            script = ["create %s hash:net family %s -exist" % (setname, inet), "flush %s" % setname]
            script += ["add %s %s" % (setname, cidr) for cidr in members]
            self.netns.run("ipset", "restore", input="\n".join(script) + "\n")

    def _restore(self, family: int) -> None:
        ruleset = self.ruleset(family)
        lines = []
        for table, chains in ruleset.chains.items():
            lines.append("*" + table)
            lines += [":%s - [0:0]" % c for c in chains]  # with --noflush: create or flush
            lines += ["-A %s %s" % (r.chain, r.spec) for r in ruleset.chain_rules(table)]
            lines += self._builtin_lines(family, ruleset.builtin_rules(table))
            lines.append("COMMIT")
        restore = "%s-%s-restore" % ("iptables" if family == 4 else "ip6tables", self.variant)
        self.netns.run(restore, "--noflush", input="\n".join(lines) + "\n")

    def _builtin_lines(self, family: int, rules: List[Rule]) -> List[str]:
        """Jumps into cali-* chains go on top (Felix inserts), other rules are appended."""
        lines = []
        by_chain: Dict[str, List[Rule]] = {}
        for rule in rules:
            by_chain.setdefault(rule.chain, []).append(rule)
        for chain, chain_rules in by_chain.items():
            head = [r for r in chain_rules if r.jumps_to_calico]
            present = [r for r in head if self._exists(family, r)]
            if len(present) != len(head):
                lines += ["-D %s %s" % (r.chain, r.spec) for r in present]
                lines += ["-I %s %d %s" % (r.chain, i, r.spec) for i, r in enumerate(head, 1)]
            lines += ["-A %s %s" % (r.chain, r.spec) for r in chain_rules
                      if not r.jumps_to_calico and not self._exists(family, r)]
        return lines

    def _exists(self, family: int, rule: Rule) -> bool:
        cmd = "%s-%s" % ("iptables" if family == 4 else "ip6tables", self.variant)
        return self.netns.run(cmd, "-w", "-t", rule.table, "-C", rule.chain, *rule.args,
                              check=False).returncode == 0


NFT_DUMP = FIXTURES / "calico-nft-ruleset-1.txt"


def load_nft_dataplane(netns: Netns, dump: Path = NFT_DUMP) -> None:
    """Felix's native nftables dataplane (`table ip calico`), verbatim from a real Felix."""
    netns.run("nft", "-f", str(dump))
