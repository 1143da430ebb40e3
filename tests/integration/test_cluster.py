"""Two Calico nodes (tests/lab/cluster.py): what today's calfwd, on the minimal config on both
nodes, really does for every path between them.

One case per behaviour, to keep CI short; `make cluster-matrix` runs the whole cross-product
and tests/CLUSTER-MATRIX.md holds a measured copy. The failures users reported (uplink in no
zone, WireGuard's port, Services after a reload) were first written here as strict xfails;
each became a plain test when its fix landed (issue 12 items 2 and 3).

"Right after a step" means before Felix's refresh and kube-proxy's canary check (minutes and
30 s on a real node); cluster.resync() then does both at once.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Iterator

import pytest

from calfwd.judge import guard
from lab import unavailable
from lab import paths
from lab.cluster import Cluster
from lab.encap import kernel_has
from lab.netns import PREFIX, SYSTEM_PATH, Netns, unique_id

KUBE_PATHS = ("pod1 -> ClusterIP (backend pod2)", "external -> NodePort on node1 (backend pod2)")
NODE_PATHS = tuple(name for name, _ in paths.PATHS if name not in KUBE_PATHS)
# After a step, a path gets this long (the fix may take a moment; a failure costs this much).
FIX_WITHIN = 5.0


@pytest.fixture(autouse=True)
def _lab_available():
    reason = unavailable()
    if reason:
        pytest.skip(reason)


@contextlib.contextmanager
def running(workdir, **params) -> Iterator[Cluster]:
    """A cluster whose first step is done: calfwd (unless calfwd=False), then firewalld, on both nodes."""
    with Cluster(workdir, **params) as cluster:
        paths.step_start(cluster)
        yield cluster


def failing(results) -> list:
    return [name for name, ok in results.items() if not ok]


@pytest.fixture(scope="module")
def bound(tmp_path_factory):
    """VXLAN, uplink bound to the default zone public (NetworkManager-like), calfwd on both."""
    if unavailable():
        pytest.skip(unavailable())
    with running(tmp_path_factory.mktemp("bound"), encap="vxlan", uplink="bound", zone="public") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def unbound(tmp_path_factory):
    """VXLAN, uplink left to the default zone's catch-all (no NetworkManager), calfwd on both."""
    if unavailable():
        pytest.skip(unavailable())
    with running(tmp_path_factory.mktemp("unbound"), encap="vxlan", uplink="unbound", zone="public") as cluster:
        yield cluster


# -- what works today ----------------------------------------------------------------------

def test_bound_uplink_every_path_after_each_step(bound):
    """Every path but the Services right after each step; the Services too once kube-proxy has
    resynced (item 3 is that they need it)."""
    for name, step in (("start", None),) + paths.STEPS[1:]:
        if step is not None:
            step(bound)
        assert failing(paths.check(bound, NODE_PATHS)) == [], "right after %s" % name
        bound.resync()
        assert failing(paths.check(bound)) == [], "after %s and kube-proxy's resync" % name


def test_felix_nftables_dataplane_survives_reload(tmp_path):
    """Felix's own nft table is not flushed: right after a reload, no resync needed."""
    with running(tmp_path, encap="vxlan", dataplane="nftables", uplink="bound") as cluster:
        paths.step_reload(cluster)
        assert all(node.felix.present() for node in cluster.nodes)
        assert failing(paths.check(cluster, NODE_PATHS)) == []


@pytest.mark.parametrize("encap", ["ipip", "none"])
def test_bound_uplink_other_encapsulations_after_reload(tmp_path, encap):
    """IP-in-IP (real protocol-4 packets, from a stand-in where the kernel has no ipip) and
    plain routing with BGP's 179/tcp: pods, node and BGP paths right after a reload."""
    with running(tmp_path, encap=encap, uplink="bound") as cluster:
        paths.step_reload(cluster)
        assert failing(paths.check(cluster, NODE_PATHS)) == []


def test_unbound_uplink_pod_egress_still_works(unbound):
    """natOutgoing leaves through the uplink whatever its zone: calfwd's table masquerades."""
    assert paths.pod_to_external(unbound)
    paths.step_reload(unbound)
    assert paths.pod_to_external(unbound)


# -- Canal (RKE2): flannel's VXLAN and masquerade, Felix for policy only (issue 21) ---------------

BGP_PATHS = paths.BGP_PATHS
# flannel's node paths: no BGP, and the hostPort is checked on its own (portmap's DNAT is flushed
# by firewalld <= 1.x and nothing re-creates it until the pod is recreated).
FLANNEL_NODE_PATHS = tuple(p for p, _ in paths.FLANNEL_PATHS if p not in KUBE_PATHS + (paths.HOSTPORT,))


def calfwd_zone_and_ports(node) -> tuple:
    fw = node.firewalld
    return (fw.firewall_cmd("--zone=calfwd", "--list-interfaces").split(),
            fw.firewall_cmd("--policy=calfwd-host", "--list-ports").split())


def hostport_after(cluster, step: str) -> None:
    """Right after a step: a firewalld that flushes (0.9, 1.x; every firewalld step) took
    portmap's DNAT (calfwd says so: asked after the reload only, each `status` costs a second);
    the pod recreated, the hostPort works again. Where nothing was flushed it works as it is."""
    flushed = cluster.firewalld_build.major < 2 and step != "calfwd restarted"
    assert all(n.portmap.present() != flushed for n in cluster.nodes), "portmap's rules after %s" % step
    if flushed:
        # The rules are gone (above): a short look suffices to see the hostPort shut.
        assert not paths.external_to_hostport(cluster, 0.3), "a flushed hostPort stays shut (after %s)" % step
        if "reload" in step:
            status = cluster.node1.calfwd.cli("status")
            assert "flushed portmap's iptables rules: hostPorts are shut until their pods are recreated" \
                in status.stdout, status.stdout
        for node in cluster.nodes:
            node.portmap.install()  # the pod recreated: the CNI plugin runs again
    assert paths.external_to_hostport(cluster, FIX_WITHIN), "hostPort after %s" % step


def test_canal_every_path_after_each_step(tmp_path):
    """RKE2's Canal on both nodes with the fleet's one-line config: every path right after each
    step (the Services once kube-proxy resynced, the hostPort once its pod was recreated after a
    flush), across flannel.1 on 8472/udp; Felix's sets hold the unused default pool, so pod
    egress after a flush is calfwd's masquerade of flannel's network. Calico's BGP port stays shut: Canal does not use it."""
    with running(tmp_path, cni="canal", uplink="bound", zone="public") as canal:
        for node in canal.nodes:
            node.flannel.restore()  # flannel's resync after firewalld's start (0.9, 1.x flush it)
        for name, step in (("start", None),) + paths.STEPS[1:]:
            if step is not None:
                step(canal)
            assert failing(paths.check(canal, FLANNEL_NODE_PATHS)) == [], "right after %s" % name
            hostport_after(canal, name)
            canal.resync()
            assert failing(paths.check(canal)) == [], "after %s and the resyncs" % name
        assert not any(paths.check(canal, BGP_PATHS).values()), "calfwd opens no BGP port on Canal"
        status = canal.node1.calfwd.cli("status")
        assert "cni: canal (" in status.stdout and "flannel's iptables rules (FLANNEL-POSTRTG)" in status.stdout, \
            status.stdout


# -- flannel (k3s): the bridge cni0, flannel's VXLAN and rules, no Calico at all (issue 21) ---------

def test_flannel_every_path_after_each_step(tmp_path):
    """k3s's flannel on both nodes (pods on the bridge cni0, flannel.1 on 8472/udp, flannel's
    masquerade and forward rules, no Felix) with the fleet's one-line config: every node path
    right after each step, the Services and the hostPort once kube-proxy resynced and the pod
    was recreated (portmap's rules come back no other way). calfwd binds cni0 and flannel.1,
    never a veth, opens 8472/udp alone; BGP stays shut. (With [cni] kind = "calico" every path
    fails right after start: cni0 and flannel.1 in no zone of calfwd's, 8472/udp closed.)"""
    with running(tmp_path, cni="flannel", uplink="bound", zone="public") as k3s:
        for node in k3s.nodes:
            interfaces, ports = calfwd_zone_and_ports(node)
            assert "cni0" in interfaces and "flannel.1" in interfaces, interfaces
            assert not any(i.startswith(("veth", "cali")) for i in interfaces), interfaces
            assert ports == ["8472/udp"], ports
        for name, step in (("start", None),) + paths.STEPS[1:]:
            if step is not None:
                step(k3s)
            assert failing(paths.check(k3s, FLANNEL_NODE_PATHS)) == [], "right after %s" % name
            hostport_after(k3s, name)
            k3s.resync()
            assert failing(paths.check(k3s)) == [], "after %s and the resyncs" % name
        assert not any(paths.check(k3s, BGP_PATHS).values()), "calfwd opens no BGP port on flannel"
        status = k3s.node1.calfwd.cli("status")
        assert "cni: flannel (flannel's flannel.1 and the bridge cni0, no Calico)" in status.stdout, status.stdout
        assert "(flannel's subnet file %s)" % k3s.node1.subnet_file in status.stdout, status.stdout


# -- the incident, so the lab is known to see failures ---------------------------------------

def test_without_calfwd_pods_lose_each_other_after_reload(tmp_path):
    with Cluster(tmp_path, encap="vxlan", uplink="bound", calfwd=False) as cluster:
        assert paths.pod_to_remote_pod(cluster), "the cluster works before firewalld"
        paths.step_start(cluster)
        paths.step_reload(cluster)
        assert not paths.pod_to_remote_pod(cluster)
        assert not paths.remote_pod_to_pod(cluster)


# -- the uplink in no zone (issue 12 item 2) ---------------------------------------------------
# firewalld 1.x applies no policy to traffic that reaches the default zone through its catch-all:
# calfwd's host policy never met VXLAN or BGP from the other node. calfwd now puts its service
# into the default zone while that zone has nothing bound (2.x applies the policy anyway).


def test_unbound_uplink_vxlan_between_nodes(unbound):
    for name, step in (("start", None), ("reload", paths.step_reload), ("restart", paths.step_restart),
                       ("SIGKILL and start", paths.step_kill_start)):
        if step is not None:
            step(unbound)
        assert paths.pod_to_remote_pod(unbound, FIX_WITHIN), "pod1 -> pod2 after %s" % name
        assert paths.remote_pod_to_pod(unbound, FIX_WITHIN), "pod2 -> pod1 after %s" % name
        assert paths.node_to_remote_pod(unbound, FIX_WITHIN), "node1 -> pod2 after %s" % name


def test_unbound_uplink_bgp_both_ways(unbound):
    assert paths.bgp_node1_to_node2(unbound, FIX_WITHIN)
    assert paths.bgp_node2_to_node1(unbound, FIX_WITHIN)


def wireguard_missing() -> str:
    """Why WireGuard cannot run here: no `wg`, or neither the kernel module nor wireguard-go."""
    why = "needs wg and (kernel wireguard or wireguard-go): tests/install-deps.sh installs them"
    if not shutil.which("wg", path=SYSTEM_PATH):
        return why
    if shutil.which("wireguard-go", path=SYSTEM_PATH):
        return ""
    with Netns("%s%s-wg" % (PREFIX, unique_id())) as ns:
        return "" if kernel_has(ns, "wireguard") else why


def test_wireguard_first_packet_between_nodes(tmp_path):
    """A fresh node: the first WireGuard handshake (node1 -> node2) must get in. Once node2
    has sent its own, the closed port no longer shows: conntrack lets replies in. calfwd opens
    51820/udp because Calico's wireguard.cali exists (issue 12 item 2)."""
    if wireguard_missing():
        pytest.skip(wireguard_missing())
    with running(tmp_path, encap="wireguard", uplink="bound") as cluster:
        assert paths.pod_to_remote_pod(cluster, FIX_WITHIN)
        assert paths.remote_pod_to_pod(cluster, FIX_WITHIN)



@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """As the package and `calfwd apply` leave a node with [firewalld] flush_guard = "auto": the
    drop-in wherever this firewalld flushes, in effect after the restart systemd gives it."""
    if unavailable():
        pytest.skip(unavailable())
    with running(tmp_path_factory.mktemp("guarded"), encap="vxlan", uplink="bound", zone="public") as cluster:
        for node in cluster.nodes:
            applied = node.calfwd.cli("apply")
            assert applied.returncode == 0, applied.stdout + applied.stderr
            dropin = Path(node.calfwd.env[guard.DROPIN_ENV])
            assert dropin.exists() == (node.firewalld.build.major < 2), applied.stdout
            if dropin.exists():
                assert "takes effect when firewalld restarts" in applied.stdout
                node.firewalld.inaccessible_paths = guard.parse_dropin(dropin.read_text())
        paths.step_restart(cluster)  # systemctl daemon-reload && systemctl restart firewalld
        cluster.resync()  # the old firewalld's stop still flushed: Felix and kube-proxy restore
        yield cluster


def test_services_survive_a_reload_with_the_default_flush_guard(guarded):
    """Issue 12 item 3: firewalld <= 1.x flushed kube-proxy's rules with Felix's on every reload;
    ClusterIPs (cluster DNS) timed out and NodePorts to remote backends were rejected until
    kube-proxy's canary noticed (~30 s). With the guard "auto" installs, nothing is flushed."""
    for _ in range(2):
        paths.step_reload(guarded)
        assert paths.pod_to_clusterip(guarded, FIX_WITHIN), "pod -> ClusterIP right after a reload"
        assert paths.external_to_nodeport(guarded, FIX_WITHIN), "external -> NodePort right after a reload"
        assert paths.pod_to_remote_pod(guarded, FIX_WITHIN)


# -- the same on the other firewalld releases (issue 12 item 6) --------------------------------
# The machine's own firewalld runs every case above; Debian 11's 0.9.3 and Debian 13's 2.3 (or
# Debian 12's 1.3 on a Debian 13 machine) run the catch-all case, the one that differs between
# releases: 0.9.x's zone target still covers forwarded traffic, 1.x applies no policy to the
# catch-all, 2.x counts the default zone as active. `make cluster-matrix FIREWALLD=all` runs
# every path x step x combination on each.

def _other_releases() -> list:
    from lab import versions

    own = versions.own().version
    return [name for name in versions.RELEASES if not versions.is_release(name, own)]


@pytest.mark.parametrize("firewalld", _other_releases())
def test_unbound_uplink_every_node_path_on_other_firewalld_releases(tmp_path, firewalld):
    with running(tmp_path, encap="vxlan", uplink="unbound", zone="public", firewalld=firewalld) as cluster:
        version = cluster.firewalld_build.version
        for name, step in (("start", None), ("reload", paths.step_reload), ("restart", paths.step_restart)):
            if step is not None:
                step(cluster)
            assert failing(paths.check(cluster, NODE_PATHS)) == [], "firewalld %s, after %s" % (version, name)
        cluster.resync()
        assert failing(paths.check(cluster)) == [], "firewalld %s: and the Services after the resync" % version
        for node in cluster.nodes:
            status = node.calfwd.cli("status")
            flushes = any("flushed" in line for line in node.calfwd.lines())
            assert status.returncode == 0, "firewalld %s: %s%s" % (version, status.stdout, status.stderr)
            assert flushes == (cluster.firewalld_build.major < 2), "0.9 and 1.x flush Felix's rules; 2.x never"


def test_firewalld_0_9_with_default_zone_drop_and_no_encapsulation_is_reported_blocked(tmp_path):
    """0.9.x renders calfwd's wildcard literally too (as 1.0.0-1.2.0 do); its zone targets still
    forward, except from a zone whose target drops. Without encapsulation, pods on two nodes then
    cannot reach each other (the matrix: every routed path FAIL on 0.9.3 with `drop`, ok with
    `public`); calfwd cannot fix that firewalld, so it says BLOCKED instead of "in sync"."""
    with running(tmp_path, encap="none", uplink="bound", zone="drop", firewalld="0.9.3") as cluster:
        assert not paths.pod_to_remote_pod(cluster), "the lab still shows the failure"
        status = cluster.node1.calfwd.cli("status")
        assert status.returncode == 1, status.stdout + status.stderr
        assert "renders the wildcard interface(s) cali+ literally" in status.stdout
        assert "zone(s) 'drop' drop (target DROP or REJECT) routed traffic into pods" in status.stdout
    with running(tmp_path / "vxlan", encap="vxlan", uplink="bound", zone="drop", firewalld="0.9.3") as cluster:
        assert paths.pod_to_remote_pod(cluster, FIX_WITHIN), "through vxlan.calico: calfwd's own zone"
        cluster.resync()  # 0.9.3 flushed Felix's and kube-proxy's rules as it started
        status = cluster.node1.calfwd.cli("status")
        assert status.returncode == 0, status.stdout + status.stderr


# Canal and flannel on the other releases: the machine's own runs every step above; here start,
# reload and restart, each release asserted as it behaves: 0.9.x and 1.x flush flannel's and
# portmap's rules at each of them (calfwd masquerades meanwhile; the hostPort needs its pod
# recreated), 2.x flushes nothing (nothing to recreate, nothing reported).

@pytest.mark.parametrize("cni", ["canal", "flannel"])
@pytest.mark.parametrize("firewalld", _other_releases())
def test_canal_and_flannel_node_paths_on_other_firewalld_releases(tmp_path, firewalld, cni):
    with running(tmp_path, cni=cni, uplink="bound", zone="public", firewalld=firewalld) as cluster:
        version, flushes = cluster.firewalld_build.version, cluster.firewalld_build.major < 2
        for name, step in (("start", None), ("reload", paths.step_reload), ("restart", paths.step_restart)):
            if step is not None:
                step(cluster)
            assert all(n.flannel.present() != flushes for n in cluster.nodes), \
                "firewalld %s: flannel's rules right after %s" % (version, name)
            assert failing(paths.check(cluster, FLANNEL_NODE_PATHS)) == [], "firewalld %s, after %s" % (version, name)
            hostport_after(cluster, name)
        cluster.resync()
        assert failing(paths.check(cluster)) == [], "firewalld %s: every path after the resyncs" % version
        assert not any(paths.check(cluster, BGP_PATHS).values()), "firewalld %s: BGP stays shut" % version
        for node in cluster.nodes:
            interfaces, ports = calfwd_zone_and_ports(node)
            pods = "cni0" if cni == "flannel" else "cali+"
            assert "flannel.1" in interfaces and pods in interfaces, interfaces
            assert not any(i.startswith("veth") for i in interfaces), interfaces
            assert "8472/udp" in ports and "179/tcp" not in ports and "4789/udp" not in ports, ports
            reported = [line for line in node.calfwd.lines() if "flushed" in line]
            assert bool(reported) == flushes, "firewalld %s: 0.9 and 1.x flush flannel's rules; 2.x never: %s" % (
                version, reported)
