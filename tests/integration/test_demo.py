"""`make demo` as the README runs it: the incident side by side, then the two-node cluster's
paths, exit 0, nothing left behind, within the minute the issue promises."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from lab import unavailable
from lab.netns import PREFIX, list_namespaces
from lab.paths import PATHS, STEPS

REPO = Path(__file__).resolve().parents[2]
BOUND = 60.0  # seconds: the "within a minute", for the whole `make demo`
CLUSTER_ROWS = ("no firewalld",) + tuple(name for name, _ in STEPS)


def cluster_rows(stdout: str) -> dict:
    """{step: (without calfwd, with calfwd)}, one char per path, from the cluster table."""
    rows = {}
    for line in stdout.splitlines():
        for name in CLUSTER_ROWS:
            if line.startswith(name + "  "):
                rows[name] = tuple(line[len(name):].split())
    return rows


def test_demo_shows_the_incident_and_the_cluster_without_calfwd_and_none_with_it():
    if os.geteuid() != 0 or unavailable():
        pytest.skip(unavailable() or "needs root")
    started = time.monotonic()
    # -o deps: the Makefile's demo recipe itself, without installing packages from a test.
    result = subprocess.run(["make", "-s", "-o", "deps", "demo"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line[:2] in ("1.", "2.", "3.", "4.", "5.", "6.")]
    assert len(rows) == 6, result.stdout
    without = [row[-4:-2] for row in rows]
    with_calfwd = [row[-2:] for row in rows]
    assert without[0] == ["ok", "ok"] and all(w == ["TIMEOUT", "TIMEOUT"] for w in without[1:])
    assert all(w == ["ok", "ok"] for w in with_calfwd)

    cluster = cluster_rows(result.stdout)
    assert list(cluster) == list(CLUSTER_ROWS), result.stdout
    assert cluster["no firewalld"] == ("." * len(PATHS),) * 2, "the cluster works before firewalld"
    reloaded = dict(zip((name for name, _ in PATHS), cluster["firewall-cmd --reload"][0]))
    assert reloaded["pod1 -> pod2"] == reloaded["pod2 -> pod1"] == "X", "without calfwd, after a reload"
    for name, (_without, with_) in cluster.items():
        assert with_ == "." * len(PATHS), "with calfwd, after %s:\n%s" % (name, result.stdout)

    gone = re.search(r"the labs are gone \(namespaces (.*)\)\.$", result.stdout, re.M)
    assert gone, result.stdout
    prefixes = [name.rstrip("*") for name in gone.group(1).split(", ")]
    assert len(prefixes) == 4 and all(p.startswith(PREFIX) for p in prefixes), gone.group(0)
    left = [n for n in list_namespaces() if n.startswith(tuple(prefixes))]
    assert not left, f"the demo left namespaces behind: {left}"
    assert elapsed < BOUND, "make demo took %.1f s" % elapsed
