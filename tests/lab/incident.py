"""The incident's scenarios, shared by test_incident.py (the lab's minimal config) and
test_auto_pools_in_lab.py (the same steps on `ip_pools = "auto"`): after every disturbance, a
*new* connection pod -> proxy (needs natOutgoing) and peer -> pod (needs firewalld to forward
into the pod) must succeed within a second."""

from __future__ import annotations

from lab.calfwd import Calfwd, footprint


def assert_traffic(lab, when: str) -> None:
    assert lab.pod_reaches_proxy(), f"pod -> proxy broken {when}"
    assert lab.peer_reaches_pod(), f"peer -> pod broken {when}"


def firewalld_starting_after_calfwd(lab):
    calfwd = Calfwd(lab)
    calfwd.start()
    assert_traffic(lab, "with calfwd alone")
    mark = calfwd.line_count()
    lab.firewalld.start()
    assert_traffic(lab, "after firewalld started")
    calfwd.wait_for("firewalld-appeared", after=mark)
    assert calfwd.running


def reloads_restarts_and_kills(lab):
    lab.firewalld.start()
    calfwd = Calfwd(lab)
    calfwd.start()
    assert_traffic(lab, "after calfwd started")
    baseline = footprint(lab)

    for i in range(3):
        lab.firewalld.reload()
        assert not lab.calico.present(), "firewalld 1.x should flush Felix's rules on reload"
        assert_traffic(lab, f"after reload {i + 1}")
    lab.firewalld.restart()
    assert_traffic(lab, "after firewalld restart")
    lab.firewalld.kill()
    assert_traffic(lab, "while firewalld is SIGKILLed (its table stays loaded)")
    lab.firewalld.start()
    assert_traffic(lab, "after firewalld SIGKILL and start")

    calfwd.wait_for("reconciled", count=3)
    assert calfwd.running
    assert footprint(lab) == baseline, "something grew or changed across reloads"


def calfwd_restarted(lab):
    lab.firewalld.start()
    calfwd = Calfwd(lab)
    calfwd.start()
    baseline = footprint(lab)
    assert calfwd.stop() == 0
    assert_traffic(lab, "with calfwd stopped (SIGTERM leaves every rule)")
    lab.firewalld.reload()
    assert_traffic(lab, "after a reload while calfwd is stopped (permanent config)")
    calfwd.start()
    assert_traffic(lab, "after calfwd restarted")
    assert footprint(lab) == baseline


def felix_rules_flushed_then_restored(lab):
    lab.firewalld.start()
    calfwd = Calfwd(lab)
    calfwd.start()
    lab.calico.restore()
    assert lab.calico.present()
    assert_traffic(lab, "with Felix's rules in place")
    lab.firewalld.reload()  # flushes Felix's rules; Felix would take up to 180 s
    assert not lab.calico.present()
    assert_traffic(lab, "with Felix's rules flushed and not restored")
    lab.calico.restore()
    assert_traffic(lab, "after Felix restored its rules")


SCENARIOS = (firewalld_starting_after_calfwd, reloads_restarts_and_kills, calfwd_restarted,
             felix_rules_flushed_then_restored)
