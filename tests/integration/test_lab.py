"""The lab reproduces the incident, and its probes can fail.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_lab.py (as root).
"""

from __future__ import annotations

import os

import pytest

from lab import Lab, calico, list_namespaces, unavailable

NAT_OUTGOING_RULE = calico.NAT_OUTGOING_V4  # exactly as fixtures/calico/README.md gives it
FAMILIES = [pytest.param(False, id="v4"), pytest.param(True, id="v6")]


def save(lab, *args: str) -> str:
    return lab.node.run("iptables-nft-save", *args).stdout


@pytest.mark.parametrize("v6", FAMILIES)
def test_calico_alone_forwards_pod_traffic(lab, v6):
    assert lab.calico.present()
    assert lab.pod_to_proxy(v6), "pod -> proxy needs Felix's natOutgoing MASQUERADE"
    assert lab.peer_to_pod(v6), "routed peer -> pod, no NAT"


def test_nat_outgoing_rule_is_the_one_felix_renders(lab):
    assert NAT_OUTGOING_RULE in save(lab, "-t", "nat").splitlines()


@pytest.mark.parametrize("v6", FAMILIES)
def test_without_nat_outgoing_pod_cannot_reach_proxy(lab, v6):
    """The proxy has no route back to the pools: proves the egress probe can fail."""
    lab.calico.remove_nat_outgoing()
    assert not lab.pod_to_proxy(v6)
    assert lab.peer_to_pod(v6)
    lab.calico.restore()  # natOutgoing stays off, as on a pool with natOutgoing: false
    assert lab.calico.present()
    assert not lab.pod_to_proxy(v6)


def test_firewalld_start_flushes_calico_and_its_reject_survives_restore(lab):
    lab.firewalld.start()
    assert lab.firewalld.state() == "running"
    assert not lab.calico.present()
    assert "MASQUERADE" not in save(lab, "-t", "nat")
    assert not any(line.startswith(":cali-") for line in save(lab).splitlines())
    assert not lab.pod_to_proxy()

    lab.calico.restore()  # Felix's next resync
    assert lab.calico.present()
    assert NAT_OUTGOING_RULE in save(lab, "-t", "nat").splitlines()
    filter_forward = lab.node.run("nft", "list", "chain", "inet", "firewalld", "filter_FORWARD").stdout
    assert "reject with icmpx admin-prohibited" in filter_forward
    for v6 in (False, True):
        assert not lab.pod_to_proxy(v6), "firewalld's inet table rejects what Calico accepted"
        assert not lab.peer_to_pod(v6)

    lab.firewalld.stop()  # stopping flushes Calico once more...
    assert not lab.calico.present()
    lab.calico.restore()  # ...and without firewalld's table, Calico alone works again
    assert lab.pod_to_proxy() and lab.peer_to_pod()


def test_firewalld_reload_flushes_calico(lab):
    lab.firewalld.start()
    lab.calico.restore()
    assert lab.calico.present()
    lab.firewalld.reload()
    assert lab.firewalld.state() == "running"
    assert not lab.calico.present()


def test_firewalld_is_confined_to_the_lab(lab):
    """No polkit on the private bus: uid 0 is authorized; config and /run stay in the tmpdir."""
    fw = lab.firewalld
    fw.start()
    assert fw.firewall_cmd("--permanent", "--new-zone=calfwdlab").strip() == "success"
    assert (fw.config_dir / "zones" / "calfwdlab.xml").exists()
    assert not os.path.exists("/etc/firewalld/zones/calfwdlab.xml")
    assert (fw.run_dir / "firewalld").is_dir()  # firewalld's /run/firewalld, privately
    fw.reload()
    assert "calfwdlab" in fw.firewall_cmd("--get-zones").split()


def test_firewalld_kill_and_bus_restart(lab):
    fw = lab.firewalld
    fw.start()
    fw.kill()  # SIGKILL: no cleanup, its table stays
    assert "table inet firewalld" in lab.node.run("nft", "list", "tables").stdout
    fw.start()
    lab.bus.restart()  # firewalld exits when its bus connection goes away
    fw.proc.wait(timeout=10)
    assert fw.state() == "not running"
    fw.stop()
    fw.start()  # same bus address after the restart
    assert fw.state() == "running"


def test_teardown_leaves_nothing_behind(tmp_path):
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with pytest.raises(RuntimeError, match="test failure"):
        with Lab(tmp_path) as lab:
            lab.firewalld.start()
            names = [ns.name for ns in lab.namespaces]
            pids = [pid for ns in lab.namespaces for pid in ns.pids()]
            assert set(names) <= set(list_namespaces())
            assert lab.firewalld.proc.pid in pids and lab.bus.proc.pid in pids
            raise RuntimeError("test failure")
    assert not set(names) & set(list_namespaces())
    assert not [pid for pid in pids if os.path.exists("/proc/%d" % pid)]
