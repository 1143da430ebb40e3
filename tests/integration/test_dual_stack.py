"""IPv6 gets what IPv4 gets: the incident's steps for an IPv6 pod, NAT66, host ports over IPv6.

The pod has a /128 from the IPv6 pool, `default via fe80::ecee:eeff:feee:eeee` as Calico
sets it up; the proxy has no route back to the pool, so egress works only masqueraded
(natOutgoing, NAT66 in calfwd's table once Felix's ip6 nat rules are flushed). A rejected
IPv6 connect shows up as a timeout here rather than a fast failure: the negative checks
take their whole budget.
"""

from __future__ import annotations

from lab import probe
from lab.calfwd import Calfwd

BGP = 179


def v6_ok(lab) -> bool:
    return lab.pod_reaches_proxy(v6=True) and lab.peer_reaches_pod(v6=True)


def assert_v6(lab, when: str) -> None:
    assert lab.pod_reaches_proxy(v6=True), f"IPv6 pod -> proxy broken {when}"
    assert lab.peer_reaches_pod(v6=True), f"IPv6 peer -> pod broken {when}"


def test_without_calfwd_the_incident_happens_on_ipv6_too(lab):
    assert v6_ok(lab)
    lab.firewalld.start()
    assert not lab.pod_reaches_proxy(v6=True) and not lab.peer_reaches_pod(v6=True)
    lab.calico.restore()
    assert not lab.pod_reaches_proxy(v6=True) and not lab.peer_reaches_pod(v6=True)


def test_ipv6_pod_survives_reloads_restarts_and_kills(lab):
    lab.firewalld.start()
    calfwd = Calfwd(lab)
    calfwd.start()
    assert_v6(lab, "after calfwd started")
    table = lab.node.run("nft", "list", "table", "inet", "calfwd").stdout
    assert lab.addr.pool_v6 in table and "ip6 saddr @masq6" in table
    for i in range(3):
        lab.firewalld.reload()
        assert not lab.calico.present(), "firewalld 1.x should flush Felix's ip6tables rules too"
        assert_v6(lab, f"after reload {i + 1}")
    lab.firewalld.restart()
    assert_v6(lab, "after firewalld restart")
    lab.firewalld.kill()
    assert_v6(lab, "while firewalld is SIGKILLed")
    lab.firewalld.start()
    assert_v6(lab, "after firewalld SIGKILL and start")
    lab.calico.restore()
    assert_v6(lab, "after Felix restored its rules")
    assert lab.pod_reaches_proxy() and lab.peer_reaches_pod(), "IPv4 alongside"
    assert calfwd.running


def test_ipv6_only_pools(lab):
    lab.firewalld.start()
    calfwd = Calfwd(lab, f'[calico]\nip_pools = ["{lab.addr.pool_v6}"]\nnat_outgoing = true\n')
    calfwd.start()
    lab.firewalld.reload()
    assert_v6(lab, "with only an IPv6 pool configured, after a reload")


# Tells each client the address it came from, then closes.
WHOAMI_SERVER = r"""
import socket, sys
srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("::", int(sys.argv[1])))
srv.listen(16)
while True:
    conn, peer = srv.accept()
    with conn:
        conn.sendall(peer[0].encode() + b"\n")
"""

WHOAMI_CLIENT = r"""
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as conn:
    print(conn.makefile().readline().strip())
"""


def test_ipv6_egress_is_nat66_from_calfwd_while_felix_is_flushed(lab):
    """The proxy sees the node's IPv6 address: calfwd's table masqueraded the pod (NAT66)."""
    port = lab.addr.proxy_port + 1
    lab.proxy.popen("/usr/bin/python3", "-c", WHOAMI_SERVER, str(port))
    def answers() -> bool:
        return lab.node.run("/usr/bin/python3", "-c", WHOAMI_CLIENT, lab.addr.proxy_v6, str(port),
                            check=False).returncode == 0
    assert probe.eventually(answers, 10.0), "whoami server not listening"
    lab.firewalld.start()
    assert not lab.calico.present()  # Felix's ip6 nat MASQUERADE is gone
    calfwd = Calfwd(lab)
    calfwd.start()
    seen = lab.pod.run("/usr/bin/python3", "-c", WHOAMI_CLIENT, lab.addr.proxy_v6, str(port)).stdout.strip()
    assert seen == lab.addr.node_v6


def test_calico_host_ports_over_ipv6(lab):
    """BGP from a routed peer to the node's IPv6 address: allowed by calfwd's host policy."""
    probe.start_echo_server(lab.node, BGP)
    lab.firewalld.start()
    lab.firewalld.firewall_cmd("--zone=public", "--add-interface=eth0")  # the uplink, as NetworkManager binds it
    assert not probe.eventually(lambda: lab.connect(lab.peer, lab.addr.node_v6, BGP, timeout=0.3), 1.0)
    calfwd = Calfwd(lab, f'[calico]\nip_pools = ["{lab.addr.pool_v4}", "{lab.addr.pool_v6}"]\n'
                         'nat_outgoing = true\nhost_ports = ["bgp", "wireguard"]\n')
    calfwd.start()
    lab.firewalld.firewall_cmd("--zone=public", "--add-interface=eth0")  # runtime binding lost on reload
    interfaces = lab.firewalld.firewall_cmd("--zone=calfwd", "--list-interfaces").split()
    assert {"vxlan-v6.calico", "wg-v6.cali"} <= set(interfaces)
    ports = lab.firewalld.firewall_cmd("--policy=calfwd-host", "--list-ports")
    assert "51820-51821/udp" in ports or "51821/udp" in ports  # WireGuard's IPv6 port
    assert probe.eventually(lambda: lab.connect(lab.peer, lab.addr.node_v6, BGP, timeout=0.3), 1.0)
    assert probe.eventually(lambda: lab.connect(lab.peer, lab.addr.node_v4, BGP, timeout=0.3), 1.0)
