"""ip_pools = "auto": Calico's pools, and which of them have natOutgoing, from Felix's own sets.

Pure. Without the Kubernetes API the node still shows its pools: Felix keeps every pool in
`cali40all-ipam-pools` and the natOutgoing ones in `cali40masq-ipam-pools` (`cali60...` for
IPv6), as kernel ip sets (iptables dataplane) or as sets of its `ip calico` / `ip6 calico`
tables (nftables dataplane). drivers/felixsets.py reads them; this turns the members into
pools and says, in one line, what calfwd uses or why it uses nothing.
"""

from __future__ import annotations

import bisect
import ipaddress
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from calfwd.config.schema import IPNetwork, pool_problem

# Every pool: "all-ipam-pools", renamed "network-ip-pools" by newer Felix releases (read both).
# The natOutgoing pools: "masq-ipam-pools"; there Felix also puts natOutgoing pools that hold
# no pods (LoadBalancer-only), so that set is not always inside the first.
ALL_KINDS = ("all-ipam-pools", "network-ip-pools")
MASQ = "masq-ipam-pools"
VERSIONS = (4, 6)
IPSET, NFTABLES = "ip sets", "nftables sets"
EMPTY_LAYER = "calfwd masquerades no pod traffic and opens no pool until Felix has run"
FLANNEL_EMPTY_LAYER = "calfwd masquerades no pod traffic and opens no pool until flannel's network is known"
FELIX = "Felix"  # PoolState.follows
UNREADABLE = "cannot read Felix's sets"
UNREADABLE_LAYER = "calfwd masquerades no pod traffic and opens no pool until they can be read"
# A cluster has a handful of pools and Felix's sets hold one member per pool (per natOutgoing
# pool). A set holding more is not a list of pools (another writer, a mistaken set): like a
# garbled member it is an unreadable read, which keeps the pools known before, and it bounds
# what a reconcile spends on the sets (4,000 members once cost a minute).
MAX_MEMBERS = 256


def set_name(version: int, kind: str) -> str:
    """Felix's name: 'cali' + '40' or '60' + the set's id."""
    return f"cali{version}0{kind}"


SET_NAMES = tuple(set_name(v, k) for v in VERSIONS for k in ALL_KINDS + (MASQ,))
ALL_SET_NAMES = tuple(set_name(v, k) for v in VERSIONS for k in ALL_KINDS)


@dataclass(frozen=True)
class FelixSets:
    """What a driver found: Felix's pool sets that exist, with their members as printed
    ("10.0.0.0/16", "10.0.0.1", "10.0.0.0-10.0.0.255"). Empty: none exists; `why` says
    where calfwd looked."""

    source: str  # IPSET or NFTABLES; "" when none was found
    sets: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)
    why: str = ""


@dataclass(frozen=True)
class PoolState:
    """The pools calfwd uses with ip_pools = "auto", or why it uses none."""

    pools: Tuple[IPNetwork, ...] = ()
    masq: Tuple[IPNetwork, ...] = ()  # the natOutgoing pools
    source: str = ""
    problem: str = ""  # set when Felix's sets are absent, empty or unreadable
    refused: Tuple[str, ...] = ()  # members no pod network can be (schema._pool), left out
    follows: str = FELIX  # whose word the pools are: Felix's sets, or flannel's (judge/flannel.py)

    @property
    def known(self) -> bool:
        return bool(self.pools)

    def key(self) -> Tuple[object, ...]:
        """What an operator is told about once: the pools, their natOutgoing, or the problem."""
        return (self.pools, self.masq, self.problem, self.refused)

    def describe(self) -> str:
        if not self.pools:
            unreadable = self.problem.startswith("cannot read")
            empty = EMPTY_LAYER if self.follows == FELIX else FLANNEL_EMPTY_LAYER
            return f"auto: {self.problem or 'no pools'}: " + (UNREADABLE_LAYER if unreadable else empty)
        masq = set(self.masq)
        shown = ", ".join(n.with_prefixlen + (" (natOutgoing)" if n in masq else "") for n in self.pools)
        extra = [n.with_prefixlen for n in _outside(self.masq, self.pools)]
        if extra:  # Felix masquerades these sources too, though no pod lives there
            shown += ", " + ", ".join(f"{n} (natOutgoing only)" for n in extra)
        tail = f" ({whose(self.source)})" if self.source else ""
        if self.problem:
            tail += f"; {self.problem}"
        if self.refused:
            tail += f"; left out: {', '.join(self.refused)}"
        return f"auto -> {shown}{tail}"


def resolve(found: FelixSets, last: Optional[PoolState] = None) -> PoolState:
    """Felix's sets to pools. Overlapping members are merged (nft interval sets refuse
    overlaps); members calfwd would refuse in ip_pools are left out and named. last: the
    pools known before (see unreadable()); a member that is no network makes the read
    unreadable, which keeps them.

    Sets that are absent once pools were known keep those pools: a deleted `ip calico`, a
    reinstalled calico-node or an `nft flush ruleset` is no word from Felix that its pools are
    gone, and dropping them would take natOutgoing away (and change a stock zone or the zone's
    sources, whose reload flushes Felix's rules again). Only an existing, empty set clears them."""
    before = last if last is not None and last.known else PoolState()
    if not found.sets:
        absent = "Felix's sets not found" + (f" ({found.why})" if found.why else "")
        if before.known:
            return PoolState(before.pools, before.masq, before.source, problem=f"{absent} ({keeping(before)})")
        return PoolState(problem=absent)
    refused: List[str] = []
    pools: List[IPNetwork] = []
    masq: List[IPNetwork] = []
    gone = tuple(v for v in VERSIONS if any(n.version == v for n in before.pools)
                 and not any(set_name(v, k) in found.sets for k in ALL_KINDS))
    for version in gone:  # e.g. `ip calico` deleted while `ip6 calico` stays
        pools.extend(n for n in before.pools if n.version == version)
        masq.extend(n for n in before.masq if n.version == version)
    for version in (v for v in VERSIONS if v not in gone):
        for kind, out in tuple((k, pools) for k in ALL_KINDS) + ((MASQ, masq),):
            name = set_name(version, kind)
            members = found.sets.get(name, ())
            if len(members) > MAX_MEMBERS:
                return unreadable(f"{name} in Felix's {found.source} holds {len(members)} members, more than "
                                  f"the {MAX_MEMBERS} pools calfwd reads from one set", last)
            taken = len(out)
            for member in members:
                nets = _networks(member, version)
                if nets is None:  # not Felix's word: never a reason to drop every pool
                    return unreadable(f"{name} in Felix's {found.source} holds {member!r}, which is "
                                      f"not an IPv{version} network", last)
                # A range is several networks: one piece no pod network can be refuses the
                # member whole, as ip_pools refuses such an entry, never a part of it.
                if any(pool_problem(n) for n in nets):
                    if member not in refused:
                        refused.append(member)
                else:
                    out.extend(nets)
            if members and len(out) == taken:
                # Only members no pod network can be: acting on it would empty the pools (or take
                # natOutgoing away) on Felix's word for something calfwd refuses; kept as for a
                # garbled member, naming what was refused.
                shown = ", ".join(repr(m) for m in dict.fromkeys(members))
                return unreadable(f"{name} in Felix's {found.source} holds only {shown}, which no pod "
                                  f"network can be", last)
    pools_c, masq_c = _collapse(pools), _collapse(masq)
    if not pools_c:
        names = ", ".join(sorted(n for n in found.sets if n in ALL_SET_NAMES))
        return PoolState(source=found.source, refused=tuple(refused),
                         problem=f"Felix's {found.source} are empty ({names or 'none of ' + '/'.join(ALL_KINDS)})")
    problem = ""
    if gone:
        families = " and ".join(f"IPv{v}" for v in gone)
        problem = f"Felix's {families} sets not found ({keeping(before, f'the {families} pools')})"
    return PoolState(pools=pools_c, masq=masq_c,
                     source=found.source, refused=tuple(refused), problem=problem)


def event_for(state: PoolState, said: Optional[Tuple[object, ...]]) -> Optional[str]:
    """The event this state calls for, or None when it was said already (said: the key of the
    last state reported): once per change, not at every resync."""
    if state.key() == said:
        return None
    return "pools-unknown" if state.problem else "pools-changed"


def unreadable(error: str, last: Optional[PoolState]) -> PoolState:
    """A read that failed: keep the last pools known (not a guess: Felix's last word, or what
    calfwd applied from it, see applied()), or none."""
    problem = f"{UNREADABLE}: {error}"
    if last is not None and last.known:
        return PoolState(last.pools, last.masq, last.source, problem=f"{problem} ({keeping(last)})")
    return PoolState(problem=problem)


def keeping(last: PoolState, what: str = "the pools") -> str:
    where = f"read before from {whose(last.source)}" if last.source in (IPSET, NFTABLES) \
        or last.source.startswith("flannel's") else last.source or "read before"
    return f"keeping {what} {where}"


def whose(source: str) -> str:
    """Felix's sources are named by kind ("ip sets"); flannel's and calfwd's carry their owner."""
    if source in (IPSET, NFTABLES):
        return f"Felix's {source}"
    return f"the pools {source}" if source.startswith("applied before") else source


# The sets of calfwd's own table (plan/nftables.py render()) and the IP version of each.
CALFWD_SETS = (("pools4", 4, False), ("pools6", 6, False), ("masq4", 4, True), ("masq6", 6, True))


def applied(objs: Optional[List[Any]]) -> Optional[PoolState]:
    """The pools in calfwd's own table (nft's JSON objects), for a process that has not read
    Felix's sets yet (`calfwd apply`, a restarted daemon) when they cannot be read: a failed
    read must not take natOutgoing away."""
    found: Dict[bool, List[IPNetwork]] = {False: [], True: []}
    bodies = {o["set"]["name"]: o["set"] for o in objs or () if "set" in o}
    for name, version, is_masq in CALFWD_SETS:
        for elem in bodies.get(name, {}).get("elem", ()):
            found[is_masq].extend(_networks(nft_member(elem), version) or ())
    if not found[False]:
        return None
    return PoolState(_collapse(found[False]), _collapse(found[True]), "applied before (calfwd's table)")


def ipset_members(text: str, name: str) -> Tuple[str, ...]:
    """`ipset save NAME` to its members: the second word of each 'add NAME MEMBER ...' line."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "add" and words[1] == name:
            out.append(words[2])
    return tuple(out)


def nft_member(elem: Any) -> str:
    """One element of an nft JSON set as text: an address, a prefix or a range."""
    if isinstance(elem, dict) and "elem" in elem:  # with counters, timeouts or comments
        elem = elem["elem"].get("val")
    if isinstance(elem, dict) and "prefix" in elem:
        return f"{elem['prefix']['addr']}/{elem['prefix']['len']}"
    if isinstance(elem, dict) and "range" in elem:
        return "-".join(str(x) for x in elem["range"])
    return str(elem)


def _networks(member: str, version: int) -> Optional[List[IPNetwork]]:
    try:
        if "-" in member:
            first, last = (ipaddress.ip_address(a.strip()) for a in member.split("-", 1))
            nets: List[IPNetwork] = list(ipaddress.summarize_address_range(first, last))  # type: ignore[arg-type]
        else:
            nets = [ipaddress.ip_network(member.strip(), strict=False)]
    except (ValueError, TypeError):
        return None
    return nets if all(n.version == version for n in nets) else None


def _collapse(nets: Iterable[IPNetwork]) -> Tuple[IPNetwork, ...]:
    """Sorted, without duplicates and without networks inside another one. Adjacent pools stay
    apart: they are two pools, and nft's interval sets accept them side by side (so not
    ipaddress.collapse_addresses, which merges them).

    O(n log n): sorted by start, widest first, a network inside any kept one is inside the last
    kept one (CIDR networks are nested or disjoint, and every kept one ends before the next
    starts), so one pass comparing with the last kept network is enough."""
    kept: List[IPNetwork] = []
    for n in sorted(set(nets), key=_order):
        last = kept[-1] if kept else None
        if last is None or last.version != n.version or int(n.broadcast_address) > int(last.broadcast_address):
            kept.append(n)
    return tuple(kept)


def _order(net: IPNetwork) -> Tuple[int, int, int]:
    return net.version, int(net.network_address), net.prefixlen


def _outside(nets: Iterable[IPNetwork], pools: Iterable[IPNetwork]) -> List[IPNetwork]:
    """The nets inside none of the pools. Collapsed, the pools are disjoint and sorted by start,
    so only the last one starting at or before a net can hold it: a binary search per net."""
    outer = list(_collapse(pools))
    keys = [_order(p) for p in outer]
    out = []
    for net in nets:
        i = bisect.bisect_right(keys, _order(net)) - 1
        if i < 0 or outer[i].version != net.version or not net.subnet_of(outer[i]):  # type: ignore[arg-type]
            out.append(net)
    return out
