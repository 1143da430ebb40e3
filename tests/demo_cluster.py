"""`make demo`'s second table: every path of the two-node cluster lab after each step.

The cluster (tests/lab/cluster.py) is VXLAN with the uplink in no zone (no NetworkManager:
the default zone catches it), the harder common case. Each step (tests/lab/paths.py) runs on
both nodes, then every path is probed (PATHS order) right after it: before Felix's refresh and
kube-proxy's resync, which a real node does minutes and 30 s later. "With calfwd" is a node as
the package leaves it: calfwd on both nodes with the minimal config, and the flush guard that
`calfwd guard auto` (the package's %post) installs where this firewalld flushes, in effect
from firewalld's start.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from lab import paths
from lab.cluster import Cluster

PARAMS = dict(encap="vxlan", uplink="unbound", zone="public")
WITHIN = 0.3  # seconds a path gets after a step; without calfwd each failing path costs this
NO_FIREWALLD = "no firewalld"
RELOAD = "firewall-cmd --reload"
CROSS_NODE_PODS = ("pod1 -> pod2", "pod2 -> pod1")

Row = Tuple[str, Optional[Dict[str, bool]]]  # None: the step does not apply (no calfwd to restart)


def walk(with_calfwd: bool, ids: List[str]) -> List[Row]:
    """Probe every path with no firewalld, then after each step, on one fresh cluster. The
    probes before firewalld leave no flow that later ones could ride on as replies: VXLAN is
    untracked and every probe is a new, closed TCP connection."""
    rows: List[Row] = []
    with Cluster(calfwd=with_calfwd, flush_guard=with_calfwd, **PARAMS) as cluster:
        ids.append(cluster.id)
        rows.append((NO_FIREWALLD, paths.check(cluster, within=WITHIN)))
        for name, step in paths.STEPS:
            if name == "calfwd restarted" and not with_calfwd:
                rows.append((name, None))
                continue
            step(cluster)
            rows.append((name, paths.check(cluster, within=WITHIN)))
    return rows


def table(without: List[Row], with_: List[Row]) -> List[str]:
    width = max(len(name) for name, _ in without)
    cols = "".join(str(i) for i in range(1, len(paths.PATHS) + 1))
    lines = ["Two Calico nodes (VXLAN; uplink in no zone, caught by the default zone public), every "
             "path right after",
             "each step, before Felix's refresh and kube-proxy's resync. With calfwd: the minimal "
             "config on both nodes",
             "and the flush guard `calfwd guard auto` (the package's %post) installs, in effect from "
             "firewalld's start.",
             "",
             "%-*s  %-14s  %s" % (width, "", "without calfwd", "with calfwd"),
             "%-*s  %-14s  %s" % (width, "step (on both nodes)", cols, cols),
             "%s  %s  %s" % ("-" * width, "-" * 14, "-" * len(cols))]
    for (name, a), (_name, b) in zip(without, with_):
        lines.append("%-*s  %-14s  %s" % (width, name, marks(a), marks(b)))
    lines.append("")
    lines += ["%d %s" % (i, name) for i, (name, _) in enumerate(paths.PATHS, 1)]
    lines.append("'.' a new connection succeeded within %.1f s of the step (with calfwd: of calfwd's "
                 "reconcile after it on both nodes);" % WITHIN)
    lines.append("'X' it did not; '-' no calfwd to restart. Without calfwd, \"firewalld started\" has "
                 "nothing to start after.")
    return lines


def marks(row: Optional[Dict[str, bool]]) -> str:
    if row is None:
        return "-" * len(paths.PATHS)
    return "".join("." if row[name] else "X" for name, _ in paths.PATHS)


def as_expected(without: List[Row], with_: List[Row]) -> bool:
    """Every path works with calfwd at every step; without it, every path works before
    firewalld and the pods lose each other on a reload."""
    with_ok = all(row is not None and all(row.values()) for _name, row in with_)
    rows = dict(without)
    before, reloaded = rows[NO_FIREWALLD], rows[RELOAD]
    if before is None or reloaded is None:
        return False
    return with_ok and all(before.values()) and not any(reloaded[name] for name in CROSS_NODE_PODS)
