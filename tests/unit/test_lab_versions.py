"""The lab's firewalld versions: which cases CALFWD_LAB_FIREWALLD selects, and that the
private apt configuration reads nothing of the host's apt setup."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab.versions import AptRoot, is_release, parse_cases

CI = "0.9.3/nftables,1.3/nftables,2.3/nftables,own/iptables"


def test_ci_cases_cover_every_release_on_debian_12_and_13():
    assert parse_cases(CI, "1.3.3") == [("0.9.3", "nftables"), ("own", "nftables"),
                                        ("2.3", "nftables"), ("own", "iptables")]
    assert parse_cases(CI, "2.3.1") == [("0.9.3", "nftables"), ("1.3", "nftables"),
                                        ("own", "nftables"), ("own", "iptables")]


def test_all_is_the_cross_product_without_running_one_firewalld_twice():
    cases = parse_cases("all", "2.3.1")
    assert cases == [(n, b) for n in ("own", "0.9.3", "1.3") for b in ("nftables", "iptables")]
    assert len(parse_cases("all", "")) == 8


@pytest.mark.parametrize("spec, word", [("1.2", "'1.2'"), ("2.3/ebtables", "'ebtables'")])
def test_bad_spec_names_the_variable_and_the_value(spec, word):
    with pytest.raises(ValueError, match="CALFWD_LAB_FIREWALLD: unknown .*" + word):
        parse_cases(spec)


def test_release_names_match_whole_version_parts():
    assert is_release("2.3", "2.3.1") and is_release("0.9.3", "0.9.3")
    assert not is_release("2.3", "2.30.1") and not is_release("1.3", "")


def apt_config(tmp_path, conf_text=None, conf=None):
    if conf is None:
        conf = tmp_path / "bare.conf"
        (tmp_path / "bare").mkdir(exist_ok=True)
        conf.write_text(conf_text)
    proc = subprocess.run(["apt-config", "dump"], env={"APT_CONFIG": str(conf), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, check=True)
    return set(proc.stdout.splitlines())


@pytest.mark.skipif(not shutil.which("apt-config"), reason="needs apt-config")
def test_private_apt_config_ignores_the_hosts(tmp_path):
    apt = AptRoot(tmp_path / "apt", "trixie")
    apt._write()
    ours = apt_config(tmp_path, conf=apt.conf)
    assert f'Dir::State::status "{tmp_path}/apt/status";' in ours
    assert f'Dir::State::lists "{tmp_path}/apt/lists";' in ours
    assert f'Dir::Etc::sourcelist "{tmp_path}/apt/sources.list";' in ours
    # What the host's /etc/apt adds to apt's built-in defaults must not reach the private apt.
    host = apt_config(tmp_path, conf=Path("/dev/null"))
    defaults = apt_config(tmp_path, f'Dir::Etc::main "/dev/null";\nDir::Etc::Parts "{tmp_path}/bare";\n')
    host_only = host - defaults
    if not host_only:
        pytest.skip("this host's /etc/apt adds nothing to apt's defaults")
    assert not host_only & ours, sorted(host_only & ours)[:5]
