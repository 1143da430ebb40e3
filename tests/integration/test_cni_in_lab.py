"""Canal in the lab (issue 21): a real VXLAN device `flannel.1` beside Calico's cali* veth and
Felix's rules; calfwd judges the node Canal, binds flannel.1 to its zone and opens flannel's
VXLAN port (8472/udp) instead of Calico's BGP and VXLAN ports, on an uplink bound to no zone."""

from __future__ import annotations

import json

import pytest

from lab import CalicoSim, Lab, probe, unavailable
from lab.calfwd import AUTO_CONFIG as AUTO, Calfwd, minimal_config
from lab.flannel import FlannelSim, make_k3s_node
from lab.kuberouter import KubeRouterSim
from lab.portmap import PortmapSim
from lab.wait import wait_until


def test_a_canal_node_gets_flannels_device_and_port_not_calicos(lab):
    fw = lab.firewalld
    fw.start()
    node = lab.node
    # flannel's VXLAN device as flanneld makes it (VNI 1, the kernel's port 8472), left down:
    # up, the kernel's own VXLAN socket would hold 8472 and no listener could see a datagram.
    node.run("ip", "link", "add", "flannel.1", "type", "vxlan", "id", "1", "dstport", "8472", "nolearning",
             "dev", lab.uplink)
    subnet = lab.workdir / "subnet.env"
    subnet.write_text("FLANNEL_NETWORK=10.42.0.0/16\nFLANNEL_SUBNET=10.42.1.1/24\nFLANNEL_MTU=1450\n"
                      "FLANNEL_IPMASQ=true\n")
    calfwd = Calfwd(lab, minimal_config(lab) + f'[flannel]\nsubnet_file = "{subnet}"\n')
    vxlan = probe.start_udp_listener(node, 8472)
    calico_vxlan = probe.start_udp_listener(node, 4789)
    probe.start_echo_server(node, 179)
    assert not probe.udp_arrives(lab.peer, vxlan, lab.addr.node_v4, 8472), "firewalld alone drops flannel's VXLAN"

    applied = calfwd.cli("apply")
    assert applied.returncode == 0, applied
    status = calfwd.cli("status")
    assert status.returncode == 0, status
    line = next(l for l in status.stdout.splitlines() if l.startswith("cni: "))
    assert line.startswith("cni: canal (flannel's flannel.1 with Calico's policy"), line
    assert json.loads(calfwd.cli("status", "--json").stdout)["cni"]["kind"] == "canal"
    assert "cni: canal (" in calfwd.cli("check").stdout and "cni: canal (" in calfwd.cli("plan").stdout

    interfaces = fw.firewall_cmd("--zone=calfwd", "--list-interfaces").split()
    assert "flannel.1" in interfaces and "cali+" in interfaces and "tunl0" not in interfaces, interfaces
    ports = fw.firewall_cmd("--policy=calfwd-host", "--list-ports").split()
    assert "8472/udp" in ports and "4789/udp" not in ports and "179/tcp" not in ports, ports
    assert "4" not in fw.firewall_cmd("--policy=calfwd-host", "--list-protocols").split()
    # Real traffic on the unbound uplink (the default zone's catch-all): flannel's VXLAN comes
    # in, Calico's VXLAN and BGP, which Canal does not use, stay shut.
    assert probe.udp_arrives(lab.peer, vxlan, lab.addr.node_v4, 8472, within=3), "flannel's VXLAN port is open"
    assert probe.udp_arrives(lab.peer, vxlan, lab.addr.node_v6, 8472, within=3)
    assert not probe.udp_arrives(lab.peer, calico_vxlan, lab.addr.node_v4, 4789)
    assert not lab.connect(lab.peer, lab.addr.node_v4, 179, 0.5)

    # Named Calico, the same node is served as before: Calico's ports, no flannel device.
    calfwd.write_config(minimal_config(lab) + '[cni]\nkind = "calico"\n')
    assert calfwd.cli("apply").returncode == 0
    assert "flannel.1" not in fw.firewall_cmd("--zone=calfwd", "--list-interfaces").split()
    ports = fw.firewall_cmd("--policy=calfwd-host", "--list-ports").split()
    assert "4789/udp" in ports and "8472/udp" not in ports, ports
    assert calfwd.cli("cleanup").returncode == 0


# -- pools and masquerade from flannel ------------------------------------------------

@pytest.fixture
def canal_lab(tmp_path):
    """A Canal node as RKE2 makes it: the pod on a cali* veth with an address from flannel's
    network (host-local IPAM over the node's podCIDR); Felix's sets hold calico-node's unused
    default pool 192.168.0.0/16 with natOutgoing (docs/rke2-k3s-facts.md section 4); flannel
    masquerades pod egress (FLANNEL-POSTRTG); no subnet file on the host."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    built = Lab(tmp_path)
    built.calico = CalicoSim(built.node, (DEFAULT_POOL,), (), (built.workload,))
    with built as lab:
        lab.flannel = FlannelSim(lab.node, lab.addr.pool_v4, lab.addr.block_v4)
        lab.flannel.add_vxlan(lab.uplink)
        lab.flannel.install()
        # A default Canal node is IPv4 only (FELIX_IPV6SUPPORT=false): no IPv6 pod route or block.
        lab.node.run("ip", "-6", "route", "del", lab.addr.pod_v6 + "/128", "dev", lab.workload.iface)
        lab.node.run("ip", "-6", "route", "del", "blackhole", lab.addr.block_v6)
        yield lab


DEFAULT_POOL = "192.168.0.0/16"  # calico-node's default-ipv4-ippool, natOutgoing, unused on Canal


def calfwd_masq4(lab) -> list:
    out = lab.node.run("nft", "-j", "list", "set", "inet", "calfwd", "masq4").stdout
    elems = json.loads(out)["nftables"][1]["set"].get("elem", [])
    return ["%s/%s" % (e["prefix"]["addr"], e["prefix"]["len"]) if isinstance(e, dict) else e for e in elems]


def flush_as_firewalld_does(lab) -> None:
    """A firewalld reload: 0.9 and 1.x flush iptables' tables, flannel's rules with them; 2.x
    does not, so there the flush is made by hand (as a direct rule brings it back)."""
    lab.firewalld.reload()
    if lab.firewalld.build.major < 2:
        assert not lab.flannel.present(), "firewalld 0.9/1.x flushes flannel's rules on reload"
    else:
        assert lab.flannel.present(), "firewalld 2.x leaves iptables' rules alone"
        lab.flannel.flush()


def test_canal_pools_come_from_flannel_and_pod_egress_survives_the_flush(canal_lab):
    """Canal's trap: with ip_pools = "auto" calfwd followed Felix's unused default pool and
    masqueraded nothing pods send. It must follow flannel's network instead, so that pod egress
    survives the flush of flannel's masquerade, a calfwd restart meanwhile included."""
    lab = canal_lab
    assert lab.pod_reaches_proxy(), "flannel masquerades pod egress"
    lab.flannel.flush()
    assert not lab.pod_reaches_proxy(), "Felix's natOutgoing (its unused default pool) does not masquerade pods"
    lab.flannel.restore()
    lab.firewalld.start()
    lab.flannel.restore()  # flannel's resync after firewalld's start flushed it (0.9, 1.x)

    absent = lab.workdir / "no-subnet.env"  # RKE2: the file stays inside flannel's container
    # What calfwd did before it knew Canal: Felix's pools. The flush then takes pod egress away.
    calfwd = Calfwd(lab, AUTO + f'[flannel]\nsubnet_file = "{absent}"\n[cni]\nkind = "calico"\n')
    applied = calfwd.cli("apply")
    assert applied.returncode == 0 and f"auto -> {DEFAULT_POOL} (natOutgoing)" in applied.stdout, applied.stdout
    lab.flannel.restore()  # calfwd's apply reloaded firewalld, which flushed them again (0.9, 1.x)
    assert lab.pod_reaches_proxy()
    flush_as_firewalld_does(lab)
    assert not lab.pod_reaches_proxy(), "following Felix's pools on Canal, the flush takes pod egress away"
    lab.flannel.restore()
    doctor = calfwd.cli("doctor")
    assert (f"ERROR   pools: pod route {lab.addr.pod_v4}/32 dev {lab.workload.iface} lies in none of the pools "
            f"calfwd uses ({DEFAULT_POOL}) (they follow Felix's ip sets), on a node running flannel (flannel.1)") \
        in doctor.stdout, doctor.stdout
    assert doctor.returncode != 0

    calfwd.write_config(AUTO + f'[flannel]\nsubnet_file = "{absent}"\n[daemon]\nresync_interval = 1\n')
    calfwd.start()
    changed = calfwd.wait_for("pools-changed")[0]
    assert f"auto -> {lab.addr.pool_v4} (natOutgoing) (flannel's iptables rules (FLANNEL-POSTRTG))" in changed, changed
    assert DEFAULT_POOL not in changed
    assert calfwd_masq4(lab) == [lab.addr.pool_v4]
    lab.flannel.restore()  # flannel's resync after the flush of calfwd's own firewalld reload
    doctor = calfwd.cli("doctor")
    assert "cni: canal (flannel's flannel.1 with Calico's policy" in doctor.stdout, doctor.stdout
    assert (f'ip_pools = "auto" follows flannel\'s iptables rules (FLANNEL-POSTRTG): {lab.addr.pool_v4} '
            "(natOutgoing)") in doctor.stdout, doctor.stdout
    assert "lies in none of the pools" not in doctor.stdout
    listing = lab.node.run("nft", "list", "chain", "inet", "calfwd", "postrouting").stdout
    assert "meta mark & 0x00004000 == 0x00004000 return" in listing and "ip daddr != 224.0.0.0/4" in listing, listing
    for i in range(2):
        lab.calico.restore()  # Felix's and flannel's resyncs since the last flush
        lab.flannel.restore()
        wait_until(lambda: calfwd.cli("status").returncode == 0, 10, "in sync before the flush")
        mark = calfwd.line_count()
        flush_as_firewalld_does(lab)
        assert lab.pod_reaches_proxy(), f"pod -> proxy broken after flush {i + 1}"
        assert lab.peer_reaches_pod(), f"peer -> pod broken after flush {i + 1}"
        # The flush watch names flannel beside Calico, with flannel's own way back.
        flushed = calfwd.wait_for("calico-flushed", after=mark)[0]
        assert "Calico's and flannel's iptables rules" in flushed and "ip nat POSTROUTING -> FLANNEL-POSTRTG" in flushed
        assert "flannel's masquerade (FLANNEL-POSTRTG) and forward rules are gone until its resync" in flushed, flushed
    if lab.firewalld.build.major < 2:  # a firewalld flush is an outage until flannel's resync
        status = calfwd.cli("status")
        assert status.returncode == 1 and "flushed flannel's iptables rules" in status.stdout, status.stdout
        lab.calico.restore()
        wait_until(lambda: [f["owner"] for f in calfwd.status_doc()["flushed"]] == ["flannel"], 10,
                   "Felix restored; flannel's rules still gone")
        lab.flannel.restore()  # flannel's resync
        wait_until(lambda: calfwd.cli("status").returncode == 0, 10, "status ok once flannel's rules are back")

    # Stopped, a flush meanwhile, restarted while flannel's rules are still gone: the pools
    # calfwd applied stay.
    assert calfwd.stop() == 0
    flush_as_firewalld_does(lab)
    calfwd.start()
    assert calfwd_masq4(lab) == [lab.addr.pool_v4]
    assert lab.pod_reaches_proxy(), "pod -> proxy after calfwd restarted with flannel's rules flushed"
    plan = calfwd.cli("plan")
    assert "flannel's network not found" in plan.stdout and "keeping the pools applied before" in plan.stdout, plan.stdout
    lab.flannel.restore()
    plan = calfwd.cli("plan")
    assert plan.returncode == 0 and "(flannel's iptables rules (FLANNEL-POSTRTG))" in plan.stdout, plan.stdout
    assert "no change" in plan.stdout.lower() or "in sync" in plan.stdout.lower(), plan.stdout
    assert calfwd.stop() == 0
    assert calfwd.cli("cleanup").returncode == 0


def test_a_subnet_file_wins_and_is_followed_and_a_garbled_one_keeps_the_pools(canal_lab):
    """Where flannel's subnet file is on the host (k3s; a Canal that mounts it) it names the
    network; a rewrite (by rename, as flannel writes it) is followed within a poll, and a
    garbled one keeps the pools in force and says why."""
    lab = canal_lab
    lab.firewalld.start()
    subnet = lab.workdir / "subnet.env"
    lab.flannel.write_subnet_file(subnet)
    calfwd = Calfwd(lab, AUTO + f'[flannel]\nsubnet_file = "{subnet}"\n')
    calfwd.start()
    changed = calfwd.wait_for("pools-changed")[0]
    assert f"auto -> {lab.addr.pool_v4} (natOutgoing) (flannel's subnet file {subnet})" in changed, changed

    mark = calfwd.line_count()
    wider = "198.18.64.0/19"
    FlannelSim(lab.node, wider, lab.addr.block_v4).write_subnet_file(subnet)
    changed = calfwd.wait_for("pools-changed", after=mark, timeout=5)[0]
    assert f"auto -> {wider} (natOutgoing)" in changed, changed
    assert calfwd_masq4(lab) == [wider]

    mark = calfwd.line_count()
    tmp = subnet.with_name("garbled.tmp")
    tmp.write_text("FLANNEL_NETWORK=198.18.64.0/19\nFLANNEL_SUBNET=198.18.6")  # half-written, by another writer
    tmp.replace(subnet)
    unknown = calfwd.wait_for("pools-unknown", after=mark, timeout=5)[0]
    assert f"cannot read flannel's network: {subnet}: half-written" in unknown, unknown
    assert calfwd_masq4(lab) == [wider], "the last good pools stay in force"
    flush_as_firewalld_does(lab)
    assert lab.pod_reaches_proxy(), "pod egress masqueraded by the kept pools"
    assert calfwd.stop() == 0
    assert calfwd.cli("cleanup").returncode == 0


@pytest.fixture
def k3s_lab(tmp_path):
    """A k3s node: flannel alone (no Calico), the pod on the bridge cni0 with an address from
    the node's lease, flannel's masquerade and forward rules, its subnet file on the host."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with Lab(tmp_path, calico=False) as lab:
        lab.flannel = FlannelSim(lab.node, lab.addr.pool_v4, lab.addr.block_v4)
        make_k3s_node(lab, lab.flannel)
        lab.flannel.install()
        lab.flannel.forward_rules()
        lab.subnet_file = lab.workdir / "subnet.env"
        lab.flannel.write_subnet_file(lab.subnet_file)
        yield lab


def test_a_k3s_node_is_served_on_cni0_and_pod_egress_survives_the_flush(k3s_lab):
    """flannel's bridge cni0 (never veth+) in calfwd's zone, flannel's port, the pools from the
    subnet file; after firewalld flushes flannel's rules, pods still reach the outside
    (calfwd's masquerade) and are reached from the peer; the flush is reported as flannel's."""
    lab = k3s_lab
    assert lab.pod_reaches_proxy(), "flannel masquerades pod egress (the lab is sound)"
    lab.firewalld.start()
    lab.flannel.install()
    assert not lab.pod_reaches_proxy(), "firewalld alone rejects what comes from cni0"
    features = lab.workdir / "features.d"
    features.mkdir()
    calfwd = Calfwd(lab, AUTO + f'[flannel]\nsubnet_file = "{lab.subnet_file}"\n'
                    f'[labels]\nfeatures_file = "{features}/calfwd"\n')
    calfwd.start()
    changed = calfwd.wait_for("pools-changed")[0]
    assert f"auto -> {lab.addr.pool_v4} (natOutgoing) (flannel's subnet file {lab.subnet_file})" in changed, changed
    # Node labels for node-feature-discovery (issue 22): the CNI and firewalld, as calfwd serves them.
    wait_until(lambda: (features / "calfwd").exists(), 10, "the node labels file")
    written = dict(l.split("=", 1) for l in (features / "calfwd").read_text().splitlines() if not l.startswith("#"))
    assert written["calfwd-cni"] == "flannel" and written["calfwd-firewalld-version"] == lab.firewalld.build.version
    assert written["calfwd-firewalld-backend"] == "nftables" and "calfwd-flush-guard" in written, written
    status = calfwd.cli("status")
    assert "cni: flannel (flannel's flannel.1 and the bridge cni0, no Calico)" in status.stdout, status.stdout
    interfaces = lab.firewalld.firewall_cmd("--zone=calfwd", "--list-interfaces").split()
    assert "cni0" in interfaces and "flannel.1" in interfaces
    assert not any(i.startswith(("veth", "cali")) for i in interfaces), interfaces
    assert lab.firewalld.firewall_cmd("--policy=calfwd-host", "--list-ports").split() == ["8472/udp"]
    lab.flannel.install()  # flannel's resync after calfwd's own firewalld reload
    lab.flannel.forward_rules()
    assert lab.pod_reaches_proxy() and lab.peer_reaches_pod()
    for i in range(2):
        mark = calfwd.line_count()
        flush_as_firewalld_does(lab)
        assert lab.pod_reaches_proxy(), f"pod -> proxy broken after flush {i + 1}"
        assert lab.peer_reaches_pod(), f"peer -> pod broken after flush {i + 1}"
        if lab.firewalld.build.major < 2:
            flushed = calfwd.wait_for("cni-flushed", after=mark)[0]
            assert "flushed flannel's iptables rules on reload" in flushed, flushed
        lab.flannel.install()
        lab.flannel.forward_rules()
    assert calfwd.stop() == 0
    cleanup = calfwd.cli("cleanup")
    assert cleanup.returncode == 0 and f"removed: node labels file {features}/calfwd" in cleanup.stdout, cleanup.stdout
    assert not (features / "calfwd").exists()


HOST_PORT = 30080


def test_kube_routers_and_portmaps_flushes_are_named_on_a_k3s_node(k3s_lab):
    """k3s's other iptables writers: kube-router's policy jumps and a pod's hostPort (portmap).
    A flush takes both; calfwd names each owner with how it comes back: kube-router at its
    sync, portmap never (the hostPort stays shut until the pod is recreated, and status keeps
    saying so after flannel and kube-router are back)."""
    lab = k3s_lab
    router = KubeRouterSim(lab.node)
    hostport = PortmapSim(lab.node, HOST_PORT, lab.addr.pod_v4, lab.addr.pod_port, "4f1c0a9e2b7d")
    router.install()
    hostport.install()
    assert lab.connect(lab.peer, lab.addr.node_v4, HOST_PORT), "the hostPort reaches the pod (the lab is sound)"
    lab.firewalld.start()
    calfwd = Calfwd(lab, AUTO + f'[flannel]\nsubnet_file = "{lab.subnet_file}"\n')
    calfwd.start()
    calfwd.wait_for("reconciled")
    for writer in (lab.flannel, router, hostport):
        writer.install()  # after firewalld's start and calfwd's reload (0.9 and 1.x flush both)
    lab.flannel.forward_rules()
    assert probe.eventually(lambda: lab.connect(lab.peer, lab.addr.node_v4, HOST_PORT), 5), "hostPort with calfwd"
    wait_until(lambda: not calfwd.status_doc()["flushed"], 10, "no owner flushed once all are back")

    mark = calfwd.line_count()
    lab.firewalld.reload()
    if lab.firewalld.build.major >= 2:  # 2.x leaves iptables alone: flush as a direct rule brings it back
        assert router.present() and hostport.present(), "firewalld 2.x does not flush iptables"
        for table in ("nat", "filter"):
            lab.node.run("iptables-nft", "-w", "-t", table, "-F")
            lab.node.run("iptables-nft", "-w", "-t", table, "-X")
    assert not router.present() and not hostport.present()
    flushed = calfwd.wait_for("cni-flushed", after=mark)[0]
    assert "flannel's and kube-router's and portmap's iptables rules" in flushed, flushed
    assert "--iptables-sync-period (5 min by default)" in flushed and "until each such pod is recreated" in flushed
    assert not probe.eventually(lambda: lab.connect(lab.peer, lab.addr.node_v4, HOST_PORT), 2), \
        "the hostPort is portmap's: shut until the pod is recreated (calfwd reports it, never rewrites it)"

    lab.flannel.install()
    lab.flannel.forward_rules()
    router.restore()  # flannel's resync and kube-router's sync; portmap has none
    wait_until(lambda: [f["owner"] for f in calfwd.status_doc()["flushed"]] == ["portmap"], 10,
               "only portmap's hostPort left flushed")
    status = calfwd.cli("status")
    assert status.returncode == 1 and "portmap" in status.stdout, status.stdout
    assert calfwd.stop() == 0
    assert calfwd.cli("cleanup").returncode == 0
