"""doctor's findings for firewalld 2.x's knobs and nftables.service beside firewalld (issue 22):
each fires on the releases that have the knob and stays silent on the others."""

from __future__ import annotations

import os

import pytest

from calfwd.doctor import checks as doctor
from calfwd.doctor import reads
from calfwd.doctor.findings import ERROR, INFO, OK, UNKNOWN, WARNING
from calfwd.doctor.ruleset_checks import parse_reload_policy
from calfwd.doctor.snapshot import FirewalldState, HostSnapshot, Read

from fakes.host import fw, healthy, old


def findings(snap: HostSnapshot, check: str) -> list:
    return [f for f in doctor.diagnose(snap).findings if f.check == check]


def v(version: str, **changes) -> HostSnapshot:
    """A healthy node running firewalld `version`."""
    return healthy(firewalld=fw(version=version), installed_version=version, **changes)


# -- ReloadPolicy (2.1+) ------------------------------------------------------------------


@pytest.mark.parametrize("value, verdict", [
    (None, "DROP"), ("", "DROP"), ("accept", "ACCEPT"), ("INPUT:DROP,FORWARD:ACCEPT,OUTPUT:DROP", "ACCEPT"),
    ("forward=reject", "REJECT"), ("INPUT:ACCEPT", "DROP"), ("FORWARD:ACCEPT;OUTPUT:REJECT", "ACCEPT")])
def test_reload_policy_parses_as_firewalld_does(value, verdict):
    parsed = parse_reload_policy(value)
    assert parsed is not None and parsed["FORWARD"] == verdict


@pytest.mark.parametrize("value", ["FORWARD:MAYBE", "SIDEWAYS:DROP", "FORWARD"])
def test_reload_policy_invalid_is_none(value):
    assert parse_reload_policy(value) is None


def test_reload_policy_default_on_2_1_drops_forwarded_traffic_during_a_reload():
    [f] = findings(v("2.1.0"), "reload-policy")
    assert f.severity == INFO and "default" in f.saw and "dropped during a reload" in f.saw
    assert "firewalld_policy_drop" in f.why and "new forwarded connection" in f.why
    assert "FORWARD:ACCEPT" in f.fix and "calfwd never sets it" in f.fix and "unchecked" in f.fix
    assert doctor.diagnose(v("2.1.0")).exit_code == 0


def test_reload_policy_reject_is_a_warning_and_accept_is_said():
    [f] = findings(v("2.3.1", firewalld_conf={"ReloadPolicy": "FORWARD:REJECT"}), "reload-policy")
    assert f.severity == WARNING and "rejected" in f.saw and "FORWARD:DROP" in f.fix
    [f] = findings(v("2.3.1", firewalld_conf={"ReloadPolicy": "INPUT:DROP,FORWARD:ACCEPT,OUTPUT:DROP"}),
                   "reload-policy")
    assert f.severity == INFO and "passes during a reload" in f.saw and "calfwd never sets it" in f.why
    [f] = findings(v("2.3.1", firewalld_conf={"ReloadPolicy": "FORWARD:NOPE"}), "reload-policy")
    assert f.severity == INFO and "not valid" in f.saw and "dropped" in f.saw


@pytest.mark.parametrize("version", ["0.9.3", "1.3.3", "2.0.2"])
def test_reload_policy_silent_before_2_1(version):
    snap = v(version, firewalld_conf={"ReloadPolicy": "FORWARD:REJECT"})
    assert findings(snap, "reload-policy") == []


def test_reload_policy_stopped_firewalld_uses_the_installed_version_or_the_file():
    stopped = FirewalldState()
    assert findings(healthy(firewalld=stopped, installed_version="2.3.1"), "reload-policy")[0].severity == INFO
    assert findings(healthy(firewalld=stopped, installed_version="1.3.3"), "reload-policy") == []
    assert findings(healthy(firewalld=stopped, installed_version=""), "reload-policy") == []
    named = healthy(firewalld=stopped, installed_version="", firewalld_conf={"ReloadPolicy": "REJECT"})
    assert findings(named, "reload-policy")[0].severity == WARNING


def test_reload_policy_unreadable_conf_is_unknown():
    [f] = findings(v("2.3.1", unknown={Read.FIREWALLD_CONF: "Permission denied"}), "reload-policy")
    assert f.severity == UNKNOWN and "Permission denied" in f.saw


# -- NftablesFlowtable (2.0+) ---------------------------------------------------------------


@pytest.mark.parametrize("devices, named", [
    ("eth0", "eth0 (the uplink)"), ("cali0123456789a eth1", "cali0123456789a"), ("tunl0", "tunl0"),
    ("vxlan.calico", "vxlan.calico"), ("wireguard.cali", "wireguard.cali"), ("flannel.1", "flannel.1"),
    ("cni0", "cni0")])
def test_flowtable_on_pod_devices_or_the_uplink_warns(devices, named):
    [f] = findings(v("2.0.0", firewalld_conf={"NftablesFlowtable": devices}), "flowtable")
    assert f.severity == WARNING and named in f.saw
    assert "postrouting" in f.why and "natOutgoing" in f.why and "NftablesFlowtable=off" in f.fix


def test_flowtable_elsewhere_off_or_before_2_0_is_quiet():
    [f] = findings(v("2.3.1", firewalld_conf={"NftablesFlowtable": "eth1 eth2"}), "flowtable")
    assert f.severity == OK
    assert findings(v("2.3.1", firewalld_conf={"NftablesFlowtable": "off"}), "flowtable") == []
    assert findings(v("2.3.1"), "flowtable") == []
    assert findings(v("1.3.3", firewalld_conf={"NftablesFlowtable": "eth0"}), "flowtable") == []
    assert findings(old(firewalld_conf={"NftablesFlowtable": "cali+"}), "flowtable") == []


# -- direct rules and who made them -------------------------------------------------------


F2B = ("runtime chain ipv4 filter f2b-sshd",
       "runtime rule ipv4 filter INPUT_direct -p tcp -m multiport --dports ssh -m set --match-set f2b-sshd "
       "src -j f2b-sshd")


def test_fail2ban_direct_rules_on_2x_name_fail2ban_and_its_rich_rules_action():
    [f] = findings(healthy(firewalld=fw(runtime_direct=F2B)), "direct-rules")
    assert f.severity == WARNING and "made by fail2ban: chain(s) f2b-sshd" in f.saw
    assert "switch it back on" in f.why
    assert "banaction = firewallcmd-rich-rules" in f.fix and "systemctl restart fail2ban" in f.fix
    flush = findings(healthy(firewalld=fw(runtime_direct=F2B)), "flush")
    assert [x.severity for x in flush] == [WARNING]


def test_fail2ban_on_1x_is_named_too_and_comments_name_other_owners():
    [f] = findings(old(permanent_direct=("permanent chain ipv4 filter f2b-nginx",)), "direct-rules")
    assert f.severity == INFO and "fail2ban" in f.saw and "firewallcmd-rich-rules" in f.fix
    rule = 'permanent rule ipv4 filter INPUT 0 -p tcp --dport 9 -m comment --comment "backup agent" -j ACCEPT'
    [f] = findings(healthy(permanent_direct=(rule,)), "direct-rules")
    assert "made by comment 'backup agent'" in f.saw and "fail2ban" not in f.fix
    [f] = findings(healthy(permanent_direct=("permanent chain ipv4 filter mine",)), "direct-rules")
    assert "made by" not in f.saw


# -- nftables.service beside firewalld ----------------------------------------------------


WANTS = ("/etc/systemd/system/sysinit.target.wants/nftables.service",)


def test_nftables_service_enabled_beside_firewalld_warns():
    [f] = findings(healthy(nftables_service=WANTS), "nftables-service")
    assert f.severity == WARNING and "sysinit.target.wants" in f.saw
    assert "flush ruleset" in f.why and "firewalld's, Calico's (Felix's) and calfwd's" in f.why
    assert "calfwd restores its own table" in f.why and "not firewalld's" in f.why
    assert "systemctl disable nftables" in f.fix and "without --now" in f.fix
    for version in ("0.9.3", "1.3.3"):  # not a firewalld knob: every release
        assert findings(v(version, nftables_service=WANTS), "nftables-service")[0].severity == WARNING


def test_nftables_service_without_firewalld_or_disabled_is_quiet():
    assert findings(healthy(), "nftables-service") == []
    alone = healthy(firewalld=FirewalldState(), installed_version="", nftables_service=WANTS)
    assert findings(alone, "nftables-service") == []
    [f] = findings(healthy(unknown={Read.NFTABLES_SERVICE: "boom"}), "nftables-service")
    assert f.severity == UNKNOWN


def test_read_nftables_service_follows_the_wants_links(tmp_path):
    assert reads.read_nftables_service(str(tmp_path)) == ()
    for target in ("sysinit.target.wants", "multi-user.target.wants"):
        (tmp_path / target).mkdir()
        os.symlink("/lib/systemd/system/nftables.service", tmp_path / target / "nftables.service")
    found = reads.read_nftables_service(str(tmp_path))
    assert [os.path.basename(os.path.dirname(p)) for p in found] == ["sysinit.target.wants", "multi-user.target.wants"]
    os.symlink(os.devnull, tmp_path / "nftables.service")  # masked
    assert reads.read_nftables_service(str(tmp_path)) == ()


# -- StrictForwardPorts ------------------------------------------------------------------------


def test_strict_forward_ports_blocks_all_service_traffic():
    [f] = findings(healthy(firewalld=fw(strict_forward_ports="yes")), "strict-forward-ports")
    assert f.severity == ERROR and "all Service traffic" in f.why and "ClusterIP" in f.why
    assert "NodePorts" in f.why and "hostPorts" in f.why
