"""What `calfwd doctor` says, and the small judgements every check shares.

A Finding is one line: severity, what was seen, why it matters, the fix. A read that failed
becomes an UNKNOWN finding naming the Read (so diagnose() can say any failure no check said).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from calfwd.judge import guard
from calfwd.judge.blockers import matches as iface_matches  # noqa: F401 (firewalld's and Calico's wildcards: one function)
from calfwd.doctor.snapshot import HostSnapshot, Read

OK, INFO, WARNING, ERROR, UNKNOWN = "ok", "info", "warning", "error", "unknown"
SEVERITIES = (OK, INFO, WARNING, ERROR, UNKNOWN)
EXIT_HEALTHY, EXIT_WARNINGS, EXIT_ERRORS = 0, 1, 2

@dataclass(frozen=True)
class Finding:
    severity: str
    check: str  # short stable name, e.g. "flush", "forwarding"
    saw: str
    why: str = ""
    fix: str = ""
    read: Optional[Read] = field(default=None, compare=False)  # UNKNOWN: the read that failed

    def line(self) -> str:
        text = f"{self.severity.upper():7} {self.check}: {self.saw}"
        if self.why:
            text += f". Why: {self.why}"
        if self.fix:
            text += f". Fix: {self.fix}"
        return text

    def as_dict(self) -> Dict[str, str]:
        return {"severity": self.severity, "check": self.check, "saw": self.saw, "why": self.why,
                "fix": self.fix}


@dataclass(frozen=True)
class Report:
    findings: Tuple[Finding, ...]

    @property
    def exit_code(self) -> int:
        severities = {f.severity for f in self.findings}
        if ERROR in severities:
            return EXIT_ERRORS
        if severities & {WARNING, UNKNOWN}:
            return EXIT_WARNINGS
        return EXIT_HEALTHY

    def lines(self) -> List[str]:
        return [f.line() for f in self.findings]

    def as_dict(self) -> Dict[str, Any]:
        counts = {s: sum(1 for f in self.findings if f.severity == s) for s in SEVERITIES}
        return {"exit_code": self.exit_code, "healthy": self.exit_code == EXIT_HEALTHY,
                "counts": counts, "findings": [f.as_dict() for f in self.findings]}


# ---------------------------------------------------------------------------------------
# Shared judgements


def unknown_finding(snap: HostSnapshot, check: str, *reads: Read) -> Optional[Finding]:
    """An unknown finding when any of `reads` failed."""
    for read in reads:
        if read in snap.unknown:
            return unread(snap, check, read, "this check needs it")
    return None


def unread(snap: HostSnapshot, check: str, read: Read, why: str) -> Finding:
    return Finding(UNKNOWN, check, f"could not read {read.description}: {snap.unknown[read]}", why,
                   "run `calfwd doctor` as root, on the node itself (and with firewalld running for "
                   "its runtime state)", read=read)


def felix_refresh(snap: HostSnapshot) -> int:
    return int(snap.config.felix_refresh_interval) if snap.config else 180


def zone_of(snap: HostSnapshot) -> str:
    return snap.config.firewalld.zone if snap.config else "calfwd"


def facts(snap: HostSnapshot) -> guard.FirewalldFacts:
    """What decides whether firewalld flushes: the running firewalld, or its files if stopped."""
    fw = snap.firewalld
    backend = fw.backend if fw.running else ""
    if not backend and Read.FIREWALLD_CONF not in snap.unknown:
        backend = snap.firewalld_conf.get("FirewallBackend", "nftables")  # the default since 0.6
    # Not running: no runtime direct rules. Not readable (no bus, not root): unknown.
    runtime = fw.runtime_direct if fw.running else None if Read.FIREWALLD in snap.unknown else ()
    direct = None
    if snap.permanent_direct is not None and runtime is not None:
        direct = tuple(snap.permanent_direct) + tuple(runtime)
    return guard.FirewalldFacts(version=fw.version if fw.running else snap.installed_version,
                                backend=backend, flush_fix=snap.flush_fix, iptables_direct=direct)


def guard_active(snap: HostSnapshot) -> Optional[bool]:
    """Does the running firewalld have the iptables binaries hidden? None: cannot tell."""
    fw = snap.firewalld
    if not fw.running or fw.guarded is None or not snap.guard_paths:
        return None
    return set(snap.guard_paths) <= set(fw.guarded)


def guard_inputs(snap: HostSnapshot) -> guard.GuardInputs:
    """What guard.assess() judges, from what doctor/reads.py read: the same for doctor, `calfwd
    guard status` and the daemon."""
    unreadable = ""
    for read in (Read.GUARD_DROPIN, Read.GUARD_PATHS):
        if read in snap.unknown:
            unreadable = f"could not read {read.description}: {snap.unknown[read]}"
            break
    return guard.GuardInputs(path=snap.dropin_path, text=snap.dropin_text, paths=snap.guard_paths,
                             firewalld=facts(snap), running=snap.firewalld.running, pid=snap.firewalld.pid,
                             active=guard_active(snap), active_unreadable=snap.unknown.get(Read.GUARD_ACTIVE, ""),
                             unreadable=unreadable, config_path=snap.config_path)


def guard_verdict(snap: HostSnapshot, setting: Any = None) -> guard.GuardVerdict:
    """guard.assess() on this snapshot, for `setting` (default: the snapshot's configuration's;
    false when it does not load)."""
    if setting is None:
        setting = snap.config.firewalld.flush_guard if snap.config else False
    return guard.assess(setting, guard_inputs(snap))


def guard_finding(verdict: guard.GuardVerdict, read: Optional[Read] = None) -> Finding:
    """The verdict as doctor's flush-guard finding (and `calfwd guard status`'s line)."""
    return Finding(verdict.severity, "flush-guard", verdict.seen, verdict.why, verdict.fix, read=read)


def as_networks(texts: Iterable[str]) -> List[Any]:
    nets = []
    for text in texts:
        try:
            nets.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            continue
    return nets


def in_any(net: Any, pools: Sequence[Any]) -> bool:
    return any(net.version == p.version and net.subnet_of(p) for p in pools)


# ---------------------------------------------------------------------------------------
# The checks
