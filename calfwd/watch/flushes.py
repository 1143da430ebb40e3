"""Noticing that Felix's, kube-proxy's or the CNI's rules were flushed, saying so once, and the remedy.

firewalld <= 1.x flushes every iptables table on start, reload and stop (FIELD-NOTES 2, 7):
Felix's and kube-proxy's top-level jumps go first. Felix puts its rules back only at its next
refresh (up to 180 s), kube-proxy when its canary check notices (its sync period, 30 s by
default). Nobody would know in between, so calfwd watches those jumps.

FlushTracker is pure: the daemon feeds it what it *observed* (the set of jumps, read after
every kernel event that touched their chains) and what firewalld is *doing* (start, reload,
stop, from the bus and from firewalld's drop table on the monitor), and asks it when to look
again. A flush is any observation that lost jumps the previous one had: the previous read
is the baseline, and with the monitor it is taken at every change to those chains, so a
reload can no longer slip between a restore and the next look (0.1 refreshed it only at each
reconcile). Two changes inside one read batch (a few milliseconds) still count as one. Losses that arrive in pieces (iptables, then ip6tables) while firewalld is
busy make one episode, closed once firewalld is done and the chains are quiet; the cause is
the firewalld activity in progress or just finished, waited for briefly when unknown (the
name is released only after the stop's flush), else "not firewalld".

On Canal and flannel nodes the same flush takes flannel's masquerade and forward jumps
(FLANNEL-POSTRTG, FLANNEL-FWD: back at flannel's next resync), kube-router's policy jumps
(KUBE-ROUTER-*, k3s: back at its next sync) and portmap's hostPort jumps (CNI-HOSTPORT-*:
nothing puts those back until the pod is recreated); each is watched and named the same way.

A node whose Calico runs in legacy iptables or in its native nftables table has no such jumps
in the nft tables, so it never loses any and never warns.

The on_calico_flush command is run by flush_command.CommandRunner.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from calfwd.judge import guard
from calfwd.watch.kernel_events import CANARY

SETTLE = 0.25  # seconds without a new loss (and firewalld idle) before an episode is reported
CAUSE_GRACE = 2.0  # further seconds to wait for firewalld's own news when the cause is unknown
# A firewalld start/reload/stop that ended this shortly before a loss "just finished": for a
# read made promptly on a kernel event, only what the event stream and the bus may disagree
# on; for a late read (after a reconcile, without the monitor), the reconcile's own delay.
PROMPT_RECENT = 0.15
RECENT = 1.0
MAX_OPEN = 15.0  # report even if firewalld seems busy for longer (a hung reload)
# firewalld also puts its drop table in place for panic mode, and a crash can leave it behind:
# an activity "in progress" longer than this is taken as over.
MAX_BUSY = 10.0
KUBE_PROXY_SYNC = 30  # kube-proxy's --iptables-sync-period default: how often its canary is checked

CALICO, KUBE_PROXY = "Calico", "kube-proxy"
FLANNEL, KUBE_ROUTER, PORTMAP = "flannel", "kube-router", "portmap"
OWNERS = (CALICO, KUBE_PROXY, FLANNEL, KUBE_ROUTER, PORTMAP)  # the order owners are named in
# Whose chain a jump enters, by the chain's name; the first match wins (KUBE-ROUTER- before KUBE-).
JUMP_OWNERS = (("cali-", CALICO), ("KUBE-ROUTER-", KUBE_ROUTER), ("KUBE-", KUBE_PROXY),
               ("FLANNEL-", FLANNEL), ("CNI-HOSTPORT-", PORTMAP))
FLANNEL_RESYNC = 5  # flanneld's --iptables-resync default (RKE2's Canal keeps it); k3s: 60 and 50
KUBE_ROUTER_SYNC = 300  # kube-router's --iptables-sync-period default (k3s keeps it)
ChainRef = Tuple[str, str, str]


def watched_jumps(chains: Mapping[ChainRef, List[Mapping[str, Any]]]) -> FrozenSet[str]:
    """'ip filter FORWARD -> cali-FORWARD' for every jump or goto into Felix's or kube-proxy's
    chains, and 'ip nat KUBE-PROXY-CANARY (chain)' for each canary chain that exists."""
    found = set()
    for (family, table, chain), rules in chains.items():
        if chain == CANARY:
            found.add(f"{family} {table} {CANARY} (chain)")
            continue
        for rule in rules:
            for expr in rule.get("expr", ()):
                for verdict in ("jump", "goto"):
                    target = expr.get(verdict) if isinstance(expr, dict) else None
                    name = str(target.get("target", "")) if isinstance(target, dict) else ""
                    if name.startswith(tuple(prefix for prefix, _owner in JUMP_OWNERS)):
                        found.add(f"{family} {table} {chain} -> {name}")
    return frozenset(found)


class JumpIndex:
    """The watched jumps by chain and rule handle, kept current from the monitor's own rule
    events, so that a change in a chain holding thousands of rules (a host firewall's, Docker's)
    costs a dictionary update, never a read of the chain.

    Exact because of what nftables notifies: every rule added or inserted comes with its
    handle and expressions, and every rule removed comes as a delete of its handle, whether
    one rule is deleted, the chain flushed, or the table deleted (each rule first, then the
    chain, then the table); a replace is a delete and an add of the handle. A read (load()) is
    the baseline: at start, when the monitor (re)starts, and when it lost events."""

    def __init__(self) -> None:
        # chain -> handle (or the rule's position, for a read without handles) -> its jumps;
        # only rules that hold a watched jump are kept.
        self._chains: Dict[ChainRef, Dict[Any, FrozenSet[str]]] = {}
        self._all: Optional[FrozenSet[str]] = frozenset()

    def load(self, ref: ChainRef, rules: Optional[Sequence[Mapping[str, Any]]]) -> None:
        """A read of the chain (None: it does not exist)."""
        self._all = None
        if rules is None:
            self._chains.pop(ref, None)
            return
        if ref[2] == CANARY:
            self._chains[ref] = {"chain": watched_jumps({ref: []})}
            return
        held: Dict[Any, FrozenSet[str]] = {}
        for i, rule in enumerate(rules):
            jumps = watched_jumps({ref: [rule]})
            if jumps:
                held[rule.get("handle", ("read", i))] = jumps
        self._chains[ref] = held

    def rule_added(self, ref: ChainRef, handle: int, rule: Mapping[str, Any]) -> bool:
        """True when the watched jumps changed."""
        jumps = watched_jumps({ref: [rule]}) if ref[2] != CANARY else frozenset()
        held = self._chains.setdefault(ref, {})
        if held.get(handle, frozenset()) == jumps:
            return False
        if jumps:
            held[handle] = jumps
        else:
            held.pop(handle, None)
        self._all = None
        return True

    def rule_deleted(self, ref: ChainRef, handle: int) -> bool:
        if self._chains.get(ref, {}).pop(handle, None) is None:
            return False
        self._all = None
        return True

    def chain_added(self, ref: ChainRef) -> bool:
        """A new chain is empty (its rules come as their own events); an existing one, updated,
        keeps its rules. Only a canary chain's existence is a watched jump."""
        if ref[2] != CANARY or ref in self._chains:
            return False
        self.load(ref, [])
        return True

    def chain_deleted(self, ref: ChainRef) -> bool:
        if ref not in self._chains:
            return False
        self.load(ref, None)
        return True

    def jumps(self) -> FrozenSet[str]:
        if self._all is None:
            self._all = frozenset().union(*(j for held in self._chains.values() for j in held.values()))
        return self._all


def owner(jump: str) -> str:
    """'ip nat POSTROUTING -> FLANNEL-POSTRTG' -> flannel; kube-proxy's canary chain is its own."""
    target = jump.split(" -> ", 1)[1] if " -> " in jump else jump.split()[-2]
    return next((who for prefix, who in JUMP_OWNERS if target.startswith(prefix)), CALICO)


@dataclass(frozen=True)
class Flush:
    """One episode: what went, and why if firewalld was starting, reloading or stopping."""

    lost: FrozenSet[str]
    cause: Optional[str]  # "start", "reload", "stop", or None: not firewalld's doing
    owners: Tuple[str, ...]


@dataclass(frozen=True)
class Outage:
    """Jumps a firewalld flush took that have not come back yet: a path known to be broken now.

    Only firewalld's flushes count: a loss with no firewalld activity may be Felix or
    kube-proxy leaving iptables on purpose (a dataplane switch), and would never end."""

    owner: str  # CALICO or KUBE_PROXY
    missing: FrozenSet[str]
    cause: str
    since: float  # wall-clock time (time.time()) the episode was reported


class FlushTracker:
    """Pure: observations and firewalld activity in, one Flush per episode out."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._wall = wall
        self._outages: Dict[str, Outage] = {}  # owner -> what of theirs is still gone
        self.seen: Optional[FrozenSet[str]] = None  # None: never read yet
        self._lost: FrozenSet[str] = frozenset()
        self._cause: Optional[str] = None  # of the open episode, fixed once known
        self._first = self._last = 0.0
        self._busy: Dict[str, float] = {}  # activity -> since when (in progress)
        self._done: List[Tuple[str, float]] = []  # (activity, when it ended), newest last
        self.flushes = 0

    # -- what the daemon tells it ------------------------------------------------------

    def observe(self, jumps: FrozenSet[str], late: bool = False) -> None:
        """late: the read may come well after what caused it (a reconcile's, not an event's)."""
        now = self._clock()
        lost = (self.seen or frozenset()) - jumps
        self.seen = jumps
        self._restored(jumps)
        if not lost:
            return
        if not self._lost:
            self._first = now
            self._cause = self._current(RECENT if late else PROMPT_RECENT)  # what firewalld was doing
        self._lost |= lost
        self._last = now

    def begin(self, activity: str) -> None:
        self._busy.setdefault(activity, self._clock())
        self._learn(activity)

    def end(self, activity: str) -> None:
        """Also for activities seen only once they are over (Reloaded, the name released)."""
        now = self._clock()
        was_busy = self._busy.pop(activity, None) is not None
        self._done = [(a, t) for a, t in self._done if now - t <= RECENT]
        if was_busy or activity not in (a for a, _t in self._done):
            # Not again for its late confirmation: the bus's Reloaded comes a good 0.1 s after
            # the monitor saw firewalld remove its drop table, and must not make it "recent".
            self._done.append((activity, now))
        self._learn(activity)

    def _learn(self, activity: str) -> None:
        """An open episode without a cause takes the first firewalld news after the loss."""
        if self._lost and self._cause is None:
            self._cause = activity

    def _current(self, recent_s: float) -> Optional[str]:
        busy = self._live_busy()
        if busy:
            return max(busy.items(), key=lambda item: item[1])[0]
        now = self._clock()
        recent = [a for a, t in self._done if now - t <= recent_s]
        return recent[-1] if recent else None

    def busy(self, activity: str) -> bool:
        return activity in self._live_busy()

    def _live_busy(self) -> Dict[str, float]:
        now = self._clock()
        return {a: t for a, t in self._busy.items() if now - t < MAX_BUSY}

    # -- what it answers -----------------------------------------------------------------

    def due(self) -> Optional[float]:
        """When to call poll() next (monotonic seconds), or None while no episode is open."""
        if not self._lost:
            return None
        if self._live_busy() and self._clock() - self._first < MAX_OPEN:
            return self._clock() + SETTLE
        return self._last + SETTLE if self.cause() else self._last + SETTLE + CAUSE_GRACE

    def cause(self) -> Optional[str]:
        return self._cause if self._lost else None

    def poll(self) -> Optional[Flush]:
        """The episode, once it is over; None while it is still going on (or none is open)."""
        due = self.due()
        if due is None or self._clock() < due:
            return None
        lost, cause = self._lost, self.cause()
        self._lost, self._cause = frozenset(), None
        self.flushes += 1
        owners = tuple(o for o in OWNERS if any(owner(j) == o for j in lost))
        if cause:
            for who in owners:
                gone = frozenset(j for j in lost if owner(j) == who) - (self.seen or frozenset())
                if gone:
                    prior = self._outages.get(who)
                    self._outages[who] = Outage(who, gone | (prior.missing if prior else frozenset()),
                                                cause, prior.since if prior else self._wall())
        return Flush(lost, cause, owners)

    def _restored(self, jumps: FrozenSet[str]) -> None:
        for who, outage in list(self._outages.items()):
            missing = outage.missing - jumps
            if not missing:
                del self._outages[who]
            elif missing != outage.missing:
                self._outages[who] = Outage(who, missing, outage.cause, outage.since)

    def carry(self, outages: Tuple[Outage, ...]) -> None:
        """What a previous run saw flushed and not undone: still gone until observe() sees it."""
        for outage in outages:
            self._outages.setdefault(outage.owner, outage)

    def outages(self) -> Tuple[Outage, ...]:
        """What firewalld flushed and nobody has put back yet, Calico first."""
        return tuple(self._outages[o] for o in OWNERS if o in self._outages)


def event_kind(flush: Flush) -> str:
    """calico-flushed whenever Calico lost rules, kube-proxy-flushed when only kube-proxy (and
    the CNI's) did, cni-flushed for flannel's, kube-router's or portmap's alone."""
    if CALICO in flush.owners:
        return "calico-flushed"
    return "kube-proxy-flushed" if KUBE_PROXY in flush.owners else "cni-flushed"


def flushed_message(flush: Flush, version: str, refresh: float, note: str = "") -> str:
    whose = " and ".join(f"{o}'s" for o in flush.owners) or "Calico's"
    gone = ", ".join(sorted(flush.lost))
    if flush.cause:
        who = f"firewalld {version}" if version else "firewalld"
        head = f"{who} flushed {whose} iptables rules on {flush.cause} (gone: {gone})."
    else:
        head = (f"{whose} iptables rules were removed, not during a firewalld start, reload or "
                f"stop (gone: {gone}).")
    parts = [head]
    if CALICO in flush.owners:
        parts.append(f"Calico's network policy is not enforced and Felix's natOutgoing is gone "
                     f"until Felix's next refresh, within {refresh:g} s ([calico] "
                     "felix_refresh_interval); calfwd's own table keeps pod egress working.")
    if KUBE_PROXY in flush.owners:
        parts.append("Services (ClusterIPs, cluster DNS) and NodePorts fail until kube-proxy's "
                     f"canary check notices, within its --iptables-sync-period ({KUBE_PROXY_SYNC} s "
                     "by default).")
    if FLANNEL in flush.owners:
        parts.append("flannel's masquerade (FLANNEL-POSTRTG) and forward rules are gone until its "
                     f"resync, within --iptables-resync ({FLANNEL_RESYNC} s by default; k3s: 60 s, "
                     "forward rules 50 s); calfwd's own table keeps pod egress masqueraded.")
    if KUBE_ROUTER in flush.owners:
        parts.append("kube-router's network policy (KUBE-ROUTER-*) is not enforced until its next "
                     f"sync, within its --iptables-sync-period ({KUBE_ROUTER_SYNC // 60} min by default).")
    if PORTMAP in flush.owners:
        parts.append("portmap's hostPort rules (CNI-HOSTPORT-*) are gone and nothing puts them "
                     "back: hostPorts stay shut until each such pod is recreated.")
    if flush.cause:
        parts.append(f"Fix: `calfwd guard enable && {guard.ACTIVATE}` (firewalld 1.x, nftables "
                     "backend), or firewalld >= 2.0 without direct rules")
    else:
        parts.append("If Felix or kube-proxy did not remove them themselves (a dataplane switch), "
                     "find what did: nftables.service runs `flush ruleset` on reload and stop; an "
                     "admin's `iptables -F`; a configuration-management run. on_calico_flush is not "
                     "run for these")
    text = " ".join(parts)
    return text + (f". {note}" if note else "")
