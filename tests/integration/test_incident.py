"""The incident, end to end: calfwd on the minimal two-line config keeps pod traffic working
(the scenarios: tests/lab/incident.py).

Real firewalld (on a private bus), real kernel, Calico simulated from Felix's real rules.
After every disturbance, a *new* connection pod -> proxy (needs natOutgoing) and peer -> pod
(needs firewalld to forward into the pod) must succeed within a second. The same steps
without calfwd fail, so these tests can fail.
"""

from __future__ import annotations

import re

from lab import incident
from lab.calfwd import Calfwd, traffic_ok


def test_without_calfwd_the_incident_happens(lab):
    assert traffic_ok(lab)
    lab.firewalld.start()
    assert not lab.pod_reaches_proxy() and not lab.peer_reaches_pod()
    lab.calico.restore()  # restarting calico-node no longer helps: firewalld rejects
    assert not lab.pod_reaches_proxy() and not lab.peer_reaches_pod()


def test_firewalld_starting_after_calfwd(lab):
    incident.firewalld_starting_after_calfwd(lab)


def test_reloads_restarts_and_kills(lab):
    incident.reloads_restarts_and_kills(lab)


def test_calfwd_restarted(lab):
    incident.calfwd_restarted(lab)


def test_felix_rules_flushed_then_restored(lab):
    incident.felix_rules_flushed_then_restored(lab)


def test_reconcile_latency_is_reported(lab):
    """The journal entry for a Reloaded-triggered reconcile carries its duration."""
    lab.firewalld.start()
    calfwd = Calfwd(lab)
    calfwd.start()
    mark = calfwd.line_count()
    lab.firewalld.reload()
    line = calfwd.wait_for("reconciled", after=mark)[0]
    assert "after firewalld-reloaded" in line and "verified" in line
    assert re.search(r"duration_ms=[0-9.]+", line)
