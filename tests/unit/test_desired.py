"""Desired state is a pure function of config and host facts."""

from __future__ import annotations

import json
from dataclasses import replace

from calfwd import config as cfg
from calfwd.desired import HostFacts, desired, nft_interface


def conf(extra: str = "", pools: str = '["10.244.0.0/16", "fd00:10::/64"]') -> cfg.Config:
    return cfg.parse(f"[calico]\nip_pools = {pools}\nnat_outgoing = true\n{extra}", "t.toml")


def test_pools_split_by_family_and_sorted():
    d = desired(conf(pools='["10.9.0.0/16", "fd00:10::/64", "10.1.0.0/16"]')).nft
    assert [str(n) for n in d.pools4] == ["10.1.0.0/16", "10.9.0.0/16"]  # network objects, in order
    assert [str(n) for n in d.pools6] == ["fd00:10::/64"]
    assert d.masq4 == d.pools4 and d.masq6 == d.pools6


def test_nat_outgoing_subset():
    c = cfg.parse('[calico]\nip_pools = ["10.1.0.0/16", "10.2.0.0/16"]\nnat_outgoing = ["10.2.0.0/16"]\n', "t")
    d = desired(c).nft
    assert [str(n) for n in d.pools4] == ["10.1.0.0/16", "10.2.0.0/16"]
    assert [str(n) for n in d.masq4] == ["10.2.0.0/16"]


def test_wildcards_use_nft_spelling():
    assert nft_interface("cali+") == "cali*" and nft_interface("tunl0") == "tunl0"
    assert desired(conf()).nft.calico_interfaces[0] == "cali*"


def test_default_firewalld_objects():
    fw = desired(conf(), HostFacts(True, "1.3.3", "public")).firewalld
    assert fw.mode == "permanent"
    assert fw.zone.name == "calfwd" and fw.zone.owned and fw.zone.target == "ACCEPT"
    assert "cali+" in fw.zone.interfaces and fw.zone.sources == ()
    forward, host = fw.policies
    assert (forward.ingress_zones, forward.egress_zones, forward.target) == (("ANY",), ("calfwd",), "ACCEPT")
    assert (host.ingress_zones, host.egress_zones) == (("public",), ("HOST",))
    assert set(host.ports) == {("179", "tcp"), ("4789", "udp"), ("5473", "tcp")}
    assert host.protocols == ("4",)


def test_host_zone_follows_default_zone_unless_set():
    assert desired(conf(), HostFacts(True, "1.3.3", "internal")).firewalld.policies[1].ingress_zones == ("internal",)
    pinned = conf('[firewalld]\nhost_zone = "work"\n')
    assert desired(pinned, HostFacts(True, "1.3.3", "internal")).firewalld.policies[1].ingress_zones == ("work",)


def test_stock_zone_is_not_owned():
    assert not desired(conf('[firewalld]\nzone = "trusted"\n')).firewalld.zone.owned


def test_pool_sources_only_when_asked():
    fw = desired(conf('[firewalld]\ntrust_pool_sources = true\n')).firewalld
    assert fw.zone.sources == ("10.244.0.0/16", "fd00:10::/64")


def test_no_host_ports_no_host_policy():
    fw = desired(conf("host_ports = []\n")).firewalld
    assert [p.name for p in fw.policies] == ["calfwd-forward"]


def test_wireguard_ports():
    host = desired(conf('host_ports = ["wireguard"]\n')).firewalld.policies[1]
    assert host.ports == (("51820", "udp"), ("51821", "udp")) and host.protocols == ()


def test_firewalld_disabled():
    assert desired(conf("[firewalld]\nenabled = false\n")).firewalld is None


def test_no_felix_names_anywhere():
    d = desired(conf(), HostFacts(True, "1.3.3", "public"))
    names = [d.nft.table, d.firewalld.zone.name] + [p.name for p in d.firewalld.policies]
    assert not any(n.startswith(("cali", "felix")) for n in names)


def test_calicos_wireguard_devices_open_their_ports():
    """Issue 12: the default host_ports left 51820/udp closed; one direction kept working on the
    other node's flow, which hid it."""
    def host_ports(facts, extra=""):
        return desired(conf(extra), facts).firewalld.policies[1].ports
    assert ("51820", "udp") not in host_ports(HostFacts())
    v4 = host_ports(HostFacts(wireguard_devices=("wireguard.cali",)))
    assert ("51820", "udp") in v4 and ("51821", "udp") not in v4
    both = host_ports(HostFacts(wireguard_devices=("wireguard.cali", "wg-v6.cali")))
    assert ("51820", "udp") in both and ("51821", "udp") in both
    listed = host_ports(HostFacts(wireguard_devices=("wireguard.cali",)), 'host_ports = ["bgp", "wireguard"]\n')
    assert listed.count(("51820", "udp")) == 1


def test_the_reconciler_reads_the_devices_from_the_hosts_links():
    from calfwd.reconcile import Reconciler
    facts = Reconciler(nft=None, links=lambda: ["lo", "eth0", "wg-v6.cali"]).facts()  # type: ignore[arg-type]
    assert facts.wireguard_devices == ("wg-v6.cali",)


# -- per CNI (judge/cni.py's verdict in HostFacts.cni) ------------------------------------

def _cni(kind, devices=("flannel.1",), ports=(8472,), wireguard=(), calico_networking=False):
    from calfwd.judge.cni import CniVerdict
    return HostFacts(True, "1.3.3", "public", cni=CniVerdict(kind, "test", tuple(devices), tuple(ports),
                                                             tuple(wireguard), calico_networking))


def test_calico_is_served_exactly_as_before_whatever_the_verdict_says_of_flannel():
    before = desired(conf(), HostFacts(True, "1.3.3", "public"))
    assert desired(conf(), _cni("calico")) == before
    assert desired(conf(), _cni("unknown")) == before


def test_canal_binds_cali_and_flannels_devices_and_opens_flannels_port_not_calicos_networking():
    fw = desired(conf(), _cni("canal")).firewalld
    assert fw.zone.interfaces == ("cali+", "wireguard.cali", "wg-v6.cali", "flannel.1", "flannel-v6.1",
                                  "flannel-wg", "flannel-wg-v6")
    host = fw.policies[1]
    assert host.ports == (("5473", "tcp"), ("8472", "udp")) and host.protocols == ()
    assert fw.host_service.ports == host.ports


def test_canal_with_calicos_own_networking_keeps_calicos_devices_and_ports():
    fw = desired(conf(), _cni("canal", calico_networking=True)).firewalld
    assert fw.zone.interfaces[:6] == ("cali+", "tunl0", "vxlan.calico", "vxlan-v6.calico", "wireguard.cali",
                                      "wg-v6.cali")
    host = fw.policies[1]
    assert set(host.ports) == {("179", "tcp"), ("4789", "udp"), ("5473", "tcp"), ("8472", "udp")}
    assert host.protocols == ("4",)


def test_canal_on_flannels_wireguard_backend_opens_51820_and_51821():
    facts = _cni("canal", devices=("flannel-wg", "flannel-wg-v6"), ports=(), wireguard=("flannel-wg", "flannel-wg-v6"))
    ports = desired(conf(), facts).firewalld.policies[1].ports
    assert ports == (("5473", "tcp"), ("51820", "udp"), ("51821", "udp"))


def test_canal_binds_a_flannel_device_of_another_vni_too():
    interfaces = desired(conf(), _cni("canal", devices=("flannel.7",), ports=(4790,))).firewalld.zone.interfaces
    assert interfaces[-1] == "flannel.7" and "flannel.1" in interfaces
    assert desired(conf(), _cni("canal", devices=("flannel.7",), ports=(4790,))).firewalld.policies[1].ports[-1] \
        == ("4790", "udp")


def test_flannel_binds_the_bridge_and_flannels_devices_never_veths_and_opens_flannels_port_alone():
    fw = desired(conf(), _cni("flannel")).firewalld
    assert fw.zone.interfaces == ("cni0", "flannel.1", "flannel-v6.1", "flannel-wg", "flannel-wg-v6")
    assert not any(i.startswith(("veth", "cali")) for i in fw.zone.interfaces)
    assert fw.policies[1].ports == (("8472", "udp"),) and fw.policies[1].protocols == ()


def test_the_nft_layer_masquerades_as_flannel_does_on_canal_and_flannel_only():
    calico = desired(conf()).nft
    assert desired(conf(), _cni("calico")).nft == calico and not calico.flannel_nat
    for kind in ("canal", "flannel"):
        nft = desired(conf(), _cni(kind)).nft
        assert nft.flannel_nat and nft == replace(calico, flannel_nat=True), kind


def test_the_reconciler_judges_the_cni_from_its_reads():
    from calfwd.judge.cni import CniFacts, Link
    from calfwd.reconcile import Reconciler
    seen = {}

    def read(config):
        seen["path"] = config.flannel_subnet_file
        return CniFacts(links=(Link("cali1a2b3c4d5e6"), Link("flannel.1", "vxlan", 8472, True)), felix=True)
    r = Reconciler(nft=None, links=lambda: ["lo"], cni_facts=read)  # type: ignore[arg-type]
    config = conf('[flannel]\nsubnet_file = "/tmp/subnet.env"\n')
    assert r.facts(config).cni.kind == "canal" and seen["path"] == "/tmp/subnet.env"
    assert r.facts().cni.why == "not judged"  # no config: the default (Calico)
    assert r.facts(conf('[cni]\nkind = "calico"\n')).cni.kind == "calico"


def test_the_reconciler_reads_only_what_the_judgement_needs(tmp_path):
    """Plain Calico (cali* veths, no flannel device): no `ip -d`, no routes, no Felix read."""
    from calfwd.reconcile import Reconciler

    class NoReads:
        def tables(self):
            raise AssertionError("Felix's rules read although a cali* interface shows Calico")
    subnet = tmp_path / "subnet.env"
    subnet.write_text("FLANNEL_NETWORK=10.42.0.0/16\n")
    r = Reconciler(nft=NoReads(), links=lambda: ["lo", "eth0", "cali1a2b3c4d5e6"])  # type: ignore[arg-type]
    verdict = r.judge_cni(conf(f'[flannel]\nsubnet_file = "{subnet}"\n'))
    assert verdict.kind == "calico" and "ignored: no flannel device" in verdict.why


def test_auto_pools_on_canal_come_from_flannel_never_from_felixs_sets(tmp_path):
    """Canal's trap: Felix's sets hold calico-node's unused default pool. On a Canal or flannel
    node the reconciler reads flannel's subnet file and rules instead, and never Felix's sets."""
    from calfwd.judge.cni import CniFacts, Link
    from calfwd.judge.flannel import IPTABLES_CHAINS
    from calfwd.reconcile import Reconciler

    class Nft:
        """flannel's IPv4 rules as iptables-nft lists them; calfwd's table absent."""
        def read_chains(self, wanted):
            assert tuple(wanted)[:2] == IPTABLES_CHAINS
            masq = {"expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                           "right": {"prefix": {"addr": "10.42.0.0", "len": 16}}}},
                {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                           "right": {"prefix": {"addr": "224.0.0.0", "len": 4}}}},
                {"xt": {"type": "target", "name": "MASQUERADE"}}]}
            return {IPTABLES_CHAINS[0]: [masq]}

        def read_table(self, family, name):
            return None

    def felix():
        raise AssertionError("Felix's sets read on a Canal node")
    canal = CniFacts(links=(Link("cali1a2b3c4d5e6"), Link("flannel.1", "vxlan", 8472, True)), felix=True)
    subnet = tmp_path / "subnet.env"
    r = Reconciler(nft=Nft(), links=lambda: ["lo"], felix_sets=felix, cni_facts=lambda c: canal)  # type: ignore[arg-type]
    config = cfg.parse(f'[calico]\nip_pools = "auto"\n[flannel]\nsubnet_file = "{subnet}"\n', "t.toml")
    state = r.resolve_pools(config)
    assert [str(n) for n in state.pools] == ["10.42.0.0/16"] and state.masq == state.pools
    assert state.source == "flannel's iptables rules (FLANNEL-POSTRTG)"
    subnet.write_text("FLANNEL_NETWORK=10.43.0.0/16\nFLANNEL_IPMASQ=false\n")
    state = r.resolve_pools(config)
    assert [str(n) for n in state.pools] == ["10.43.0.0/16"] and state.masq == (), "the file wins"
    subnet.unlink()
    subnet.mkdir()  # not a regular file: the last pools stay, the reason is named
    state = r.resolve_pools(config)
    assert [str(n) for n in state.pools] == ["10.43.0.0/16"]
    assert state.problem.startswith(f"cannot read flannel's network: {subnet}: a directory, not a regular file (keeping")


def test_the_repair_path_keeps_flannels_masquerade_on_canal():
    """reconcile_nft (a kernel event's repair) reads no links: it renders with the CNI the last
    reconcile judged, so a repair on Canal does not flip the table to Calico's shape."""
    from calfwd.judge.cni import CniFacts, Link
    from calfwd.reconcile import Reconciler
    from fakes.nft import FakeNft
    canal = CniFacts(links=(Link("cali1a2b3c4d5e6"), Link("flannel.1", "vxlan", 8472, True)), felix=True)
    nft = FakeNft()
    r = Reconciler(nft=nft, links=lambda: ["lo"], cni_facts=lambda c: canal)  # type: ignore[arg-type]
    config = conf()
    r.reconcile(config, "start")
    table = nft.read_table("inet", "calfwd")
    assert any("&" in json.dumps(o) for o in table), "flannel's kube-proxy mark rule"
    layer, errors, _ = r.reconcile_nft(config)
    assert layer.empty and not errors, layer.reasons
    nft.tables_.pop(("inet", "calfwd"))
    layer, errors, _ = r.reconcile_nft(config)
    assert not errors and nft.read_table("inet", "calfwd") == table, "repaired in the same shape"


def test_one_reconcile_and_one_plan_read_the_cni_once():
    """The pools (ip_pools = "auto" on Canal) and the facts both need the CNI's verdict: one
    reconcile, read-back included, reads the node's signs once; the next reconcile reads anew,
    so a node that changed CNI is seen at its next reconcile."""
    from calfwd.judge.cni import CniFacts, Link
    from calfwd.reconcile import Reconciler
    from fakes.nft import FakeNft
    canal = CniFacts(links=(Link("cali1a2b3c4d5e6"), Link("flannel.1", "vxlan", 8472, True)), felix=True)
    calico = CniFacts(links=(Link("cali1a2b3c4d5e6"),), felix=True)
    reads = []

    def read(config):
        reads.append(config)
        return canal if len(reads) == 1 else calico
    r = Reconciler(nft=FakeNft(), links=lambda: ["lo"], cni_facts=read)  # type: ignore[arg-type]
    config = cfg.parse('[calico]\nip_pools = "auto"\n', "t.toml")
    outcome = r.reconcile(config, "start")
    assert len(reads) == 1 and outcome.facts.cni.kind == "canal"
    _layers, facts = r.plan(config)
    assert len(reads) == 2 and facts.cni.kind == "calico" and r.cni.kind == "calico"
    assert r.judge_cni(config).kind == "calico" and len(reads) == 3, "outside a plan: read each time"
