"""`calfwd audit` against the real firewalld in the lab (issue 13 item 5): a STIG host's page."""

from __future__ import annotations

import json

from lab.calfwd import Calfwd


def _audit(calfwd):
    result = calfwd.cli("audit", "--json")
    assert not result.stderr.strip(), result.stderr
    return result.returncode, json.loads(result.stdout)


def _entry(report, kind, name):
    return next(e for e in report["entries"] if e["kind"] == kind and e["name"] == name)


def _opened(entry):
    return sorted(i["value"] for i in entry["items"] if i["kind"] in ("port", "protocol"))


def _info(fw, *args):
    """firewall-cmd's runtime lists: what firewalld itself says it accepts."""
    return sorted(fw.firewall_cmd(*args, "--list-ports").split() + fw.firewall_cmd(*args, "--list-protocols").split())


def test_audit_lists_what_firewalld_accepts_on_a_stig_host_and_names_what_an_admin_broke(lab):
    fw = lab.firewalld
    fw.configure(DefaultZone="drop")  # the STIG's default zone
    fw.start()
    calfwd = Calfwd(lab)
    assert calfwd.cli("apply").returncode == 0

    code, report = _audit(calfwd)
    assert code == 0 and report["ok"], report["differences"] + report["unreadable"]
    assert report["firewalld"]["default_zone"] == "drop"
    assert report["firewalld"]["default_zone_target"] == "DROP"
    host = _entry(report, "policy", "calfwd-host")
    assert "from zone drop to this host" in host["summary"]
    assert _opened(host) == _info(fw, "--policy=calfwd-host") == ["179/tcp", "4", "4789/udp", "5473/tcp"]
    assert all(i["key"].startswith("host_ports: ") for i in host["items"] if i["kind"] in ("port", "protocol"))
    assert [i["kind"] for i in host["items"] if i["kind"] not in ("port", "protocol")] == ["target"]
    # firewalld 1.x: the catch-all service in the default zone carries the same ports.
    in_drop = fw.firewall_cmd("--zone=drop", "--list-services").split()
    if "calfwd-host" in in_drop:
        service = _entry(report, "service", "calfwd-host")
        assert service["present"] and _opened(service) == _opened(host)
    assert report["check"] == "ok"
    assert any(line.startswith("chain postrouting") for line in map(str.strip, report["nft_rules"]))
    text = calfwd.cli("audit")
    assert text.returncode == 0 and "Verdict:   in effect exactly as configured" in text.stdout

    # An admin closes BGP and opens 2222/tcp and ssh in calfwd's policy at runtime.
    fw.firewall_cmd("--policy=calfwd-host", "--remove-port=179/tcp")
    fw.firewall_cmd("--policy=calfwd-host", "--add-port=2222/tcp")
    fw.firewall_cmd("--policy=calfwd-host", "--add-service=ssh")
    code, report = _audit(calfwd)
    assert code == 3 and not report["ok"]
    host = _entry(report, "policy", "calfwd-host")
    assert _opened(host) == _info(fw, "--policy=calfwd-host") == ["2222/tcp", "4", "4789/udp", "5473/tcp"]
    stranger = next(i for i in host["items"] if i["value"] == "2222/tcp")
    assert stranger["key"] == "" and stranger["why"].startswith("NOT in calfwd's config")
    ssh = [i for i in host["items"] if i["kind"] == "service"]
    assert [(i["value"], i["key"]) for i in ssh] == [("ssh", "")] and ssh[0]["why"].startswith("NOT in calfwd's")
    assert "    - service ssh: NOT in calfwd's config" in calfwd.cli("audit").stdout
    assert any("179/tcp" in line and "2222/tcp" in line for line in report["differences"]), report["differences"]

    # firewalld's own check of its permanent configuration fails: the page says so, exit 3.
    assert calfwd.cli("apply").returncode == 0
    (fw.config_dir / "zones" / "broken.xml").write_text('<?xml version="1.0"?>\n<zone target="NONSENSE"/>\n')
    code, report = _audit(calfwd)
    assert code == 3 and report["check"] == "failed" and not report["differences"], report
    assert "INVALID_TARGET: NONSENSE" in report["check_output"], report["check_output"]


def test_audit_on_each_firewalld(lab_versions, firewalld_case):
    """0.9 to 2.x, both backends: the same page, firewalld's check asked over its bus on each."""
    fw = lab_versions.firewalld
    fw.configure(DefaultZone="drop")
    fw.start()
    calfwd = Calfwd(lab_versions)
    applied = calfwd.cli("apply")
    # 0.9.x renders calfwd's wildcard literally in its forward-policy dispatch; with the zone
    # drop as ingress, routed traffic into pods (here: the peer's) is dropped. Said, not hidden.
    blocked = fw.build.version.startswith("0.") and firewalld_case[1] == "nftables"
    if blocked:
        assert applied.returncode == 3, applied.stdout + applied.stderr
        assert "zone(s) 'drop' drop (target DROP or REJECT)" in applied.stdout + applied.stderr
        assert not lab_versions.peer_reaches_pod(), "the block is real"
    else:
        assert applied.returncode == 0, applied.stdout + applied.stderr
    code, report = _audit(calfwd)
    assert code == (3 if blocked else 0) and report["check"] == "ok", report
    assert report["firewalld"]["backend"] == firewalld_case[1]
    host = _entry(report, "policy", "calfwd-host")
    assert _opened(host) == _info(fw, "--policy=calfwd-host") == ["179/tcp", "4", "4789/udp", "5473/tcp"]
    major = int(report["firewalld"]["version"].split(".")[0])
    assert any(e["kind"] == "service" for e in report["entries"]) == (major < 2)
    if major < 2:
        # Someone saves a port into calfwd's service without a reload: the page shows what is
        # loaded (in effect), not the saved file.
        fw.firewall_cmd("--permanent", "--service=calfwd-host", "--add-port=2222/tcp")
        _code, report = _audit(calfwd)
        service = _entry(report, "service", "calfwd-host")
        assert service["present"] and _opened(service) == _opened(host), service
