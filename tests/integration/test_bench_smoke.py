"""`make bench` works: the harness at tiny counts (--quick) produces valid JSON with every section.

No timing is asserted (benchmarks report, tests assert behaviour): only that each section ran
and measured something, plus the facts that are not timings: the rule count does not depend
on the number of pools, fake Reloaded signals trigger nothing, calfwd stays alive, and
without calfwd the pod loses its connections once Felix's NAT is flushed. Whether calfwd's pod
loses no more than the host is a measurement (a busy machine moves it): bench/ reports it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    from lab import unavailable

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    result = subprocess.run(["/usr/bin/python3", str(REPO / "bench" / "run.py"), "--quick", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(out.read_text()), result.stdout


def test_every_section_is_there(quick):
    data, _ = quick
    assert set(data) == {"meta", "outage", "latency", "scale", "idle", "storm", "kernel", "chains", "pools",
                         "reloadpolicy"}
    meta = data["meta"]
    assert meta["quick"] is True and meta["firewalld"] and meta["kernel"]
    assert set(meta["section_seconds"]) == {"outage", "latency", "scale", "idle", "kernel", "chains", "pools",
                                            "reloadpolicy"}


def test_outage_rows_measured_both_probers(quick):
    data, _ = quick
    rows = data["outage"]["rows"]
    assert [r["key"] for r in rows] == ["no-calfwd", "runtime", "calfwd"]
    for row in rows:
        for who in ("pod", "host"):
            measured = row[who]
            assert measured["attempts"] > 0
            assert set(measured["per_reload"]["counts"]) and len(measured["per_reload"]["counts"]) == data["outage"]["reloads"]
            assert len(measured["per_restart"]["counts"]) == data["outage"]["restarts"]
            assert measured["failed_before_first"] == 0, f"{row['name']}: {who} failing before any disturbance"
    # Behaviour, not timing: without calfwd the pod loses everything once Felix's NAT is flushed.
    no_calfwd = rows[0]["pod"]
    assert no_calfwd["per_restart"]["counts"] and no_calfwd["failed"] > no_calfwd["per_reload"]["counts"][0]
    assert rows[2]["calfwd_reconciles"] and rows[1]["calfwd_reconciles"]


def test_latency_series(quick):
    data, _ = quick
    perm = data["latency"]["permanent"]
    for kind in ("reloaded", "state"):
        series = perm[kind]
        assert series["end_to_end_ms"]["n"] >= 1
        assert series["calfwd_duration_ms"]["n"] == series["end_to_end_ms"]["n"]
        assert series["nft_duration_ms"]["n"] == series["end_to_end_ms"]["n"]
    assert data["latency"]["runtime"]["reloaded"]["end_to_end_ms"]["n"] >= 1


def test_scale_rule_count_does_not_grow_with_pools(quick):
    data, _ = quick
    rows = data["scale"]["rows"]
    assert [r["pools"] for r in rows if not r["trust_pool_sources"]] == [1, 100]
    assert len({r["rules"] for r in rows}) == 1
    assert {r["pools"]: r["set_elements"] for r in rows if not r["trust_pool_sources"]} == {1: 2, 100: 200}
    for row in rows:
        assert row["firewalld_running"] and "fw_create_ms" in row and "reconcile_noop_ms" in row


def test_idle_and_storm(quick):
    data, _ = quick
    idle, storm = data["idle"], data["storm"]
    for key in ("ready_fresh_ms", "ready_restart_ms", "cpu_s_per_idle_minute", "rss_mb", "open_fds"):
        assert idle[key] is not None and idle[key] >= 0, key
    assert storm["signals"] > 0 and storm["calfwd_alive"] and storm["reconciles_triggered"] == 0


def test_kernel_events(quick):
    """calfwd's table came back after each deletion (by event), and the churn cost was measured;
    with kernel_events = false the quick run deletes nothing (the resync takes a minute)."""
    data, _ = quick
    repair, churn = data["kernel"]["repair"], data["kernel"]["churn"]
    assert repair["kernel_events"]["n"] >= 1 and repair["kernel_events"]["not_repaired"] == 0
    on, off = churn["kernel_events"], churn["resync_only"]
    assert on["changes"] > 0 and on["repairs_logged"] == repair["kernel_events"]["n"]
    assert on["monitor_rss_mb"] > 0 and off["monitor_rss_mb"] == 0, "the monitor runs only when enabled"


def test_watched_chain_changes_and_auto_pools(quick):
    """Both chain sizes measured with calfwd alive and no flush reported (the writer never
    touches a jump); Felix's sets above the cap are an unreadable read, at the cap pools."""
    data, _ = quick
    rows = data["chains"]["rows"]
    assert [r["filler_rules"] for r in rows] == [10, 3000] and rows[1]["forward_rules"] > 3000
    for row in rows:
        assert row["changes"] > 0 and row["calfwd_alive"] and row["flush_reports"] == 0
    pools = {r["members"]: r for r in data["pools"]["rows"]}
    assert pools[10]["pools"] == 10 and pools[10]["merged"] == 10
    assert pools[4000]["pools"] == 0 and "more than the 256 pools" in pools[4000]["outcome"]


def test_markdown_tables_printed(quick):
    _, stdout = quick
    for heading in ("**Outage**", "**Reconcile latency**", "**Scale**", "**Idle and start-up**",
                    "**Repair of calfwd's table**", "**Cost of following the kernel**",
                    "**A change in a watched base chain**", "**ip_pools = \"auto\"**"):
        assert heading in stdout


def test_reload_policy_rows_on_firewalld_2x(quick):
    """Issue 22's comparison ran on a 2.x firewalld, both rows measured by both probers (how
    many each loses is a measurement: bench/results and docs/benchmarks.md report it)."""
    data, out = quick
    r = data["reloadpolicy"]
    assert r["firewalld"].startswith("2.") and [row["key"] for row in r["rows"]] == ["stock", "forward-accept"]
    for row in r["rows"]:
        assert row["pod"]["attempts"] > 0 and row["host"]["attempts"] > 0
        assert len(row["pod"]["per_reload"]["counts"]) == r["reloads"]
    assert "**ReloadPolicy**" in out
