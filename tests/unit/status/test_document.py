"""status/document.py: the daemon's status.json and `calfwd status --json`, built in one
place. Their keys are pinned here (both are read by scripts and by NPD); they share the
firewalld facts and the per-layer entries. Pure."""

from __future__ import annotations

from dataclasses import replace

from calfwd.desired import HostFacts
from calfwd.judge.cni import CniVerdict
from calfwd.reconcile import LayerPlan, Outcome
from calfwd.status import document, health

FACTS = HostFacts(firewalld_running=True, firewalld_version="1.3.3", default_zone="public",
                  firewalld_state="RUNNING")
LAYERS = (LayerPlan("nftables", ("table inet calfwd is missing",)),
          LayerPlan("paths", (), blocking=("net.ipv4.ip_forward = 0",)))


def test_the_daemons_document_keeps_its_keys():
    outcome = Outcome("resync", LAYERS, (), False, 0.0123, 0.001, FACTS)
    doc = document.daemon(health.assess(outcome), outcome, pid=7, updated=1.0, config_path="c", zone="calfwd",
                          pools=["10.0.0.0/16"], following_kernel=True)
    assert list(doc) == ["schema", "pid", "pid_start", "updated", "config", "state", "in_sync", "problems",
                         "firewalld", "cni", "zone", "pools", "last_reconcile", "layers", "flushed",
                         "flush_guard_problem", "firewalld_table_missing", "kernel_blocking", "kernel_events"]


def test_status_json_keeps_its_keys_and_shares_the_firewalld_facts_and_the_layers():
    outcome = Outcome("resync", LAYERS, (), False, 0.0123, 0.001, FACTS)
    daemons = document.daemon(health.assess(outcome), outcome, pid=7, updated=1.0, config_path="c",
                              zone="calfwd", pools=[], following_kernel=True)
    doc = document.status_json(config_path="c", in_sync=False, daemon=None, seen=["flushed"], facts=FACTS,
                               errors=[], pools=None, layers=LAYERS)
    assert list(doc) == ["config", "in_sync", "daemon", "blocking", "firewalld", "cni", "errors", "pools", "layers"]
    assert doc["firewalld"] == daemons["firewalld"] and doc["layers"] == daemons["layers"]
    assert doc["cni"] == daemons["cni"] == {"kind": "calico", "why": "not judged", "flannel_devices": [],
                                            "ports": []}
    assert doc["blocking"] == ["net.ipv4.ip_forward = 0", "flushed"]
    assert doc["daemon"] == {"running": False, "pid": None, "state": None, "updated": None, "flushed": [],
                             "firewalld_table_missing": False, "kernel_blocking": []}


def test_both_documents_name_the_cni_and_flannels_ports():
    canal = replace(FACTS, cni=CniVerdict("canal", "flannel's flannel.1 with Calico's policy (Felix's rules)",
                                          ("flannel.1",), (8472,), (), False))
    outcome = Outcome("resync", LAYERS, (), False, 0.0123, 0.001, canal)
    daemons = document.daemon(health.assess(outcome), outcome, pid=7, updated=1.0, config_path="c",
                              zone="calfwd", pools=[], following_kernel=True)
    doc = document.status_json(config_path="c", in_sync=False, daemon=None, seen=[], facts=canal,
                               errors=[], pools=None, layers=LAYERS)
    assert doc["cni"] == daemons["cni"] == {
        "kind": "canal", "why": "flannel's flannel.1 with Calico's policy (Felix's rules)",
        "flannel_devices": ["flannel.1"], "ports": ["8472/udp"]}
