"""`make demo`'s cluster tables: every path of a two-node cluster lab after each step.

Calico's cluster (tests/lab/cluster.py) is VXLAN with the uplink in no zone (no
NetworkManager: the default zone catches it), the harder common case. RKE2's Canal is
flannel's VXLAN (flannel.1, 8472/udp) and flannel's masquerade with Felix for policy only,
the uplink bound to the default zone as NetworkManager binds it on RKE2's RHEL nodes.

Each step (tests/lab/paths.py) runs on both nodes, then every path is probed (PATHS order)
right after it: before Felix's refresh and kube-proxy's resync, which a real node does
minutes and 30 s later. On Canal the paths are probed again after the reload and flannel's
resync (every 5 s on RKE2), which re-creates its masquerade if firewalld flushed it: the table
shows what that fixes and what it does not; a line says which steps flushed it. "With calfwd" is a node as the package leaves it: calfwd on both
nodes with the minimal config (Canal: the fleet's one line, `ip_pools = "auto"`), and the flush
guard that `calfwd guard auto` (the package's %post) installs where this firewalld flushes, in
effect from firewalld's start.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from lab import paths
from lab.cluster import Cluster

CALICO = "calico"
CANAL = "canal"
PARAMS = {CALICO: dict(encap="vxlan", uplink="unbound", zone="public"),
          CANAL: dict(cni="canal", uplink="bound", zone="public")}
ALL_PATHS = tuple(name for name, _ in paths.PATHS)
BGP_PATHS = ("node1 -> node2 179/tcp", "node2 -> node1 179/tcp")
# Canal needs no BGP: calfwd opens no 179/tcp there, and the demo does not probe it.
PROBED = {CALICO: ALL_PATHS, CANAL: tuple(name for name in ALL_PATHS if name not in BGP_PATHS)}
WITHIN = 0.3  # seconds a path gets after a step; without calfwd each failing path costs this
NO_FIREWALLD = "no firewalld"
RELOAD = "firewall-cmd --reload"
CALFWD_RESTARTED = "calfwd restarted"
FLANNEL_RESYNC = "+ flannel's resync"  # Canal's row after the reload
CROSS_NODE_PODS = ("pod1 -> pod2", "pod2 -> pod1")
POD_EGRESS = "pod1 -> external (natOutgoing)"

Row = Tuple[str, Optional[Dict[str, bool]]]  # None: the step does not apply (no calfwd to restart)


def walk(with_calfwd: bool, ids: List[str], cni: str = CALICO,
         flushed: Optional[List[str]] = None) -> List[Row]:
    """Probe every path with no firewalld, then after each step, on one fresh cluster. The
    probes before firewalld leave no flow that later ones could ride on as replies: VXLAN is
    untracked and every probe is a new, closed TCP connection. On Canal, `flushed` gets the
    steps after which flannel's masquerade was gone from a node: measured, as firewalld
    releases differ."""
    rows: List[Row] = []
    with Cluster(calfwd=with_calfwd, flush_guard=with_calfwd, **PARAMS[cni]) as cluster:
        ids.append(cluster.id)
        rows.append((NO_FIREWALLD, paths.check(cluster, PROBED[cni], within=WITHIN)))
        for name, step in paths.STEPS:
            if name == CALFWD_RESTARTED and not with_calfwd:
                rows.append((name, None))
                continue
            step(cluster)
            rows.append((name, paths.check(cluster, PROBED[cni], within=WITHIN)))
            if cni == CANAL and flushed is not None and not all(n.flannel.present() for n in cluster.nodes):
                flushed.append(name)
            if cni == CANAL and name == RELOAD:  # once: each firewalld step flushes alike (`flushed`)
                for node in cluster.nodes:
                    node.flannel.restore()
                rows.append((FLANNEL_RESYNC, paths.check(cluster, PROBED[cni], within=WITHIN)))
    return rows


def table(without: List[Row], with_: List[Row], cni: str = CALICO,
          flushed: Tuple[Sequence[str], Sequence[str]] = ((), ())) -> List[str]:
    """The table; on Canal, `flushed`: the steps that flushed flannel's masquerade, without and
    with calfwd (walk's)."""
    names = PROBED[cni]
    width = max(len(name) for name, _ in without)
    cols = "".join(str(i) for i in range(1, len(names) + 1))
    if cni == CANAL:
        lines = ["RKE2's Canal on two nodes (flannel's VXLAN flannel.1 on 8472/udp and its masquerade; "
                 "Felix for policy",
                 "only; uplink bound to the default zone public, as NetworkManager does), every path "
                 "right after each",
                 "step, and after the reload once flannel's resync (every 5 s on RKE2) has run. With "
                 "calfwd: the one-line",
                 "config (ip_pools = \"auto\") on both nodes and the flush guard `calfwd guard auto` "
                 "installs."]
    else:
        lines = ["Two Calico nodes (VXLAN; uplink in no zone, caught by the default zone public), every "
                 "path right after",
                 "each step, before Felix's refresh and kube-proxy's resync. With calfwd: the minimal "
                 "config on both nodes",
                 "and the flush guard `calfwd guard auto` (the package's %post) installs, in effect from "
                 "firewalld's start."]
    lines += ["",
              "%-*s  %-14s  %s" % (width, "", "without calfwd", "with calfwd"),
              "%-*s  %-14s  %s" % (width, "step (on both nodes)", cols, cols),
              "%s  %s  %s" % ("-" * width, "-" * 14, "-" * len(cols))]
    for (name, a), (_name, b) in zip(without, with_):
        lines.append("%-*s  %-14s  %s" % (width, name, marks(a, names), marks(b, names)))
    lines.append("")
    lines += ["%d %s" % (i, name) for i, name in enumerate(names, 1)]
    lines.append("'.' a new connection succeeded within %.1f s of the step (with calfwd: of calfwd's "
                 "reconcile after it on both nodes);" % WITHIN)
    lines.append("'X' it did not; '-' no calfwd to restart. Without calfwd, \"firewalld started\" has "
                 "nothing to start after.")
    if cni == CANAL:
        lines.append("Felix's refresh (60 s on RKE2) and kube-proxy's resync (30 s) are not run; Canal "
                     "uses no BGP (179/tcp).")
        firewalld_steps = [name for name, _ in paths.STEPS if name != CALFWD_RESTARTED]
        for who, steps in zip(("without calfwd", "with calfwd"), flushed):
            said = ("flushed by every firewalld step" if list(steps) == firewalld_steps else
                    "flushed by " + ", ".join(steps) if steps else "never flushed")
            lines.append("flannel's masquerade (FLANNEL-POSTRTG), %s: %s." % (who, said))
        resynced = dict(without).get(FLANNEL_RESYNC)
        if resynced is not None and not any(resynced[name] for name in CROSS_NODE_PODS):
            lines.append("Without calfwd, flannel's resync %s pod egress back; the pods across nodes stay "
                         "cut off." % ("brings" if resynced[POD_EGRESS] else "does not bring"))
    return lines


def marks(row: Optional[Dict[str, bool]], names: Sequence[str] = ALL_PATHS) -> str:
    if row is None:
        return "-" * len(names)
    return "".join("." if row[name] else "X" for name in names)


def as_expected(without: List[Row], with_: List[Row]) -> bool:
    """Every probed path works with calfwd at every step; without it, every path works before
    firewalld and the pods lose each other on a reload (right after it and, on Canal, after
    flannel's resync too)."""
    with_ok = all(row is not None and all(row.values()) for _name, row in with_)
    before = without[0][1]
    after_reload = [row for i, (name, row) in enumerate(without)
                    if name == RELOAD or (name == FLANNEL_RESYNC and without[i - 1][0] == RELOAD)]
    if before is None or not after_reload or any(row is None for row in after_reload):
        return False
    lost = all(row is not None and not any(row[name] for name in CROSS_NODE_PODS) for row in after_reload)
    return with_ok and all(before.values()) and lost
