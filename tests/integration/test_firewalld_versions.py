"""The incident on every firewalld calfwd supports, each asserted as that version really behaves.

One case per (firewalld, backend) of CALFWD_LAB_FIREWALLD (tests/conftest.py; CI runs each
behaviour once, `make test-versions-full` the cross product): Debian 11's 0.9.3, Debian 12's
1.3.3, Debian 13's 2.3.1, the machine's own being one of them, fetched by tests/lab/versions.py.

Measured in the lab on 2026-11-30 (Felix's iptables-nft rules present before each step;
"flushed" = every one of Felix's 24 jumps and rules in the builtin chains gone):

    firewalld  backend   start    reload   restart   calfwd apply + traffic after reload/restart
    0.9.3      nftables  flushed  flushed  flushed   works
    0.9.3      iptables  flushed  flushed  flushed   works
    1.3.3      nftables  flushed  flushed  flushed   works
    1.3.3      iptables  flushed  flushed  flushed   works
    2.3.1      nftables  kept     kept     kept      works
    2.3.1      iptables  flushed  flushed  flushed   works

Without calfwd both directions of the incident fail on every one of them (firewalld's
reject), so the traffic assertions can fail.
"""

from __future__ import annotations

import json

from lab.calfwd import Calfwd
from lab.versions import OWN, is_release


def flushes(lab) -> bool:
    """firewalld < 2.0 flushes the iptables tables with either backend; 2.x only with iptables.

    By version: Debian's packages carry no backport of the fix (RHEL's do, from 0.9.11-9/1.2.5).
    """
    return lab.firewalld.settings["FirewallBackend"] == "iptables" or lab.firewalld.build.major < 2


def status(calfwd: Calfwd) -> dict:
    result = calfwd.cli("status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def assert_traffic(lab, when: str) -> None:
    assert lab.pod_reaches_proxy(), f"pod -> proxy broken {when}"
    assert lab.peer_reaches_pod(), f"peer -> pod broken {when}"


def assert_felix_rules(lab, when: str) -> None:
    present = lab.calico.present()
    build = lab.firewalld.build
    if flushes(lab):
        assert not present, f"firewalld {build.version} should have flushed Felix's rules {when}"
    else:
        assert present, (f"firewalld {build.version} flushed Felix's rules {when}: "
                         f"{[r.spec for r in lab.calico.missing()][:3]}")


def test_incident_fixed_on_each_firewalld(lab_versions, firewalld_case):
    lab, fw = lab_versions, lab_versions.firewalld
    name, backend = firewalld_case
    assert fw.settings["FirewallBackend"] == backend
    assert name == OWN or is_release(name, fw.build.version), fw.build
    fw.start()
    assert_felix_rules(lab, "on start")
    assert not lab.pod_reaches_proxy() and not lab.peer_reaches_pod(), "the incident should happen"

    calfwd = Calfwd(lab)
    result = calfwd.cli("apply")
    assert result.returncode == 0, result.stdout + result.stderr
    seen = status(calfwd)
    # The daemon itself, over D-Bus: the lab really runs the release it was asked for.
    assert seen["firewalld"]["version"] == fw.build.version and seen["in_sync"], seen
    assert_traffic(lab, "after calfwd apply")

    lab.calico.restore()  # Felix's resync
    fw.reload()
    assert_felix_rules(lab, "on reload")
    assert_traffic(lab, "after firewall-cmd --reload")

    lab.calico.restore()
    fw.restart()
    assert_felix_rules(lab, "on restart")
    assert_traffic(lab, "after a firewalld restart")
    assert status(calfwd)["in_sync"]


def test_strict_forward_ports_is_reported_as_blocking_services(tmp_path):
    """Issue 12 item 5: firewalld 2.3's StrictForwardPorts=yes rejects every connection someone
    else NATed (ClusterIP, NodePort) before any zone or policy; `status` said "in sync"."""
    from lab import Lab, unavailable
    from lab.versions import fetch
    import pytest

    if unavailable():
        pytest.skip(unavailable())
    with Lab(tmp_path, firewalld=fetch("2.3")) as lab:
        lab.firewalld.configure(StrictForwardPorts="yes")
        lab.firewalld.start()
        calfwd = Calfwd(lab)
        applied = calfwd.cli("apply")
        assert applied.returncode == 3 and "StrictForwardPorts=yes" in applied.stderr, applied
        result = calfwd.cli("status", "--json")
        report = json.loads(result.stdout)
        assert result.returncode == 1 and not report["in_sync"], report
        (firewalld,) = [layer for layer in report["layers"] if layer["layer"] == "firewalld"]
        assert any("StrictForwardPorts=yes" in b for b in firewalld["blocking"])
        lab.firewalld.configure(StrictForwardPorts="no")
        lab.firewalld.restart()
        assert calfwd.cli("status").returncode == 0
