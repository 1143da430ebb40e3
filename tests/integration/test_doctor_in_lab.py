"""`calfwd doctor` on the lab's node: real firewalld 1.3.3 on the private bus, real nftables,
Calico simulated from Felix's rules. It runs as the plain CLI in the node namespace."""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest

from calfwd.judge import guard
from lab.calfwd import PYTHON, Calfwd


def prepare(lab, config=None):
    calfwd = Calfwd(lab, config)
    calfwd.env[guard.DROPIN_ENV] = str(lab.workdir / "guard.conf")
    calfwd.env["CALFWD_FIREWALLD_DIR"] = str(lab.firewalld.config_dir)
    systemd = lab.workdir / "systemd"  # where doctor looks for nftables.service's wants links
    systemd.mkdir(exist_ok=True)
    calfwd.env["CALFWD_SYSTEMD_DIR"] = str(systemd)
    return calfwd


def doctor(calfwd):
    result = calfwd.cli("doctor", "--json")
    assert result.stderr == "", result.stderr
    report = json.loads(result.stdout)
    assert report["exit_code"] == result.returncode
    return report


def by_check(report, check):
    return [f for f in report["findings"] if f["check"] == check]


def severities(report, check):
    return [f["severity"] for f in by_check(report, check)]


def test_firewalld_stopped_1x_flushes_calico(lab):
    calfwd = prepare(lab)
    result = calfwd.cli("doctor")
    assert result.returncode == 1, result.stdout
    lines = result.stdout.splitlines()
    assert lines and all(line.split()[0] in ("OK", "INFO", "WARNING", "ERROR", "UNKNOWN") for line in lines)
    flush = [line for line in lines if line.startswith("WARNING flush:")]
    assert flush and "firewalld 1.3.3" in flush[0] and "calfwd guard enable" in flush[0]
    report = doctor(calfwd)
    assert severities(report, "firewalld") == ["info"]
    assert severities(report, "calfwd-state") == ["warning"]  # nothing applied yet
    assert severities(report, "pools") == ["ok"]
    assert severities(report, "forwarding") == ["ok", "ok"]


def test_firewalld_running_just_flushed_calico(lab):
    calfwd = prepare(lab)
    lab.firewalld.start()
    assert calfwd.cli("apply").returncode == 0
    report = doctor(calfwd)
    assert report["exit_code"] == 2
    flush = by_check(report, "flush")[0]
    assert flush["severity"] == "error" and "missing right now" in flush["saw"]
    assert severities(report, "firewalld") == ["ok"] and "1.3.3" in by_check(report, "firewalld")[0]["saw"]
    assert severities(report, "direct-rules") == ["ok"]
    assert severities(report, "zones") == ["ok"]
    assert "warning" not in severities(report, "calfwd-state")
    lab.calico.restore()  # Felix's refresh
    report = doctor(calfwd)
    assert severities(report, "flush") == ["warning"]


def test_misconfigured_node(lab):
    calfwd = prepare(lab, '[calico]\nip_pools = ["198.18.64.0/20", "198.18.128.0/20"]\nnat_outgoing = true\n')
    calfwd.config_path.chmod(0o664)
    lab.node.sysctl("net.ipv4.ip_forward", 0)
    lab.firewalld.start()
    lab.firewalld.firewall_cmd("--zone=trusted", "--add-interface=cali+")
    report = doctor(calfwd)
    assert report["exit_code"] == 2
    assert severities(report, "config-owner") == ["error"]
    assert "error" in severities(report, "forwarding")
    # trusted accepts: the pod's traffic flows, judged by trusted's rules instead of calfwd's zone
    # (judge/blockers.py); calfwd cannot bind cali+ there (ZONE_CONFLICT), a conflict of its own.
    zones = by_check(report, "zones")
    assert zones[0]["severity"] == "warning" and "--zone=trusted --remove-interface=cali+" in zones[0]["fix"]
    pools = by_check(report, "pools")
    assert any("198.18.128.0/20" in f["saw"] for f in pools)  # configured, unknown to Calico
    assert any("2001:db8:64::/64" in f["saw"] and "not in calico.ip_pools" in f["saw"] for f in pools)


def test_no_bus_and_firewalld_settings_from_its_files(lab):
    calfwd = prepare(lab)
    calfwd.env["DBUS_SYSTEM_BUS_ADDRESS"] = "unix:abstract=/calfwd-test/no-such-bus"
    lab.firewalld.configure(StrictForwardPorts="yes")
    report = doctor(calfwd)
    assert severities(report, "firewalld") == ["unknown"]
    assert "no system bus" in by_check(report, "firewalld")[0]["saw"]
    assert severities(report, "strict-forward-ports") == ["error"]
    assert report["exit_code"] == 2


def test_direct_rules_on_1x_rule_out_the_guard(lab):
    calfwd = prepare(lab)
    lab.firewalld.start()
    lab.firewalld.firewall_cmd("--permanent", "--direct", "--add-rule", "ipv4", "filter", "INPUT", "0",
                               "-p", "tcp", "--dport", "9", "-j", "ACCEPT")
    report = doctor(calfwd)
    direct = by_check(report, "direct-rules")
    assert direct[0]["severity"] == "info" and "permanent rule ipv4 filter INPUT" in direct[0]["saw"]
    flush = by_check(report, "flush")[0]
    assert "upgrade firewalld" in flush["fix"] and "guard enable" not in flush["fix"]


def test_2x_knobs_and_fail2ban_on_each_firewalld(lab_versions, firewalld_case):
    """Issue 22: ReloadPolicy (2.1+) and NftablesFlowtable (2.0+) are said only by the
    firewalld that has them; fail2ban's direct chain is named on every release, and on 2.x it
    switches the iptables flush back on."""
    fw = lab_versions.firewalld
    fw.configure(ReloadPolicy="INPUT:DROP,FORWARD:REJECT,OUTPUT:DROP")
    fw.start()
    # Saved after the start, for the next reload: a kernel without CONFIG_NF_FLOW_TABLE (the CI
    # machine's) refuses firewalld's flowtable, and 2.3 then falls back to its stock config.
    # doctor judges firewalld.conf, so the finding comes before the reload that would apply it.
    fw.configure(NftablesFlowtable=lab_versions.uplink)
    calfwd = prepare(lab_versions)
    fw.firewall_cmd("--permanent", "--direct", "--add-chain", "ipv4", "filter", "f2b-sshd")
    fw.firewall_cmd("--permanent", "--direct", "--add-rule", "ipv4", "filter", "INPUT_direct", "0",
                    "-p", "tcp", "--dport", "22", "-j", "f2b-sshd")
    report = doctor(calfwd)
    firewalld = by_check(report, "firewalld")[0]
    assert firewalld["severity"] == "ok" and fw.build.version in firewalld["saw"], firewalld
    major = fw.build.major
    reload_policy = by_check(report, "reload-policy")
    flowtable = by_check(report, "flowtable")
    if major >= 2:  # 2.3 has both knobs
        assert [f["severity"] for f in reload_policy] == ["warning"], reload_policy
        assert "FORWARD:REJECT" in reload_policy[0]["saw"] and "firewalld_policy_drop" in reload_policy[0]["why"]
        assert [f["severity"] for f in flowtable] == ["warning"], flowtable
        assert f"{lab_versions.uplink} (the uplink)" in flowtable[0]["saw"]
    else:
        assert reload_policy == [] and flowtable == [], (reload_policy, flowtable)
    direct = by_check(report, "direct-rules")
    assert len(direct) == 1 and "made by fail2ban: chain(s) f2b-sshd" in direct[0]["saw"], direct
    assert "banaction = firewallcmd-rich-rules" in direct[0]["fix"]
    assert direct[0]["severity"] == ("warning" if major >= 2 else "info")
    # audit shows the same settings, on the release that has each (issue 22).
    audit = json.loads(calfwd.cli("audit", "--json").stdout)["firewalld"]
    if major >= 2:
        assert audit["reload_policy"].startswith("INPUT:DROP,FORWARD:REJECT,OUTPUT:DROP: new forwarded "
                                                 "connections during a reload are rejected"), audit
        assert audit["nftables_flowtable"].startswith(f"{lab_versions.uplink}: their established flows"), audit
        assert audit["strict_forward_ports"] == "no", audit
    else:
        assert not {"reload_policy", "nftables_flowtable", "strict_forward_ports"} & set(audit), audit


def test_nftables_service_enabled_beside_firewalld(lab):
    calfwd = prepare(lab)
    wants = lab.workdir / "systemd" / "sysinit.target.wants"
    wants.mkdir(parents=True)
    (wants / "nftables.service").symlink_to("/lib/systemd/system/nftables.service")
    report = doctor(calfwd)
    found = by_check(report, "nftables-service")
    assert [f["severity"] for f in found] == ["warning"], found
    assert str(wants / "nftables.service") in found[0]["saw"] and "flush ruleset" in found[0]["why"]
    (wants / "nftables.service").unlink()
    assert by_check(doctor(calfwd), "nftables-service") == []


def test_not_root_every_failed_read_is_an_unknown_finding(lab):
    calfwd = prepare(lab)
    lab.firewalld.start()
    public = tempfile.mkdtemp(prefix="calfwd-doctor-")
    try:
        os.chmod(public, 0o755)
        config = os.path.join(public, "calfwd.toml")
        shutil.copy(calfwd.config_path, config)
        os.chmod(config, 0o644)
        result = lab.node.run("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", PYTHON, "-m", "calfwd",
                              "--config", config, "doctor", "--json", env=calfwd.env, check=False, timeout=60)
    finally:
        shutil.rmtree(public)
    assert "Traceback" not in result.stderr  # libnftables itself prints "you must be root" there
    report = json.loads(result.stdout)
    assert report["exit_code"] == result.returncode == 1  # unknowns, no errors: nothing could be judged broken
    assert severities(report, "flush") == ["unknown"] and "nftables" in by_check(report, "flush")[0]["saw"]
    firewalld = by_check(report, "firewalld")[0]  # firewalld answers only root (polkit): not "not running"
    assert firewalld["severity"] == "unknown" and "not authorised" in firewalld["saw"], firewalld
    assert "unknown" in severities(report, "calfwd-state")


def test_a_pattern_matching_the_uplink_and_a_pool_holding_the_nodes_address(tmp_path):
    """Hardening item 6: values `check` accepts but that open this host are said by check and
    plan (warnings on stderr, exit codes unchanged) and by doctor (errors): the node's uplink
    ext0 carries both default routes and `ext+` catches it; 198.18.0.0/24 holds the node's
    LAN address and trust_pool_sources makes it a trusted source."""
    from lab import Lab, unavailable

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with Lab(tmp_path, uplink="ext0") as lab:
        calfwd = prepare(lab, f'[calico]\nip_pools = ["{lab.addr.pool_v4}", "{lab.addr.pool_v6}", "198.18.0.0/24"]\n'
                              'interfaces = ["cali+", "tunl0", "ext+"]\n[firewalld]\ntrust_pool_sources = true\n')
        uplink = ("calfwd: warning: calico.interfaces[2] 'ext+' matches ext0, which is not one of Calico's "
                  "interfaces and carries the default route (IPv4 and IPv6). Why: calfwd binds it to the ACCEPT "
                  "zone 'calfwd'")
        pool = "calfwd: warning: calico.ip_pools[2] 198.18.0.0/24 contains 198.18.0.1, this node's own address on ext0"
        for command, code in (("check", 0), ("plan", 1)):  # plan: nothing applied yet
            result = calfwd.cli(command)
            assert result.returncode == code, (command, result.stdout, result.stderr)
            lines = result.stderr.splitlines()
            assert len(lines) == 2, (command, lines)
            assert lines[0].startswith(uplink) and lines[1].startswith(pool), (command, lines)
        report = doctor(calfwd)
        exposure = by_check(report, "exposure")
        assert [f["severity"] for f in exposure] == ["error", "error"], exposure
        assert "'ext+' matches ext0" in exposure[0]["saw"] and "carries the default route" in exposure[0]["saw"]
        assert "198.18.0.1" in exposure[1]["saw"] and "trust_pool_sources" in exposure[1]["why"]
        assert report["exit_code"] == 2
