"""The two status documents, built in one place: the daemon's /run/calfwd/status.json
(daemon(), written by drivers/statusfile.py) and what `calfwd status --json` prints
(status_json(), a fresh read that folds in the daemon's file). They share the firewalld
facts and the per-layer entries; the rest differs and stays as it is (tests pin both). The
daemon's file is read back by status/health.py (daemon_outages, daemon_blocking).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from calfwd.status import health as health_mod
from calfwd.status.health import Health

SCHEMA = 1  # the daemon's status.json


def _firewalld(facts: Any) -> Dict[str, Any]:
    return {"running": facts.firewalld_running, "version": facts.firewalld_version,
            "default_zone": facts.default_zone, "state": facts.firewalld_state}


def _cni(facts: Any) -> Dict[str, Any]:
    """Which CNI calfwd serves (judge/cni.py), and why."""
    verdict = facts.cni
    return {"kind": verdict.kind, "why": verdict.why, "flannel_devices": list(verdict.flannel_devices),
            "ports": [f"{port}/{proto}" for port, proto in verdict.flannel_ports]
            if verdict.kind in ("canal", "flannel") else []}


def _layers(layers: Sequence[Any]) -> List[Dict[str, Any]]:
    return [{"layer": l.layer, "in_sync": l.in_sync, "drift": list(l.actions),
             "conflicts": list(l.conflicts), "blocking": list(l.blocking), "note": l.note,
             "error": l.error} for l in layers]


def daemon(health: Health, outcome: Any, *, pid: int, updated: float, config_path: str,
           zone: str, pools: Sequence[str], following_kernel: bool,
           pid_start: Optional[str] = None) -> Dict[str, Any]:
    """The status file: what `status --json` says, plus what only the daemon knows."""
    return {
        "schema": SCHEMA,
        "pid": pid,
        "pid_start": pid_start,
        "updated": round(updated, 3),
        "config": config_path,
        "state": health.state,
        "in_sync": health.in_sync,
        "problems": list(health.problems),
        "firewalld": _firewalld(outcome.facts),
        "cni": _cni(outcome.facts),
        "zone": zone,
        "pools": list(pools),
        "last_reconcile": {"trigger": outcome.trigger, "verified": outcome.verified,
                           "duration_ms": round(outcome.duration * 1000, 2),
                           "changes": outcome.changes, "errors": list(outcome.errors)},
        "layers": _layers(outcome.layers),
        "flushed": [{"owner": o.owner, "cause": o.cause, "since": round(o.since, 3),
                     "missing": sorted(o.missing)} for o in health.outages],
        "flush_guard_problem": health.guard_problem,
        "firewalld_table_missing": health.firewalld_table_missing,
        "kernel_blocking": list(health.kernel_blocking),
        "kernel_events": following_kernel,
    }


def status_json(*, config_path: str, in_sync: bool, daemon: Optional[Dict[str, Any]], seen: Sequence[str],
                facts: Any, errors: Sequence[str], pools: Any, layers: Sequence[Any]) -> Dict[str, Any]:
    """`calfwd status --json`: the fresh read's layers (their blocking first), what the
    running daemon's file adds (daemon, seen: its flushes and kernel blocking as lines), and
    the pools (ip_pools = "auto" only, else None)."""
    return {
        "config": config_path,
        "in_sync": in_sync,
        "daemon": {"running": daemon is not None, "pid": daemon.get("pid") if daemon else None,
                   "state": daemon.get("state") if daemon else None,
                   "updated": daemon.get("updated") if daemon else None,
                   "flushed": daemon.get("flushed", []) if daemon else [],
                   "firewalld_table_missing": bool(daemon and daemon.get("firewalld_table_missing")),
                   "kernel_blocking": list(health_mod.daemon_blocking(daemon)) if daemon else []},
        "blocking": [b for l in layers for b in l.blocking] + list(seen),
        "firewalld": _firewalld(facts),
        "cni": _cni(facts),
        "errors": list(errors),
        "pools": None if pools is None else {
            "auto": True, "pools": [n.with_prefixlen for n in pools.pools],
            "nat_outgoing": [n.with_prefixlen for n in pools.masq], "source": pools.source,
            "problem": pools.problem, "described": pools.describe()},
        "layers": _layers(layers),
    }
