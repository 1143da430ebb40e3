"""`make demo` as the README runs it: the incident side by side, exit 0, nothing left behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lab import unavailable
from lab.netns import PREFIX, list_namespaces

REPO = Path(__file__).resolve().parents[2]


def test_demo_shows_the_incident_without_calfwd_and_none_with_it():
    if os.geteuid() != 0 or unavailable():
        pytest.skip(unavailable() or "needs root")
    before = set(list_namespaces())
    result = subprocess.run(["/usr/bin/python3", str(REPO / "tests" / "demo.py")], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line[:2] in ("1.", "2.", "3.", "4.", "5.", "6.")]
    assert len(rows) == 6, result.stdout
    without = [row[-4:-2] for row in rows]
    with_calfwd = [row[-2:] for row in rows]
    assert without[0] == ["ok", "ok"] and all(w == ["TIMEOUT", "TIMEOUT"] for w in without[1:])
    assert all(w == ["ok", "ok"] for w in with_calfwd)
    left = {n for n in set(list_namespaces()) - before if n.startswith(PREFIX)}
    assert not left, f"the demo left namespaces behind: {left}"
