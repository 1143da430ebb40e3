"""What a valid config opens on a given host (calfwd/judge/exposure.py), and how iproute2's JSON is
read into the host's facts (calfwd/drivers/hostnet.py's parse): pure, no root needed."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import replace

import pytest

from calfwd import cli
from calfwd import config as cfg
from calfwd.drivers import hostnet
from calfwd.judge import pools
from calfwd.desired import HostFacts, desired_firewalld
from calfwd.judge.exposure import HostLink, HostNetwork, exposures, withheld_sources
from calfwd.judge.pools import FelixSets
from calfwd.reconcile import Reconciler

from fakes.firewalld import FakeFirewalld
from fakes.nft import FakeNft

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


# -- ip_pools = "auto": Felix's pools, judged as the pools in use -----------------------------

AUTO_TRUSTED = '[calico]\nip_pools = "auto"\n[firewalld]\ntrust_pool_sources = true\n'
FELIX = FelixSets(pools.IPSET, {"cali40all-ipam-pools": ("10.244.0.0/16", "198.18.0.0/16"),
                                "cali40masq-ipam-pools": ("10.244.0.0/16", "198.18.0.0/16")})


def test_felix_pool_holding_the_nodes_address_is_withheld_from_trusted_sources():
    """A pool nobody wrote into calfwd's file must not make the node's own network a trusted
    source: with "auto" calfwd leaves it out, and says why."""
    auto = Reconciler.resolve_config(cfg.parse(AUTO_TRUSTED, PATH), pools.resolve(FELIX))
    found = exposures(auto, HOST)
    assert [(e.error, e.saw) for e in found] == [
        (False, "Felix's pool 198.18.0.0/16 (ip_pools = \"auto\") contains 198.18.0.1, this node's own "
                "address on ext0")]
    assert "leaves it out of the sources of the ACCEPT zone 'calfwd'" in found[0].why
    assert withheld_sources(auto, HOST) == ((ipaddress.ip_network("198.18.0.0/16"),), (found[0].line(),))
    untrusted = replace(auto, firewalld=replace(auto.firewalld, trust_pool_sources=False))
    assert withheld_sources(untrusted, HOST) == ((), ())


def test_the_reconciler_keeps_it_out_of_the_zone_and_reports_a_conflict():
    config = cfg.parse(AUTO_TRUSTED, PATH)
    r = Reconciler(FakeNft(), FakeFirewalld(), felix_sets=lambda: FELIX, host_network=lambda: HOST)
    zone = desired_firewalld(r.resolve(config), HostFacts()).zone
    assert zone.sources == ("10.244.0.0/16",)
    layers, _facts = r.plan(config)
    assert [c for c in layers[1].conflicts if "198.18.0.0/16" in c] == [
        withheld_sources(r.resolve(config), HOST)[1][0]]
    assert not layers[1].blocking
    # The host cannot be read: what was withheld stays withheld, and that is said.
    r._host_network = lambda: (_ for _ in ()).throw(RuntimeError("ip: timed out"))
    assert desired_firewalld(r.resolve(config), HostFacts()).zone.sources == ("10.244.0.0/16",)
    assert "cannot compare Felix's pools with this host's addresses (ip: timed out)" in r.withheld_lines[0]


def test_check_and_plan_warn_about_felix_pools(tmp_path, monkeypatch, capsys):
    """check and plan judge the pools in use, not the unresolved "auto" (no pools at all)."""
    import calfwd.drivers.nftables as nftables_driver

    path = tmp_path / "c.toml"
    path.write_text('[calico]\nip_pools = "auto"\n[firewalld]\nenabled = false\n')
    monkeypatch.setattr(hostnet, "read_host_network", lambda: HOST)
    monkeypatch.setattr(nftables_driver, "Nftables", FakeNft)
    monkeypatch.setattr(Reconciler, "_read_felix_sets", lambda self: FELIX)
    for command in ("check", "plan"):
        cli.main(["--config", str(path), command])
        err = capsys.readouterr().err
        assert ("calfwd: warning: Felix's pool 198.18.0.0/16 (ip_pools = \"auto\") contains 198.18.0.1, "
                "this node's own address on ext0") in err, (command, err)


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
