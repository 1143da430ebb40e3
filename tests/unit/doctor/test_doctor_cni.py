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


# -- NetworkManager and nm-cloud-setup (RKE2's known issues) ---------------------------

from calfwd.doctor import reads  # noqa: E402
from calfwd.doctor.cni_checks import RKE2_UNMANAGED, unmanaged, unmanaged_specs  # noqa: E402


def test_unmanaged_devices_as_networkmanager_merges_them():
    files = [("NetworkManager.conf", "[main]\nplugins=keyfile\n[keyfile]\nunmanaged-devices=interface-name:docker0\n"),
             ("10-rke2.conf", f"[keyfile]\nunmanaged-devices+={RKE2_UNMANAGED}\n"),
             ("20-undo.conf", "# not ours\n[keyfile]\nunmanaged-devices-=interface-name:tunl*\n"),
             ("30-other.conf", "[device]\nunmanaged-devices=interface-name:eth9\n")]
    specs = unmanaged_specs(files)
    assert specs[0] == "interface-name:docker0" and "interface-name:flannel*" in specs
    assert "interface-name:tunl*" not in specs and "interface-name:eth9" not in specs
    assert unmanaged("flannel.1", specs) and unmanaged("cali0123456789a", specs)
    assert not unmanaged("eth0", specs) and not unmanaged("tunl0", specs)
    assert unmanaged("cni0", ["interface-name:=cni0"]) and not unmanaged("cni01", ["interface-name:=cni0"])
    assert unmanaged("Flannel.1", ["interface-name:~flannel*"]) and not unmanaged("flannel.1", ["mac:00:11"])
    assert unmanaged_specs([("a.conf", "[keyfile]\nunmanaged-devices=interface-name:a\n"),
                            ("b.conf", "[keyfile]\nunmanaged-devices=interface-name:b\n")]) == ("interface-name:b",)


def nm_findings(tmp_path, monkeypatch, dropin=None, enabled=True, cloud=False, cni=CANAL):
    nm, systemd = tmp_path / "NetworkManager", tmp_path / "systemd"
    (nm / "conf.d").mkdir(parents=True)
    (nm / "NetworkManager.conf").write_text("[main]\nplugins=keyfile\n")
    if dropin is not None:
        (nm / "conf.d" / "rke2-canal.conf").write_text(dropin)
    (systemd / "multi-user.target.wants").mkdir(parents=True)
    (systemd / "timers.target.wants").mkdir(parents=True)
    if enabled:
        (systemd / "multi-user.target.wants" / "NetworkManager.service").symlink_to("/usr/lib/systemd/system/x")
    if cloud:
        (systemd / "timers.target.wants" / "nm-cloud-setup.timer").symlink_to("/usr/lib/systemd/system/y")
    monkeypatch.setenv(reads.NM_DIR_ENV, str(nm))
    monkeypatch.setenv(reads.SYSTEMD_DIR_ENV, str(systemd))
    snap = healthy(cni=cni, networkmanager=reads.read_networkmanager(), nm_cloud_setup=reads.read_nm_cloud_setup())
    return findings(snap, "networkmanager"), findings(snap, "nm-cloud-setup")


def test_networkmanager_managing_flannels_and_calicos_devices_is_a_warning(tmp_path, monkeypatch):
    nm, cloud = nm_findings(tmp_path, monkeypatch)
    assert [(f.severity, f.saw) for f in nm] == [(WARNING, "NetworkManager manages flannel*, cali* on this canal node")]
    assert RKE2_UNMANAGED in nm[0].fix and "systemctl reload NetworkManager" in nm[0].fix
    assert [f.severity for f in cloud] == [INFO]


def test_rke2s_dropin_makes_it_ok_and_nm_cloud_setup_is_a_warning(tmp_path, monkeypatch):
    nm, cloud = nm_findings(tmp_path, monkeypatch, dropin=f"[keyfile]\nunmanaged-devices={RKE2_UNMANAGED}\n",
                            cloud=True)
    assert [f.severity for f in nm] == [OK]
    assert [f.severity for f in cloud] == [WARNING] and "rancher/rke2#1053" in cloud[0].why
    assert "nm-cloud-setup.timer" in cloud[0].saw


def test_silent_without_networkmanager_and_on_plain_calico(tmp_path, monkeypatch):
    nm, _cloud = nm_findings(tmp_path, monkeypatch, enabled=False)
    assert nm == []
    nm, cloud = nm_findings(tmp_path / "calico", monkeypatch, cni=CniVerdict("calico", "Calico"))
    assert nm == [] and cloud == []
    nm, _cloud = nm_findings(tmp_path / "flannel", monkeypatch, cni=FLANNEL_NODE,
                             dropin="[keyfile]\nunmanaged-devices=interface-name:flannel*\n")
    assert [f.severity for f in nm] == [OK], "flannel (k3s) has no cali* veths to leave alone"
