"""`make demo` as the README runs it: the incident side by side, then the two-node Calico
cluster's paths and RKE2's Canal pair's, exit 0, nothing left behind, within the minute the
issue promises."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import List, Tuple

import pytest

from lab import unavailable
from lab.netns import PREFIX, list_namespaces
from lab.paths import PATHS, STEPS

REPO = Path(__file__).resolve().parents[2]
BOUND = 60.0  # seconds: the "within a minute", for the whole `make demo`
CLUSTER_ROWS = ("no firewalld",) + tuple(name for name, _ in STEPS)
CANAL_TITLE = "RKE2's Canal on two nodes"
FLANNEL_RESYNC = "+ flannel's resync"
# Canal's rows: the cluster's, and flannel's resync (RKE2's 5 s) on both nodes after the reload.
CANAL_ROWS = ("no firewalld",) + tuple(
    row for name, _ in STEPS for row in ((name, FLANNEL_RESYNC) if name == "firewall-cmd --reload" else (name,)))
CANAL_PATHS = tuple(name for name, _ in PATHS if not name.endswith("179/tcp"))  # Canal uses no BGP


def table_rows(section: str, names) -> List[Tuple[str, str, str]]:
    """[(step, without calfwd, with calfwd)] in the table's order, one char per path."""
    rows = []
    for line in section.splitlines():
        for name in names:
            if line.startswith(name + "  "):
                without, with_ = line[len(name):].split()
                rows.append((name, without, with_))
    return rows


def test_demo_shows_the_incident_calico_and_canal_without_calfwd_and_none_with_it():
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

    assert CANAL_TITLE in result.stdout, result.stdout
    calico_section, canal_section = result.stdout.split(CANAL_TITLE, 1)
    cluster = {name: (a, b) for name, a, b in table_rows(calico_section, CLUSTER_ROWS)}
    assert list(cluster) == list(CLUSTER_ROWS), result.stdout
    assert cluster["no firewalld"] == ("." * len(PATHS),) * 2, "the cluster works before firewalld"
    reloaded = dict(zip((name for name, _ in PATHS), cluster["firewall-cmd --reload"][0]))
    assert reloaded["pod1 -> pod2"] == reloaded["pod2 -> pod1"] == "X", "without calfwd, after a reload"
    for name, (_without, with_) in cluster.items():
        assert with_ == "." * len(PATHS), "with calfwd, after %s:\n%s" % (name, result.stdout)

    canal = table_rows(canal_section, set(CANAL_ROWS))
    assert [name for name, _, _ in canal] == list(CANAL_ROWS), result.stdout
    assert canal[0][1:] == ("." * len(CANAL_PATHS),) * 2, "Canal works before firewalld"
    at = [name for name, _, _ in canal].index("firewall-cmd --reload")
    after_reload = dict(zip(CANAL_PATHS, canal[at][1]))
    after_resync = dict(zip(CANAL_PATHS, canal[at + 1][1]))
    for path in ("pod1 -> pod2", "pod2 -> pod1"):
        assert after_reload[path] == after_resync[path] == "X", \
            "without calfwd, %s after a reload and flannel's resync:\n%s" % (path, result.stdout)
    flushes = re.search(r"^flannel's masquerade \(FLANNEL-POSTRTG\), without calfwd: (.*)\.$", canal_section, re.M)
    assert flushes, result.stdout
    if "firewall-cmd --reload" in flushes.group(1) or flushes.group(1) == "flushed by every firewalld step":  # firewalld 0.9, 1.x: pod egress waits for flannel's resync
        egress = "pod1 -> external (natOutgoing)"
        assert after_reload[egress] == "X", result.stdout
    assert "with calfwd: never flushed." in canal_section, "the flush guard keeps flannel's rules:\n" + result.stdout
    for name, _without, with_ in canal:
        assert with_ == "." * len(CANAL_PATHS), "Canal with calfwd, after %s:\n%s" % (name, result.stdout)

    gone = re.search(r"the labs are gone \(namespaces (.*)\)\.$", result.stdout, re.M)
    assert gone, result.stdout
    prefixes = [name.rstrip("*") for name in gone.group(1).split(", ")]
    assert len(prefixes) == 6 and all(p.startswith(PREFIX) for p in prefixes), gone.group(0)
    left = [n for n in list_namespaces() if n.startswith(tuple(prefixes))]
    assert not left, f"the demo left namespaces behind: {left}"
    assert elapsed < BOUND, "make demo took %.1f s" % elapsed
