"""Every path through a Cluster, and the matrix of paths x firewalld/calfwd steps.

A path passes when a *new* TCP connection, with one byte echoed, succeeds within `within`
seconds (short attempts, as in probe.eventually), so one attempt caught in firewalld's
reload window does not decide it. Order matters where conntrack does: IP-in-IP and
WireGuard packets of one node may be let in as replies to the other's, so PATHS always run
in the same order, node1's side first.

matrix() measures each path right after each step ("now": Felix and kube-proxy have not
noticed a flush yet), then resyncs both (Felix's refresh, kube-proxy's canary check; minutes
and 30 s on a real node, done at once here) and measures every path again. A cell is "ok" or
"FAIL" when both rounds agree, "FAIL → ok" when only the second passed: either the resync
repaired it, or the first round's other paths left a flow in conntrack that the second round
rode on (how a closed WireGuard or IP-in-IP port hides).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import probe
from .cluster import Cluster
from .netns import Netns

WITHIN = 1.0  # seconds a path gets to pass


def reaches(src: Netns, ip: str, port: int, within: float = WITHIN) -> bool:
    return probe.eventually(lambda: probe.connect(src, ip, port, timeout=probe.ATTEMPT), within)


def pod_to_remote_pod(c: Cluster, within: float = WITHIN) -> bool:
    return reaches(c.node1.pod, c.node2.pod_ip, c.addr.pod_port, within)


def remote_pod_to_pod(c: Cluster, within: float = WITHIN) -> bool:
    return reaches(c.node2.pod, c.node1.pod_ip, c.addr.pod_port, within)


def pod_to_external(c: Cluster, within: float = WITHIN) -> bool:
    """natOutgoing: the proxy has no route back to the pools."""
    return reaches(c.node1.pod, c.addr.proxy_v4, c.addr.proxy_port, within)


def node_to_remote_pod(c: Cluster, within: float = WITHIN) -> bool:
    return reaches(c.node1.node, c.node2.pod_ip, c.addr.pod_port, within)


def pod_to_clusterip(c: Cluster, within: float = WITHIN) -> bool:
    """ClusterIP whose only endpoint is pod2, on the other node."""
    return reaches(c.node1.pod, c.addr.cluster_ip, c.addr.service_port, within)


def external_to_nodeport(c: Cluster, within: float = WITHIN) -> bool:
    """The proxy to node1's NodePort, whose only endpoint is pod2, on the other node."""
    return reaches(c.proxy, c.node1.endpoint.underlay, c.addr.node_port, within)


def external_to_hostport(c: Cluster, within: float = WITHIN) -> bool:
    """The proxy to node1's hostPort (portmap's DNAT to pod1): Canal and flannel clusters only."""
    return reaches(c.proxy, c.node1.endpoint.underlay, c.addr.host_port, within)


def bgp_node1_to_node2(c: Cluster, within: float = WITHIN) -> bool:
    return reaches(c.node1.node, c.node2.endpoint.underlay, c.addr.bgp_port, within)


def bgp_node2_to_node1(c: Cluster, within: float = WITHIN) -> bool:
    return reaches(c.node2.node, c.node1.endpoint.underlay, c.addr.bgp_port, within)


PathCheck = Callable[[Cluster, float], bool]
PATHS: Tuple[Tuple[str, PathCheck], ...] = (
    ("pod1 -> pod2", pod_to_remote_pod),
    ("pod2 -> pod1", remote_pod_to_pod),
    ("pod1 -> external (natOutgoing)", pod_to_external),
    ("node1 -> pod2", node_to_remote_pod),
    ("pod1 -> ClusterIP (backend pod2)", pod_to_clusterip),
    ("external -> NodePort on node1 (backend pod2)", external_to_nodeport),
    ("node1 -> node2 179/tcp", bgp_node1_to_node2),
    ("node2 -> node1 179/tcp", bgp_node2_to_node1),
)
BGP_PATHS = ("node1 -> node2 179/tcp", "node2 -> node1 179/tcp")
HOSTPORT = "external -> hostPort on node1 (pod1)"
# Canal and flannel (cluster.FLANNEL_CNIS): no BGP (flannel carries traffic between the nodes),
# and each pod has a hostPort through portmap, which the Calico cluster does not simulate.
FLANNEL_PATHS: Tuple[Tuple[str, PathCheck], ...] = tuple(
    p for p in PATHS if p[0] not in BGP_PATHS) + ((HOSTPORT, external_to_hostport),)


def applicable(c: Cluster) -> Tuple[Tuple[str, PathCheck], ...]:
    """The paths this cluster's CNI has, in order."""
    return FLANNEL_PATHS if c.cni in ("canal", "flannel") else PATHS


def check(c: Cluster, names: Optional[Sequence[str]] = None, within: float = WITHIN) -> Dict[str, bool]:
    """{path name: passed}: the cluster's paths in order, or those of PATHS and FLANNEL_PATHS
    named in `names` (so a test can ask for BGP on a Canal cluster, to see it shut)."""
    every = dict(PATHS + FLANNEL_PATHS)
    if names is None:
        return {name: fn(c, within) for name, fn in applicable(c)}
    order = [n for n in every if n in names]
    return {name: every[name](c, within) for name in order}


# -- steps ---------------------------------------------------------------------------------

def _marks(c: Cluster) -> List[Tuple[object, int]]:
    return [(n.calfwd, n.calfwd.line_count()) for n in c.nodes if n.calfwd is not None]


def settle(marks, trigger: str, timeout: float = 60.0, quiet: float = 0.7) -> None:
    """Each calfwd reconciled after `trigger`, then wrote nothing for `quiet` s (the reload it
    may have asked for is handled too). `marks`: (calfwd, its line_count() before the step)."""
    for calfwd, mark in marks:
        deadline = time.monotonic() + timeout
        while not any("after %s" % trigger in line for line in calfwd.events("reconciled", after=mark)):
            calfwd.wait_for("reconciled", after=mark, timeout=max(0.1, deadline - time.monotonic()))
            if time.monotonic() > deadline:
                raise AssertionError("calfwd did not reconcile after %s" % trigger)
            time.sleep(0.05)
    _quiet([calfwd for calfwd, _ in marks], quiet)


def _quiet(calfwds, quiet: float = 0.7, timeout: float = 15.0) -> None:
    counts = None
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        now = [calfwd.line_count() for calfwd in calfwds]
        if now == counts:
            return
        counts = now
        time.sleep(quiet)


def step_start(c: Cluster) -> None:
    """calfwd started first (if the run has it), then firewalld."""
    if c.with_calfwd:
        for node in c.nodes:
            node.start_calfwd()
    marks = _marks(c)
    for node in c.nodes:
        node.firewalld.start()
    settle(marks, "firewalld-started")


def step_reload(c: Cluster) -> None:
    marks = _marks(c)
    for node in c.nodes:
        node.firewalld.reload()
    settle(marks, "firewalld-reloaded")


def step_restart(c: Cluster) -> None:
    """As `systemctl restart firewalld`: SIGTERM, wait, start."""
    marks = _marks(c)
    for node in c.nodes:
        node.firewalld.restart()
    settle(marks, "firewalld-started")


def step_kill_start(c: Cluster) -> None:
    marks = _marks(c)
    for node in c.nodes:
        node.firewalld.kill()
        node.firewalld.start()
    settle(marks, "firewalld-started")


def step_calfwd_restart(c: Cluster) -> None:
    for node in c.nodes:
        if node.calfwd is not None:
            node.calfwd.stop()
            node.calfwd.start()  # returns after its first reconcile
    _quiet([n.calfwd for n in c.nodes if n.calfwd is not None])


STEPS: Tuple[Tuple[str, Callable[[Cluster], None]], ...] = (
    ("firewalld started after calfwd", step_start),
    ("firewall-cmd --reload", step_reload),
    ("firewalld restart", step_restart),
    ("SIGKILL + start", step_kill_start),
    ("calfwd restarted", step_calfwd_restart),
)
BEFORE = "before firewalld"


@dataclass(frozen=True)
class Cell:
    now: bool
    resynced: bool

    @property
    def text(self) -> str:
        if self.now == self.resynced:
            return "ok" if self.now else "FAIL"
        return "FAIL → ok" if self.resynced else "ok → FAIL"


@dataclass(frozen=True)
class StepResult:
    step: str
    cells: Tuple[Tuple[str, Cell], ...]  # (path name, cell), applicable(cluster) order

    def cell(self, path: str) -> Cell:
        return dict(self.cells)[path]


def measure(c: Cluster, step: str, within: float = WITHIN) -> StepResult:
    now = check(c, within=within)
    c.resync()
    resynced = check(c, within=within)
    return StepResult(step, tuple((name, Cell(now[name], resynced[name])) for name, _ in applicable(c)))


def baseline(c: Cluster, within: float = WITHIN) -> StepResult:
    """Every path with no firewalld: proves the cluster itself works. Use a cluster of its own:
    the flows it leaves in conntrack (IP-in-IP, WireGuard) would let later packets in as replies."""
    return measure(c, BEFORE, within)


def matrix(c: Cluster, within: float = WITHIN, log: Callable[[str], None] = lambda _: None) -> List[StepResult]:
    """Paths after each step, on a fresh cluster (calfwd and firewalld not started, no tunnel
    traffic yet: a node as it boots)."""
    results = []
    for name, step in STEPS:
        if name == "calfwd restarted" and not c.with_calfwd:
            continue
        log("step: %s" % name)
        step(c)
        results.append(measure(c, name, within))
    return results
