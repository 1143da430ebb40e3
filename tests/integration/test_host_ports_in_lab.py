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
