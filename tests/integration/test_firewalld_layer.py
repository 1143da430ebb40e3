"""calfwd's firewalld layer against the real firewalld, on the lab's private bus.

The layer (driver + planner) runs inside the node namespace, where the private bus is,
as `python3 -c LAYER <command> <config>`; it prints what it planned and did as JSON. Reloads
are counted from firewalld's own `Reloaded` signal with dbus-monitor on the same bus.

Run: /usr/bin/python3 -m pytest -q tests/integration/test_firewalld_layer.py (as root).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Dict, List

import pytest

from lab import probe
from lab.wait import quiet_for, wait_until

REPO = Path(__file__).resolve().parents[2]
POOLS = '["198.18.64.0/20", "2001:db8:64::/64"]'

LAYER = r"""
import json, sys
import dbus
from calfwd.config import load
from calfwd.desired import desired
from calfwd.drivers.firewalld import Firewalld, FirewalldError
from calfwd.plan.firewalld import online as fp
from calfwd.plan.firewalld import cleanup as fc

command, path = sys.argv[1], sys.argv[2]
fw = Firewalld(dbus.SystemBus())
want = desired(load(path), fw.facts()).firewalld
make = fc.cleanup_plan if command == "cleanup" else fp.plan
plan = make(want, fw.read(want))
out = {"ops": [op.description for op in plan.ops], "kinds": [type(op).__name__ for op in plan.ops],
       "permanent": [op.permanent for op in plan.ops], "conflicts": list(plan.conflicts),
       "info": fw.info().__dict__}
if command != "plan":
    try:
        fw.apply(plan)
    except FirewalldError as exc:
        out["error"] = {"code": exc.code, "dbus_name": exc.dbus_name, "text": str(exc)}
    again = make(want, fw.read(want))
    out["after"] = [op.description for op in again.ops]
    out["after_conflicts"] = list(again.conflicts)
print(json.dumps(out))
"""


class Calfwd:
    """The firewalld layer in the lab's node namespace, plus what the tests observe."""

    def __init__(self, lab, tmp: Path):
        self.lab = lab
        self.fw = lab.firewalld
        self.config = tmp / "calfwd.toml"
        self.monitor_log = tmp / "reloaded.log"
        self.monitor = None
        self.write()

    def write(self, calico: str = "", firewalld: str = "") -> None:
        self.config.write_text(f"[calico]\nip_pools = {POOLS}\n{calico}\n[firewalld]\n{firewalld}\n")

    def run(self, command: str) -> Dict:
        proc = self.lab.node.run("/usr/bin/python3", "-c", LAYER, command, str(self.config),
                                 env={"PYTHONPATH": str(REPO)}, check=False, timeout=120)
        assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return json.loads(proc.stdout)

    def apply(self) -> Dict:
        out = self.run("apply")
        assert "error" not in out, out
        assert out["after"] == [], out
        return out

    def cmd(self, *args: str) -> str:
        return self.fw.firewall_cmd(*args)

    # -- observing ----------------------------------------------------------------------

    def watch_reloads(self) -> None:
        """dbus-monitor on the private bus, logging every Reloaded signal firewalld sends."""
        out = open(self.monitor_log, "w")
        self.monitor = self.lab.node.popen(
            "dbus-monitor", "--system",
            "type='signal',interface='org.fedoraproject.FirewallD1',member='Reloaded'",
            env=self.fw.env, stdout=out, stderr=subprocess.STDOUT)
        out.close()
        wait_until(lambda: "NameAcquired" in self.monitor_log.read_text(), 10, "dbus-monitor started",
                   interval=0.02)

    def reloads(self, expect: int = 0) -> int:
        """Reloaded signals seen so far: once `expect` of them were (within 2 s); with expect 0,
        after 0.3 s in which a stray one would have arrived (and none did)."""
        def count() -> int:
            return self.monitor_log.read_text().count("member=Reloaded")
        if expect:
            wait_until(lambda: count() >= expect, 2.0, f"{expect} Reloaded signal(s)", interval=0.02)
        else:
            seen = count()
            quiet_for(lambda: count() == seen, 0.3, "no stray Reloaded signal follows", interval=0.02)
        return count()

    def permanent_files(self) -> Dict[str, str]:
        """firewalld's permanent config directory, every file (backups included)."""
        return {str(p.relative_to(self.fw.config_dir)): p.read_text()
                for p in sorted(self.fw.config_dir.rglob("*")) if p.is_file()}

    def xml_files(self) -> Dict[str, str]:
        """The zone and policy XML files (firewalld keeps `.xml.old` backups; not ours)."""
        return {k: v for k, v in self.permanent_files().items() if k.endswith(".xml")}

    def zones(self, permanent: bool = False) -> List[str]:
        return self.cmd(*(["--permanent"] if permanent else []), "--get-zones").split()

    def policies(self, permanent: bool = False) -> List[str]:
        return self.cmd(*(["--permanent"] if permanent else []), "--get-policies").split()

    def info(self, kind: str, name: str, permanent: bool = False) -> Dict[str, str]:
        """`firewall-cmd --info-zone/--info-policy` as {key: value}."""
        text = self.cmd(*(["--permanent"] if permanent else []), f"--info-{kind}={name}")
        fields = {}
        for line in text.splitlines()[1:]:
            key, _, value = line.strip().partition(":")
            fields[key.strip()] = value.strip()
        return fields

    def bind_uplink(self) -> None:
        """What NetworkManager does on a real host: the uplink bound to the default zone."""
        self.cmd("--permanent", "--zone=public", "--add-interface=eth0")
        self.cmd("--zone=public", "--add-interface=eth0")


@pytest.fixture
def node(lab, tmp_path):
    lab.firewalld.start()
    calfwd = Calfwd(lab, tmp_path)
    calfwd.bind_uplink()
    calfwd.watch_reloads()
    yield calfwd


DEFAULT_INTERFACES = {"cali+", "tunl0", "vxlan.calico", "vxlan-v6.calico", "wireguard.cali", "wg-v6.cali"}


def words(text: str) -> set:
    """firewall-cmd prints lists space-separated and sorted its own way."""
    return set(text.split())


def assert_calfwd_objects(node, permanent: bool) -> None:
    zone = node.info("zone", "calfwd", permanent)
    assert zone["target"] == "ACCEPT"
    assert words(zone["interfaces"]) == DEFAULT_INTERFACES
    fwd = node.info("policy", "calfwd-forward", permanent)
    assert (fwd["ingress-zones"], fwd["egress-zones"], fwd["target"], fwd["priority"]) == (
        "ANY", "calfwd", "ACCEPT", "-1")
    host = node.info("policy", "calfwd-host", permanent)
    assert (host["ingress-zones"], host["egress-zones"], host["target"]) == ("public", "HOST", "CONTINUE")
    assert set(host["ports"].split()) == {"179/tcp", "5473/tcp", "4789/udp"}
    assert host["protocols"] == "4"


# ---------------------------------------------------------------------------------------


def test_apply_from_scratch_creates_zone_and_policies_with_one_reload(node):
    lab = node.lab
    out = node.apply()
    assert out["kinds"] == ["CreateZone", "CreatePolicy", "CreatePolicy", "Reload"], out
    assert out["conflicts"] == [] and out["after_conflicts"] == []
    assert out["info"] == {"running": True, "state": "RUNNING", "version": "1.3.3", "backend": "nftables",
                           "default_zone": "public"}
    assert node.reloads(expect=1) == 1
    for permanent in (True, False):
        assert_calfwd_objects(node, permanent)
    assert {"zones/calfwd.xml", "policies/calfwd-forward.xml", "policies/calfwd-host.xml"} <= set(node.xml_files())
    # IP-in-IP by number: firewalld accepts '4' and renders it as nft's protocol name.
    allow = lab.node.run("nft", "list", "chain", "inet", "firewalld", "filter_IN_policy_calfwd-host_allow").stdout
    assert "meta l4proto ipencap accept" in allow and "tcp dport 179 accept" in allow


@pytest.mark.parametrize("v6", [pytest.param(False, id="v4"), pytest.param(True, id="v6")])
def test_pod_traffic_and_host_ports_are_allowed_by_firewalld_itself(node, v6):
    lab = node.lab
    probe.start_echo_server(lab.node, 179)
    probe.start_echo_server(lab.node, 180)
    node_ip = lab.addr.node_v6 if v6 else lab.addr.node_v4
    # With the uplink bound to public, public's intra-zone forwarding would let traffic from
    # unbound interfaces (the default-zone catch-all, i.e. public) out of eth0: switch it off
    # (a hardened baseline, and firewalld 0.9's behaviour) so only calfwd's config can allow pods.
    node.cmd("--permanent", "--zone=public", "--remove-forward")
    node.cmd("--zone=public", "--remove-forward")
    lab.calico.restore()  # Felix's resync after firewalld's start flushed it
    assert not lab.pod_to_proxy(v6) and not lab.peer_to_pod(v6)
    assert not lab.connect(lab.peer, node_ip, 179)
    node.apply()
    lab.calico.restore()  # the one reload flushed Calico's iptables rules once more (firewalld 1.x)
    assert lab.pod_to_proxy(v6), "pod -> outside: ingress zone calfwd, target ACCEPT"
    assert lab.peer_to_pod(v6), "routed peer -> pod: policy ANY -> calfwd"
    assert lab.connect(lab.peer, node_ip, 179), "BGP: policy public -> HOST"
    assert not lab.connect(lab.peer, node_ip, 180), "only Calico's ports are opened"


def test_applying_again_is_a_no_op_without_reload(node):
    node.apply()
    node.cmd("--zone=work", "--add-port=9/tcp")  # runtime-only marker: a reload would drop it
    before = node.reloads(expect=1)
    files = node.permanent_files()
    out = node.run("apply")
    assert out["ops"] == [] and out["after"] == [] and out["conflicts"] == []
    assert node.run("plan")["ops"] == []
    assert node.reloads() == before == 1
    assert node.cmd("--zone=work", "--query-port=9/tcp").strip() == "yes"
    assert node.permanent_files() == files


def test_changed_config_changes_only_the_difference_without_reload(node):
    node.apply()
    node.cmd("--zone=work", "--add-port=9/tcp")
    before = node.reloads(expect=1)
    node.write(calico='interfaces = ["cali+", "tunl0", "ovl8"]\nhost_ports = ["bgp", "ipip", "wireguard"]')
    out = node.apply()
    assert "Reload" not in out["kinds"] and "CreateZone" not in out["kinds"], out
    assert "add interface ovl8 to zone 'calfwd' (permanent)" in out["ops"]
    assert "add interface ovl8 to zone 'calfwd' (runtime)" in out["ops"]
    assert "remove interface vxlan.calico from zone 'calfwd' (runtime): not in calfwd's config" in out["ops"]
    assert [op for op in out["ops"] if "policy" in op] == [
        "update policy 'calfwd-host' (permanent): ports +51820-51821/udp -4789/udp -5473/tcp",
        "update policy 'calfwd-host' (runtime): ports +51820-51821/udp -4789/udp -5473/tcp",
    ]
    assert node.reloads() == before
    assert node.cmd("--zone=work", "--query-port=9/tcp").strip() == "yes"
    for permanent in (True, False):
        assert words(node.info("zone", "calfwd", permanent)["interfaces"]) == {"cali+", "tunl0", "ovl8"}
        assert set(node.info("policy", "calfwd-host", permanent)["ports"].split()) == {"179/tcp", "51820-51821/udp"}


def test_firewalld_reload_and_restart_restore_everything_by_themselves(node):
    node.apply()
    node.fw.reload()
    assert node.run("plan")["ops"] == []
    assert_calfwd_objects(node, permanent=False)
    node.fw.restart()
    assert node.run("plan")["ops"] == []
    assert_calfwd_objects(node, permanent=False)


def test_runtime_mode_never_writes_permanent_config(node):
    # Runtime mode cannot create policies: an admin made them (empty) beforehand.
    node.cmd("--permanent", "--new-policy=calfwd-forward")
    node.cmd("--permanent", "--policy=calfwd-forward", "--add-ingress-zone=ANY")
    node.cmd("--permanent", "--policy=calfwd-forward", "--add-egress-zone=trusted")
    # A stock zone: forwarding to the pools only (rich rules calfwd adds), not ACCEPT into it.
    node.cmd("--permanent", "--policy=calfwd-forward", "--set-target=CONTINUE")
    node.cmd("--permanent", "--new-policy=calfwd-host")
    node.cmd("--permanent", "--policy=calfwd-host", "--add-ingress-zone=public")
    node.cmd("--permanent", "--policy=calfwd-host", "--add-egress-zone=HOST")
    node.fw.reload()
    before_reloads = node.reloads(expect=1)
    node.write(firewalld='mode = "runtime"\nzone = "trusted"')
    files = node.permanent_files()
    out = node.apply()
    assert not any(out["permanent"]) and "Reload" not in out["kinds"], out
    assert out["conflicts"] == []
    assert node.permanent_files() == files
    assert node.reloads() == before_reloads
    assert words(node.info("zone", "trusted")["interfaces"]) == DEFAULT_INTERFACES
    assert set(node.info("policy", "calfwd-host")["ports"].split()) == {"179/tcp", "5473/tcp", "4789/udp"}
    assert node.info("zone", "trusted", permanent=True)["interfaces"] == ""
    assert node.info("policy", "calfwd-host", permanent=True)["ports"] == ""

    node.fw.reload()  # runtime changes are gone until calfwd applies them again
    assert node.info("zone", "trusted")["interfaces"] == ""
    assert len(node.run("plan")["ops"]) == 8  # 6 interfaces, 2 policies
    node.apply()
    assert words(node.info("zone", "trusted")["interfaces"]) == DEFAULT_INTERFACES
    assert node.permanent_files() == files


def test_runtime_mode_reports_what_only_permanent_mode_can_create(node):
    node.write(firewalld='mode = "runtime"')
    files = node.permanent_files()
    out = node.run("apply")
    assert out["ops"] == [] and "error" not in out
    assert any("zone 'calfwd' does not exist" in c and 'mode = "permanent"' in c and "trusted" in c
               for c in out["conflicts"]), out["conflicts"]
    assert any("policy 'calfwd-host' does not exist" in c for c in out["conflicts"])
    assert node.permanent_files() == files and node.reloads() == 0


def test_interface_an_admin_bound_elsewhere_is_reported_not_moved(node):
    node.cmd("--permanent", "--zone=internal", "--add-interface=tunl0")
    node.cmd("--zone=internal", "--add-interface=tunl0")
    out = node.run("apply")
    assert "error" not in out and out["after"] == []
    [conflict] = out["conflicts"]
    assert "tunl0" in conflict and "'internal'" in conflict and "'calfwd'" in conflict
    assert out["after_conflicts"] == out["conflicts"]
    for permanent in (True, False):
        assert node.info("zone", "internal", permanent)["interfaces"] == "tunl0"
        assert "tunl0" not in node.info("zone", "calfwd", permanent)["interfaces"].split()
    assert node.run("apply")["ops"] == []


def test_cleanup_removes_exactly_what_calfwd_made(node):
    zones, policies, xml = node.zones(), node.policies(), node.xml_files()
    node.apply()
    assert "calfwd" in node.zones() and "calfwd-host" in node.policies()
    out = node.run("cleanup")
    assert out["kinds"] == ["RemovePolicy", "RemovePolicy", "RemoveZone", "Reload"] and out["after"] == []
    for permanent in (True, False):
        assert node.zones(permanent) == zones and node.policies(permanent) == policies
    assert node.xml_files() == xml
    assert node.run("cleanup")["ops"] == []


def test_cleanup_in_trusted_mode_leaves_the_zones_other_entries_as_they_were(node):
    for flag in ("--permanent", None):
        args = [flag] if flag else []
        node.cmd(*args, "--zone=trusted", "--add-interface=eth5")
        node.cmd(*args, "--zone=trusted", "--add-source=198.18.200.0/24")
        node.cmd(*args, "--zone=trusted", "--add-service=ssh")
    before = {p: node.cmd(*(["--permanent"] if p else []), "--info-zone=trusted") for p in (True, False)}
    node.write(firewalld='zone = "trusted"')
    out = node.apply()
    assert not any(k in out["kinds"] for k in ("CreateZone", "UpdateZone", "RemoveFromZone")), out
    for permanent in (True, False):
        zone = node.info("zone", "trusted", permanent)
        assert words(zone["interfaces"]) == {"eth5"} | DEFAULT_INTERFACES
        assert (zone["sources"], zone["services"], zone["target"]) == ("198.18.200.0/24", "ssh", "ACCEPT")
    assert node.info("policy", "calfwd-forward")["egress-zones"] == "trusted"
    out = node.run("cleanup")
    assert "error" not in out and out["after"] == []
    after = {p: node.cmd(*(["--permanent"] if p else []), "--info-zone=trusted") for p in (True, False)}
    assert after == before
    assert "calfwd-forward" not in node.policies() and "calfwd-forward" not in node.policies(permanent=True)


def test_firewalld_restart_between_calls_needs_no_new_client(node):
    """The driver addresses the well-known name on every call: a new owner is just used."""
    script = r"""
import sys, dbus
from calfwd.config import load
from calfwd.desired import desired
from calfwd.drivers.firewalld import Firewalld
fw = Firewalld(dbus.SystemBus(), timeout=10)
print(fw.state(), flush=True)
sys.stdin.readline()  # the test restarts firewalld here
want = desired(load(sys.argv[1]), fw.facts()).firewalld
print(fw.state(), fw.read(want).zone.runtime is not None, flush=True)
"""
    node.apply()
    proc = node.lab.node.popen("/usr/bin/python3", "-c", script, str(node.config),
                               env={"PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "RUNNING"
    node.fw.restart()
    out, err = proc.communicate("go\n", timeout=60)
    assert out.strip() == "RUNNING True", err


RACE = r"""
import json, subprocess, sys
import dbus
from calfwd.config import load
from calfwd.desired import desired
from calfwd.drivers.firewalld import Firewalld, FirewalldError
from calfwd.plan.firewalld import online as fp

fw = Firewalld(dbus.SystemBus())
want = desired(load(sys.argv[1]), fw.facts()).firewalld
plan = fp.plan(want, fw.read(want))
# An admin binds tunl0 between calfwd's read and its apply.
subprocess.run(["firewall-cmd", "--zone=internal", "--add-interface=tunl0"], check=True, capture_output=True)
try:
    fw.apply(plan)
    print(json.dumps({"error": None}))
except FirewalldError as exc:
    print(json.dumps({"code": exc.code, "dbus_name": exc.dbus_name, "text": str(exc)}))
"""


def test_a_binding_made_between_plan_and_apply_fails_clearly(node):
    node.apply()
    node.cmd("--zone=calfwd", "--remove-interface=tunl0")  # runtime drift calfwd will repair
    proc = node.lab.node.run("/usr/bin/python3", "-c", RACE, str(node.config),
                             env={"PYTHONPATH": str(REPO)}, check=False, timeout=60)
    out = json.loads(proc.stdout)
    assert out["code"] == "ZONE_CONFLICT" and out["dbus_name"] == "org.fedoraproject.FirewallD1.Exception"
    assert "tunl0" in out["text"] and "'internal'" in out["text"] and "'calfwd'" in out["text"]
    assert node.info("zone", "internal")["interfaces"] == "tunl0"


NOT_RUNNING = r"""
import dataclasses, json, dbus
from calfwd.drivers.firewalld import Firewalld
fw = Firewalld(dbus.SystemBus(), timeout=2)
print(json.dumps([fw.state(), fw.running(), dataclasses.asdict(fw.info()), dataclasses.asdict(fw.facts())]))
"""


def test_facts_when_firewalld_is_not_on_the_bus(node):
    node.fw.stop()
    proc = node.lab.node.run("/usr/bin/python3", "-c", NOT_RUNNING, env={"PYTHONPATH": str(REPO)}, timeout=60)
    state, running, info, facts = json.loads(proc.stdout)
    assert state is None and running is False and info["running"] is False and info["state"] == ""
    assert {k: facts[k] for k in ("firewalld_running", "firewalld_version", "default_zone", "firewalld_state")} \
        == {"firewalld_running": False, "firewalld_version": "", "default_zone": "public", "firewalld_state": ""}
    assert facts["cni"]["kind"] == "calico"  # the driver never judges the CNI; reconcile does
