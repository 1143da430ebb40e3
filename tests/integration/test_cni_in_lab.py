"""Canal in the lab (issue 21): a real VXLAN device `flannel.1` beside Calico's cali* veth and
Felix's rules; calfwd judges the node Canal, binds flannel.1 to its zone and opens flannel's
VXLAN port (8472/udp) instead of Calico's BGP and VXLAN ports, on an uplink bound to no zone."""

from __future__ import annotations

import json

from lab import probe
from lab.calfwd import Calfwd, minimal_config


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
