"""calfwd's nftables layer against the real kernel, inside a namespace each test creates.

The CLI runs inside the namespace exactly as an operator would run it; the ruleset is read
with nft itself and compared byte for byte.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab.netns import Netns, unique_id

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures" / "calico"
POOLS = '["198.18.64.0/20", "2001:db8:64::/64"]'

FOREIGN = """
table ip foreign {
	set blocked {
		type ipv4_addr
		flags interval
		elements = { 198.19.9.0/24 }
	}

	chain input {
		type filter hook input priority filter; policy accept;
		ip saddr @blocked counter packets 0 bytes 0 drop
	}
}
table inet other {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "eth9" masquerade
	}
}
"""


class Node:
    """One namespace with the calfwd CLI runnable inside it, and no bus reachable."""

    def __init__(self, ns: Netns, tmp: Path):
        self.ns = ns
        self.config = tmp / "calfwd.toml"
        self.write_config(f"[calico]\nip_pools = {POOLS}\nnat_outgoing = true\n")
        # Never the host's bus: a private abstract address nobody listens on.
        # ... and no firewalld directory: cleanup only reads it there (the bus is unreachable).
        self.env = {"PYTHONPATH": str(REPO), "CALFWD_LOG": "stderr",
                    "DBUS_SYSTEM_BUS_ADDRESS": f"unix:abstract=/calfwd-test/none-{unique_id()}",
                    "CALFWD_FIREWALLD_DIR": str(tmp / "firewalld")}

    def write_config(self, text: str) -> None:
        # The nftables layer alone: with firewalld enabled and no bus, calfwd cannot know whether
        # firewalld runs and says so (exit 3; tests/integration/test_hardening_in_lab.py).
        if "[firewalld]" not in text:
            text += "[firewalld]\nenabled = false\n"
        self.config.write_text(text)
        self.config.chmod(0o644)

    def calfwd(self, *args: str):
        return self.ns.run("/usr/bin/python3", "-m", "calfwd", "--config", str(self.config), *args,
                           env=self.env, check=False, timeout=60)

    def ruleset(self) -> str:
        return self.ns.run("nft", "list", "ruleset").stdout

    def nft(self, script: str) -> None:
        self.ns.run("nft", "-f", "-", input=script)


@pytest.fixture
def node(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    with Netns(f"cfwn{unique_id()}") as ns:
        for key in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"):  # a Calico node forwards
            ns.sysctl(key, 1)
        yield Node(ns, tmp_path)


def ok(result):
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def test_apply_creates_the_table_and_twice_is_byte_identical(node):
    ok(node.calfwd("apply"))
    first = node.ruleset()
    assert "table inet calfwd" in first and "masquerade" in first
    second_run = ok(node.calfwd("apply"))
    assert node.ruleset() == first
    assert "nftables: in sync" in second_run.stdout
    ok(node.calfwd("status"))


def test_foreign_tables_untouched_and_cleanup_restores_byte_for_byte(node):
    node.nft(FOREIGN)
    before = node.ruleset()
    foreign = [node.ns.run("nft", "list", "table", *t).stdout for t in (("ip", "foreign"), ("inet", "other"))]
    ok(node.calfwd("apply"))
    assert node.ruleset() != before
    assert [node.ns.run("nft", "list", "table", *t).stdout
            for t in (("ip", "foreign"), ("inet", "other"))] == foreign
    ok(node.calfwd("cleanup"))
    assert node.ruleset() == before
    # A second cleanup finds nothing and changes nothing.
    again = ok(node.calfwd("cleanup"))
    assert "nothing of calfwd's" in again.stdout and node.ruleset() == before


def test_cleanup_with_felix_rules_loaded(node):
    for name in ("cali40all-ipam-pools", "cali40masq-ipam-pools"):
        node.ns.run("ipset", "create", name, "hash:net")
    node.ns.run("iptables-nft-restore", input=(FIXTURES / "calico-iptables-save-1.txt").read_text())
    before = node.ruleset()
    assert "cali-" in before
    ok(node.calfwd("apply"))
    ok(node.calfwd("cleanup"))
    assert node.ruleset() == before


@pytest.mark.parametrize("damage", [
    "flush chain inet calfwd postrouting",
    "delete table inet calfwd",
    "flush set inet calfwd masq4",
    "add rule inet calfwd postrouting accept",
])
def test_drift_is_reported_and_repaired(node, damage):
    ok(node.calfwd("apply"))
    good = node.ruleset()
    node.nft(damage + "\n")
    status = node.calfwd("status")
    assert status.returncode == 1 and "nftables: drift" in status.stdout, status.stdout
    json_status = node.calfwd("status", "--json")
    assert json_status.returncode == 1 and '"in_sync": false' in json_status.stdout
    ok(node.calfwd("apply"))
    assert node.ruleset() == good
    ok(node.calfwd("status"))


def test_plan_changes_nothing(node):
    empty = node.ruleset()
    plan = node.calfwd("plan")
    assert plan.returncode == 1 and "table inet calfwd is missing" in plan.stdout
    assert node.ruleset() == empty


def test_changed_pools_are_applied(node):
    ok(node.calfwd("apply"))
    node.write_config('[calico]\nip_pools = ["198.18.128.0/20"]\nnat_outgoing = true\n')
    assert node.calfwd("status").returncode == 1
    ok(node.calfwd("apply"))
    text = node.ruleset()
    assert "198.18.128.0/20" in text and "198.18.64.0/20" not in text


def test_invalid_config_changes_nothing(node):
    ok(node.calfwd("apply"))
    good = node.ruleset()
    node.write_config('[calico]\nip_pools = ["198.18.128.1/20"]\nnat_outgoing = true\n')
    result = node.calfwd("apply")
    assert result.returncode == 2 and "host bits" in result.stderr and "Traceback" not in result.stderr
    assert node.ruleset() == good


def test_status_json_shape(node):
    ok(node.calfwd("apply"))
    import json
    data = json.loads(ok(node.calfwd("status", "--json")).stdout)
    assert data["in_sync"] is True
    layers = {layer["layer"]: layer for layer in data["layers"]}
    assert layers["nftables"]["in_sync"] and "disabled in the config" in layers["firewalld"]["note"]


# -- traffic: the point of the nftables layer ----------------------------------------------

@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_pod_egress_needs_calfwd_once_felix_nat_is_gone(lab, v6):
    """Felix's natOutgoing rule removed (as firewalld's flush does): only calfwd's table helps."""
    from lab.calfwd import Calfwd

    assert lab.pod_to_proxy(v6=v6), "the lab itself is broken: Calico alone should work"
    lab.calico.remove_nat_outgoing()
    assert not lab.pod_to_proxy(v6=v6), "pod egress works without any masquerade: the test proves nothing"
    calfwd = Calfwd(lab)
    result = calfwd.cli("apply")
    assert result.returncode == 0, result.stderr
    assert lab.pod_to_proxy(v6=v6)
    # Cleanup takes calfwd's table out again, and with it the pod's egress.
    assert calfwd.cli("cleanup").returncode == 0
    assert not lab.pod_to_proxy(v6=v6)
