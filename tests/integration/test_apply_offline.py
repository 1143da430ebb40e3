"""`calfwd apply --offline` (issue 13 item 2), in the lab: calfwd writes its zone, policies and
(firewalld < 2.0, uplink in no zone) its service into the lab firewalld's --system-config
directory with no firewalld running, as an image build would; then a real firewalld starts on
that directory.

Paths probed before calfwd ever runs online (no `inet calfwd` table exists yet):
- peer -> pod: routed, no NAT; firewalld forwards it only through calfwd-forward (ANY -> calfwd).
- pod -> proxy: Felix's own natOutgoing MASQUERADE, which survives firewalld's start only
  because the flush guard apply --offline installed is in effect from that start (the lab hides
  the drop-in's paths from firewalld as systemd would), and calfwd's zone forwards it out.
- peer -> node:179 (BGP): calfwd's host service in the default zone, or its host policy.
"""

from __future__ import annotations

import os
import subprocess
from typing import Dict

import pytest

from lab import probe
from lab.calfwd import Calfwd, minimal_config
from lab.wait import quiet_for, wait_until

from calfwd.judge import guard

BGP = 179


def files(lab) -> Dict[str, bytes]:
    """firewalld's zone, policy and service files (not its *.xml.old backups)."""
    root = lab.firewalld.config_dir
    return {str(p.relative_to(root)): p.read_bytes() for sub in ("zones", "policies", "services")
            for p in sorted((root / sub).glob("*.xml"))}


def watch_reloads(lab, log):
    """dbus-monitor on the lab's bus, logging every Reloaded signal firewalld sends."""
    out = open(log, "w")
    monitor = lab.node.popen("dbus-monitor", "--system",
                             "type='signal',interface='org.fedoraproject.FirewallD1',member='Reloaded'",
                             env=lab.firewalld.env, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    wait_until(lambda: "NameAcquired" in log.read_text(), 10, "dbus-monitor started", interval=0.02)
    return monitor


def test_offline_apply_then_firewalld_start_lets_pod_traffic_through_and_calfwd_needs_no_reload(lab):
    echo = probe.start_echo_server(lab.node, BGP)
    calfwd = Calfwd(lab, minimal_config(lab))
    dropin = calfwd.env["CALFWD_FLUSH_GUARD_DROPIN"]
    bus = calfwd.env["DBUS_SYSTEM_BUS_ADDRESS"]
    calfwd.env["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={lab.workdir}/no-bus"  # an image build has none
    try:
        result = calfwd.cli("apply", "--offline", "--firewalld-dir", str(lab.firewalld.config_dir))
        assert result.returncode == 0, (result.stdout, result.stderr)
        for line in ("create zone 'calfwd' (permanent)", "create policy 'calfwd-forward' (permanent)",
                     "create policy 'calfwd-host' (permanent)"):
            assert line in result.stdout, result.stdout
        assert f"flush guard: installed {dropin}" in result.stdout, result.stdout
        assert "conflict" not in result.stdout + result.stderr, result.stdout
        written = files(lab)
        assert {"zones/calfwd.xml", "policies/calfwd-forward.xml", "policies/calfwd-host.xml"} <= set(written)

        again = calfwd.cli("apply", "--offline")  # the directory from CALFWD_FIREWALLD_DIR, as the lab sets it
        assert again.returncode == 0, (again.stdout, again.stderr)
        assert "in sync, nothing changed" in again.stdout and "changed:" not in again.stdout, again.stdout
        assert "conflict" not in again.stdout + again.stderr, again.stdout
        assert files(lab) == written

        calfwd.env["DBUS_SYSTEM_BUS_ADDRESS"] = bus
        with open(dropin) as handle:
            lab.firewalld.inaccessible_paths = guard.parse_dropin(handle.read())
        lab.firewalld.start()
        assert "calfwd" in lab.firewalld.firewall_cmd("--get-zones").split()
        assert {"calfwd-forward", "calfwd-host"} <= set(lab.firewalld.firewall_cmd("--get-policies").split())
        assert lab.node.run("nft", "list", "table", "inet", "calfwd", check=False).returncode != 0, \
            "calfwd's own table exists: the paths below would not prove the files alone"
        assert lab.calico.present(), "firewalld flushed Felix's rules: the flush guard was not in effect"
        for v6 in (False, True):
            assert lab.peer_reaches_pod(v6=v6), f"routed peer -> pod (v6={v6}) before calfwd runs"
            assert lab.pod_reaches_proxy(v6=v6), f"pod -> proxy (v6={v6}), Felix's natOutgoing"
        assert lab.connect(lab.peer, lab.addr.node_v4, BGP), "BGP to the node before calfwd runs"

        monitor = watch_reloads(lab, lab.workdir / "reloaded.log")
        try:
            online = calfwd.cli("apply")
            assert online.returncode == 0, (online.stdout, online.stderr)
            assert "firewalld: in sync" in online.stdout.splitlines(), online.stdout
            assert "reload" not in online.stdout and "conflict" not in online.stdout, online.stdout
            log = lab.workdir / "reloaded.log"
            quiet_for(lambda: "member=Reloaded" not in log.read_text(), 0.3,
                      "an apply with nothing to change sends firewalld no reload")
            assert "member=Reloaded" not in log.read_text()
        finally:
            monitor.kill()
            monitor.wait()
        assert lab.node.run("nft", "list", "table", "inet", "calfwd", check=False).returncode == 0
    finally:
        echo.kill()


def test_offline_apply_leaves_a_running_firewalld_s_files_alone(lab):
    lab.firewalld.start()
    before = files(lab)
    calfwd = Calfwd(lab, minimal_config(lab))
    result = calfwd.cli("apply", "--offline")
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "firewalld is running" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert files(lab) == before
    assert "calfwd" not in lab.firewalld.firewall_cmd("--permanent", "--get-zones").split()


def test_offline_apply_refuses_runtime_mode_and_a_directory_without_offline_with_one_line(lab):
    calfwd = Calfwd(lab, minimal_config(lab) + '[firewalld]\nmode = "runtime"\n')
    mode = f"calfwd: {calfwd.config_path}: [firewalld] mode: "
    for args, expect in ((("--offline",), mode), (("--firewalld-dir", "/x"), "calfwd: apply: --firewalld-dir ")):
        result = calfwd.cli("apply", *args)
        assert result.returncode == 2, (result.stdout, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.startswith("calfwd: ")]
        assert len(lines) == 1 and lines[0].startswith(expect), lines
        assert "Traceback" not in result.stderr
    assert files(lab) == {}


# Runs as `unshare --mount --propagation private python3 -c BIND_THEN_EXEC SRC DST argv...`
# inside the node's namespace: the bind mount lives only in that private mount namespace and
# goes with the process.
BIND_THEN_EXEC = (
    "import os, subprocess, sys\n"
    "subprocess.run(['mount', '-n', '--bind', sys.argv[1], sys.argv[2]], check=True)\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


@pytest.mark.parametrize("path", ["symlink", "bind-mount", "subdirectory-symlinks", "subdirectory-bind-mount"])
def test_offline_apply_leaves_a_running_firewalld_s_files_alone_by_any_path(lab, path):
    """The same files by another name: a link to firewalld's directory, a bind mount of it, or
    an image tree whose zones/, policies/ and services/ lead into it."""
    from lab.calfwd import PYTHON

    lab.firewalld.start()
    live = lab.firewalld.config_dir
    for sub in ("zones", "policies", "services"):
        (live / sub).mkdir(exist_ok=True)
    before = files(lab)
    calfwd = Calfwd(lab, minimal_config(lab))
    other = lab.workdir / "image-firewalld"
    bind = None
    if path == "symlink":
        other.symlink_to(live)
    elif path == "bind-mount":
        other.mkdir()
        bind = (live, other)
    else:
        other.mkdir()
        for sub in ("zones", "policies", "services"):
            if path == "subdirectory-symlinks":
                (other / sub).symlink_to(live / sub)
            elif sub == "zones":
                (other / sub).mkdir()
                bind = (live / sub, other / sub)
            else:
                (other / sub).mkdir()
    argv = (PYTHON, "-m", "calfwd", "--config", str(calfwd.config_path), "apply", "--offline",
            "--firewalld-dir", str(other))
    if bind:
        argv = ("unshare", "--mount", "--propagation", "private", PYTHON, "-c", BIND_THEN_EXEC,
                str(bind[0]), str(bind[1])) + argv
    result = lab.node.run(*argv, env=calfwd.env, check=False, timeout=60)
    assert result.returncode == 3, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("calfwd: ")]
    assert len(lines) == 1 and "firewalld is running" in lines[0] and "Traceback" not in result.stderr, lines
    assert lines[0].startswith(f"calfwd: firewalld: nothing written to {other}"), lines
    assert files(lab) == before
    assert "calfwd" not in lab.firewalld.firewall_cmd("--permanent", "--get-zones").split()


@pytest.mark.parametrize("where", ["firewalld.conf", "zones/planted.xml"])
def test_offline_apply_refuses_a_fifo_at_once_and_writes_nothing(lab, where):
    """A FIFO where firewalld keeps a file: calfwd would block opening it, and so would
    firewall-offline-cmd (it reads every file there). Refused before anything runs."""
    image = lab.workdir / "image-firewalld"
    (image / "zones").mkdir(parents=True)
    os.mkfifo(image / where)
    calfwd = Calfwd(lab, minimal_config(lab))
    result = calfwd.cli("apply", "--offline", "--firewalld-dir", str(image), timeout=20)  # hangs: TimeoutExpired
    assert result.returncode == 3, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("calfwd: ")]
    assert lines == [f"calfwd: firewalld: nothing written to {image}: {image / where} is a FIFO, not a regular "
                     "file (calfwd and firewall-offline-cmd would wait on it)"], lines
    assert sorted(str(p.relative_to(image)) for p in image.rglob("*")) == ["zones", "zones/planted.xml"] \
        if where.startswith("zones/") else ["firewalld.conf", "zones"]
