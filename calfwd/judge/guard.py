"""The flush guard: a firewalld.service drop-in that keeps firewalld <= 1.x off Calico's rules.

Pure: what the drop-in says, whether firewalld flushes, when installing the guard would be
wrong. doctor/reads.py reads the facts, drivers/dropin.py writes the file; commands/guard.py
(`calfwd guard`, and `apply`) runs it.

Why it works (firewalld 1.3.3, checked in the lab): at start and reload firewalld runs
`iptables -t filter -L -n` (and ip6tables, ebtables) to see whether iptables is usable; when
that fails it logs "iptables is not usable", leaves the iptables backends out of
all_backends(), and its flush (`iptables-restore` with -F -X -Z for every table, on start,
reload and stop, even with FirewallBackend=nftables) never runs. `InaccessiblePaths=` hides
the binaries from firewalld's process only: Felix (in calico-node's image) and every admin
shell keep them. firewalld then has no direct interface either.

Why not everywhere: with FirewallBackend=iptables firewalld cannot start without them; direct
rules and passthroughs need them; firewalld >= 2.0 (and RHEL 9.3's 1.2.5, a backport) no
longer flushes with the nftables backend unless a direct rule exists, so it is not needed.

Who writes it: only the CLI (`calfwd guard enable|disable`, and `calfwd cleanup` removes it).
The daemon runs read-only (ProtectSystem=strict); it reports what assess() finds wrong. The
drop-in takes effect when firewalld restarts, a moment calfwd leaves to the admin: it prints
the commands, it never runs them.

One verdict: assess() judges the guard from one set of facts (GuardInputs) for doctor's
flush-guard check, `calfwd guard status`, the daemon (flush_guard = true and "auto" alike)
and the metrics' calfwd_flush_guard_installed, so they cannot disagree.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple


DROPIN_PATH = "/etc/systemd/system/firewalld.service.d/calfwd-flush-guard.conf"
# Tests (and unusual layouts) point calfwd at another file; the CLI options override this too.
DROPIN_ENV = "CALFWD_FLUSH_GUARD_DROPIN"
MARKER = "# calfwd flush guard"
ACTIVATE = "systemctl daemon-reload && systemctl restart firewalld"

# What firewalld 1.x runs (firewall/config COMMANDS), and the multi-call binaries behind them.
FIREWALLD_COMMANDS = (
    "/usr/sbin/iptables", "/usr/sbin/iptables-restore",
    "/usr/sbin/ip6tables", "/usr/sbin/ip6tables-restore",
    "/usr/sbin/ebtables", "/usr/sbin/ebtables-restore",
)
MULTI_BINARIES = ("/usr/sbin/xtables-nft-multi", "/usr/sbin/xtables-legacy-multi")
_IPTABLES_NAME = re.compile(r"^(xtables-.*-multi|iptables.*|ip6tables.*|ebtables.*)$")


def version_tuple(version: str) -> Optional[Tuple[int, ...]]:
    """firewalld's version as numbers: what it can do depends on it (policies from 1.0)."""
    match = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", version or "")
    if not match:
        return None
    return tuple(int(g) for g in match.groups() if g is not None)


def dropin_path(override: Optional[str] = None) -> str:
    return override or os.environ.get(DROPIN_ENV) or DROPIN_PATH


def guard_paths(resolved: Mapping[str, Optional[str]]) -> Tuple[str, ...]:
    """The real files to hide, from each candidate path's resolved target (None: missing).

    Only iptables binaries: a command that resolves to anything else (a shell, python for a
    wrapper script) is left alone rather than hidden from firewalld.
    """
    found = {real for real in resolved.values()
             if real and _IPTABLES_NAME.match(os.path.basename(real))}
    return tuple(sorted(found))


def render_dropin(paths: Tuple[str, ...]) -> str:
    lines = [
        f"{MARKER}: written by `calfwd guard enable`; remove it with `calfwd guard disable`.",
        "# firewalld <= 1.x flushes every iptables table, Calico's rules included, on start,",
        "# reload and stop, even with FirewallBackend=nftables. Without the iptables binaries it",
        "# finds iptables unusable and skips that flush (it then has no direct interface).",
        f"# Takes effect after: {ACTIVATE}",
        "[Service]",
    ]
    # "-": a path that does not exist on this host must not fail firewalld.service.
    lines += [f"InaccessiblePaths=-{path}" for path in paths]
    return "\n".join(lines) + "\n"


def is_ours(text: Optional[str]) -> bool:
    return bool(text) and text.startswith(MARKER)  # type: ignore[union-attr]


def parse_dropin(text: str) -> Tuple[str, ...]:
    """The paths a drop-in makes inaccessible (any InaccessiblePaths= line, '-' stripped)."""
    paths = []
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key.strip() == "InaccessiblePaths":
            paths += [p.lstrip("-+") for p in value.split() if p.strip("-+")]
    return tuple(paths)


def stale(text: str, paths: Tuple[str, ...]) -> Optional[Tuple[str, ...]]:
    """The paths calfwd's drop-in hides when they are not this host's iptables binaries."""
    have = parse_dropin(text)
    return have if set(have) != set(paths) else None


# ---------------------------------------------------------------------------------------
# Does this firewalld flush Calico's iptables rules?


@dataclass(frozen=True)
class FirewalldFacts:
    """What decides whether firewalld flushes the iptables tables; "" / None: unknown."""

    version: str = ""
    backend: str = ""  # FirewallBackend: "nftables" or "iptables"
    flush_fix: Optional[bool] = None  # its code skips the flush with nftables (2.0, or a backport)
    # Direct chains, rules and passthroughs, permanent and runtime. READ-ONLY detection: calfwd
    # never adds, changes or removes direct rules or passthroughs (they would need iptables).
    iptables_direct: Optional[Tuple[str, ...]] = None

    @property
    def fixed(self) -> Optional[bool]:
        """True when this firewalld skips the flush with the nftables backend and no direct rules."""
        if self.flush_fix:
            return True
        version = version_tuple(self.version)
        if version is not None:
            return version >= (2, 0)
        return None if self.flush_fix is None else False


def flushes(facts: FirewalldFacts) -> Tuple[Optional[bool], str]:
    """(True/False/None for unknown, why), as one sentence for doctor and guard status."""
    name = f"firewalld {facts.version}" if facts.version else "firewalld"
    if facts.backend == "iptables":
        return True, (f"{name} uses its iptables backend, which flushes every iptables table on "
                      "start, reload and stop")
    if not facts.backend:
        return None, f"cannot tell {name}'s FirewallBackend"
    fixed = facts.fixed
    if fixed is None:
        return None, "cannot tell firewalld's version"
    if not fixed:
        return True, (f"{name} flushes every iptables table on start, reload and stop, even with "
                      "FirewallBackend=nftables")
    if facts.iptables_direct is None:
        return None, (f"{name} skips the iptables flush only while no direct rule exists, and "
                      "whether direct rules exist could not be read")
    if facts.iptables_direct:
        return True, (f"{name} would skip the iptables flush with the nftables backend, but "
                      f"{_count(facts.iptables_direct)} switch the full flush back on")
    return False, f"{name} with the nftables backend and no direct rules does not flush iptables tables"


def refusal(facts: FirewalldFacts, paths: Tuple[str, ...]) -> Optional[str]:
    """Why `calfwd guard enable` must not install the drop-in on this host, or None."""
    if facts.backend == "iptables":
        return ("firewalld uses FirewallBackend=iptables: without the iptables binaries it cannot "
                "start at all. Switch it to FirewallBackend=nftables in firewalld.conf first")
    if not facts.backend:
        return "cannot tell firewalld's FirewallBackend (is firewalld installed?)"
    if facts.iptables_direct is None:
        return ("cannot read whether firewalld has direct rules (they would stop working with the "
                "guard): run as root, with firewalld running")
    if facts.iptables_direct:
        # The firewall-cmd below is advice for the admin's own rules; calfwd never runs it.
        return (f"firewalld has {_count(facts.iptables_direct)}: they need iptables, so with the guard "
                "firewalld could not apply them. Move them to policies or rich rules and remove "
                "them (firewall-cmd --permanent --direct --get-all-rules lists them) first")
    fixed = facts.fixed
    if fixed is None:
        return "cannot tell firewalld's version (is firewalld installed?)"
    if fixed:
        name = f"firewalld {facts.version}" if facts.version else "this firewalld"
        return (f"not needed: {name} does not flush iptables tables with the nftables backend "
                "while no direct rules exist")
    if not paths:
        return "no iptables binaries found: firewalld cannot flush anything, nothing to guard"
    return None


def _count(direct: Tuple[str, ...]) -> str:
    """Describes direct rules found by read-only detection, for refusals and findings."""
    return f"{len(direct)} direct rule(s) or passthrough(s) ({'; '.join(direct[:3])})"


def wanted(flush_guard: Any, facts: FirewalldFacts, paths: Tuple[str, ...]) -> Tuple[bool, str]:
    """(whether this host should have calfwd's drop-in, why) for [firewalld] flush_guard.

    "auto": exactly where the installed firewalld flushes iptables and the guard can work
    (refusal() says where it would be wrong). The fix is detected in firewalld's code
    (FirewalldFacts.flush_fix), not by version alone: RHEL backported it to 0.9.11 and 1.2.5.
    """
    if flush_guard is False:
        return False, "[firewalld] flush_guard = false"
    flush, why = flushes(facts)
    if flush_guard is True:
        return True, "[firewalld] flush_guard = true"
    if flush is not True:
        return False, why
    reason = refusal(facts, paths)
    return (False, f"{why}, but the guard cannot be installed: {reason}") if reason else (True, why)


# ---------------------------------------------------------------------------------------
# The one verdict on the guard

# doctor's severities (doctor/findings.py), named here so that this module stays pure.
OK, INFO, WARNING, ERROR, UNKNOWN = "ok", "info", "warning", "error", "unknown"
# Every state assess() can return, most of them in the order it judges them.
STATES = ("unknown", "not-wanted", "missing", "refused", "foreign", "harmful", "not-needed", "stale",
          "not-in-effect", "ok")


@dataclass(frozen=True)
class GuardInputs:
    """Everything the verdict rests on, read once (doctor/findings.guard_inputs)."""

    path: str  # the drop-in's path
    text: Optional[str]  # its text; None: it does not exist
    paths: Tuple[str, ...]  # this host's iptables binaries, the ones the guard must hide
    firewalld: FirewalldFacts = FirewalldFacts()
    running: bool = False  # firewalld runs now
    pid: Optional[int] = None
    active: Optional[bool] = None  # the running firewalld cannot run `paths`; None: cannot tell
    active_unreadable: str = ""  # why `active` could not be read, when it could not
    unreadable: str = ""  # why the drop-in or the binaries could not be read: nothing can be judged
    config_path: str = ""


@dataclass(frozen=True)
class GuardVerdict:
    state: str  # one of STATES
    severity: str  # doctor's: ok, info, warning, error, unknown
    seen: str
    why: str = ""
    fix: str = ""
    installed: bool = False  # calfwd's drop-in is there and names this host's binaries (the metric)

    @property
    def problem(self) -> Optional[str]:
        """The daemon's line (conflict event, STATUS=, NPD) when the guard needs the admin now."""
        if self.severity not in (WARNING, ERROR):
            return None
        return f"flush guard: {self.seen}; fix: {self.fix}" if self.fix else f"flush guard: {self.seen}"


def assess(setting: Any, seen: GuardInputs) -> GuardVerdict:
    """The guard's one verdict for [firewalld] flush_guard = `setting` (true, false, "auto").

    One state, the most pressing: firewalld that cannot work with the guard, then a guard not
    needed at all, then one that does not hide this host's binaries, then whether the running
    firewalld started with it."""
    path = seen.path
    if seen.unreadable:
        return GuardVerdict("unknown", UNKNOWN, seen.unreadable, "this check needs it",
                            "run `calfwd doctor` as root, on the node itself (and with firewalld "
                            "running for its runtime state)")
    f = seen.firewalld
    text = seen.text
    if text is None:
        return _absent(setting, seen)
    if not is_ours(text):
        if setting is True:
            return GuardVerdict("foreign", WARNING, f"[firewalld] flush_guard = true, but {path} exists and "
                                "was not written by calfwd", "calfwd leaves it alone, so its guard is not "
                                "installed", "inspect it: systemctl cat firewalld; remove it, then "
                                f"calfwd guard enable && {ACTIVATE}")
        return GuardVerdict("foreign", INFO, f"{path} exists but was not written by calfwd",
                            "calfwd leaves it alone", "inspect it: systemctl cat firewalld")
    hidden = stale(text, seen.paths)
    installed = hidden is None
    if f.backend == "iptables":
        return GuardVerdict("harmful", ERROR, f"{path} hides the iptables binaries, but firewalld uses "
                            "FirewallBackend=iptables", "firewalld cannot start without them",
                            f"calfwd guard disable && {ACTIVATE}", installed)
    if f.iptables_direct:  # read-only detection (doctor's check_direct)
        return GuardVerdict("harmful", ERROR, f"{path} hides the iptables binaries, but firewalld has "
                            f"{len(f.iptables_direct)} direct rule(s) or passthrough(s)",
                            "firewalld cannot apply them without iptables",
                            f"remove the direct rules, or calfwd guard disable && {ACTIVATE}", installed)
    if f.fixed:  # whether it is current or in effect does not matter: nothing to guard against
        name = f"firewalld {f.version}" if f.version else "this firewalld"
        return GuardVerdict("not-needed", INFO, f"{path} is installed, but {name} does not flush with "
                            "the nftables backend", "the guard is not needed (harmless)",
                            f"calfwd guard disable && {ACTIVATE}", installed)
    if hidden is not None:
        return GuardVerdict("stale", WARNING, f"{path} hides {', '.join(hidden) or 'nothing'}, but the "
                            f"iptables binaries here are {', '.join(seen.paths) or 'none'}",
                            "an iptables binary firewalld can still run lets it flush",
                            f"calfwd guard enable (rewrites it) && {ACTIVATE}")
    if not seen.running:
        return GuardVerdict("ok", OK, f"{path} is installed (applies when firewalld starts)",
                            installed=True)
    if seen.active is False:
        return GuardVerdict("not-in-effect", WARNING, f"{path} is installed, but the running firewalld "
                            "started without it", "it still flushes Calico's rules on reload and stop",
                            ACTIVATE, installed=True)
    if seen.active is None:
        unread = f" ({seen.active_unreadable})" if seen.active_unreadable else ""
        return GuardVerdict("unknown", UNKNOWN, f"{path} is installed; whether the running firewalld "
                            f"started with it could not be read{unread}",
                            "it only takes effect when firewalld restarts", f"if unsure: {ACTIVATE}",
                            installed=True)
    pid = f" (pid {seen.pid})" if seen.pid else ""
    return GuardVerdict("ok", OK, f"{path} is installed and the running firewalld{pid} cannot run "
                        f"{', '.join(seen.paths)}", installed=True)


def _absent(setting: Any, seen: GuardInputs) -> GuardVerdict:
    """No drop-in: wanted (missing, or refused where it cannot work) or not."""
    path = seen.path
    want, why = wanted(setting, seen.firewalld, seen.paths)
    reason = refusal(seen.firewalld, seen.paths)
    if not want:
        fix = ""
        if flushes(seen.firewalld)[0] and not reason:
            fix = (f"calfwd guard enable && {ACTIVATE}" if setting is not False else
                   f"set [firewalld] flush_guard = \"auto\", then calfwd apply && {ACTIVATE}")
        return GuardVerdict("not-wanted", INFO, f"{path} is not installed", why, fix)
    if setting == "auto":
        return GuardVerdict("missing", WARNING, f"[firewalld] flush_guard = \"auto\" and this firewalld "
                            f"flushes Calico's and kube-proxy's rules, but {path} does not exist",
                            "they go on each firewalld start, reload and stop",
                            f"calfwd apply (or calfwd guard auto) && {ACTIVATE}")
    if reason:
        where = f" in {seen.config_path}" if seen.config_path else ""
        return GuardVerdict("refused", WARNING, f"[firewalld] flush_guard = true but {path} does not "
                            f"exist, and it cannot be installed here: {reason}",
                            "calfwd keeps reporting this", f"set [firewalld] flush_guard = false{where}, "
                            "or fix the reason above and run `calfwd guard enable`")
    return GuardVerdict("missing", WARNING, f"[firewalld] flush_guard = true but {path} does not exist",
                        "firewalld flushes Calico's rules on each start, reload and stop",
                        f"calfwd guard enable && {ACTIVATE}")
