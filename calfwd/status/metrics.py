"""calfwd's metrics in Prometheus's text format, for node_exporter's textfile collector.

The unit opens no IP socket, so nothing is served: the daemon writes a file that
node_exporter serves (status/metrics_file.py). Pure: Tally counts what the daemon saw, snapshot()
freezes it, render() prints it. The names are an interface (docs/metrics.md): never rename
one, add a new one instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

# Seconds: a quiet resync takes a few ms, a reconcile that reloads firewalld seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAYERS = ("nftables", "firewalld")
# Known from the start, so that increase() sees the first one (a series born at 1 shows none).
TRIGGERS = ("start", "firewalld-reloaded", "firewalld-started", "resync", "config-reloaded",
            "felix-pools-changed", "flannel-subnet-changed")
# status/health.py's verdicts, worst last: one series each, 1 for the current one (a state set).
HEALTH_STATES = ("ok", "warning", "not-verified", "blocked", "error")
RESULTS = ("verified", "not-verified", "failed")
FLUSH_OWNERS = ("calico", "kube-proxy", "flannel", "kube-router", "portmap")
FLUSH_CAUSES = ("start", "reload", "stop", "not-firewalld")

Labels = Tuple[Tuple[str, str], ...]


@dataclass(frozen=True)
class Histogram:
    bounds: Tuple[float, ...]
    counts: Tuple[int, ...]  # per bucket, not cumulative; one more than bounds (+Inf)
    total: float  # the sum of every observation

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True)
class Snapshot:
    version: str
    firewalld_version: str  # "" when firewalld was not running at the last reconcile
    firewalld_backend: str
    firewalld_running: bool
    in_sync: Tuple[Tuple[str, bool], ...]  # (layer, in sync); empty before the first reconcile
    reconciles: Tuple[Tuple[Tuple[str, str], int], ...]  # ((trigger, result), count)
    duration: Histogram
    firewalld_reloads: int
    firewalld_restarts: int
    flushes: Tuple[Tuple[Tuple[str, str], int], ...]  # ((owner, cause), count)
    conflicts: int  # conflicts found by the last reconcile
    table_repairs: int
    last_success: Optional[float]  # Unix time of the last verified reconcile
    flush_guard_installed: bool
    health: str = ""  # status/health.py's state; "" before the first verdict
    flushed_now: Tuple[str, ...] = ()  # owners whose flushed rules are not back yet
    cni: str = ""  # judge/cni.py's kind at the last reconcile; "" before the first


def result(outcome: Any) -> str:
    if outcome.errors:
        return "failed"
    return "verified" if outcome.verified else "not-verified"


def layers_in_sync(outcome: Any) -> Tuple[Tuple[str, bool], ...]:
    """A layer is in sync when it was read, nothing blocked it, and it needed nothing or what
    it needed was verified after applying. A layer that failed to be read or applied is not."""
    found = {layer.layer: layer for layer in outcome.layers}
    states = []
    for name in LAYERS:
        layer = found.get(name)
        failed = any(e.startswith(f"{name}:") for e in outcome.errors)
        ok = (layer is not None and not failed and not layer.error and not layer.blocking
              and (layer.empty or outcome.verified))
        states.append((name, ok))
    return tuple(states)


class Tally:
    """What the daemon saw since it started; counters only grow (Prometheus sees a restart)."""

    def __init__(self, version: str, bounds: Sequence[float] = BUCKETS) -> None:
        self.version = version
        self._bounds = tuple(bounds)
        self._buckets = [0] * (len(self._bounds) + 1)
        self._duration_sum = 0.0
        self._reconciles: Dict[Tuple[str, str], int] = {(t, r): 0 for t in TRIGGERS for r in RESULTS}
        self._flushes: Dict[Tuple[str, str], int] = {(o, c): 0 for o in FLUSH_OWNERS for c in FLUSH_CAUSES}
        self.firewalld_reloads = self.firewalld_restarts = self.table_repairs = 0
        self._firewalld = ("", "", False)
        self._in_sync: Tuple[Tuple[str, bool], ...] = ()
        self._conflicts = 0
        self._last_success: Optional[float] = None
        self.flush_guard_installed = False
        self.health = ""
        self.flushed_now: Tuple[str, ...] = ()
        self._cni = ""

    def verdict(self, state: str, flushed_owners: Sequence[str]) -> bool:
        """status/health.py's verdict; True when it changed a metric."""
        flushed = tuple(sorted(o.lower() for o in flushed_owners))
        changed = (state, flushed) != (self.health, self.flushed_now)
        self.health, self.flushed_now = state, flushed
        return changed

    def reconciled(self, outcome: Any, now: float) -> None:
        key = (outcome.trigger, result(outcome))
        self._reconciles[key] = self._reconciles.get(key, 0) + 1
        index = next((i for i, bound in enumerate(self._bounds) if outcome.duration <= bound), len(self._bounds))
        self._buckets[index] += 1
        self._duration_sum += outcome.duration
        facts = outcome.facts
        self._firewalld = (facts.firewalld_version, facts.firewalld_backend, facts.firewalld_running)
        self._cni = facts.cni.kind
        self._in_sync = layers_in_sync(outcome)
        self._conflicts = len(outcome.conflicts)
        if outcome.verified:
            self._last_success = now

    def event(self, kind: str, fields: Mapping[str, Any]) -> bool:
        """Counts a reported event (events.py kind); True when it changed a metric."""
        if kind == "firewalld-reloaded":
            self.firewalld_reloads += 1
        elif kind == "table-repaired":
            self.table_repairs += 1
        elif kind in ("calico-flushed", "kube-proxy-flushed", "cni-flushed"):
            cause = str(fields.get("cause") or "not-firewalld")
            for owner in fields.get("owners") or ():
                key = (str(owner).lower(), cause)
                self._flushes[key] = self._flushes.get(key, 0) + 1
        else:
            return False
        return True

    def snapshot(self) -> Snapshot:
        version, backend, running = self._firewalld
        return Snapshot(
            version=self.version, firewalld_version=version, firewalld_backend=backend,
            firewalld_running=running, in_sync=self._in_sync,
            reconciles=tuple(sorted(self._reconciles.items())),
            duration=Histogram(self._bounds, tuple(self._buckets), self._duration_sum),
            firewalld_reloads=self.firewalld_reloads, firewalld_restarts=self.firewalld_restarts,
            flushes=tuple(sorted(self._flushes.items())), conflicts=self._conflicts,
            table_repairs=self.table_repairs, last_success=self._last_success,
            flush_guard_installed=self.flush_guard_installed, health=self.health,
            flushed_now=self.flushed_now, cni=self._cni)


# ---------------------------------------------------------------------------------------
# The text format (version 0.0.4), which node_exporter's textfile collector reads.


def number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        if math.isnan(value):
            return "NaN"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    return str(value)


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _series(name: str, labels: Labels, value: float) -> str:
    inside = ",".join(f'{key}="{escape_label(val)}"' for key, val in labels)
    return f"{name}{{{inside}}} {number(value)}" if inside else f"{name} {number(value)}"


def family(name: str, kind: str, help_text: str, samples: Iterable[Tuple[Labels, float]]) -> List[str]:
    """Nothing at all without samples: a family with no series only confuses readers."""
    series = [_series(name, labels, value) for labels, value in samples]
    return [f"# HELP {name} {escape_help(help_text)}", f"# TYPE {name} {kind}"] + series if series else []


def histogram(name: str, help_text: str, h: Histogram) -> List[str]:
    lines = [f"# HELP {name} {escape_help(help_text)}", f"# TYPE {name} histogram"]
    running = 0
    for bound, count in zip(h.bounds + (math.inf,), h.counts):
        running += count
        lines.append(_series(f"{name}_bucket", (("le", number(float(bound))),), running))
    lines += [_series(f"{name}_sum", (), h.total), _series(f"{name}_count", (), h.count)]
    return lines


def render(s: Snapshot) -> str:
    lines: List[str] = []
    lines += family("calfwd_info", "gauge", "calfwd's version, and firewalld's version and backend "
                    "at the last reconcile (empty when firewalld was not running).",
                    [((("version", s.version), ("firewalld_version", s.firewalld_version),
                       ("firewalld_backend", s.firewalld_backend)), 1)])
    lines += family("calfwd_cni_info", "gauge", "1 for the CNI calfwd served at the last reconcile "
                    "(calico, canal, flannel; unknown is served as calico).",
                    [((("kind", s.cni),), 1)] if s.cni else [])
    lines += family("calfwd_firewalld_running", "gauge", "1 when firewalld was RUNNING at the last reconcile.",
                    [((), s.firewalld_running)])
    lines += family("calfwd_in_sync", "gauge", "1 when the layer was as configured after the last "
                    "reconcile (read, nothing blocking, changes verified).",
                    [((("layer", layer),), ok) for layer, ok in s.in_sync])
    lines += family("calfwd_health", "gauge", "1 for calfwd's current verdict (as STATUS= and "
                    "/run/calfwd/health): ok; warning (breaks at firewalld's next step); not-verified; "
                    "blocked (a Calico or Service path fails now); error.",
                    [((("state", state),), state == s.health) for state in HEALTH_STATES] if s.health else [])
    lines += family("calfwd_flushed", "gauge", "1 while the rules firewalld flushed of this owner "
                    "(Calico's, kube-proxy's) are not back: its paths are down now.",
                    [((("owner", owner),), owner in s.flushed_now) for owner in FLUSH_OWNERS] if s.health else [])
    lines += family("calfwd_reconciles_total", "counter", "Reconciles by trigger and result "
                    "(verified, not-verified, failed).",
                    [((("trigger", t), ("result", r)), n) for (t, r), n in s.reconciles])
    lines += histogram("calfwd_reconcile_duration_seconds", "How long a reconcile took, firewalld's "
                       "reload included.", s.duration)
    lines += family("calfwd_last_success_timestamp_seconds", "gauge", "Unix time of the last "
                    "verified reconcile.", [((), s.last_success)] if s.last_success is not None else [])
    lines += family("calfwd_firewalld_reloads_total", "counter", "firewalld reloads seen (its "
                    "Reloaded signal; calfwd's own reloads included).", [((), s.firewalld_reloads)])
    lines += family("calfwd_firewalld_restarts_total", "counter", "firewalld starts seen while calfwd "
                    "ran (a new owner of its D-Bus name).", [((), s.firewalld_restarts)])
    lines += family("calfwd_flushes_total", "counter", "Flushes of Calico's or kube-proxy's top-level "
                    "rules seen, by owner and cause (firewalld's start, reload, stop, or not-firewalld).",
                    [((("owner", o), ("cause", c)), n) for (o, c), n in s.flushes])
    lines += family("calfwd_flush_guard_installed", "gauge", "1 when calfwd's flush-guard drop-in for "
                    "firewalld.service is in place and current (it takes effect at firewalld's next restart).",
                    [((), s.flush_guard_installed)])
    lines += family("calfwd_conflicts", "gauge", "Conflicts the last reconcile found (see the "
                    "journal's conflict events).", [((), s.conflicts)])
    lines += family("calfwd_table_repairs_total", "counter", "Times calfwd restored its own nftables "
                    "table after someone else changed it.", [((), s.table_repairs)])
    return "\n".join(lines) + "\n"
