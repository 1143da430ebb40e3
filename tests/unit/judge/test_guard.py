"""The flush guard's decisions: which binaries, the drop-in's text, when firewalld flushes,
and when installing the guard would be wrong. Pure; the lab proves it on firewalld 1.3.3."""

from __future__ import annotations

import pytest

from calfwd.judge import guard
from calfwd.judge.guard import FirewalldFacts

NFT = "/usr/sbin/xtables-nft-multi"
LEGACY = "/usr/sbin/xtables-legacy-multi"


def test_guard_paths_are_the_real_iptables_binaries_only():
    resolved = {
        "/usr/sbin/iptables": NFT, "/usr/sbin/iptables-restore": NFT, "/usr/sbin/ip6tables": NFT,
        "/usr/sbin/ebtables": "/usr/sbin/ebtables-legacy", "/usr/sbin/ebtables-restore": None,
        "/usr/sbin/xtables-nft-multi": NFT, "/usr/sbin/xtables-legacy-multi": LEGACY,
        "/usr/sbin/ip6tables-restore": "/usr/bin/python3.9",  # a wrapper script's interpreter: never hidden
    }
    assert guard.guard_paths(resolved) == ("/usr/sbin/ebtables-legacy", LEGACY, NFT)
    assert guard.guard_paths({"/usr/sbin/iptables": None}) == ()


def test_dropin_round_trip_and_ownership():
    text = guard.render_dropin((LEGACY, NFT))
    assert guard.is_ours(text)
    assert "[Service]\n" in text
    assert f"InaccessiblePaths=-{NFT}\n" in text and f"InaccessiblePaths=-{LEGACY}\n" in text
    assert guard.parse_dropin(text) == (LEGACY, NFT)
    assert guard.ACTIVATE in text
    assert not guard.is_ours("[Service]\nInaccessiblePaths=/usr/sbin/iptables\n")
    assert not guard.is_ours(None)
    assert guard.parse_dropin("[Service]\nInaccessiblePaths=-/a /b\nInaccessiblePaths=+/c\n") == ("/a", "/b", "/c")


def test_dropin_path_override(monkeypatch):
    monkeypatch.delenv(guard.DROPIN_ENV, raising=False)
    assert guard.dropin_path() == guard.DROPIN_PATH
    assert guard.DROPIN_PATH == "/etc/systemd/system/firewalld.service.d/calfwd-flush-guard.conf"
    monkeypatch.setenv(guard.DROPIN_ENV, "/tmp/x.conf")
    assert guard.dropin_path() == "/tmp/x.conf"
    assert guard.dropin_path("/other.conf") == "/other.conf"


@pytest.mark.parametrize("version,flush_fix,fixed", [
    ("1.3.3", False, False), ("0.9.11", None, False), ("1.2.5", True, True),  # RHEL 9.3's backport
    ("2.0.0", None, True), ("2.3.1", False, True), ("", None, None), ("", True, True), ("junk", False, False),
])
def test_which_firewalld_has_the_flush_fix(version, flush_fix, fixed):
    assert FirewalldFacts(version=version, flush_fix=flush_fix).fixed is fixed


# (what, facts, flushes?)
FLUSHES = [
    ("1.x nftables", FirewalldFacts("1.3.3", "nftables", False, ()), True),
    ("1.x iptables", FirewalldFacts("1.3.3", "iptables", False, ()), True),
    ("2.x iptables", FirewalldFacts("2.1.0", "iptables", True, ()), True),
    ("2.x nftables", FirewalldFacts("2.1.0", "nftables", True, ()), False),
    ("2.x nftables + direct", FirewalldFacts("2.1.0", "nftables", True, ("permanent rule ipv4 filter INPUT",)), True),
    ("2.x direct unknown", FirewalldFacts("2.1.0", "nftables", True, None), None),
    ("backport", FirewalldFacts("1.2.5", "nftables", True, ()), False),
    ("no backend", FirewalldFacts("1.3.3", "", False, ()), None),
    ("no version", FirewalldFacts("", "nftables", None, ()), None),
]


@pytest.mark.parametrize("what,facts,expected", FLUSHES, ids=[f[0] for f in FLUSHES])
def test_flushes(what, facts, expected):
    flush, why = guard.flushes(facts)
    assert flush is expected
    assert why


# (what, facts, binaries, words of the refusal or None)
REFUSALS = [
    ("1.x nftables: allowed", FirewalldFacts("1.3.3", "nftables", False, ()), (NFT,), None),
    ("iptables backend", FirewalldFacts("1.3.3", "iptables", False, ()), (NFT,), "cannot start"),
    ("direct rules", FirewalldFacts("1.3.3", "nftables", False, ("permanent passthrough ipv4 -t nat",)), (NFT,),
     "direct rule"),
    ("direct unknown", FirewalldFacts("1.3.3", "nftables", False, None), (NFT,), "cannot read whether"),
    ("2.x", FirewalldFacts("2.0.0", "nftables", True, ()), (NFT,), "not needed"),
    ("backport", FirewalldFacts("1.2.5", "nftables", True, ()), (NFT,), "not needed"),
    ("no version", FirewalldFacts("", "nftables", None, ()), (NFT,), "version"),
    ("no backend", FirewalldFacts("1.3.3", "", False, ()), (NFT,), "FirewallBackend"),
    ("no iptables", FirewalldFacts("1.3.3", "nftables", False, ()), (), "no iptables binaries"),
]


@pytest.mark.parametrize("what,facts,paths,words", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusal(what, facts, paths, words):
    reason = guard.refusal(facts, paths)
    if words is None:
        assert reason is None
    else:
        assert reason and words in reason


def test_systemd_accepts_the_dropin(tmp_path):
    """systemd-analyze verify loads the drop-in next to a stand-in unit and reports nothing.

    Run in a private mount namespace with a throw-away /run/systemd (it leaves a marker
    there): the host's systemd is never involved.
    """
    import os
    import shutil
    import subprocess

    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    if os.geteuid() != 0 or not all(shutil.which(t, path=path) for t in ("systemd-analyze", "unshare", "mount")):
        pytest.skip("needs root, systemd-analyze, unshare and mount")
    unit = tmp_path / "firewalld-standin.service"
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    (tmp_path / "firewalld-standin.service.d").mkdir()
    (tmp_path / "firewalld-standin.service.d" / "calfwd-flush-guard.conf").write_text(
        guard.render_dropin((NFT, "/nonexistent/xtables-legacy-multi")))
    script = 'mount -n -t tmpfs calfwd-test /run/systemd && exec "$@"'
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, "sh",
                           "systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                          env=dict(os.environ, PATH=path), timeout=60, check=False)
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), proc.stdout + proc.stderr


# -- the one verdict: every state, from assess() alone ---------------------------------------

PATH = "/etc/systemd/system/firewalld.service.d/calfwd-flush-guard.conf"
OLD = FirewalldFacts("1.3.3", "nftables", False, ())  # flushes; the guard can work
NEW = FirewalldFacts("2.1.0", "nftables", True, ())  # does not flush
GOOD = guard.render_dropin((NFT,))


def seen(text=None, firewalld=OLD, **changes):
    return guard.GuardInputs(PATH, text, (NFT,), firewalld, config_path="/etc/calfwd/calfwd.toml", **changes)


# (what, setting, inputs, state, severity, words in seen or fix, calfwd's drop-in installed and current)
VERDICTS = [
    ("unreadable", "auto", seen(unreadable="could not read the flush guard's drop-in: Permission denied"),
     "unknown", guard.UNKNOWN, "Permission denied", False),
    ("in effect? cannot tell", "auto", seen(GOOD, running=True, active_unreadable="cannot read /proc/7/mountinfo"),
     "unknown", guard.UNKNOWN, "could not be read (cannot read /proc/7/mountinfo)", True),
    ("2.x needs none", "auto", seen(firewalld=NEW), "not-wanted", guard.INFO, "is not installed", False),
    ("opted out", False, seen(), "not-wanted", guard.INFO, 'flush_guard = "auto"', False),
    ("auto, missing", "auto", seen(), "missing", guard.WARNING, "calfwd apply", False),
    ("true, missing", True, seen(), "missing", guard.WARNING, "calfwd guard enable", False),
    ("true, cannot be installed", True, seen(firewalld=FirewalldFacts("1.3.3", "iptables", False, ())),
     "refused", guard.WARNING, "flush_guard = false in /etc/calfwd/calfwd.toml", False),
    ("someone else's, true", True, seen("[Service]\nLimitNOFILE=1\n"), "foreign", guard.WARNING,
     "not written by calfwd", False),
    ("someone else's, auto", "auto", seen("[Service]\nLimitNOFILE=1\n"), "foreign", guard.INFO,
     "not written by calfwd", False),
    ("iptables backend", True, seen(GOOD, FirewalldFacts("1.3.3", "iptables", False, ())), "harmful",
     guard.ERROR, "FirewallBackend=iptables", True),
    ("direct rules", "auto", seen(GOOD, FirewalldFacts("1.3.3", "nftables", False, ("permanent rule ipv4 x",))),
     "harmful", guard.ERROR, "1 direct rule(s)", True),
    # Not needed outranks "not in effect": nothing flushes, so it is nothing to warn about.
    ("2.x, installed", "auto", seen(GOOD, NEW, running=True, active=False), "not-needed", guard.INFO,
     "calfwd guard disable", True),
    ("stale", True, seen(guard.render_dropin((LEGACY,)), running=True, active=False), "stale", guard.WARNING,
     "rewrites it", False),
    ("not in effect", "auto", seen(GOOD, running=True, active=False), "not-in-effect", guard.WARNING,
     "started without it", True),
    ("in effect", True, seen(GOOD, running=True, active=True, pid=7), "ok", guard.OK, "(pid 7) cannot run", True),
    ("firewalld stopped", "auto", seen(GOOD), "ok", guard.OK, "applies when firewalld starts", True),
]


@pytest.mark.parametrize("what,setting,inputs,state,severity,words,installed", VERDICTS,
                         ids=[v[0] for v in VERDICTS])
def test_each_state_is_judged_by_assess(what, setting, inputs, state, severity, words, installed):
    verdict = guard.assess(setting, inputs)
    assert (verdict.state, verdict.severity, verdict.installed) == (state, severity, installed), verdict
    assert words in verdict.seen + " " + verdict.fix
    # The daemon's line is the verdict itself, for exactly the warnings and errors.
    if severity in (guard.WARNING, guard.ERROR):
        assert verdict.problem == f"flush guard: {verdict.seen}; fix: {verdict.fix}" and verdict.fix
    else:
        assert verdict.problem is None


def test_every_state_is_covered_and_speaks_doctors_severities():
    from calfwd.doctor.findings import SEVERITIES

    assert {v[3] for v in VERDICTS} == set(guard.STATES)
    assert {v[4] for v in VERDICTS} <= set(SEVERITIES)
