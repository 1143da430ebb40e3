"""The flush guard on the real firewalld 1.3.3: Felix's rules survive its start, reload and stop.

`calfwd guard enable` writes the drop-in (to a file in the lab's workdir, never /etc); the
lab then runs firewalld the way systemd would with that drop-in: every path it names is
made inaccessible inside firewalld's own private mount namespace (an empty mode-0000 file
bind-mounted over it, as InaccessiblePaths= does). Everything else in the node namespace,
Calico's simulated Felix included, still runs iptables-nft normally.
"""

from __future__ import annotations

from calfwd.judge import guard
from lab.calfwd import Calfwd


def prepare(lab):
    calfwd = Calfwd(lab)
    dropin = lab.workdir / "firewalld.service.d" / "calfwd-flush-guard.conf"
    calfwd.env[guard.DROPIN_ENV] = str(dropin)
    calfwd.env["CALFWD_FIREWALLD_DIR"] = str(lab.firewalld.config_dir)
    return calfwd, dropin


def test_guard_keeps_felix_rules_through_start_reload_and_stop(lab):
    calfwd, dropin = prepare(lab)
    result = calfwd.cli("guard", "enable")
    assert result.returncode == 0, result.stderr
    assert "systemctl daemon-reload && systemctl restart firewalld" in result.stdout
    paths = guard.parse_dropin(dropin.read_text())
    assert "/usr/sbin/xtables-nft-multi" in paths
    assert "already installed and current" in calfwd.cli("guard", "enable").stdout

    lab.firewalld.inaccessible_paths = paths  # what systemd does with the drop-in
    lab.firewalld.start()
    assert lab.calico.present(), "firewalld start flushed Felix's rules despite the guard"
    assert "iptables is not usable" in lab.firewalld.logs()
    status = calfwd.cli("guard", "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "OK      flush-guard" in status.stdout and "cannot run" in status.stdout

    assert calfwd.cli("apply").returncode == 0  # calfwd's zone and policies: nothing needs iptables
    for _ in range(2):
        lab.firewalld.reload()
        assert lab.calico.present(), "firewalld reload flushed Felix's rules despite the guard"
    assert lab.pod_reaches_proxy() and lab.peer_reaches_pod()
    doctor = calfwd.cli("doctor")
    assert "OK      flush: Calico's rules are in the nft tables" in doctor.stdout, doctor.stdout
    lab.firewalld.stop()
    assert lab.calico.present(), "firewalld stop flushed Felix's rules despite the guard"


def test_without_the_guard_firewalld_flushes(lab):
    """The control: the same steps without the drop-in lose Felix's rules each time."""
    calfwd, dropin = prepare(lab)
    lab.firewalld.start()
    assert not lab.calico.present()
    status = calfwd.cli("guard", "status")
    # flush_guard = "auto" (the default) and this firewalld flushes: a warning with the fix.
    assert "does not exist" in status.stdout and "calfwd guard auto" in status.stdout, status.stdout
    lab.calico.restore()
    lab.firewalld.reload()
    assert not lab.calico.present()
    lab.calico.restore()
    lab.firewalld.stop()
    assert not lab.calico.present()


def test_installed_but_firewalld_not_restarted_then_disable(lab):
    calfwd, dropin = prepare(lab)
    lab.firewalld.start()
    assert calfwd.cli("guard", "enable").returncode == 0
    status = calfwd.cli("guard", "status")
    assert status.returncode == 1 and "started without it" in status.stdout
    calfwd.write_config(calfwd.config_path.read_text() + "[firewalld]\nflush_guard = true\n")
    assert calfwd.cli("guard", "disable").returncode == 0
    assert not dropin.exists()
    status = calfwd.cli("guard", "status")
    assert status.returncode == 1 and "flush_guard = true but" in status.stdout
    assert calfwd.cli("guard", "disable").returncode == 0  # nothing to do is fine


def test_refused_with_the_iptables_backend(lab):
    calfwd, dropin = prepare(lab)
    lab.firewalld.configure(FirewallBackend="iptables")
    result = calfwd.cli("guard", "enable")  # firewalld stopped: read from firewalld.conf
    assert result.returncode == 1 and "FirewallBackend=iptables" in result.stderr and "cannot start" in result.stderr
    lab.firewalld.start()
    result = calfwd.cli("guard", "enable")  # running: read over D-Bus
    assert result.returncode == 1 and "cannot start" in result.stderr
    assert not dropin.exists()


def test_refused_with_direct_rules(lab):
    calfwd, dropin = prepare(lab)
    lab.firewalld.start()
    # The lab sets up someone else's direct rule (calfwd itself never writes one).
    lab.firewalld.firewall_cmd("--direct", "--add-rule", "ipv4", "filter", "INPUT", "0", "-p", "tcp",
                               "--dport", "9", "-j", "ACCEPT")
    result = calfwd.cli("guard", "enable")
    assert result.returncode == 1 and "direct rule" in result.stderr and "runtime rule" in result.stderr
    lab.firewalld.firewall_cmd("--permanent", "--direct", "--add-passthrough", "ipv4", "-t", "filter", "-N", "x")
    lab.firewalld.stop()
    result = calfwd.cli("guard", "enable")  # firewalld stopped: direct.xml
    assert result.returncode == 1 and "permanent passthrough" in result.stderr
    assert not dropin.exists()


def test_refused_for_a_file_calfwd_did_not_write_and_cleanup_removes_its_own(lab):
    calfwd, dropin = prepare(lab)
    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Service]\nLimitNOFILE=4096\n")
    assert calfwd.cli("guard", "enable").returncode == 1
    assert calfwd.cli("guard", "disable").returncode == 1
    assert dropin.read_text() == "[Service]\nLimitNOFILE=4096\n"
    dropin.unlink()
    assert calfwd.cli("guard", "enable").returncode == 0
    result = calfwd.cli("cleanup")
    assert result.returncode == 0 and "flush guard" in result.stdout
    assert not dropin.exists()


def test_apply_installs_the_guard_by_default_where_firewalld_flushes_and_false_takes_it_out(lab):
    """Issue 12 item 3: [firewalld] flush_guard = "auto" (the default). firewalld 1.3.3 with the
    nftables backend and no direct rules flushes: `calfwd apply` writes the drop-in and says it
    takes effect at firewalld's next restart (never forced). `guard auto` (the package's %post)
    does the same; false removes calfwd's own."""
    calfwd, dropin = prepare(lab)
    lab.firewalld.start()
    applied = calfwd.cli("apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    flushes = lab.firewalld.build.major < 2
    assert dropin.exists() == flushes
    if not flushes:
        return
    assert f"installed {dropin}" in applied.stdout and guard.ACTIVATE in applied.stdout
    assert "/usr/sbin/xtables-nft-multi" in guard.parse_dropin(dropin.read_text())
    again = calfwd.cli("apply")
    assert again.returncode == 0 and "flush guard" not in again.stdout, "already current: nothing said"
    calfwd.write_config(calfwd.config_path.read_text() + "[firewalld]\nflush_guard = false\n")
    off = calfwd.cli("apply")
    assert off.returncode == 0 and f"removed {dropin}" in off.stdout and not dropin.exists()
    calfwd.write_config(calfwd.config_path.read_text().replace("flush_guard = false", 'flush_guard = "auto"'))
    auto = calfwd.cli("guard", "auto")
    assert auto.returncode == 0 and dropin.exists(), auto.stdout + auto.stderr
