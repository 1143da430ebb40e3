"""judge/cni.py: which CNI the node runs, from what it shows without the Kubernetes API. Pure."""

from __future__ import annotations

import pytest

from calfwd.judge.cni import CniFacts, CniVerdict, Link, is_calico_workload, is_flannel_device, judge

SUBNET = "/run/flannel/subnet.env"
UPLINK = Link("eth0", "", None, True)
FLANNEL = Link("flannel.1", "vxlan", 8472, True)
VETH = Link("cali1a2b3c4d5e6", "veth", None, True)
CNI0 = Link("cni0", "bridge", None, True)


def facts(*links, felix=False, subnet=False, bird=False, error=""):
    return CniFacts(links=(UPLINK,) + links, felix=felix, subnet_file=SUBNET, subnet_file_exists=subnet,
                    bird_routes=bird, error=error)


def test_a_calico_node_is_calico_with_its_own_networking():
    verdict = judge(facts(VETH, Link("vxlan.calico", "vxlan", 4789, True), felix=True))
    assert verdict.kind == "calico" and verdict.calico_networking
    assert verdict.why == "Calico (Felix's rules and 1 cali* interface), no flannel device"
    assert verdict.flannel_devices == () and verdict.vxlan_ports == ()


def test_a_canal_node_is_canal_without_calicos_networking():
    verdict = judge(facts(VETH, FLANNEL, felix=True, subnet=True))
    assert verdict.kind == "canal"
    assert verdict.why == "flannel's flannel.1 with Calico's policy (Felix's rules and 1 cali* interface)"
    assert verdict.flannel_devices == ("flannel.1",) and verdict.vxlan_ports == (8472,)
    assert not verdict.calico_networking and verdict.flannel_ports == (("8472", "udp"),)
    assert verdict.line().startswith("cni: canal (flannel's flannel.1 ")


def test_canal_before_its_first_pod_is_known_by_felixs_rules_alone():
    """RKE2 keeps flannel's subnet file inside its container: not needed to see Canal."""
    assert judge(facts(FLANNEL, felix=True)).kind == "canal"


def test_a_canal_node_keeps_calicos_networking_where_it_is_in_use():
    up_tunl0 = Link("tunl0", "ipip", None, True)
    verdict = judge(facts(VETH, FLANNEL, up_tunl0, felix=True))
    assert verdict.kind == "canal" and verdict.calico_networking and "tunl0" in verdict.why
    assert judge(facts(VETH, FLANNEL, felix=True, bird=True)).calico_networking


def test_a_down_tunl0_is_the_ipip_module_not_calicos_networking():
    verdict = judge(facts(VETH, FLANNEL, Link("tunl0", "ipip", None, False), felix=True))
    assert verdict.kind == "canal" and not verdict.calico_networking


def test_a_flannel_node_is_flannel():
    verdict = judge(facts(CNI0, FLANNEL, Link("veth1234abcd", "veth", None, True), subnet=True))
    assert verdict.kind == "flannel" and verdict.why == "flannel's flannel.1 and the bridge cni0, no Calico"


def test_flannel_before_its_first_pod_and_with_felix_unreadable():
    assert judge(facts(FLANNEL)).kind == "flannel"  # Felix's rules looked for, none
    assert judge(facts(FLANNEL, CNI0, felix=None)).kind == "flannel"  # the bridge says it
    unread = judge(facts(FLANNEL, felix=None))
    assert unread.kind == "unknown" and "unreadable" in unread.why and "[cni] kind" in unread.why


def test_flannels_host_gw_backend_is_the_bridge_with_the_subnet_file():
    verdict = judge(facts(CNI0, subnet=True))
    assert verdict.kind == "flannel" and "host-gw" in verdict.why and SUBNET in verdict.why
    assert judge(facts(CNI0)).kind == "calico"  # a bridge alone says nothing


def test_a_stray_subnet_file_on_a_calico_node_is_not_flannel():
    verdict = judge(facts(VETH, Link("tunl0", "ipip", None, True), felix=True, subnet=True))
    assert verdict.kind == "calico"
    assert verdict.why.endswith(f"; flannel's subnet file {SUBNET} ignored: no flannel device")
    assert judge(facts(subnet=True)).kind == "calico"


def test_a_node_showing_nothing_yet_is_served_as_calico_and_says_so():
    verdict = judge(facts())
    assert verdict.kind == "calico" and verdict.why.startswith("not detected yet")
    assert verdict.calico_networking is False and verdict.flannel_devices == ()


def test_the_configured_kind_overrides_detection_and_keeps_the_backend_facts():
    verdict = judge(facts(VETH, felix=True), "canal")
    assert verdict.kind == "canal" and verdict.why == 'configured ([cni] kind = "canal")'
    assert verdict.flannel_ports == (("8472", "udp"),)  # no device yet: VXLAN's default
    assert judge(facts(VETH, FLANNEL, felix=True), "calico").kind == "calico"
    assert judge(facts(CNI0, FLANNEL), "flannel").flannel_devices == ("flannel.1",)


def test_the_wireguard_backend_opens_its_ports_not_vxlans():
    wg = (Link("flannel-wg", "wireguard", None, True), Link("flannel-wg-v6", "wireguard", None, True))
    verdict = judge(facts(VETH, *wg, felix=True))
    assert verdict.kind == "canal" and verdict.wireguard_devices == ("flannel-wg", "flannel-wg-v6")
    assert verdict.vxlan_ports == () and verdict.flannel_ports == (("51820", "udp"), ("51821", "udp"))


def test_a_vxlan_port_of_flannels_own_choice_is_the_one_opened():
    moved = Link("flannel.1", "vxlan", 4790, True)
    v6 = Link("flannel-v6.1", "vxlan", None, True)  # no port shown: the kernel's default
    verdict = judge(facts(CNI0, moved, v6))
    assert verdict.vxlan_ports == (4790, 8472) and verdict.flannel_ports == (("4790", "udp"), ("8472", "udp"))


def test_unreadable_links_are_unknown_and_served_as_calico():
    verdict = judge(CniFacts(error="the ip tool (iproute2) is not installed"))
    assert verdict.kind == "unknown" and "iproute2" in verdict.why


def test_the_default_verdict_serves_calico_as_before():
    assert CniVerdict().kind == "calico" and CniVerdict().calico_networking


@pytest.mark.parametrize("name,flannel", [("flannel.1", True), ("flannel.42", True), ("flannel-v6.1", True),
                                          ("flannel-wg", True), ("flannel-wg-v6", True), ("flannel.x", False),
                                          ("flannel0", False), ("cni0", False)])
def test_flannels_device_names(name, flannel):
    assert is_flannel_device(name) is flannel


def test_calicos_workload_names():
    assert is_calico_workload("cali1a2b3c4d5e6")
    assert not is_calico_workload("vxlan.calico") and not is_calico_workload("wireguard.cali")


def test_not_detected_yet_says_when_felix_could_not_be_read():
    assert "Felix's rules unread" in judge(facts(felix=None)).why
