"""Calico's host ports as firewalld lets them in (issue 12): real firewalld in the lab."""

from __future__ import annotations

from lab.calfwd import Calfwd


def test_calicos_wireguard_device_opens_its_port(lab):
    """Issue 12 item 2: the default host_ports left WireGuard's 51820/udp closed."""
    lab.firewalld.start()
    calfwd = Calfwd(lab)
    assert calfwd.cli("apply").returncode == 0
    ports = lab.firewalld.firewall_cmd("--policy=calfwd-host", "--list-ports").split()
    assert "51820/udp" not in ports
    # Felix's device name (a veth stands in: this kernel may lack dummy and wireguard)
    lab.node.run("ip", "link", "add", "wireguard.cali", "type", "veth", "peer", "name", "wgstandin0")
    assert calfwd.cli("apply").returncode == 0
    ports = lab.firewalld.firewall_cmd("--policy=calfwd-host", "--list-ports").split()
    assert "51820/udp" in ports and "51821/udp" not in ports, ports
    assert calfwd.cli("status").returncode == 0
    lab.node.run("ip", "link", "del", "wireguard.cali")
    assert calfwd.cli("apply").returncode == 0
    assert "51820/udp" not in lab.firewalld.firewall_cmd("--policy=calfwd-host", "--list-ports").split()


def test_calicos_host_ports_reach_the_node_with_the_uplink_in_no_zone(lab):
    """Issue 12 item 2: the lab's uplink is bound to no zone (no NetworkManager), so it meets
    the default zone's catch-all. firewalld 1.x never applies the calfwd-host policy there and
    rejected BGP (and VXLAN) from the other nodes; 2.x counts the default zone as active. calfwd
    puts its service into the default zone where the policy cannot reach, and only there."""
    from lab import probe

    fw = lab.firewalld
    fw.start()
    probe.start_echo_server(lab.node, 179)
    assert not lab.connect(lab.peer, lab.addr.node_v4, 179), "firewalld alone rejects BGP"
    calfwd = Calfwd(lab)
    applied = calfwd.cli("apply")
    assert applied.returncode == 0, applied
    assert probe.eventually(lambda: lab.connect(lab.peer, lab.addr.node_v4, 179, 0.5), 3)
    assert probe.eventually(lambda: lab.connect(lab.peer, lab.addr.node_v6, 179, 0.5), 3)
    assert calfwd.cli("status").returncode == 0
    services = fw.firewall_cmd("--zone=public", "--list-services").split()
    version = fw.firewall_cmd("--version").strip()
    assert ("calfwd-host" in services) == (int(version.split(".")[0]) < 2), (version, services)
    assert "calfwd-host" not in fw.firewall_cmd("--zone=drop", "--list-services").split()
    fw.reload()
    assert probe.eventually(lambda: lab.connect(lab.peer, lab.addr.node_v4, 179, 0.5), 3), "kept by firewalld itself"
    # Bound (as NetworkManager does): the policy applies; calfwd's entry in the zone goes.
    fw.firewall_cmd("--zone=public", "--add-interface=" + lab.uplink)
    fw.firewall_cmd("--permanent", "--zone=public", "--add-interface=" + lab.uplink)
    assert calfwd.cli("apply").returncode == 0
    assert "calfwd-host" not in fw.firewall_cmd("--zone=public", "--list-services").split()
    assert probe.eventually(lambda: lab.connect(lab.peer, lab.addr.node_v4, 179, 0.5), 3)
    cleanup = calfwd.cli("cleanup")
    assert cleanup.returncode == 0, cleanup
    assert "calfwd-host" not in fw.firewall_cmd("--permanent", "--get-services").split()
