"""`calfwd guard enable|disable|status|auto`: firewalld's flush guard, a firewalld.service
drop-in (judge/guard.py judges it, drivers/dropin.py writes it). guard_auto is also `apply`'s
(online and --offline); remove_guard is also `cleanup`'s."""

from __future__ import annotations

import argparse
from typing import Any, Optional, Tuple

from calfwd.commands.common import EXIT_DRIFT, EXIT_OK, EXIT_SYSTEM, fail, load_config
from calfwd.config import Config
from calfwd.doctor import findings as verdicts
from calfwd.doctor import reads as host
from calfwd.doctor.snapshot import Read
from calfwd.drivers import dropin as dropin_file
from calfwd.judge import guard


def run(args: argparse.Namespace) -> int:
    if args.action == "auto":
        config = load_config(args.config, strict_owner=True, check_program=False)
        error = guard_auto(args.config, config, args.dropin)
        return fail([error], EXIT_SYSTEM) if error else EXIT_OK
    path = guard.dropin_path(args.dropin)
    snapshot = host.read_snapshot(args.config, fw_dir=args.firewalld_dir, dropin=path, full=False)
    action = {"status": _status, "disable": _disable, "enable": _enable}[args.action]
    return action(args, snapshot, path)


def _status(args: argparse.Namespace, snapshot: Any, path: str) -> int:
    flush, why = guard.flushes(verdicts.facts(snapshot))
    print(f"firewalld: {why}" + (" (prevented by the guard)" if flush and verdicts.guard_active(snapshot) else ""))
    verdict = verdicts.guard_verdict(snapshot)  # doctor's flush-guard finding and the daemon's line
    print(verdicts.guard_finding(verdict).line())
    problems = (verdicts.WARNING, verdicts.ERROR, verdicts.UNKNOWN)
    return EXIT_DRIFT if verdict.severity in problems else EXIT_OK


def _disable(args: argparse.Namespace, snapshot: Any, path: str) -> int:
    if snapshot.dropin_text is None:
        print(f"{path}: not installed; nothing to do")
        return EXIT_OK
    if not guard.is_ours(snapshot.dropin_text):
        return fail([f"guard disable refused: {path} was not written by calfwd; left alone"], EXIT_DRIFT)
    removed, error = remove_guard(path)
    if error:
        return fail([error], EXIT_SYSTEM)
    print(f"removed {removed}")
    return EXIT_OK


def _enable(args: argparse.Namespace, snapshot: Any, path: str) -> int:
    unreadable = snapshot.unknown.get(Read.GUARD_PATHS) or snapshot.unknown.get(Read.GUARD_DROPIN)
    if unreadable:
        return fail([f"guard enable: {unreadable}"], EXIT_SYSTEM)
    if snapshot.dropin_text is not None and not guard.is_ours(snapshot.dropin_text):
        return fail([f"guard enable refused: {path} exists and was not written by calfwd; left alone"],
                    EXIT_DRIFT)
    reason = guard.refusal(verdicts.facts(snapshot), snapshot.guard_paths)
    if reason:
        return fail([f"guard enable refused: {reason}"], EXIT_DRIFT)
    text = guard.render_dropin(snapshot.guard_paths)
    if snapshot.dropin_text == text:
        print(f"{path}: already installed and current")
    else:
        try:
            dropin_file.write_dropin(path, text)
        except OSError as exc:
            return fail([f"{path}: {exc.strerror or exc}"], EXIT_SYSTEM)
        print(f"installed {path}: firewalld cannot run {', '.join(snapshot.guard_paths)}")
    if verdicts.guard_active(snapshot) is not True:
        print(f"it takes effect when firewalld restarts: {guard.ACTIVATE}")
    if snapshot.config is not None and snapshot.config.firewalld.flush_guard is False:
        print(f"[firewalld] flush_guard = false in {args.config}: `calfwd apply` would remove it again; "
              "set it to \"auto\" or true")
    return EXIT_OK


def remove_guard(dropin: Optional[str]) -> Tuple[str, str]:
    """calfwd's flush-guard drop-in removed (someone else's file of that name stays): (what was
    removed, or ""; why it could not be, or "")."""
    path = guard.dropin_path(dropin)
    try:
        if not guard.is_ours(dropin_file.read_dropin(path)):
            return "", ""
        dropin_file.remove_dropin(path)
    except OSError as exc:
        return "", f"{path}: {exc.strerror or exc}"
    return f"flush guard {path} (takes effect after: {guard.ACTIVATE})", ""


def guard_auto(config_path: str, config: Config, dropin: Optional[str] = None,
               fw_dir: Optional[str] = None, offline: bool = False) -> str:
    """[firewalld] flush_guard, carried out: the drop-in where it is wanted (guard.wanted),
    calfwd's own removed where it is not any more. Prints what it did; returns an error line.
    Never restarts firewalld: the drop-in takes effect at its next restart, which it says.
    offline: judged from the installed firewalld and fw_dir's files alone."""
    path = guard.dropin_path(dropin)
    snapshot = host.read_snapshot(config_path, fw_dir=fw_dir, dropin=path, full=False, offline=offline)
    unreadable = snapshot.unknown.get(Read.GUARD_PATHS) or snapshot.unknown.get(Read.GUARD_DROPIN)
    if unreadable:
        return f"flush guard: {unreadable}"
    facts = verdicts.facts(snapshot)
    want, why = guard.wanted(config.firewalld.flush_guard, facts, snapshot.guard_paths)
    text = snapshot.dropin_text
    try:
        if want:
            if text is not None and not guard.is_ours(text):
                print(f"flush guard: {path} exists and was not written by calfwd; left alone")
                return ""
            wanted_text = guard.render_dropin(snapshot.guard_paths)
            if text == wanted_text:
                return ""
            dropin_file.write_dropin(path, wanted_text)
            print(f"flush guard: installed {path} ({why}); it takes effect when firewalld next starts"
                  if offline else f"flush guard: installed {path} ({why}); it takes effect when firewalld "
                  f"restarts, which calfwd never does itself: {guard.ACTIVATE}")
        elif text is not None and guard.is_ours(text) and (config.firewalld.flush_guard is False
                                                            or guard.flushes(facts)[0] is False):
            dropin_file.remove_dropin(path)
            print(f"flush guard: removed {path} ({why}); takes effect after: {guard.ACTIVATE}")
    except OSError as exc:
        return f"flush guard: {path}: {exc.strerror or exc}"
    return ""
