"""`calfwd cleanup` when firewalld cannot be asked over D-Bus (hardening item 4), in the lab:
real firewalld with --system-config in a tmpdir, calfwd's CLI in the node namespace.

Stopped firewalld: calfwd's zone and policies go from its files (firewall-offline-cmd), and
BGP is closed when firewalld starts again. Hung firewalld, or a bus calfwd cannot reach: the
files stay exactly as they were, and cleanup names what remains and exits 3. Switched to
mode = "runtime": the permanent objects of the earlier permanent mode go too.
"""

from __future__ import annotations

import os
import signal
from typing import Dict

import pytest

from lab import probe
from lab.calfwd import Calfwd, minimal_config

BGP = 179
OURS = ("zones/calfwd.xml", "policies/calfwd-forward.xml", "policies/calfwd-host.xml")


def files(lab) -> Dict[str, bytes]:
    """firewalld's zone and policy files (not its *.xml.old backups), by relative path."""
    root = lab.firewalld.config_dir
    return {str(p.relative_to(root)): p.read_bytes() for sub in ("zones", "policies")
            for p in sorted((root / sub).glob("*.xml"))}


def applied(lab, config: str = "", bind: bool = True) -> Calfwd:
    lab.firewalld.start()
    if bind:  # As NetworkManager binds the uplink: policies apply only between zones that are in use.
        lab.firewalld.firewall_cmd("--permanent", "--zone=public", f"--add-interface={lab.uplink}")
        lab.firewalld.firewall_cmd("--zone=public", f"--add-interface={lab.uplink}")
    calfwd = Calfwd(lab, config or minimal_config(lab))
    result = calfwd.cli("apply")
    assert result.returncode == 0, result.stderr
    assert set(OURS[1:]) <= set(files(lab))
    return calfwd


def names(lab, *args: str) -> set:
    return set(lab.firewalld.firewall_cmd(*args).split())


def errors(result) -> list:
    return [line for line in result.stderr.splitlines() if line.startswith("calfwd: ")]


def test_stopped_firewalld_loses_calfwds_zone_and_policies_and_bgp_stays_closed(lab):
    echo = probe.start_echo_server(lab.node, BGP)
    try:
        calfwd = applied(lab)
        assert lab.connect(lab.peer, lab.addr.node_v4, BGP), "calfwd-host opened BGP"
        lab.firewalld.stop()
        result = calfwd.cli("cleanup")
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        for line in ("delete policy 'calfwd-forward'", "delete policy 'calfwd-host'", "delete zone 'calfwd'"):
            assert f"removed: {line} (permanent) in {lab.firewalld.config_dir}, with firewall-offline-cmd" \
                in result.stdout, result.stdout
        assert not set(OURS) & set(files(lab))

        lab.firewalld.start()
        assert "calfwd" not in names(lab, "--get-zones")
        assert not {p for p in names(lab, "--get-policies") if p.startswith("calfwd")}
        assert f"{BGP}/tcp" not in lab.firewalld.firewall_cmd("--list-all-policies")
        assert not lab.connect(lab.peer, lab.addr.node_v4, BGP), "BGP open with calfwd uninstalled"
        again = calfwd.cli("cleanup")
        assert again.returncode == 0 and "nothing of calfwd's was there" in again.stdout
    finally:
        echo.kill()


def test_hung_firewalld_keeps_its_files_and_cleanup_says_what_remains(lab):
    calfwd = applied(lab)
    before = files(lab)
    pid = lab.firewalld.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        result = calfwd.cli("cleanup")
        assert files(lab) == before, "files edited under a live firewalld"
    finally:
        os.kill(pid, signal.SIGCONT)
    assert result.returncode == 3, (result.stdout, result.stderr)
    lines = errors(result)
    assert "calfwd: firewalld: zone 'calfwd' (permanent) not removed: firewalld owns its bus name but does " \
           "not answer" in "\n".join(lines), lines
    assert any(line.startswith("calfwd: firewalld: policy 'calfwd-host' (permanent) not removed") for line in lines)
    assert "removed: remove table inet calfwd" in result.stdout, "the nftables layer goes regardless"
    assert "calfwd" in names(lab, "--get-zones")


def test_unreachable_bus_keeps_the_files_and_cleanup_says_what_remains(lab):
    calfwd = applied(lab)
    before = files(lab)
    calfwd.env["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={lab.workdir}/no-such-bus"
    result = calfwd.cli("cleanup")
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert files(lab) == before
    lines = errors(result)
    assert len(lines) == 3, lines
    assert lines[2].startswith("calfwd: firewalld: zone 'calfwd' (permanent) not removed: no system bus"), lines
    assert "Traceback" not in result.stderr
    assert "calfwd" in names(lab, "--get-zones") and "calfwd-host" in names(lab, "--get-policies")


def test_after_a_switch_to_runtime_mode_the_permanent_objects_go_too(lab):
    calfwd = applied(lab)
    calfwd.write_config(minimal_config(lab) + '[firewalld]\nmode = "runtime"\n')
    result = calfwd.cli("cleanup")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "removed: reload firewalld once" in result.stdout
    for where in (("--permanent",), ()):
        assert "calfwd" not in names(lab, *where, "--get-zones"), where
        assert not {p for p in names(lab, *where, "--get-policies") if p.startswith("calfwd")}, where
    assert not set(OURS) & set(files(lab))


def test_offline_an_unmarked_zone_of_calfwds_name_stays_and_a_renamed_marked_one_goes(lab):
    """An older config named the zone 'pods-old'; the admin made a zone 'calfwd' of their own."""
    calfwd = applied(lab, minimal_config(lab) + '[firewalld]\nzone = "pods-old"\n')
    assert "zones/pods-old.xml" in files(lab)
    lab.firewalld.firewall_cmd("--permanent", "--new-zone=calfwd")
    lab.firewalld.firewall_cmd("--permanent", "--zone=calfwd", "--add-interface=eth7")
    admins = files(lab)["zones/calfwd.xml"]
    calfwd.write_config(minimal_config(lab))
    lab.firewalld.stop()
    result = calfwd.cli("cleanup")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "removed: delete zone 'pods-old' (permanent)" in result.stdout
    assert "firewalld: zone 'calfwd' left alone: it was not created by calfwd" in result.stdout
    assert files(lab)["zones/calfwd.xml"] == admins
    assert "zones/pods-old.xml" not in files(lab)
    lab.firewalld.start()
    zones = names(lab, "--get-zones")
    assert "calfwd" in zones and "pods-old" not in zones
    assert "eth7" in lab.firewalld.firewall_cmd("--zone=calfwd", "--list-interfaces")


def test_stopped_firewalld_loses_calfwds_service_from_the_default_zone(lab):
    """Issue 12 item 2: with the uplink in no zone, firewalld 1.x gets calfwd's service in the
    default zone; cleanup with firewalld stopped takes it out of the zone file and deletes it."""
    echo = probe.start_echo_server(lab.node, BGP)
    try:
        calfwd = applied(lab, bind=False)
        version = lab.firewalld.firewall_cmd("--version").strip()
        in_zone = "calfwd-host" in names(lab, "--zone=public", "--list-services")
        assert in_zone == (int(version.split(".")[0]) < 2), version
        assert probe.eventually(lambda: lab.connect(lab.peer, lab.addr.node_v4, BGP, 0.5), 3)
        lab.firewalld.stop()
        result = calfwd.cli("cleanup")
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert not (lab.firewalld.config_dir / "services" / "calfwd-host.xml").exists()
        lab.firewalld.start()
        assert "calfwd-host" not in names(lab, "--zone=public", "--list-services")
        assert "calfwd-host" not in names(lab, "--get-services")
        assert not lab.connect(lab.peer, lab.addr.node_v4, BGP), "BGP open with calfwd uninstalled"
    finally:
        echo.kill()


@pytest.mark.parametrize("planted", ["fifo", "symlink"])
def test_cleanup_never_waits_on_or_follows_what_is_planted_at_the_metrics_path(lab, planted):
    """Package removal runs cleanup as root: a FIFO at [metrics] textfile must not hang it, a
    link there must not be followed (nor removed: calfwd never leaves one), and both are said."""
    textdir = lab.workdir / "textfile"
    textdir.mkdir()
    prom = textdir / "calfwd.prom"
    calfwd = Calfwd(lab, minimal_config(lab) + f'[metrics]\ntextfile = "{prom}"\n')
    precious = lab.workdir / "precious.prom"
    precious.write_text("# HELP calfwd_health looks like calfwd's, but is another file\n")
    if planted == "fifo":
        os.mkfifo(prom)
    else:
        prom.symlink_to(precious)
    why = {"fifo": "a FIFO", "symlink": "a symbolic link"}[planted]
    result = calfwd.cli("cleanup", timeout=20)  # a regression blocks in open(): TimeoutExpired
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert f"metrics: {prom} left alone: {why}, not the regular file calfwd writes" in result.stdout, \
        result.stdout
    assert "removed: metrics file" not in result.stdout and os.path.lexists(prom)
    assert precious.read_text().startswith("# HELP calfwd_health looks like")
