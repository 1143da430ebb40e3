"""ip_pools = "auto" in the lab: the one-line config that fits every node of every cluster.

calfwd reads the pools, and which of them have natOutgoing, from Felix's own sets: kernel ip
sets as CalicoSim creates them (Felix's iptables dataplane), or the sets of Felix's `ip calico`
table (its nftables dataplane, loaded from the real dump). Without "auto" the config is
refused, so every test here fails without the feature.
"""

from __future__ import annotations

import ipaddress
import json
import signal
from pathlib import Path

import pytest

from lab import Lab, incident, unavailable
from lab.calfwd import Calfwd
from lab.calico import load_nft_dataplane
from lab.felix import set_commands

AUTO = '[calico]\nip_pools = "auto"\n'
FAST = AUTO + "[daemon]\nresync_interval = 1\n"


@pytest.fixture
def bare_lab(tmp_path):
    """The lab before Felix has run on the node: no ip sets, no Calico rules."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with Lab(tmp_path, calico=False) as built:
        yield built


def calfwd_sets(lab) -> dict:
    """calfwd's own table: set name -> members as nft prints them."""
    out = lab.node.run("nft", "-j", "list", "table", "inet", "calfwd").stdout
    sets = {}
    for obj in json.loads(out)["nftables"]:
        body = obj.get("set")
        if body and body["name"] != "calfwd_managed":
            sets[body["name"]] = sorted(_member(e) for e in body.get("elem", ()))
    return sets


def _member(elem) -> str:
    if isinstance(elem, dict) and "prefix" in elem:
        return "%s/%s" % (elem["prefix"]["addr"], elem["prefix"]["len"])
    return str(elem)


def test_iptables_dataplane_pools_from_ip_sets_survive_reloads(lab):
    """The incident with the one-line config: Felix's ip sets give both pools and their
    natOutgoing; firewalld's reload flushes Felix's rules and pod egress still works."""
    lab.firewalld.start()
    calfwd = Calfwd(lab, AUTO)
    calfwd.start()
    changed = calfwd.wait_for("pools-changed")
    assert f"{lab.addr.pool_v4} (natOutgoing)" in changed[0] and f"{lab.addr.pool_v6} (natOutgoing)" in changed[0]
    assert calfwd_sets(lab) == {"pools4": [lab.addr.pool_v4], "masq4": [lab.addr.pool_v4],
                                "pools6": [lab.addr.pool_v6], "masq6": [lab.addr.pool_v6]}
    for i in range(2):
        lab.firewalld.reload()
        assert not lab.calico.present(), "firewalld 1.x flushes Felix's rules on reload"
        assert lab.pod_reaches_proxy(), f"pod -> proxy broken after reload {i + 1}"
        assert lab.pod_reaches_proxy(v6=True), f"pod -> proxy (IPv6) broken after reload {i + 1}"
        assert lab.peer_reaches_pod(), f"peer -> pod broken after reload {i + 1}"
    assert len(calfwd.events("pools-changed")) == 1, "said once, not at every reconcile"
    assert calfwd.events("pools-unknown") == []
    plan = calfwd.cli("plan")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert f"pools: auto -> {lab.addr.pool_v4} (natOutgoing), {lab.addr.pool_v6} (natOutgoing) " \
           "(Felix's ip sets)" in plan.stdout
    doctor = calfwd.cli("doctor")
    assert f'ip_pools = "auto" follows Felix\'s sets: {lab.addr.pool_v4} (natOutgoing)' in doctor.stdout, doctor.stdout
    assert calfwd.stop() == 0
    # doctor's other checks judge the pools calfwd uses: here Felix's IPv6 pool needs forwarding.
    lab.node.sysctl("net.ipv6.conf.all.forwarding", 0)
    doctor = calfwd.cli("doctor")
    assert "ERROR   forwarding: net.ipv6.conf.all.forwarding = 0: the kernel forwards no IPv6 packet" in doctor.stdout, \
        doctor.stdout


def test_nftables_dataplane_pools_from_felix_table(bare_lab):
    """Felix's native dataplane, from the real dump: the sets of `table ip calico`."""
    lab = bare_lab
    load_nft_dataplane(lab.node)  # cali40all-ipam-pools and cali40masq-ipam-pools = 192.168.0.0/16
    calfwd = Calfwd(lab, AUTO + "[firewalld]\nenabled = false\n")
    check = calfwd.cli("check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "pools: auto -> 192.168.0.0/16 (natOutgoing) (Felix's nftables sets)" in check.stdout
    applied = calfwd.cli("apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "pools: auto -> 192.168.0.0/16 (natOutgoing) (Felix's nftables sets)" in applied.stdout
    assert calfwd_sets(lab) == {"pools4": ["192.168.0.0/16"], "masq4": ["192.168.0.0/16"],
                                "pools6": [], "masq6": []}
    # A second pool without natOutgoing, as Felix writes it into its sets.
    cmds = set_commands("cali40all-ipam-pools", ("192.168.0.0/16", lab.addr.pool_v4))
    lab.node.run("nft", "-j", "-f", "-", input=json.dumps({"nftables": cmds}))
    status = calfwd.cli("status")
    assert status.returncode == 1, status.stdout + status.stderr  # drift: the new pool
    applied = calfwd.cli("apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert calfwd_sets(lab)["pools4"] == sorted(["192.168.0.0/16", lab.addr.pool_v4])
    assert calfwd_sets(lab)["masq4"] == ["192.168.0.0/16"]
    status = calfwd.cli("status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["pools"]["nat_outgoing"] == ["192.168.0.0/16"]


def test_a_felix_set_of_refused_members_keeps_the_pools_and_natoutgoing(bare_lab):
    """Felix's natOutgoing set holding only 0.0.0.0/0 (no pod network can be that): refusing
    it would take natOutgoing away. calfwd keeps what it applied and names the member."""
    lab = bare_lab
    load_nft_dataplane(lab.node)  # cali40all-ipam-pools and cali40masq-ipam-pools = 192.168.0.0/16
    calfwd = Calfwd(lab, AUTO + "[firewalld]\nenabled = false\n")
    applied = calfwd.cli("apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    before = calfwd_sets(lab)
    assert before["masq4"] == ["192.168.0.0/16"]
    cmds = set_commands("cali40masq-ipam-pools", ("0.0.0.0/0",))
    lab.node.run("nft", "-j", "-f", "-", input=json.dumps({"nftables": cmds}))
    applied = calfwd.cli("apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert calfwd_sets(lab) == before, "natOutgoing kept"
    assert ("cannot read Felix's sets: cali40masq-ipam-pools in Felix's nftables sets holds only "
            "'0.0.0.0/0', which no pod network can be") in applied.stdout, applied.stdout
    assert "empty" not in applied.stdout, applied.stdout


def test_daemon_follows_a_pool_added_to_felix_sets(lab):
    """No restart, no SIGHUP: the next resync reads Felix's sets again."""
    calfwd = Calfwd(lab, FAST + "[firewalld]\nenabled = false\n")
    calfwd.start()
    calfwd.wait_for("pools-changed")
    mark = calfwd.line_count()
    lab.node.run("ipset", "add", "cali40all-ipam-pools", "198.18.96.0/20")
    lab.node.run("ipset", "add", "cali40masq-ipam-pools", "198.18.96.0/20")
    changed = calfwd.wait_for("pools-changed", after=mark, timeout=10)
    assert "198.18.96.0/20 (natOutgoing)" in changed[0]
    assert calfwd_sets(lab)["pools4"] == sorted([lab.addr.pool_v4, "198.18.96.0/20"])
    assert calfwd_sets(lab)["masq4"] == sorted([lab.addr.pool_v4, "198.18.96.0/20"])
    assert calfwd.running and calfwd.stop() == 0


def test_before_felix_has_run(bare_lab):
    """No sets yet: calfwd's table masquerades nothing, one clear event, firewalld's layer is
    applied anyway; once Felix has run the pools follow and the incident is covered."""
    lab = bare_lab
    lab.firewalld.start()
    calfwd = Calfwd(lab, FAST)
    calfwd.start()
    unknown = calfwd.wait_for("pools-unknown")
    assert "Felix's sets not found" in unknown[0] and "masquerades no pod traffic" in unknown[0]
    assert calfwd_sets(lab) == {"pools4": [], "masq4": [], "pools6": [], "masq6": []}
    assert "calfwd" in lab.firewalld.firewall_cmd("--get-zones").split()
    calfwd.wait_resyncs(2)  # each finding no sets, none saying so again
    mark = calfwd.line_count()
    calfwd.signal(signal.SIGHUP)  # and a reconcile that is said
    calfwd.wait_for("reconciled", after=mark, timeout=10)
    assert len(calfwd.events("pools-unknown")) == 1, "said once per state, not per reconcile"
    assert calfwd.events("reconcile-failed") == [] and calfwd.running
    status = calfwd.cli("status")
    assert "pools: auto: Felix's sets not found" in status.stdout, status.stdout

    mark = calfwd.line_count()
    lab.calico.install()  # Felix has run: ip sets and rules
    calfwd.wait_for("pools-changed", after=mark, timeout=10)
    lab.firewalld.reload()
    assert lab.pod_reaches_proxy() and lab.peer_reaches_pod()
    assert calfwd.stop() == 0


def test_felix_sets_destroyed_keep_the_pools_and_natoutgoing(lab):
    """Pools known, then Felix's ip sets are gone (calico-node uninstalled or reinstalled: its
    rules first, then its sets): that is no word that the pools are gone. calfwd's table stays
    as it was, pod egress still works through it, and the journal says so once."""
    calfwd = Calfwd(lab, FAST + "[firewalld]\nenabled = false\n")
    calfwd.start()
    calfwd.wait_for("pools-changed")
    before = calfwd_sets(lab)
    assert before["masq4"] == [lab.addr.pool_v4] and before["masq6"] == [lab.addr.pool_v6]
    mark = calfwd.line_count()
    for family in lab.calico.families:
        tool = "%s-%s" % ("iptables" if family == 4 else "ip6tables", lab.calico.variant)
        for table in ("raw", "mangle", "nat", "filter"):
            lab.node.run(tool, "-w", "-t", table, "-F", check=False)
            lab.node.run(tool, "-w", "-t", table, "-X", check=False)
        for kind in ("all-ipam-pools", "masq-ipam-pools"):
            lab.node.run("ipset", "destroy", "cali%d0%s" % (family, kind))
    assert not lab.calico.present()
    unknown = calfwd.wait_for("pools-unknown", after=mark, timeout=10)
    calfwd.wait_resyncs(2)  # more resyncs, each finding the sets absent
    assert calfwd_sets(lab) == before
    assert lab.pod_reaches_proxy(), "pod -> proxy: calfwd's natOutgoing is the only one left"
    assert lab.pod_reaches_proxy(v6=True), "pod -> proxy (IPv6)"
    assert "Felix's sets not found" in unknown[0] and "keeping the pools" in unknown[0], unknown[0]
    assert len(calfwd.events("pools-unknown")) == 1, "said once, not at every resync"
    npd = (Path(calfwd.env["CALFWD_RUN_DIR"]) / "health").read_text()
    assert npd.startswith("warning WARNING: pools: Felix's sets not found"), npd
    assert calfwd.events("reconcile-failed") == [] and calfwd.stop() == 0


def test_a_felix_pool_holding_the_nodes_address_is_never_a_trusted_source(lab):
    """trust_pool_sources with "auto": a pool that holds the node's own LAN address (nobody wrote
    it into calfwd's file) would make the whole LAN a trusted source. The daemon leaves it out
    of the zone's sources and says so once."""
    lan = str(ipaddress.ip_interface("%s/%d" % (lab.addr.node_v4, lab.addr.lan_prefix_v4)).network)
    lab.firewalld.start()
    calfwd = Calfwd(lab, FAST + "[firewalld]\ntrust_pool_sources = true\nflush_guard = false\n")
    calfwd.start()
    calfwd.wait_for("pools-changed")
    mark = calfwd.line_count()
    lab.node.run("ipset", "add", "cali40all-ipam-pools", lan)
    calfwd.wait_for("pools-changed", after=mark, timeout=10)
    conflict = calfwd.wait_for("conflict", after=mark, timeout=10)
    assert f"Felix's pool {lan}" in conflict[0] and f"contains {lab.addr.node_v4}" in conflict[0], conflict[0]
    calfwd.wait_resyncs(2)  # each judging the pool again, none saying so again
    sources = lab.firewalld.firewall_cmd("--zone=calfwd", "--list-sources").split()
    assert lan not in sources and lab.addr.pool_v4 in sources, sources
    assert len([e for e in calfwd.events("conflict") if lan in e]) == 1, "said once"
    assert calfwd.events("reconcile-failed") == [] and calfwd.stop() == 0


def test_daemon_follows_felix_nft_sets_on_kernel_events(bare_lab):
    """Felix's nftables dataplane: a pool added to its set is on the nft monitor, so the daemon
    follows it at once, long before its (hour-long, here) resync."""
    lab = bare_lab
    load_nft_dataplane(lab.node)
    calfwd = Calfwd(lab, AUTO + "[firewalld]\nenabled = false\n[daemon]\nresync_interval = 3600\n")
    calfwd.start()
    calfwd.wait_for("pools-changed")
    calfwd.wait_monitor_listening()
    mark = calfwd.line_count()
    cmds = set_commands("cali40all-ipam-pools", ("192.168.0.0/16", lab.addr.pool_v4))
    lab.node.run("nft", "-j", "-f", "-", input=json.dumps({"nftables": cmds}))
    changed = calfwd.wait_for("pools-changed", after=mark, timeout=5)
    assert f"192.168.0.0/16 (natOutgoing), {lab.addr.pool_v4} (Felix's nftables sets)" in changed[0]
    assert calfwd_sets(lab)["pools4"] == sorted(["192.168.0.0/16", lab.addr.pool_v4])
    assert calfwd.stop() == 0


# -- the incident with the one-line config (issue 13 item 1's acceptance) ----------------------

@pytest.mark.parametrize("incident", incident.SCENARIOS, ids=lambda case: case.__name__)
def test_the_incident_with_the_same_one_line_config_as_every_node(lab, monkeypatch, incident):
    """The incident's scenarios (tests/lab/incident.py, test_incident.py's), unchanged, with `ip_pools = "auto"` as the whole config."""
    monkeypatch.setenv("CALFWD_LAB_POOLS", "auto")
    incident(lab)
    assert (lab.workdir / "calfwd.toml").read_text() == AUTO, "the scenario ran on the one-line config"
