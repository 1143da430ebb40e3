"""doctor on Canal and flannel nodes: the CNI calfwd serves, what ip_pools = "auto" follows, and
the Canal trap (pods outside every pool calfwd uses) as an error. Pure: hand-made snapshots."""

from __future__ import annotations

import ipaddress

from calfwd import config as cfg
from calfwd.doctor.checks import diagnose
from calfwd.doctor.findings import ERROR, INFO, OK, WARNING
from calfwd.doctor.snapshot import Route
from calfwd.judge.cni import CniVerdict
from calfwd.judge.flannel import FLANNEL
from calfwd.judge.pools import PoolState
from fakes.host import PATH, healthy

CANAL = CniVerdict("canal", "flannel's flannel.1 with Calico's policy (1 cali* interface)", ("flannel.1",), (8472,))
FLANNEL_NODE = CniVerdict("flannel", "flannel's flannel.1 and the bridge cni0, no Calico", ("flannel.1",), (8472,))
POD_NET = ipaddress.ip_network("10.42.0.0/16")
DEFAULT_POOL = ipaddress.ip_network("192.168.0.0/16")
CANAL_ROUTES = (Route(4, "10.42.1.7/32", "unicast", "boot", "cali0123456789a"),)


def auto(pools, source, follows="Felix", problem=""):
    """The snapshot's config as the drift resolved it, and the pool state it resolved."""
    config = cfg.parse('[calico]\nip_pools = "auto"\n', PATH)
    resolved = cfg.Config(**{**config.__dict__, "ip_pools": tuple(pools), "nat_outgoing": tuple(pools)})
    return resolved, PoolState(tuple(pools), tuple(pools), source, problem=problem, follows=follows)


def findings(snap, check):
    return [f for f in diagnose(snap).findings if f.check == check]


def test_doctor_names_the_cni_calfwd_serves():
    found = findings(healthy(cni=CANAL), "cni")
    assert [(f.severity, f.saw) for f in found] == [(INFO, f"canal ({CANAL.why})")]
    assert findings(healthy(), "cni") == [], "no drift read: nothing judged, nothing said"


def test_auto_pools_following_flannel_say_where_from():
    config, state = auto([POD_NET], "flannel's iptables rules (FLANNEL-POSTRTG)", FLANNEL)
    found = findings(healthy(config=config, auto_pools=state, cni=CANAL, routes=CANAL_ROUTES), "pools")
    assert [(f.severity, f.saw) for f in found] == [
        (OK, 'ip_pools = "auto" follows flannel\'s iptables rules (FLANNEL-POSTRTG): 10.42.0.0/16 (natOutgoing)')]


def test_the_canal_trap_is_an_error_naming_the_pod_route_and_the_fix():
    """[cni] kind = "calico" on a Canal node (its flannel device shows flannel runs): auto follows
    Felix's unused default pool."""
    config, state = auto([DEFAULT_POOL], "ip sets")
    configured = CniVerdict("calico", 'configured ([cni] kind = "calico")', ("flannel.1",), (8472,))
    snap = healthy(config=config, auto_pools=state, cni=configured, routes=CANAL_ROUTES)
    errors = [f for f in findings(snap, "pools") if f.severity == ERROR]
    assert len(errors) == 1, findings(snap, "pools")
    assert errors[0].saw == ("pod route 10.42.1.7/32 dev cali0123456789a lies in none of the pools calfwd "
                             "uses (192.168.0.0/16) (they follow Felix's ip sets), on a node running flannel "
                             "(flannel.1)")
    assert '[cni] kind = "auto"' in errors[0].fix
    explicit = cfg.parse('[calico]\nip_pools = ["192.168.0.0/16"]\nnat_outgoing = true\n', PATH)
    errors = [f for f in findings(healthy(config=explicit, cni=CANAL, routes=CANAL_ROUTES), "pools")
              if f.severity == ERROR]
    assert len(errors) == 1 and "flannel's network (the cluster CIDR) in [calico] ip_pools" in errors[0].fix


def test_on_plain_calico_a_stray_pod_route_stays_a_warning():
    snap = healthy(routes=(Route(4, "10.50.0.7/32", "unicast", "", "cali0123456789a"),))
    assert [f.severity for f in findings(snap, "pools") if "10.50.0.7/32" in f.saw] == [WARNING]


def test_on_a_flannel_node_the_bridge_subnet_is_the_pods():
    config, state = auto([POD_NET], "flannel's subnet file /run/flannel/subnet.env", FLANNEL)
    inside = (Route(4, "10.42.1.0/24", "unicast", "kernel", "cni0"),)
    assert not [f for f in findings(healthy(config=config, auto_pools=state, cni=FLANNEL_NODE, routes=inside), "pools")
                if f.severity == ERROR]
    outside = (Route(4, "10.99.1.0/24", "unicast", "kernel", "cni0"),)
    errors = [f for f in findings(healthy(config=config, auto_pools=state, cni=FLANNEL_NODE, routes=outside), "pools")
              if f.severity == ERROR]
    assert len(errors) == 1 and "pod route 10.99.1.0/24 dev cni0" in errors[0].saw


def test_flannels_network_unread_keeps_the_pools_and_warns():
    config, state = auto([POD_NET], "flannel's iptables rules (FLANNEL-POSTRTG)", FLANNEL,
                         problem="flannel's network not found (keeping the pools read before ...)")
    found = findings(healthy(config=config, auto_pools=state, cni=CANAL, routes=CANAL_ROUTES), "pools")
    assert [f.severity for f in found] == [WARNING] and "flannel's network not found" in found[0].saw
    none = PoolState(problem="flannel's network not found", follows=FLANNEL)
    found = findings(healthy(config=config, auto_pools=none, cni=CANAL), "pools")
    assert [f.severity for f in found] == [WARNING] and "until flannel's network is known" in found[0].why
