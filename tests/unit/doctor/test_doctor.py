"""`calfwd doctor`'s verdicts from hand-made host snapshots: pure, no root needed."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from calfwd import config as cfg
from calfwd.judge import guard
from calfwd.doctor import checks as doctor
from calfwd.doctor import findings as verdicts
from calfwd.doctor.findings import ERROR, INFO, OK, UNKNOWN, WARNING
from calfwd.judge.blockers import FirewalldPaths, PolicyFacts
from calfwd.doctor.snapshot import FirewalldState, HostSnapshot, Route
from calfwd.judge.exposure import HostLink, HostNetwork

from fakes.host import CONFIG, NFT, PATH, fw, healthy, old, paths  # noqa: F401


def findings(snap: HostSnapshot, check: str = "") -> list:
    return [f for f in doctor.diagnose(snap).findings if not check or f.check == check]


def only(snap: HostSnapshot, check: str) -> verdicts.Finding:
    found = findings(snap, check)
    assert len(found) == 1, found
    return found[0]


def test_healthy_host_exits_0_and_every_line_is_one_line():
    report = doctor.diagnose(healthy())
    assert report.exit_code == 0, report.lines()
    assert {f.severity for f in report.findings} <= {OK, INFO}
    assert all("\n" not in line for line in report.lines())
    assert only(healthy(), "flush").severity == OK


@pytest.mark.parametrize("snap", [healthy(), old(), old(firewalld=FirewalldState()),
                                  healthy(unknown={"nftables": "Operation not permitted", "ipset": "x",
                                                   "sysctl": "y", "routes": "z", "drift": "w"})],
                         ids=["healthy", "old", "stopped", "unreadable"])
def test_every_problem_names_a_concrete_fix(snap):
    for f in doctor.diagnose(snap).findings:
        assert f.severity in verdicts.SEVERITIES
        if f.severity in (WARNING, ERROR, UNKNOWN):
            assert f.fix and f.why, f
            assert any(word in f.fix for word in ("calfwd", "firewall-cmd", "systemctl", "sysctl", "chown",
                                                  "kubectl", "firewalld.conf", "[calico]", "[firewalld]")), f


def test_firewalld_1x_flushes_calico_and_the_guard_is_the_fix():
    f = only(old(), "flush")
    assert f.severity == WARNING
    assert "1.3.3" in f.saw and "iptables-nft" in f.saw and "180 s" in f.why
    assert "calfwd guard enable" in f.fix and guard.ACTIVATE in f.fix
    assert doctor.diagnose(old()).exit_code == 1


def test_guard_active_in_the_running_firewalld_means_no_flush():
    snap = old(dropin_text=guard.render_dropin((NFT,)), firewalld=fw(version="1.3.3", guarded=(NFT,)))
    assert only(snap, "flush").severity == OK
    assert only(snap, "flush-guard").severity == OK
    assert doctor.diagnose(snap).exit_code == 0


def test_guard_installed_but_firewalld_not_restarted():
    snap = old(dropin_text=guard.render_dropin((NFT,)))
    f = only(snap, "flush-guard")
    assert f.severity == WARNING and "started without it" in f.saw and f.fix == guard.ACTIVATE
    assert only(snap, "flush").severity == WARNING


def test_guard_wanted_by_the_config_but_missing():
    config = dataclasses.replace(CONFIG, firewalld=dataclasses.replace(CONFIG.firewalld, flush_guard=True))
    f = only(old(config=config), "flush-guard")
    assert f.severity == WARNING and "calfwd guard enable" in f.fix
    # Where it cannot be installed, the fix says so instead of sending the admin in circles.
    f = only(old(config=config, firewalld=fw(version="1.3.3", backend="iptables")), "flush-guard")
    assert "cannot be installed" in f.saw and "flush_guard = false" in f.fix


def test_guard_with_the_iptables_backend_is_an_error():
    snap = old(dropin_text=guard.render_dropin((NFT,)), firewalld=fw(version="1.3.3", backend="iptables"))
    assert only(snap, "flush-guard").severity == ERROR
    assert doctor.diagnose(snap).exit_code == 2


def test_guard_with_direct_rules_is_an_error():
    snap = old(dropin_text=guard.render_dropin((NFT,)), permanent_direct=("permanent rule ipv4 filter INPUT -j ACCEPT",))
    f = only(snap, "flush-guard")
    assert f.severity == ERROR and "direct" in f.saw


def test_stale_guard_and_unneeded_guard():
    stale = old(dropin_text=guard.render_dropin(("/usr/sbin/xtables-legacy-multi",)),
                firewalld=fw(version="1.3.3", guarded=()))
    assert any(f.severity == WARNING and "rewrites" in f.fix for f in findings(stale, "flush-guard"))
    unneeded = healthy(dropin_text=guard.render_dropin((NFT,)), firewalld=fw(guarded=(NFT,)))
    assert any(f.severity == INFO and "calfwd guard disable" in f.fix for f in findings(unneeded, "flush-guard"))
    foreign = healthy(dropin_text="[Service]\nLimitNOFILE=1\n")
    assert only(foreign, "flush-guard").severity == INFO


def test_direct_rules_on_2x_switch_the_flush_back_on():
    snap = healthy(firewalld=fw(runtime_direct=("runtime passthrough ipv4 -t nat -A POSTROUTING",)))
    assert only(snap, "direct-rules").severity == WARNING
    f = only(snap, "flush")
    assert f.severity == WARNING and "direct" in f.saw and "remove" in f.fix
    # On 1.x they are only worth knowing (it flushes anyway), but they rule out the guard.
    assert only(old(permanent_direct=("permanent chain ipv4 filter x",)), "direct-rules").severity == INFO


def test_iptables_backend_always_flushes():
    f = only(healthy(firewalld=fw(backend="iptables")), "flush")
    assert f.severity == WARNING and "FirewallBackend=nftables" in f.fix


def test_firewalld_stopped_is_read_from_its_files():
    snap = old(firewalld=FirewalldState(), firewalld_conf={"FirewallBackend": "nftables"})
    assert only(snap, "firewalld").severity == INFO
    assert only(snap, "flush").severity == WARNING  # it flushes when it starts
    snap = healthy(firewalld=FirewalldState(), firewalld_conf={"StrictForwardPorts": "yes"})
    assert only(snap, "strict-forward-ports").severity == ERROR


def test_strict_forward_ports_over_dbus():
    f = only(healthy(firewalld=fw(strict_forward_ports="yes")), "strict-forward-ports")
    assert f.severity == ERROR and "NodePorts" in f.why and "StrictForwardPorts=no" in f.fix
    assert only(healthy(firewalld=fw(strict_forward_ports="no")), "strict-forward-ports").severity == OK
    assert findings(healthy(), "strict-forward-ports") == []  # < 2.3: no such setting
    assert only(healthy(firewalld=fw(table_owner="yes")), "nftables-table-owner").severity == INFO


def test_firewalld_failed_state_is_an_error():
    assert only(healthy(firewalld=FirewalldState(running=False, state="FAILED", version="1.3.3")),
                "firewalld").severity == ERROR


def test_unknown_reads_become_unknown_findings_not_crashes():
    snap = healthy(firewalld=FirewalldState(), unknown={"firewalld": "no system bus: refused",
                                                       "nftables": "Operation not permitted"})
    report = doctor.diagnose(snap)
    assert only(snap, "firewalld").severity == UNKNOWN
    assert only(snap, "flush").severity == UNKNOWN
    assert report.exit_code == 1


def problems(snap: HostSnapshot, check: str) -> list:
    return [f for f in findings(snap, check) if f.severity != OK]


def test_forwarding_off():
    v4_off = problems(healthy(sysctls={"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.forwarding": "1"}), "forwarding")
    assert v4_off[0].severity == ERROR and "sysctl -w net.ipv4.ip_forward=1" in v4_off[0].fix
    v6_off = problems(healthy(sysctls={"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "0"}), "forwarding")
    assert v6_off[0].severity == ERROR and "IPv6" in v6_off[0].saw
    v4_only = dataclasses.replace(CONFIG, ip_pools=CONFIG.ip_pools[:1], nat_outgoing=CONFIG.ip_pools[:1])
    quiet = problems(healthy(config=v4_only, sysctls={"net.ipv4.ip_forward": "1",
                                                      "net.ipv6.conf.all.forwarding": "0"}), "forwarding")
    assert quiet[0].severity == INFO


def test_calico_interface_or_pool_in_another_zone():
    # A zone that drops blocks; one that does not (trusted, public) is a warning: its rules, not calfwd's.
    snap = healthy(firewalld=fw(paths=paths({"calfwd": (("tunl0",), ()), "trusted": (("cali+",), ()),
                                             "internal": ((), ("10.244.7.0/24",))}, {"trusted": "ACCEPT"})))
    found = findings(snap, "zones")
    assert [f.severity for f in found] == [WARNING, WARNING]  # sorted by zone: internal, trusted
    assert "--zone=trusted --remove-interface=cali+" in found[1].fix
    assert "--remove-source=10.244.7.0/24" in found[0].fix
    per_pod = healthy(firewalld=fw(paths=paths({"calfwd": (("cali+",), ()), "drop": (("cali0123456789a",), ())},
                                               {"drop": "DROP"})))
    assert only(per_pod, "zones").severity == ERROR and "cali0123456789a" in only(per_pod, "zones").saw
    gone = healthy(firewalld=fw(paths=paths({"calfwd": (("cali+",), ()), "drop": (("cali0fffffffff",), ())},
                                            {"drop": "DROP"})))
    assert only(gone, "zones").severity == OK  # no such interface on the host: nothing is shut
    pool = healthy(firewalld=fw(paths=paths({"calfwd": (("cali+",), ()), "drop": ((), ("10.244.0.0/16",))},
                                            {"drop": "DROP"})))
    assert only(pool, "zones").severity == ERROR and "a source binding wins" in only(pool, "zones").saw


def test_panic_mode_and_a_policy_that_outranks_calfwds():
    panic = healthy(firewalld=fw(paths=paths(panic=True)))
    assert only(panic, "panic").severity == ERROR and only(panic, "panic").fix == "firewall-cmd --panic-off"
    rejecting = PolicyFacts("lockdown", -100, "REJECT", ("ANY",), ("ANY",))
    found = only(healthy(firewalld=fw(paths=paths(policies=(rejecting,)))), "policies")
    assert found.severity == ERROR and "'lockdown'" in found.saw and "egress" in found.saw and "into pods" in found.saw
    after = PolicyFacts("late", 10, "REJECT", ("ANY",), ("ANY",))  # asked after calfwd's zone and policy
    assert only(healthy(firewalld=fw(paths=paths(policies=(after,)))), "policies").severity == OK
    continuing = PolicyFacts("allow-host-ipv6", -15000, "CONTINUE", ("ANY",), ("HOST",))
    assert only(healthy(firewalld=fw(paths=paths(policies=(continuing,)))), "policies").severity == OK


def test_pools_config_against_the_kernel():
    snap = healthy(pool_sets={"ipset cali40all-ipam-pools": ("10.244.0.0/16", "10.99.0.0/16"),
                              "ipset cali40masq-ipam-pools": ("10.244.0.0/16",)})
    found = findings(snap, "pools")
    assert any("10.99.0.0/16" in f.saw and "[calico] ip_pools" in f.fix for f in found)
    assert any("fd00:10:244::/56" in f.saw and "none of Calico's pools" in f.saw for f in found)
    assert any("nat_outgoing includes fd00:10:244::/56" in f.saw for f in found)
    stray = healthy(routes=(Route(4, "10.50.0.0/26", "blackhole", "bird", ""),))
    assert any("10.50.0.0/26" in f.saw for f in findings(stray, "pools"))
    assert only(healthy(), "pools").severity == OK


def test_exposure_interface_patterns_and_pools_against_the_host():
    host = HostNetwork(links=(HostLink("ext0", ("192.0.2.10",)), HostLink("ext1"), HostLink("cali0123456789a")),
                       default4=("ext0",))
    assert only(healthy(), "exposure").severity == OK
    wide = cfg.parse('[calico]\nip_pools = ["10.244.0.0/16"]\ninterfaces = ["cali+", "ext+"]\n', PATH)
    found = findings(healthy(config=wide, host_network=host), "exposure")
    assert [f.severity for f in found] == [ERROR, WARNING]
    assert "ext0" in found[0].saw and "carries the default route (IPv4)" in found[0].saw
    assert "'ext+'" in found[0].fix
    assert doctor.diagnose(healthy(config=wide, host_network=host)).exit_code == 2
    for trust, severity in (("true", ERROR), ("false", WARNING)):
        lan = cfg.parse(f'[calico]\nip_pools = ["192.0.2.0/24"]\n[firewalld]\ntrust_pool_sources = {trust}\n', PATH)
        f = only(healthy(config=lan), "exposure")
        assert f.severity == severity and "contains 192.0.2.10, this node's own address on eth0" in f.saw


def test_calico_flushed_right_now():
    snap = old(calico_chains={})
    f = only(snap, "flush")
    assert f.severity == ERROR and "missing right now" in f.saw and "calico-node" in f.fix


def test_felix_native_nftables_and_no_calico():
    native = healthy(calico_chains={}, nft_tables=(("ip", "calico"), ("ip6", "calico"), ("inet", "calfwd")),
                     pool_sets={"nft ip calico cali40all-ipam-pools": ("10.244.0.0/16",)})
    assert only(native, "calico-dataplane").severity == OK
    none = healthy(calico_chains={}, pool_sets={}, routes=(), links=("eth0", "lo"))
    assert "no sign of Calico" in only(none, "flush").saw


def test_legacy_calico_with_nft_host_iptables_is_not_flushed():
    snap = old(calico_chains={}, legacy_calico_chains=("iptables cali-FORWARD",))
    f = only(snap, "flush")
    assert f.severity == INFO and "does not reach them" in f.saw
    legacy_host = dataclasses.replace(snap, host_iptables="/usr/sbin/xtables-legacy-multi")
    assert only(legacy_host, "flush").severity == WARNING


def test_config_problems_and_ownership():
    snap = healthy(config=None, config_problems=(f"{PATH}: calico.ip_pools: required key is missing",),
                   ownership=(f"{PATH}: mode 0666 lets group or others write it (run: chmod go-w)",))
    assert [f.severity for f in findings(snap, "config")] == [ERROR]
    assert "chown root:root" in only(snap, "config-owner").fix
    assert doctor.diagnose(snap).exit_code == 2


def test_drift_and_conflicts():
    snap = healthy(drift=("nftables: table inet calfwd is missing",), conflicts=("interface cali+ is bound to x",))
    assert only(snap, "calfwd-state").severity == WARNING
    assert only(snap, "calfwd-conflict").severity == WARNING


def test_json_document():
    doc = json.loads(json.dumps(doctor.diagnose(old()).as_dict()))
    assert doc["exit_code"] == 1 and doc["healthy"] is False
    assert doc["counts"]["warning"] >= 1
    assert {"severity", "check", "saw", "why", "fix"} <= set(doc["findings"][0])


def test_iface_matching():
    m = verdicts.iface_matches
    assert m("cali+", "cali+") and m("cali0123", "cali+") and m("ca+", "cali+") and m("tunl0", "tunl0")
    assert not m("eth0", "cali+") and not m("tunl1", "tunl0")


def test_firewalld_unreadable_means_its_runtime_direct_rules_are_unknown():
    """No bus (or not root): runtime direct rules could exist, so the guard must not be installed."""
    unreadable = old(firewalld=FirewalldState(), unknown={"firewalld": "no system bus: refused"})
    assert verdicts.facts(unreadable).iptables_direct is None
    assert "cannot read whether" in guard.refusal(verdicts.facts(unreadable), (NFT,))
    stopped = old(firewalld=FirewalldState())
    assert verdicts.facts(stopped).iptables_direct == ()
    assert guard.refusal(verdicts.facts(stopped), (NFT,)) is None


# -- every read has a name, and every failed read is said --------------------------------------

def test_every_failed_read_is_shown_whatever_the_host():
    """0.1 dropped five kinds of failed read silently; now a check that needs the read says it,
    and one no check needed this time is said under 'reads'."""
    from calfwd.doctor.snapshot import Read

    for snap in (healthy(), old(), healthy(config=None), old(firewalld=fw(running=False, state=""))):
        for read in Read:
            why = f"boom-{read.value}"
            report = doctor.diagnose(dataclasses.replace(snap, unknown={read: why}))
            shown = [f for f in report.findings if why in f.saw]
            assert len(shown) >= 1 and all(f.severity == UNKNOWN for f in shown), (read, report.lines())
            assert report.exit_code >= 1


def test_every_read_is_made_and_named_by_a_check():
    """The Read enum is the contract between reads.py and checks.py: each is recorded by the
    reader and consumed by a check, by name (not a string that could drift)."""
    import inspect

    from calfwd.doctor import checks, firewalld_checks, reads, ruleset_checks
    from calfwd.doctor.snapshot import Read

    checks_src = (inspect.getsource(checks) + inspect.getsource(firewalld_checks) + inspect.getsource(verdicts)
                  + inspect.getsource(ruleset_checks))
    reads_src = inspect.getsource(reads)
    for read in Read:
        assert f"Read.{read.name}" in reads_src, f"{read} is never recorded by doctor/reads.py"
        assert read.description
    consumed = {read for read in Read if f"Read.{read.name}" in checks_src}
    # The rest are consumed through the catch-all: no check needs them as a precondition.
    assert {Read.NFTABLES, Read.SYSCTL, Read.GUARD_DROPIN, Read.DRIFT, Read.FIREWALLD} <= consumed


def test_a_flush_the_running_daemon_saw_and_nobody_undid_is_an_error():
    assert [f for f in doctor.diagnose(healthy(daemon_flushed=())).findings if f.check == "flushed"] == []
    line = "firewalld's reload at 10:00:00 flushed kube-proxy's iptables rules: Services fail ..."
    report = doctor.diagnose(healthy(daemon_flushed=(line,)))
    flushed = [f for f in report.findings if f.check == "flushed"]
    assert [(f.severity, f.saw) for f in flushed] == [(ERROR, line)]
    assert report.exit_code == verdicts.EXIT_ERRORS


def test_the_firewalld_directory_is_absolute_whatever_the_working_directory(tmp_path, monkeypatch):
    """firewall-offline-cmd runs from /: `--firewalld-dir etc/firewalld` in an image's root must
    not become the host's /etc/firewalld."""
    from calfwd.doctor.reads import firewalld_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CALFWD_FIREWALLD_DIR", raising=False)
    assert firewalld_dir("etc/firewalld") == str(tmp_path / "etc" / "firewalld")
    assert firewalld_dir(None) == "/etc/firewalld"


def test_auto_pools_says_what_calfwd_follows_or_that_felix_has_not_run():
    auto = cfg.parse('[calico]\nip_pools = "auto"\n', PATH)
    f = only(healthy(config=auto), "pools")
    assert f.severity == OK and f.saw == ('ip_pools = "auto" follows Felix\'s sets: 10.244.0.0/16 (natOutgoing), '
                                         'fd00:10:244::/56 (natOutgoing)')
    f = only(healthy(config=auto, pool_sets={"ipset cali40all-ipam-pools": ()}), "pools")
    assert f.severity == WARNING and "absent or empty" in f.saw
