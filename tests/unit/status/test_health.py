"""status/health.py: one verdict from a reconcile's outcome and what only the daemon saw. Pure."""

from __future__ import annotations

import time

from calfwd.status import document, health
from calfwd.watch.flushes import Outage
from calfwd.desired import HostFacts
from calfwd.reconcile import LayerPlan, Outcome

SINCE = time.mktime((2026, 11, 30, 22, 40, 1, 0, 0, -1))


def outcome(verified=True, errors=(), blocking=(), running=True) -> Outcome:
    layer = LayerPlan(layer="firewalld", actions=(), blocking=tuple(blocking))
    facts = HostFacts(firewalld_running=running, firewalld_version="1.3.3", default_zone="public",
                      firewalld_state="RUNNING" if running else "")
    return Outcome("resync", (layer,), tuple(errors), verified, 0.0123, 0.001, facts)


KUBE = Outage("kube-proxy", frozenset({"ip nat PREROUTING -> KUBE-SERVICES"}), "reload", SINCE)
FELIX = Outage("Calico", frozenset({"ip filter FORWARD -> cali-FORWARD"}), "start", SINCE)


def test_ok_only_when_verified_and_nothing_flushed():
    ok = health.assess(outcome())
    assert (ok.state, ok.in_sync, ok.problems) == ("ok", True, ())
    assert health.health_line(ok) == "ok calfwd: in sync"
    assert health.status_line(ok, outcome(), "calfwd", "10.0.0.0/16", "22:40:02") == (
        "STATUS=in sync; firewalld 1.3.3; zone calfwd; pools 10.0.0.0/16; last reconcile 22:40:02 (resync, 12.3 ms)")


def test_states_worst_first():
    assert health.assess(outcome(errors=("firewalld: timeout",)), [KUBE]).state == "error"
    blocked = health.assess(outcome(), [FELIX, KUBE])
    assert blocked.state == "blocked" and not blocked.in_sync
    assert blocked.problems[0] == ("BLOCKED: firewalld's start at 22:40:01 flushed Calico's iptables rules: "
                                   "Calico's policy and Felix's natOutgoing are gone until Felix's refresh "
                                   "restores them")
    assert blocked.problems[1].startswith("BLOCKED: firewalld's reload at 22:40:01 flushed kube-proxy's")
    assert health.health_line(blocked).startswith("blocked BLOCKED: firewalld's start")
    assert health.assess(outcome(blocking=("policy zone inactive",))).summary == "BLOCKED: policy zone inactive"
    assert health.assess(outcome(verified=False)).state == "not-verified"
    warned = health.assess(outcome(), guard_problem="drop-in missing")
    assert (warned.state, warned.in_sync) == ("warning", True)
    line = health.status_line(warned, outcome(), "calfwd", "p", "t")
    assert line.startswith("STATUS=WARNING: drop-in missing; in sync; firewalld 1.3.3")


def test_auto_pools_unknown_or_kept_is_a_warning_not_ok():
    """ip_pools = "auto" with no pools known (or stale ones kept): calfwd's objects are in sync,
    but monitoring must not read that as ok."""
    problem = "Felix's sets not found (keeping the pools read before from Felix's ip sets)"
    warned = health.assess(outcome(), pools_problem=problem)
    assert (warned.state, warned.in_sync) == ("warning", True)
    assert warned.problems == (f"WARNING: pools: {problem}",)
    assert health.health_line(warned).startswith("warning WARNING: pools: Felix's sets not found")
    assert health.assess(outcome(), pools_problem="").state == "ok"
    assert health.assess(outcome(verified=False), pools_problem=problem).state == "not-verified"


def test_firewalld_table_gone_is_said_first_in_every_state():
    gone = health.assess(outcome(errors=("nftables: x",)), firewalld_table_missing=True)
    assert health.status_line(gone, outcome(), "z", "p", "t").startswith(
        "STATUS=WARNING: firewalld's table inet firewalld is gone (systemctl restart firewalld); ERROR: nftables: x")


def test_the_document_round_trips_the_outages_for_calfwd_status():
    verdict = health.assess(outcome(), [FELIX, KUBE])
    doc = document.daemon(verdict, outcome(), pid=42, updated=SINCE, config_path="/etc/calfwd/calfwd.toml",
                          zone="calfwd", pools=["10.0.0.0/16"], following_kernel=True)
    assert doc["state"] == "blocked" and doc["in_sync"] is False and doc["pid"] == 42
    assert health.daemon_outages(doc) == (FELIX, KUBE)
    assert health.daemon_outages({"flushed": [{"owner": "someone", "missing": []}]}) == ()


def test_what_shuts_a_path_outside_calfwds_objects_is_blocked_though_verified():
    """The paths layer (judge/blockers.py) and the kernel watch's paused, missing table: calfwd's own
    objects are verified, yet the verdict, the health line and in_sync say blocked."""
    paths = LayerPlan(layer="paths", actions=(), blocking=("firewalld's panic mode is on. Fix: firewall-cmd --panic-off",))
    verified = Outcome("firewalld-PanicModeEnabled", (paths,), (), True, 0.01, 0.0,
                       HostFacts(firewalld_running=True, firewalld_version="1.3.3"))
    verdict = health.assess(verified)
    assert (verdict.state, verdict.in_sync) == ("blocked", False)
    assert health.health_line(verdict).startswith("blocked BLOCKED: firewalld's panic mode is on")
    kernel = health.assess(outcome(), kernel_blocking=("calfwd's table inet calfwd is missing",))
    assert (kernel.state, kernel.in_sync, kernel.kernel_blocking) == (
        "blocked", False, ("calfwd's table inet calfwd is missing",))
    doc = document.daemon(kernel, outcome(), pid=1, updated=0.0, config_path="c", zone="calfwd", pools=[],
                          following_kernel=True)
    assert health.daemon_blocking(doc) == ("calfwd's table inet calfwd is missing",)
    assert health.daemon_blocking({"kernel_blocking": [1, "x"]}) == ("x",)
    assert health.daemon_blocking({"kernel_blocking": "x"}) == ()
