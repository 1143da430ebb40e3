"""Config parsing and validation: the minimal file works, every kind of bad input is refused."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calfwd import config as cfg
from calfwd.config import schema

REPO = Path(__file__).resolve().parents[3]
MINIMAL = '[calico]\nip_pools = ["10.244.0.0/16"]     # IPv4 and/or IPv6 pool CIDRs\nnat_outgoing = true\n'


def parse(text: str) -> cfg.Config:
    return cfg.parse(text, "/etc/calfwd/calfwd.toml")


def problems(text: str):
    with pytest.raises(cfg.ConfigError) as err:
        parse(text)
    return err.value.problems


def test_minimal_file_is_a_complete_config():
    c = parse(MINIMAL)
    assert c.ip_pools == (ipaddress.ip_network("10.244.0.0/16"),)
    assert c.nat_outgoing == c.ip_pools
    assert c.interfaces == ("cali+", "tunl0", "vxlan.calico", "vxlan-v6.calico", "wireguard.cali", "wg-v6.cali")
    assert c.host_ports == ("bgp", "ipip", "vxlan", "typha")
    assert c.firewalld.zone == "calfwd" and c.firewalld.mode == "permanent"
    assert c.nft_table == "calfwd" and c.resync_interval == 60.0


def test_shipped_file_passes_check():
    c = cfg.load(str(REPO / "etc/calfwd/calfwd.toml"))
    assert c.ip_pools


def test_shipped_file_documents_every_setting():
    text = (REPO / "etc/calfwd/calfwd.toml").read_text()
    for section, keys in schema.SCHEMA.items():
        assert f"[{section}]" in text
        for key in keys:
            assert f"{key} =" in text, f"{section}.{key} is not documented in the shipped file"


def test_nat_outgoing_variants():
    two = '[calico]\nip_pools = ["10.1.0.0/16", "fd00:1::/64"]\n'
    assert parse(two).nat_outgoing == ()
    assert parse(two + "nat_outgoing = false\n").nat_outgoing == ()
    only = parse(two + 'nat_outgoing = ["fd00:1::/64"]\n')
    assert only.nat_outgoing == (ipaddress.ip_network("fd00:1::/64"),)


def test_every_setting_round_trips():
    c = parse(
        '[calico]\nip_pools = ["10.1.0.0/16"]\ninterfaces = ["eni+", "tunl0"]\nhost_ports = ["wireguard"]\n'
        '[firewalld]\nenabled = false\nmode = "runtime"\nzone = "trusted"\nhost_zone = "internal"\n'
        'forward_policy = "pods-in"\nhost_policy = "pods-host"\ntrust_pool_sources = true\n'
        '[nftables]\ntable = "podnat"\n[daemon]\nresync_interval = 5\n')
    assert c.interfaces == ("eni+", "tunl0") and c.host_ports == ("wireguard",)
    assert c.firewalld == cfg.FirewalldSettings(False, "runtime", "trusted", "internal", "pods-in", "pods-host", True)
    assert c.nft_table == "podnat" and c.resync_interval == 5.0


def test_flush_settings_round_trip():
    c = parse('[calico]\nip_pools = ["10.1.0.0/16"]\nfelix_refresh_interval = 90\n[firewalld]\nflush_guard = true\n'
              '[daemon]\non_calico_flush = ["/usr/bin/systemctl", "start", "--no-block", "calico-refresh.service"]\n'
              'on_calico_flush_interval = 300\non_calico_flush_timeout = 20\n')
    assert c.firewalld.flush_guard is True and c.felix_refresh_interval == 90.0
    assert c.on_calico_flush == ("/usr/bin/systemctl", "start", "--no-block", "calico-refresh.service")
    assert c.on_calico_flush_interval == 300.0 and c.on_calico_flush_timeout == 20.0
    d = parse(MINIMAL)
    assert d.firewalld.flush_guard == "auto" and d.felix_refresh_interval == 180.0
    assert d.on_calico_flush == () and d.on_calico_flush_interval == 600.0 and d.on_calico_flush_timeout == 60.0


def _pools(value: str) -> str:
    return f"[calico]\nip_pools = {value}\n"


def _key(section: str, line: str) -> str:
    return '[calico]\nip_pools = ["10.1.0.0/16"]\n' + (f"[{section}]\n" if section != "calico" else "") + line + "\n"


# (kind of bad input, TOML text, key path or line the error must name, words of the reason)
BAD = [
    ("wrong type: pools not an array", _pools('"10.1.0.0/16"'), "calico.ip_pools:", "must be an array"),
    ("wrong type: pool not a string", _pools("[10]"), "calico.ip_pools[0]:", "must be a string"),
    ("wrong type: nat_outgoing", _key("calico", 'nat_outgoing = "yes"'), "calico.nat_outgoing:", "true, false or an array"),
    ("wrong type: boolean", _key("firewalld", "enabled = 1"), "firewalld.enabled:", "true or false"),
    ("wrong type: interval", _key("daemon", 'resync_interval = "60"'), "daemon.resync_interval:", "number of seconds"),
    ("out of range: interval", _key("daemon", "resync_interval = 0"), "daemon.resync_interval:", "out of range"),
    ("wrong type: section", '[calico]\nip_pools = ["10.1.0.0/16"]\nfirewalld = 3\n', "calico.firewalld:", "unknown key"),
    ("section is a value", 'daemon = 3\n[calico]\nip_pools = ["10.1.0.0/16"]\n', "daemon:", "must be a table"),
    ("bad CIDR", _pools('["10.1.0/16"]'), "calico.ip_pools[0]:", "not an IPv4 or IPv6 address"),
    ("not a CIDR", _pools('["10.1.0.0"]'), "calico.ip_pools[0]:", "missing '/prefix'"),
    ("host bits", _pools('["10.1.0.1/16"]'), "calico.ip_pools[0]:", "host bits set"),
    ("host bits v6", _pools('["fd00::1/64"]'), "calico.ip_pools[0]:", "host bits set"),
    ("prefix out of range v4", _pools('["10.0.0.0/33"]'), "calico.ip_pools[0]:", "out of range for IPv4"),
    ("prefix out of range v6", _pools('["fd00::/129"]'), "calico.ip_pools[0]:", "out of range for IPv6"),
    ("prefix not a number", _pools('["10.0.0.0/x"]'), "calico.ip_pools[0]:", "out of range"),
    ("empty pools", _pools("[]"), "calico.ip_pools:", "must not be empty"),
    ("overlapping pools", _pools('["10.0.0.0/8", "10.1.0.0/16"]'), "calico.ip_pools[1]:", "overlaps"),
    ("nat pool not a pool", _key("calico", 'nat_outgoing = ["10.9.0.0/16"]'), "calico.nat_outgoing[0]:", "not one of calico.ip_pools"),
    ("missing pools", "[calico]\nnat_outgoing = true\n", "calico.ip_pools:", "required"),
    ("empty file", "", "calico.ip_pools:", "required"),
    ("control character", _key("firewalld", 'zone = "cal\\u0007fwd"'), "firewalld.zone:", "control character"),
    ("control character in pool", _pools('["10.1.0.0/16\\n"]'), "calico.ip_pools[0]:", "control character"),
    ("junk in zone name", _key("firewalld", 'zone = "cal fwd;"'), "firewalld.zone:", "not a valid zone name"),
    ("zone name too long", _key("firewalld", 'zone = "abcdefghijklmnopqr"'), "firewalld.zone:", "longer than 17"),
    ("policy with Felix's prefix", _key("firewalld", 'forward_policy = "cali-fwd"'), "firewalld.forward_policy:", "Felix"),
    ("table with firewalld's prefix", _key("nftables", 'table = "firewalld"'), "nftables.table:", "firewalld"),
    ("table name junk", _key("nftables", 'table = "my table"'), "nftables.table:", "not a valid nftables table name"),
    # Issue 11 items 1 and 8: an administrator's table, firewalld's stock policy.
    ("an admin's table", _key("nftables", 'table = "filter"'), "nftables.table:", "others create"),
    ("iptables-nft's table", _key("nftables", 'table = "NAT"'), "nftables.table:", "others create"),
    ("firewalld's stock policy", _key("firewalld", 'host_policy = "allow-host-ipv6"'), "firewalld.host_policy:",
     "others create"),
    ("libvirt's policy", _key("firewalld", 'forward_policy = "libvirt-routed"'), "firewalld.forward_policy:",
     "others create"),
    ("same two policies", _key("firewalld", 'forward_policy = "x"\nhost_policy = "x"'), "firewalld.host_policy:", "must differ"),
    ("bad mode", _key("firewalld", 'mode = "both"'), "firewalld.mode:", "not one of"),
    ("interface too long", _key("calico", 'interfaces = ["abcdefghijklmnop"]'), "calico.interfaces[0]:", "longer than 15 bytes"),
    ("interface too long (multibyte)", _key("calico", 'interfaces = ["caliéééééééé"]'), "calico.interfaces[0]:", "longer than 15 bytes"),
    ("interface with slash", _key("calico", 'interfaces = ["a/b"]'), "calico.interfaces[0]:", "rejects"),
    ("interface with space", _key("calico", 'interfaces = ["a b"]'), "calico.interfaces[0]:", "rejects"),
    ("interface with colon", _key("calico", 'interfaces = ["eth0:1"]'), "calico.interfaces[0]:", "rejects"),
    ("interface non-ASCII", _key("calico", 'interfaces = ["calié"]'), "calico.interfaces[0]:", "rejects"),
    ("interface empty", _key("calico", 'interfaces = [""]'), "calico.interfaces[0]:", "must not be empty"),
    ("interface dot", _key("calico", 'interfaces = [".."]'), "calico.interfaces[0]:", "not a valid interface name"),
    ("plus in the middle", _key("calico", 'interfaces = ["ca+li"]'), "calico.interfaces[0]:", "only allowed at the end"),
    ("plus alone", _key("calico", 'interfaces = ["+"]'), "calico.interfaces[0]:", "every interface"),
    ("two pluses", _key("calico", 'interfaces = ["cali++"]'), "calico.interfaces[0]:", "only allowed at the end"),
    ("duplicate interface", _key("calico", 'interfaces = ["tunl0", "tunl0"]'), "calico.interfaces[1]:", "listed twice"),
    ("unknown host port", _key("calico", 'host_ports = ["ssh"]'), "calico.host_ports[0]:", "not one of"),
    ("unknown section", _key("calico", "[kube]\nx = 1"), "kube:", "unknown section"),
    ("unknown key", _key("calico", "ippools = []"), "calico.ippools:", "unknown key"),
    ("unknown key elsewhere", _key("daemon", "interval = 3"), "daemon.interval:", "unknown key"),
    ("duplicate key", '[calico]\nip_pools = ["10.1.0.0/16"]\nip_pools = ["10.2.0.0/16"]\n', "line 3: calico.ip_pools:", "defined twice"),
    ("duplicate section", '[calico]\nip_pools = ["10.1.0.0/16"]\n[calico]\n', "line 3: calico:", "defined twice"),
    ("syntax error", '[calico]\nip_pools = ["10.1.0.0/16"\n', "line 2", "Unclosed array"),
    ("syntax error mid-file", '[calico\nip_pools = []\n', "line 1", "TOML syntax error"),
    ("wrong type: flush_guard", _key("firewalld", 'flush_guard = "yes"'), "firewalld.flush_guard:", 'true, false or "auto"'),
    ("out of range: felix refresh", _key("calico", "felix_refresh_interval = 0"), "calico.felix_refresh_interval:", "out of range"),
    ("wrong type: felix refresh", _key("calico", "felix_refresh_interval = true"), "calico.felix_refresh_interval:", "number of seconds"),
    ("command as a shell line", _key("daemon", 'on_calico_flush = "/usr/bin/crictl rm -f x"'), "daemon.on_calico_flush:", "array of strings"),
    ("command not an absolute path", _key("daemon", 'on_calico_flush = ["crictl", "rm"]'), "daemon.on_calico_flush:", "absolute path"),
    ("command empty program", _key("daemon", 'on_calico_flush = [""]'), "daemon.on_calico_flush:", "absolute path"),
    ("command argument not a string", _key("daemon", 'on_calico_flush = ["/usr/bin/crictl", 5]'), "daemon.on_calico_flush[1]:", "must be a string"),
    ("command argument with NUL", _key("daemon", 'on_calico_flush = ["/bin/x", "a\\u0000b"]'), "daemon.on_calico_flush[1]:", "control character"),
    ("out of range: flush interval", _key("daemon", "on_calico_flush_interval = -1"), "daemon.on_calico_flush_interval:", "out of range"),
    ("wrong type: flush timeout", _key("daemon", 'on_calico_flush_timeout = "60"'), "daemon.on_calico_flush_timeout:", "number of seconds"),
    ("out of range: flush timeout", _key("daemon", "on_calico_flush_timeout = 100000"), "daemon.on_calico_flush_timeout:", "out of range"),
    ("unknown cni kind", _key("cni", 'kind = "cilium"'), "cni.kind:", "not one of: auto, calico, canal, flannel"),
    ("wrong type: cni kind", _key("cni", "kind = true"), "cni.kind:", "must be a string"),
    ("subnet file relative", _key("flannel", 'subnet_file = "run/flannel/subnet.env"'), "flannel.subnet_file:",
     "absolute path"),
    ("subnet file a directory", _key("flannel", 'subnet_file = "/run/flannel/"'), "flannel.subnet_file:", "directory"),
    ("subnet file not a string", _key("flannel", "subnet_file = 1"), "flannel.subnet_file:", "must be a string"),
    ("unknown key in cni", _key("cni", 'type = "canal"'), "cni.type:", "unknown key"),
]


@pytest.mark.parametrize("kind,text,where,why", BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_file_key_and_reason(kind, text, where, why):
    found = problems(text)
    assert all(p.startswith("/etc/calfwd/calfwd.toml: ") for p in found)
    assert any(where in p and why in p for p in found), found
    assert all("\n" not in p for p in found)


def test_every_problem_is_reported_not_just_the_first():
    found = problems('[calico]\nip_pools = ["10.1.0.1/16", "x"]\nbogus = 1\n[firewalld]\nmode = "x"\n')
    assert len(found) == 4


# File-level failures go through the CLI: exit code 2, one line each, no traceback.

def run_check(path: str, user=None):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "calfwd", "--config", path, "check"],
                          capture_output=True, text=True, env=env, user=user, timeout=30)


def _assert_refused(result, path, why):
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith(f"calfwd: {path}") for line in lines), lines
    assert why in result.stderr


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    _assert_refused(run_check(str(path)), str(path), "No such file")


def test_directory(tmp_path):
    _assert_refused(run_check(str(tmp_path)), str(tmp_path), "is a directory")


def test_symlink_loop(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.symlink_to(b)
    b.symlink_to(a)
    _assert_refused(run_check(str(a)), str(a), "symbolic links")


def test_non_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[calico]\nip_pools = ["10.1.0.0/16"]\n# caf\xe9\n')
    _assert_refused(run_check(str(path)), str(path), "line 3: not valid UTF-8")


def test_syntax_error_through_cli(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[calico\n")
    _assert_refused(run_check(str(path)), str(path), "line 1")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a file another user cannot read")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.toml"
    path.write_text(MINIMAL)
    path.chmod(0o600)
    tmp_path.chmod(0o755)
    result = run_check(str(path), user=65534)
    _assert_refused(result, str(path), "Permission denied")


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks apply to root only")
@pytest.mark.parametrize("mode,owner,why", [(0o666, 0, "lets group or others write"),
                                            (0o620, 0, "lets group or others write"),
                                            (0o644, 65534, "owned by uid 65534")])
def test_root_refuses_files_others_can_write(tmp_path, mode, owner, why):
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL)
    os.chown(path, owner, 0)
    path.chmod(mode)
    _assert_refused(run_check(str(path)), str(path), why)


def test_good_file_through_cli(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL)
    result = run_check(str(path))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


# -- what root reads: the descriptor, not the path (issue 11, items 7 and 11) ----------------------

def test_a_symbolic_link_is_refused(tmp_path):
    real = tmp_path / "real.toml"
    real.write_text(MINIMAL)
    link = tmp_path / "c.toml"
    link.symlink_to(real)
    _assert_refused(run_check(str(link)), str(link), "is a symbolic link")


@pytest.mark.parametrize("make,why", [
    (lambda p: os.mkfifo(p), "is not a regular file (a FIFO)"),
    (None, "is not a regular file (a character device)"),
])
def test_fifos_and_devices_are_refused_at_once(tmp_path, make, why):
    """A FIFO used to block forever (and freeze the daemon on SIGHUP); /dev/zero was read whole."""
    path = str(tmp_path / "c.toml") if make else "/dev/zero"
    if make:
        make(path)
    started = time.monotonic()
    _assert_refused(run_check(path), path, why)
    assert time.monotonic() - started < 20


def test_a_huge_file_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + "# " + "x" * (cfg.MAX_BYTES + 10) + "\n")
    _assert_refused(run_check(str(path)), str(path), "more than a config file can be")


def test_nesting_too_deep_is_one_clear_line(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + "[daemon]\non_calico_flush = " + "[" * 3000 + "]" * 3000 + "\n")
    result = run_check(str(path))
    _assert_refused(result, str(path), "nested too deeply")
    assert "RecursionError" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks apply to root only")
def test_root_refuses_a_file_in_a_directory_others_can_write(tmp_path):
    """The file itself is root's and 0644, but another user could rename another in its place."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # no sticky bit
    path = shared / "c.toml"
    path.write_text(MINIMAL)
    path.chmod(0o644)
    _assert_refused(run_check(str(path)), str(path), f"its directory {shared} can be written by someone")
    shared.chmod(0o1777)  # sticky, like /tmp: others cannot replace root's file
    assert run_check(str(path)).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks need root")
def test_check_refuses_an_on_calico_flush_program_others_could_change(tmp_path, root_dir):
    """Root would run it: judged like the config file, and one line says which key and why."""
    prog = root_dir / "on-flush"
    prog.write_text("#!/bin/sh\nexit 0\n")
    prog.chmod(0o755)
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + f'[daemon]\non_calico_flush = ["{prog}", "--now"]\n')
    assert run_check(str(path)).returncode == 0
    for change, why in ((lambda: os.chown(prog, 65534, 0), "owned by uid 65534, must be owned by root"),
                        (lambda: prog.chmod(0o777), "mode 0777 lets group or others write it"),
                        (lambda: root_dir.chmod(0o1777), f"its directory {root_dir} can be written")):
        prog.chmod(0o755)
        os.chown(prog, 0, 0)
        root_dir.chmod(0o755)
        change()
        result = run_check(str(path))
        _assert_refused(result, str(path), why)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"calfwd: {path}: daemon.on_calico_flush: {prog}: ")
    root_dir.chmod(0o755)
    path.write_text(MINIMAL + f'[daemon]\non_calico_flush = ["{tmp_path}/missing"]\n')
    _assert_refused(run_check(str(path)), str(path), f"daemon.on_calico_flush: {tmp_path}/missing: No such file")


@pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks apply to root only")
def test_cleanup_refuses_a_config_others_wrote(tmp_path):
    """Package removal runs cleanup: another user's config must not choose what it deletes."""
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + '[nftables]\ntable = "victim"\n')
    os.chown(path, 65534, 0)
    env = dict(os.environ, PYTHONPATH=str(REPO), DBUS_SYSTEM_BUS_ADDRESS="unix:path=/nonexistent")
    result = subprocess.run([sys.executable, "-m", "calfwd", "--config", str(path), "cleanup"],
                            capture_output=True, text=True, env=env, timeout=30)
    _assert_refused(result, str(path), "owned by uid 65534")


# -- values that pass the syntax but would open the host (hardening item 6) -------------------

NEVER_POOLS = ["0.0.0.0/0", "::/0", "127.0.0.0/8", "127.0.0.1/32", "::1/128", "169.254.0.0/16",
               "169.254.1.0/24", "fe80::/10", "fe80::/64", "224.0.0.0/4", "239.1.0.0/16", "ff00::/8",
               "ff02::/16", "0.0.0.0/8", "0.0.0.0/1", "128.0.0.0/1", "::/96", "::ffff:0:0/96",
               "255.255.255.255/32"]


@pytest.mark.parametrize("pool", NEVER_POOLS)
def test_pools_that_can_never_be_pod_networks_are_refused(pool):
    found = problems(_pools(f'["{pool}"]'))
    assert any(p.startswith(f"/etc/calfwd/calfwd.toml: calico.ip_pools[0]: '{pool}' ") for p in found), found
    assert any("no pod network can be there" in p for p in found), found
    # nat_outgoing names its own entry too (as well as ip_pools')
    found = problems(f'[calico]\nip_pools = ["10.1.0.0/16", "{pool}"]\nnat_outgoing = ["{pool}"]\n')
    assert any(p.startswith(f"/etc/calfwd/calfwd.toml: calico.nat_outgoing[0]: '{pool}' ") for p in found), found


@pytest.mark.parametrize("pool", ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                                  "198.18.0.0/15", "240.0.0.0/8", "fd00::/8", "2001:db8::/32"])
def test_private_and_shared_pools_are_accepted(pool):
    assert parse(_pools(f'["{pool}"]')).ip_pools == (ipaddress.ip_network(pool),)


NEVER_CALICO = ["e+", "en+", "eth+", "eth0", "eth0.100", "eth1+", "ens3", "enp0s3", "eno1", "enx+", "em1",
                "p1p1", "p+", "wl+", "wlan0", "ww+", "ib0", "usb0", "b+", "br+", "br0", "br-1a2b+", "bond+",
                "bond0", "team0", "vlan+", "vlan100", "virbr0", "vmbr0", "vnet+", "docker0", "d+", "veth+",
                "v+", "lo", "l+", "tun0", "tun+", "t+", "wg0", "wg+", "w+", "ppp0"]


@pytest.mark.parametrize("name", NEVER_CALICO)
def test_interface_patterns_that_catch_the_hosts_own_interfaces_are_refused(name):
    found = problems(_key("calico", f'interfaces = ["cali+", "{name}"]'))
    assert len(found) == 1, found
    assert found[0].startswith(f"/etc/calfwd/calfwd.toml: calico.interfaces[1]: '{name}' can match "), found
    assert "ACCEPT zone" in found[0] and "never Calico's" in found[0]


@pytest.mark.parametrize("name", list(schema.DEFAULT_INTERFACES) + [
    "cali0123456789a", "tunl+", "eni+", "tap+", "azv+", "gke+", "wg-v6+", "vxlan+", "ovl8", "pod+"])
def test_calicos_own_names_and_interface_prefixes_are_accepted(name):
    assert parse(_key("calico", f'interfaces = ["{name}"]')).interfaces == (name,)


def test_refused_values_through_cli_exit_2_one_line_each(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[calico]\nip_pools = ["0.0.0.0/0", "fe80::/64"]\ninterfaces = ["cali+", "e+"]\n')
    result = run_check(str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line.split(": ")[2] for line in lines] == ["calico.ip_pools[0]", "calico.ip_pools[1]",
                                                       "calico.interfaces[1]"], lines
    assert all(line.startswith(f"calfwd: {path}: ") for line in lines)


def test_cleanup_is_never_stopped_by_a_hook_program_that_is_gone(tmp_path):
    """Review: package removal (cleanup) exited 2 and removed nothing when on_calico_flush's
    program had been deleted; the program is the daemon's business, not cleanup's."""
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + '[daemon]\non_calico_flush = ["/nonexistent/calfwd-hook"]\n'
                    '[firewalld]\nenabled = false\n[nftables]\ntable = "calfwd_unit_gone"\n')
    assert cfg.load_trusted(str(path), check_program=False).on_calico_flush == ("/nonexistent/calfwd-hook",)
    with pytest.raises(cfg.ConfigError):
        cfg.load_trusted(str(path))


def test_metrics_textfile_defaults_to_off_and_takes_a_prom_file(tmp_path):
    assert parse(MINIMAL).metrics_textfile == ""
    path = tmp_path / "calfwd.prom"
    assert parse(MINIMAL + f'[metrics]\ntextfile = "{path}"\n').metrics_textfile == str(path)


def test_metrics_textfile_refusals_through_cli_exit_2_one_line_each(tmp_path):
    for textfile, why in (("calfwd.prom", "must be an absolute path"),
                          (str(tmp_path / "calfwd.txt"), "must end in .prom"),
                          (str(tmp_path / "missing" / "calfwd.prom"), "does not exist"),
                          (7, "must be a string")):
        path = tmp_path / "c.toml"
        shown = f'"{textfile}"' if isinstance(textfile, str) else textfile
        path.write_text(MINIMAL + f"[metrics]\ntextfile = {shown}\n")
        result = run_check(str(path))
        assert result.returncode == 2 and "Traceback" not in result.stderr, result
        lines = (result.stdout + result.stderr).strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"calfwd: {path}: metrics.textfile: ") and why in lines[0], lines


def test_check_warns_when_others_can_write_the_metrics_directory(tmp_path):
    """A warning, not a refusal: calfwd's writes and cleanup never follow what others plant
    there, but they could replace or fake its metrics."""
    textdir = tmp_path / "textfile"
    textdir.mkdir()
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL + f'[metrics]\ntextfile = "{textdir}/calfwd.prom"\n')
    for change, why in ((lambda: textdir.chmod(0o755), None),
                        (lambda: textdir.chmod(0o1777), None),
                        (lambda: textdir.chmod(0o777), "anyone can write it (mode 0777)"),
                        (lambda: (textdir.chmod(0o775), os.chown(textdir, 0, 65534)), "group 65534 can write it"),
                        (lambda: (textdir.chmod(0o755), os.chown(textdir, 65534, 0)), "owned by uid 65534")):
        change()
        result = run_check(str(path))
        assert result.returncode == 0 and "OK" in result.stdout, result
        warned = [line for line in result.stderr.splitlines() if "metrics.textfile" in line]
        if why is None:
            assert warned == [], warned
        else:
            assert len(warned) == 1 and warned[0].startswith(f"calfwd: warning: {path}: metrics.textfile: "), warned
            assert f"its directory {textdir}" in warned[0] and why in warned[0], warned


def test_cni_defaults_to_auto_and_flannels_subnet_file():
    c = parse(MINIMAL)
    assert c.cni_kind == "auto" and c.flannel_subnet_file == "/run/flannel/subnet.env"
    for kind in ("auto", "calico", "canal", "flannel"):
        assert parse(MINIMAL + f'[cni]\nkind = "{kind}"\n').cni_kind == kind
    assert parse(MINIMAL + '[flannel]\nsubnet_file = "/tmp/x.env"\n').flannel_subnet_file == "/tmp/x.env"


def test_cni_refusals_through_cli_exit_2_one_line_each(tmp_path):
    for text, key, why in (('[cni]\nkind = "cilium"\n', "cni.kind", "not one of"),
                           ('[flannel]\nsubnet_file = "subnet.env"\n', "flannel.subnet_file", "absolute path")):
        path = tmp_path / "c.toml"
        path.write_text(MINIMAL + text)
        result = run_check(str(path))
        assert result.returncode == 2 and "Traceback" not in result.stderr, result
        lines = (result.stdout + result.stderr).strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"calfwd: {path}: {key}: ") and why in lines[0], lines
