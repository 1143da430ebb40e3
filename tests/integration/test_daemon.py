"""`calfwd run` in the lab: what triggers a reconcile, what does not, and how it stops."""

from __future__ import annotations

import signal

from lab.calfwd import Calfwd
from lab.wait import quiet_for, until_steady, wait_until

HOLDOFF_MARGIN = 1.0  # seconds: longer than the daemon's coalescing hold-off


def table(lab) -> str:
    return lab.node.run("nft", "list", "table", "inet", "calfwd", check=False).stdout


def fake_reloaded(lab, count: int) -> None:
    """Another bus client (not firewalld) emits firewalld's Reloaded signal."""
    for _ in range(count):
        lab.node.run("dbus-send", "--system", "--type=signal", "/org/fedoraproject/FirewallD1",
                     "org.fedoraproject.FirewallD1.Reloaded", env={"DBUS_SYSTEM_BUS_ADDRESS": lab.bus.address})


def test_fake_reloaded_from_another_client_is_ignored(lab):
    lab.firewalld.start()
    calfwd = Calfwd(lab)
    calfwd.start()
    calfwd.wait_for("reconciled", count=1)
    until_steady(calfwd.line_count, 0.6, 15, "the start-up burst is over")
    mark = calfwd.line_count()
    before = table(lab)
    fake_reloaded(lab, 50)
    # A real reload afterwards proves calfwd was listening the whole time.
    lab.firewalld.reload()
    calfwd.wait_for("firewalld-reloaded", after=mark)
    calfwd.wait_for("reconciled", after=mark)
    quiet_for(lambda: len(calfwd.events("firewalld-reloaded", after=mark)) == 1
              and len(calfwd.events("reconciled", after=mark)) == 1, HOLDOFF_MARGIN,
              "the 50 fake Reloaded signals bring no reconcile of their own")
    assert len(calfwd.events("firewalld-reloaded", after=mark)) == 1
    assert len(calfwd.events("reconciled", after=mark)) == 1
    assert table(lab) == before



def test_sighup_with_invalid_config_keeps_the_last_good_one(lab):
    calfwd = Calfwd(lab)
    calfwd.start()
    good = table(lab)
    calfwd.write_config('[calico]\nip_pools = ["198.18.64.1/20"]\nnat_outgoing = true\n')
    mark = calfwd.line_count()
    calfwd.signal(signal.SIGHUP)
    lines = calfwd.wait_for("config-invalid", after=mark)
    assert "calico.ip_pools[0]" in lines[0] and "host bits" in lines[0] and "keeping the last good" in lines[0]
    assert calfwd.running and table(lab) == good
    assert lab.pod_reaches_proxy()

    calfwd.write_config('[calico]\nip_pools = ["198.18.64.0/20", "198.18.96.0/20"]\nnat_outgoing = true\n')
    mark = calfwd.line_count()
    calfwd.signal(signal.SIGHUP)
    calfwd.wait_for("config-reloaded", after=mark)
    calfwd.wait_for("reconciled", after=mark)
    assert "198.18.96.0/20" in table(lab)


def test_sigterm_exits_zero_and_leaves_every_rule(lab):
    lab.firewalld.start()
    calfwd = Calfwd(lab)
    calfwd.start()
    nft_before = table(lab)
    zone_before = lab.firewalld.firewall_cmd("--zone=calfwd", "--list-all")
    assert calfwd.stop() == 0
    calfwd.wait_for("stopping")
    assert table(lab) == nft_before
    assert lab.firewalld.firewall_cmd("--zone=calfwd", "--list-all") == zone_before
    assert lab.pod_reaches_proxy() and lab.peer_reaches_pod()


def test_resync_repairs_drift_without_any_signal(lab):
    calfwd = Calfwd(lab, config=None)
    calfwd.write_config(f'[calico]\nip_pools = ["{lab.addr.pool_v4}"]\nnat_outgoing = true\n'
                        "[daemon]\nresync_interval = 1\nkernel_events = false\n")
    calfwd.start()
    good = table(lab)
    lab.node.run("nft", "delete", "table", "inet", "calfwd")
    wait_until(lambda: table(lab) == good, 5, "the resync restores calfwd's table")
    assert table(lab) == good
    assert any("after resync" in line and "1 change" in line for line in calfwd.events("reconciled"))


def test_firewalld_stopping_is_reported_and_calfwd_waits(lab):
    lab.firewalld.start()
    calfwd = Calfwd(lab)
    calfwd.start()
    lab.firewalld.stop()
    calfwd.wait_for("firewalld-vanished")
    assert calfwd.running
    assert lab.pod_reaches_proxy(), "pod egress must survive firewalld stopping (its flush included)"
    mark = calfwd.line_count()
    lab.firewalld.start()
    calfwd.wait_for("firewalld-appeared", after=mark)
    assert lab.pod_reaches_proxy() and lab.peer_reaches_pod()


def test_lost_bus_exits_non_zero_for_systemd_to_restart(lab):
    """Chosen behaviour: exit 1 (Restart=on-failure brings calfwd back with a fresh connection)."""
    calfwd = Calfwd(lab)
    calfwd.start()
    lab.bus.restart()
    assert calfwd.proc.wait(timeout=10) == 1
    assert "lost the system bus" in "\n".join(calfwd.lines())
    assert "masquerade" in table(lab), "rules must stay in place when calfwd exits"
