"""What the hostile review of 0.1 found (issue 11), proven fixed in the lab: real firewalld on
the lab's bus, calfwd as the unit runs it. Items tested without the lab (the config file's
checks, nesting) are in tests/unit/test_config.py."""

from __future__ import annotations

import subprocess
import time

from lab.calfwd import PYTHON, Calfwd, footprint, minimal_config

# Fake Reloaded signals for `seconds`, as fast as the bus takes them; prints how many.
FLOOD = r"""
import sys, time
import dbus, dbus.lowlevel
bus = dbus.SystemBus()
end, n = time.monotonic() + float(sys.argv[1]), 0
while time.monotonic() < end:
    for _ in range(200):
        bus.send_message(dbus.lowlevel.SignalMessage(
            "/org/fedoraproject/FirewallD1", "org.fedoraproject.FirewallD1", "Reloaded"))
    bus.flush()
    n += 200
bus.call_blocking("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId", "", ())
print(n)
"""


def _proc(pid: int):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return rss, (int(fields[11]) + int(fields[12])) / 100.0


def test_a_local_users_flood_of_fake_reloaded_never_reaches_calfwd(lab):
    """Item 2: 0.1 grew from 27 MB to 618 MB in 60 s and burnt half a core. The bus now
    filters by firewalld's name: calfwd's memory stays flat and it spends almost nothing."""
    lab.firewalld.start()
    calfwd = Calfwd(lab)
    calfwd.start()
    calfwd.wait_for("reconciled", count=2)
    time.sleep(1.0)
    rss0, cpu0 = _proc(calfwd.proc.pid)
    mark = calfwd.line_count()
    sent = lab.node.run("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",  # nobody
                        PYTHON, "-c", FLOOD, "30", timeout=120).stdout.strip()
    rss1, cpu1 = _proc(calfwd.proc.pid)
    assert int(sent) > 10000, sent
    assert rss1 - rss0 < 5, f"RSS {rss0:.1f} -> {rss1:.1f} MB under {sent} fake signals"
    assert cpu1 - cpu0 < 1.0, f"{cpu1 - cpu0:.2f} CPU-s under {sent} fake signals"
    assert calfwd.events("firewalld-reloaded", after=mark) == []
    lab.firewalld.reload()  # the real one still counts
    calfwd.wait_for("firewalld-reloaded", after=mark)


def test_six_concurrent_applies_from_scratch_all_succeed(lab):
    """Item 12: up to five of six failed with NAME_CONFLICT; the losers now plan again."""
    lab.firewalld.start()
    calfwd = Calfwd(lab, minimal_config(lab))
    procs = [lab.node.popen(PYTHON, "-m", "calfwd", "--config", str(calfwd.config_path), "apply",
                            env=calfwd.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for _ in range(6)]
    outputs = [(p.wait(timeout=120), p.stdout.read()) for p in procs]
    assert [code for code, _ in outputs] == [0] * 6, outputs
    assert calfwd.cli("status").returncode == 0
    zones = lab.firewalld.firewall_cmd("--permanent", "--get-zones").split()
    assert zones.count("calfwd") == 1
    assert "calfwd-forward" in footprint(lab)["policies_permanent"]
