"""What a valid config opens on a given host (calfwd/exposure.py), and how iproute2's JSON is
read into the host's facts (calfwd/drivers/hostnet.py's parse): pure, no root needed."""

from __future__ import annotations

import json

import pytest

from calfwd import cli
from calfwd import config as cfg
from calfwd.drivers import hostnet
from calfwd.exposure import HostLink, HostNetwork, exposures

PATH = "/etc/calfwd/calfwd.toml"

# A node: uplink ext0 carrying both default routes, a second NIC, a bridge, Calico's devices
# (tunl0 holds an address from the pool, as Calico gives it one).
HOST = HostNetwork(
    links=(HostLink("lo", ("127.0.0.1", "::1")), HostLink("ext0", ("198.18.0.1", "2001:db8:0:1::1")),
           HostLink("ext1", ("198.19.5.1",)), HostLink("cali0123456789a"), HostLink("tunl0", ("10.244.3.0",)),
           HostLink("vxlan.calico", ("10.244.3.1",))),
    default4=("ext0",), default6=("ext0",))


def config(calico: str = "", firewalld: str = "") -> cfg.Config:
    return cfg.parse(f'[calico]\nip_pools = ["10.244.0.0/16"]\n{calico}\n[firewalld]\n{firewalld}\n', PATH)


def test_calicos_own_interfaces_and_pool_addresses_open_nothing():
    assert exposures(config(), HOST) == ()
    assert exposures(config('interfaces = ["cali+", "tunl0", "vxlan.calico", "ca+"]'), HOST) == ()


def test_a_pattern_matching_the_uplink_is_an_error_naming_it_and_its_default_route():
    found = exposures(config('interfaces = ["cali+", "ext+"]'), HOST)
    assert [(e.error, e.saw) for e in found] == [
        (True, "calico.interfaces[1] 'ext+' matches ext0, which is not one of Calico's interfaces and carries "
               "the default route (IPv4 and IPv6)"),
        (False, "calico.interfaces[1] 'ext+' matches ext1, which is not one of Calico's interfaces"),
    ]
    assert "ACCEPT zone 'calfwd'" in found[0].why and "ext0" in found[0].why
    assert PATH in found[0].fix and "'ext+'" in found[0].fix
    assert all("\n" not in e.line() for e in found)


def test_default_route_in_one_family_only():
    v6_only = HostNetwork(links=HOST.links, default4=("ext1",), default6=("ext0",))
    found = exposures(config('interfaces = ["ext0"]'), v6_only)
    assert len(found) == 1 and found[0].error and found[0].saw.endswith("carries the default route (IPv6)")


def test_with_firewalld_disabled_the_uplink_loses_natoutgoing():
    found = exposures(config('interfaces = ["ext0"]', "enabled = false"), HOST)
    assert found[0].error and "masquerades no pod traffic leaving through ext0" in found[0].why


@pytest.mark.parametrize("firewalld,error", [("trust_pool_sources = true", True), ("", False),
                                             ("trust_pool_sources = true\nenabled = false", False)])
def test_a_pool_holding_the_nodes_own_address(firewalld, error):
    c = cfg.parse(f'[calico]\nip_pools = ["10.244.0.0/16", "198.18.0.0/16"]\n[firewalld]\n{firewalld}\n', PATH)
    found = exposures(c, HOST)
    assert [(e.error, e.saw) for e in found] == [
        (error, "calico.ip_pools[1] 198.18.0.0/16 contains 198.18.0.1, this node's own address on ext0")]
    assert ("the host accepts everything from the network of ext0" in found[0].why) is error


def test_an_ipv6_pool_holding_the_nodes_address():
    c = cfg.parse('[calico]\nip_pools = ["2001:db8::/48"]\n', PATH)
    assert [e.saw for e in exposures(c, HOST)] == [
        "calico.ip_pools[0] 2001:db8::/48 contains 2001:db8:0:1::1, this node's own address on ext0"]


# -- iproute2's JSON -------------------------------------------------------------------------

ADDR = json.dumps([
    {"ifindex": 1, "ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifindex": 2, "ifname": "ext0", "addr_info": [
        {"family": "inet", "local": "198.18.0.1", "prefixlen": 24},
        {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"}]},
    {"ifindex": 3, "ifname": "cali0123456789a", "addr_info": []},
    {"ifindex": 4, "ifname": "down0"},  # a link with no addr_info at all
])
MULTIPATH = json.dumps([{"dst": "default", "protocol": "static", "flags": [], "nexthops": [
    {"gateway": "198.18.0.254", "dev": "ext0", "weight": 1}, {"gateway": "198.19.0.254", "dev": "ext1", "weight": 1}]}])


def test_parse_iproute2_json():
    host = hostnet.parse(ADDR, MULTIPATH, "")  # IPv6 disabled: `ip -6` prints nothing
    assert host.links == (HostLink("lo", ("127.0.0.1",)), HostLink("ext0", ("198.18.0.1", "fe80::1")),
                          HostLink("cali0123456789a"), HostLink("down0"))
    assert host.default4 == ("ext0", "ext1") and host.default6 == ()
    single = json.dumps([{"dst": "default", "gateway": "fe80::1", "dev": "ext0", "metric": 1024}])
    assert hostnet.parse("[]", "[]", single).default6 == ("ext0",)


def test_parse_garbage_is_a_runtime_error_not_a_crash():
    with pytest.raises(RuntimeError, match="not JSON"):
        hostnet.parse("{", "[]", "[]")
    assert hostnet.parse('{"not": "a list"}', "[1, 2]", "null") == HostNetwork()


# -- check and plan print them as warnings and keep their exit code --------------------------

def test_check_warns_on_stderr_and_exits_0(tmp_path, monkeypatch, capsys):
    path = tmp_path / "c.toml"
    path.write_text('[calico]\nip_pools = ["10.244.0.0/16"]\ninterfaces = ["cali+", "ext+"]\n')
    monkeypatch.setattr(hostnet, "read_host_network", lambda: HOST)
    assert cli.main(["--config", str(path), "check"]) == 0
    out = capsys.readouterr()
    assert "OK" in out.out
    lines = out.err.splitlines()
    assert len(lines) == 2 and all(line.startswith("calfwd: warning: calico.interfaces[1] 'ext+' matches ext")
                                   for line in lines)
    assert "ext0, which is not one of Calico's interfaces and carries the default route" in lines[0]


def test_check_says_when_the_host_cannot_be_read(tmp_path, monkeypatch, capsys):
    path = tmp_path / "c.toml"
    path.write_text('[calico]\nip_pools = ["10.244.0.0/16"]\n')

    def unreadable():
        raise RuntimeError("the ip tool (iproute2) is not installed")
    monkeypatch.setattr(hostnet, "read_host_network", unreadable)
    assert cli.main(["--config", str(path), "check"]) == 0
    assert capsys.readouterr().err == ("calfwd: warning: cannot compare the config with this host's interfaces: "
                                       "the ip tool (iproute2) is not installed\n")
