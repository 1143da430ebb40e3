"""What the daemon says about the node: one verdict for STATUS=, the status file and NPD.

Pure: the last reconcile's outcome plus what only the running daemon knows (flushes of
Felix's and kube-proxy's rules that have not been undone yet, firewalld's table gone, a
missing flush guard) make one Health. `calfwd status` is a fresh read of firewalld and
nftables; it folds in the daemon's view from the status file, because a flush is seen only
as it happens (afterwards the rules are simply absent, like on a node without Calico).

States, worst first: error (something could not be read or changed), blocked (a Calico or
Service path is known to fail now), not-verified, warning (works now, breaks at the next
firewalld step), ok.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

from calfwd.watch.flushes import FLANNEL, KUBE_PROXY, KUBE_ROUTER, OWNERS, PORTMAP, Outage

OK, WARNING, NOT_VERIFIED, BLOCKED, ERROR, STOPPED = "ok", "warning", "not-verified", "blocked", "error", "stopped"
TABLE_GONE = "firewalld's table inet firewalld is gone (systemctl restart firewalld)"


@dataclass(frozen=True)
class Health:
    state: str
    problems: Tuple[str, ...]  # worst first; empty when ok
    in_sync: bool  # calfwd's objects exist, firewalld applies them, and nothing shuts a path
    outages: Tuple[Outage, ...] = ()
    guard_problem: Optional[str] = None
    firewalld_table_missing: bool = False
    kernel_blocking: Tuple[str, ...] = ()  # what only the daemon's kernel watch knows shuts a path

    @property
    def summary(self) -> str:
        return self.problems[0] if self.problems else "in sync"


def outage_text(outage: Outage) -> str:
    since = time.strftime("%H:%M:%S", time.localtime(outage.since))
    if outage.owner == KUBE_PROXY:
        what = "Services (ClusterIPs, NodePorts) fail until kube-proxy restores them"
    elif outage.owner == FLANNEL:
        what = "flannel's masquerade and forward rules are gone until flannel's resync restores them"
    elif outage.owner == KUBE_ROUTER:
        what = "kube-router's network policy is not enforced until its next sync restores it"
    elif outage.owner == PORTMAP:
        what = "hostPorts are shut until their pods are recreated (nothing restores them)"
    else:
        what = "Calico's policy and Felix's natOutgoing are gone until Felix's refresh restores them"
    return f"firewalld's {outage.cause} at {since} flushed {outage.owner}'s iptables rules: {what}"


def assess(outcome: Any, outages: Sequence[Outage] = (), guard_problem: Optional[str] = None,
           firewalld_table_missing: bool = False, pools_problem: Optional[str] = None,
           kernel_blocking: Sequence[str] = ()) -> Health:
    """outcome: reconcile.Outcome (errors, verified, layers[].blocking). pools_problem: with
    ip_pools = "auto", why no pools are known or why stale ones are kept (pools.PoolState):
    calfwd's objects are in sync, yet pod egress may not be what Calico says."""
    errors = [f"ERROR: {e}" for e in outcome.errors]
    blocked = [f"BLOCKED: {b}" for layer in outcome.layers for b in layer.blocking]
    blocked += [f"BLOCKED: {outage_text(o)}" for o in outages]
    blocked += [f"BLOCKED: {line}" for line in kernel_blocking]
    warnings = [f"WARNING: {TABLE_GONE}"] if firewalld_table_missing else []
    warnings += [f"WARNING: {guard_problem}"] if guard_problem else []
    warnings += [f"WARNING: pools: {pools_problem}"] if pools_problem else []
    if errors:
        state = ERROR
    elif blocked:
        state = BLOCKED
    elif not outcome.verified:
        state = NOT_VERIFIED
    elif warnings:
        state = WARNING
    else:
        state = OK
    unverified = [] if outcome.verified or errors or blocked else ["not verified"]
    return Health(state, tuple(errors + blocked + unverified + warnings),
                  in_sync=bool(outcome.verified) and not blocked, outages=tuple(outages),
                  guard_problem=guard_problem, firewalld_table_missing=firewalld_table_missing,
                  kernel_blocking=tuple(kernel_blocking))


def status_line(health: Health, outcome: Any, zone: str, pools: str, stamp: str) -> str:
    """systemd's STATUS=, read by `systemctl status`: the verdict first, then the context."""
    facts = outcome.facts
    fw = f"firewalld {facts.firewalld_version}" if facts.firewalld_running else \
        f"firewalld {facts.firewalld_state}" if facts.firewalld_state else \
        "firewalld unknown" if any(e.startswith("firewalld:") for e in outcome.errors) else "firewalld absent"
    head = "in sync" if health.state == OK else \
        f"{health.summary[:160]}; in sync" if health.state == WARNING else health.summary[:160]
    if health.state not in (OK, WARNING) and health.firewalld_table_missing:
        head = f"WARNING: {TABLE_GONE}; {head}"
    return (f"STATUS={head}; {fw}; zone {zone}; pools {pools}; "
            f"last reconcile {stamp} ({outcome.trigger}, {outcome.duration * 1000:.1f} ms)")


def health_line(health: Health, limit: int = 200) -> str:
    """One line for node-problem-detector's check: the state word, then why."""
    text = f"{health.state} {health.summary}" if health.state != OK else "ok calfwd: in sync"
    return text[:limit]


def daemon_blocking(doc: Dict[str, Any]) -> Tuple[str, ...]:
    """What only the daemon's kernel watch knows shuts a path, from a status file."""
    lines = doc.get("kernel_blocking")
    return tuple(l for l in lines if isinstance(l, str)) if isinstance(lines, list) else ()


def daemon_outages(doc: Dict[str, Any]) -> Tuple[Outage, ...]:
    """The flushes a status file reports, for `calfwd status`."""
    out = []
    flushed = doc.get("flushed")
    for item in flushed if isinstance(flushed, list) else ():
        if not isinstance(item, dict) or item.get("owner") not in OWNERS:
            continue
        missing, since = item.get("missing"), item.get("since")
        out.append(Outage(item["owner"], frozenset(str(j) for j in missing) if isinstance(missing, list) else frozenset(),
                          str(item.get("cause", "")), float(since) if isinstance(since, (int, float)) and not isinstance(since, bool) else 0.0))
    return tuple(out)
