"""The alert rules docs/metrics.md offers are valid, and fire when they should:
`promtool check rules` and `promtool test rules` on made-up series. A rule that can never fire
(label sets that never match) fails here, not at 3 a.m."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict

import pytest

METRICS_DOC = Path(__file__).resolve().parents[3] / "docs" / "metrics.md"


def doc_rules() -> str:
    return re.search(r"```yaml\n(.*?)```", METRICS_DOC.read_text(), re.S).group(1)


def annotations(rules: str) -> Dict[str, Dict[str, str]]:
    """alert -> its annotation templates, read from the doc's (simple, quoted) lines."""
    found: Dict[str, Dict[str, str]] = {}
    current = ""
    for line in rules.splitlines():
        alert = re.match(r"\s*- alert: (\S+)", line)
        if alert:
            current = alert.group(1)
            found[current] = {}
        text = re.match(r'\s*(summary|description): "(.*)"$', line)
        if text:
            found[current][text.group(1)] = text.group(2)
    return found


def expected(template: str, labels: Dict[str, str], value: str = "") -> str:
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)
    return text.replace("{{ $value }}", value)


@pytest.fixture
def promtool():
    path = shutil.which("promtool")
    if not path:
        pytest.skip("promtool is not installed (tests/install-deps.sh)")
    return path


def test_doc_rules_pass_promtool_check(promtool, tmp_path):
    (tmp_path / "calfwd.rules.yml").write_text(doc_rules())
    proc = subprocess.run([promtool, "check", "rules", str(tmp_path / "calfwd.rules.yml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "5 rules found" in proc.stdout, proc.stdout + proc.stderr


def test_doc_rules_fire_when_they_should(promtool, tmp_path):
    rules = doc_rules()
    notes = annotations(rules)
    (tmp_path / "calfwd.rules.yml").write_text(rules)

    def alert(name, severity, value="", **labels):
        labels = dict(labels, instance=labels.get("instance", "n1"), job="node")
        return {"exp_labels": dict(labels, severity=severity),
                "exp_annotations": {k: expected(v, labels, value) for k, v in notes[name].items()}}

    n1, n2 = 'instance="n1",job="node"', 'instance="n2",job="node"'
    case = {
        "interval": "1m",
        "input_series": [
            # n1: the firewalld layer out of sync for good from minute 1; n2: only for 3 minutes.
            {"series": f'calfwd_in_sync{{{n1},layer="firewalld"}}', "values": "1 0x20"},
            {"series": f'calfwd_in_sync{{{n2},layer="firewalld"}}', "values": "1 0 0 0 1x20"},
            # n1 flushed by a reload without the guard; n2 flushed too, but has the guard.
            {"series": f'calfwd_flushes_total{{{n1},owner="calico",cause="reload"}}', "values": "0 0 1x20"},
            {"series": f'calfwd_flushes_total{{{n1},owner="calico",cause="not-firewalld"}}', "values": "0x20"},
            {"series": f'calfwd_flush_guard_installed{{{n1}}}', "values": "0x20"},
            {"series": f'calfwd_flushes_total{{{n2},owner="calico",cause="reload"}}', "values": "0 0 1x20"},
            {"series": f'calfwd_flush_guard_installed{{{n2}}}', "values": "1x20"},
            # n1 last succeeded at time 0 (calfwd stopped); n2 keeps succeeding.
            {"series": f'calfwd_last_success_timestamp_seconds{{{n1}}}', "values": "0x20"},
            {"series": f'calfwd_last_success_timestamp_seconds{{{n2}}}', "values": "0+60x20"},
            {"series": f'calfwd_conflicts{{{n1}}}', "values": "2x20"},
            # n1 blocked (a flush not undone) for good from minute 1; n2 blocked for one minute.
            {"series": f'calfwd_health{{{n1},state="blocked"}}', "values": "0 1x20"},
            {"series": f'calfwd_health{{{n1},state="ok"}}', "values": "1 0x20"},
            {"series": f'calfwd_health{{{n2},state="blocked"}}', "values": "0 1 0x20"},
            {"series": f'calfwd_conflicts{{{n2}}}', "values": "0x20"},
        ],
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": "CalfwdNotInSync", "exp_alerts": []},
            {"eval_time": "7m", "alertname": "CalfwdNotInSync",
             "exp_alerts": [alert("CalfwdNotInSync", "warning", layer="firewalld")]},
            {"eval_time": "1m", "alertname": "CalfwdFlushesWithoutGuard", "exp_alerts": []},
            {"eval_time": "3m", "alertname": "CalfwdFlushesWithoutGuard",
             "exp_alerts": [alert("CalfwdFlushesWithoutGuard", "warning")]},
            {"eval_time": "9m", "alertname": "CalfwdNoRecentSuccess", "exp_alerts": []},
            {"eval_time": "11m", "alertname": "CalfwdNoRecentSuccess",
             "exp_alerts": [alert("CalfwdNoRecentSuccess", "warning")]},
            {"eval_time": "2m", "alertname": "CalfwdPathBlocked", "exp_alerts": []},
            {"eval_time": "4m", "alertname": "CalfwdPathBlocked",
             "exp_alerts": [alert("CalfwdPathBlocked", "critical", state="blocked")]},
            {"eval_time": "10m", "alertname": "CalfwdConflict", "exp_alerts": []},
            {"eval_time": "16m", "alertname": "CalfwdConflict",
             "exp_alerts": [alert("CalfwdConflict", "info", value="2")]},
        ],
    }
    config = {"rule_files": ["calfwd.rules.yml"], "evaluation_interval": "1m", "tests": [case]}
    (tmp_path / "calfwd.test.yml").write_text(json.dumps(config, indent=1))  # JSON is YAML
    proc = subprocess.run([promtool, "test", "rules", "calfwd.test.yml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
