"""calfwd's command line: check, plan, apply, status, audit, cleanup, run, doctor, guard.

Every command works without firewalld (the nftables layer alone); firewalld is reached over
the system bus when it is there. Failures print one line per problem and never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, List, Optional, Sequence, Tuple

from calfwd import __version__, daemon
from calfwd.judge import guard
from calfwd.config import DEFAULT_PATH, Config, ConfigError, load, load_trusted
from calfwd.doctor import checks as doctor
from calfwd.doctor import findings as verdicts
from calfwd.doctor import reads as host
from calfwd import drivers
from calfwd.drivers import dropin as dropin_file
from calfwd.drivers import errors as driver_errors
from calfwd.doctor.snapshot import Read
from calfwd.events import Reporter
from calfwd.judge.exposure import exposures
from calfwd.judge.guard import DROPIN_PATH
from calfwd.reconcile import PATHS, Reconciler

EXIT_OK = 0
EXIT_DRIFT = 1
EXIT_CONFIG = 2
EXIT_SYSTEM = 3

EXIT_CODES = f"""exit codes:
  {EXIT_OK}  success; status, plan: in sync; doctor: healthy; guard status: nothing to do; audit: all of
     it in effect as configured
  {EXIT_DRIFT}  status, plan: drift or pending changes; doctor: warnings; guard: refused, or something to do
  {EXIT_CONFIG}  invalid configuration or command line, nothing was changed; doctor: errors found
  {EXIT_SYSTEM}  nftables, firewalld or the flush guard's drop-in could not be read or changed (not root;
     firewalld hung, the system bus unreachable, access denied): never reported as in sync;
     audit: what is in effect differs from the configuration, could not be read, or firewalld's
     check of its permanent configuration failed
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calfwd",
        description="Keep Calico's traffic allowed by firewalld, and its natOutgoing alive "
                    "across firewalld reloads.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "-c", default=DEFAULT_PATH, metavar="PATH",
                        help=f"config file (default: {DEFAULT_PATH})")
    parser.add_argument("--version", action="version", version=f"calfwd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    sub.add_parser("check", help="validate the config file; change nothing")
    sub.add_parser("plan", help="show what apply would change; change nothing")
    apply = sub.add_parser("apply", help="reconcile once (nftables, and firewalld if running), then exit")
    apply.add_argument("--offline", action="store_true",
                       help="firewalld not running (image builds): write calfwd's zone and policies into "
                            "its configuration with firewall-offline-cmd and install the flush guard where "
                            "flush_guard asks; nftables is left to the daemon")
    apply.add_argument("--firewalld-dir", metavar="DIR", default=None,
                       help="with --offline: firewalld's configuration directory (default: /etc/firewalld)")
    status = sub.add_parser("status", help="compare what exists with the config")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    audit = sub.add_parser("audit", help="what calfwd makes this host accept, forward and masquerade, and "
                           "why; what it leaves untouched; firewalld's check of its permanent configuration; "
                           "exit 0 when all of it is in effect as configured, else 3")
    audit.add_argument("--json", action="store_true", help="machine-readable output")
    audit.add_argument("--dropin", metavar="PATH", default=None,
                       help=f"the flush guard's firewalld.service drop-in (default: {DROPIN_PATH})")
    cleanup = sub.add_parser("cleanup", help="remove everything calfwd made; leave the rest as it was; "
                             "exit 3 if anything of calfwd's remains")
    cleanup.add_argument("--firewalld-dir", metavar="DIR", default=None,
                         help="firewalld's configuration directory, changed with firewall-offline-cmd "
                              "when firewalld is stopped (default: /etc/firewalld)")
    sub.add_parser("run", help="the daemon: reconcile now and whenever firewalld reloads or restarts")
    doctor = sub.add_parser("doctor", help="inspect the host: one finding per line (severity, what, "
                            "why, fix); exit 0 healthy, 1 warnings, 2 errors")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    _host_paths(doctor)
    guard = sub.add_parser("guard", help="firewalld's flush guard (firewalld <= 1.x, nftables backend): "
                           "enable, disable or status")
    guard.add_argument("action", choices=("enable", "disable", "status", "auto"),
                       help="enable: install the drop-in; disable: remove it; status: show it; auto: do what "
                            "[firewalld] flush_guard says (what `apply` and the package do)")
    _host_paths(guard)
    return parser


def _host_paths(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dropin", metavar="PATH", default=None,
                        help=f"the flush guard's firewalld.service drop-in (default: {DROPIN_PATH})")
    parser.add_argument("--firewalld-dir", metavar="DIR", default=None,
                        help="firewalld's configuration directory, read when firewalld is stopped "
                             "(default: /etc/firewalld)")


def _fail(lines: Sequence[str], code: int) -> int:
    for line in lines:
        print(f"calfwd: {line}", file=sys.stderr)
    return code


def _load(path: str, strict_owner: bool, check_program: bool = True) -> Config:
    """Commands that change the firewall load it as the daemon does (config.load_trusted)."""
    return load_trusted(path, check_program) if strict_owner else load(path)


def _reconciler(config: Config) -> Reconciler:
    """Without a system bus, a firewalld client whose every answer is that error: calfwd cannot
    tell whether firewalld runs, so nothing may be called in sync."""
    firewalld = drivers.firewalld_or_unreachable() if config.firewalld.enabled else None
    return Reconciler(drivers.nft_driver(), firewalld)


def _print_layers(layers: Sequence[Any], verb: str) -> None:
    for layer in layers:
        if layer.layer == PATHS:  # nothing of calfwd's: said only when something blocks or warns
            for line in layer.blocking:
                print(f"paths: BLOCKED: {line}")
            for line in layer.conflicts:
                print(f"paths: warning: {line}")
            if layer.error or layer.note:
                print(f"paths: {'ERROR, not verified: ' + layer.error if layer.error else layer.note}")
            continue
        if layer.error:
            print(f"{layer.layer}: ERROR, not verified: {layer.error}")
        elif layer.note:
            print(f"{layer.layer}: {layer.note}")
        elif layer.empty:
            print(f"{layer.layer}: in sync")
        else:
            print(f"{layer.layer}: {verb}:")
            for action in layer.actions:
                print(f"  - {action}")
        for conflict in layer.conflicts:
            print(f"{layer.layer}: conflict: {conflict}")


def _warn_exposures(config: Config) -> None:
    """check, plan: what the config would open on this host (judge/exposure.py), as warnings on
    stderr. Not a refusal: the file is valid, interfaces come and go, and doctor says the same
    as findings (error for the uplink carrying the default route)."""
    from calfwd.drivers.hostnet import read_host_network

    try:
        host = read_host_network()
    except Exception as exc:
        print(f"calfwd: warning: cannot compare the config with this host's interfaces: {exc}", file=sys.stderr)
        return
    for exposure in exposures(config, host):
        print(f"calfwd: warning: {exposure.line()}", file=sys.stderr)


def _pools_line(state: Any) -> str:
    """ip_pools = "auto": the pools calfwd uses now, as the reconciler read them."""
    return f"pools: {state.describe()}"


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args.config, strict_owner=True)
    if config.auto_pools:
        state = Reconciler(drivers.nft_driver()).resolve_pools(config)
        print(f'{args.config}: OK (ip_pools = "auto": the pools and their natOutgoing follow Felix\'s sets)')
        print(_pools_line(state))
        config = Reconciler.resolve_config(config, state)  # the exposures of the pools in use
    else:
        pools = ", ".join(n.with_prefixlen for n in config.ip_pools)
        print(f"{args.config}: OK (pools {pools}; natOutgoing for {len(config.nat_outgoing)} of them)")
    _warn_exposures(config)
    if config.metrics_textfile:
        from calfwd.status.metrics_file import directory_warning

        warning = directory_warning(config.metrics_textfile)
        if warning:
            print(f"calfwd: warning: {args.config}: metrics.textfile: {warning}", file=sys.stderr)
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    config = _load(args.config, strict_owner=False)
    reconciler = _reconciler(config)
    layers, _facts = reconciler.plan(config)
    if config.auto_pools:
        print(_pools_line(reconciler.pools))
    _warn_exposures(Reconciler.resolve_config(config, reconciler.pools) if reconciler.pools else config)
    _print_layers(layers, "would change")
    if any(layer.error for layer in layers):
        return EXIT_SYSTEM
    return EXIT_OK if all(layer.empty for layer in layers) and not any(l.conflicts for l in layers) else EXIT_DRIFT


def cmd_apply(args: argparse.Namespace) -> int:
    if args.firewalld_dir is not None and not args.offline:
        return _fail(["apply: --firewalld-dir is for --offline; a running firewalld is asked over D-Bus"],
                     EXIT_CONFIG)
    config = _load(args.config, strict_owner=True)
    if args.offline:
        return _apply_offline(args, config)
    outcome = _reconciler(config).reconcile(config, trigger="cli")
    if outcome.pools is not None:
        print(_pools_line(outcome.pools))
    _print_layers(outcome.layers, "changed")
    guard_error = _guard_auto(args.config, config) if config.firewalld.enabled else ""
    if outcome.errors or guard_error:
        return _fail(list(outcome.errors) + ([guard_error] if guard_error else []), EXIT_SYSTEM)
    if not outcome.verified:
        blocked = [c for layer in outcome.layers if layer.layer != PATHS for c in layer.blocking]
        return _fail(blocked or ["applied, but reading back does not match the config yet"], EXIT_SYSTEM)
    # calfwd's objects are in place; what else shuts a path (forwarding still off on a node
    # Calico has not started on yet, panic mode, ...) is the host's: said, and `status` exits 1.
    for line in (b for layer in outcome.layers if layer.layer == PATHS for b in layer.blocking):
        print(f"calfwd: warning: applied, but BLOCKED: {line}", file=sys.stderr)
    return EXIT_OK


def _apply_offline(args: argparse.Namespace, config: Config) -> int:
    from calfwd.apply_offline import apply_offline, live_firewalld, same_directory
    from calfwd.drivers.firewalld_offline import OfflineFirewalld, nonregular_files

    directory = host.firewalld_dir(args.firewalld_dir)
    print("nftables: not touched offline (the daemon makes calfwd's table when it runs)")
    if not config.firewalld.enabled:
        print("firewalld: disabled in the config ([firewalld] enabled = false); nothing written")
        return EXIT_OK
    if config.firewalld.mode != "permanent":
        return _fail([f"{args.config}: [firewalld] mode: \"{config.firewalld.mode}\" never writes firewalld's "
                      "permanent configuration, which is all apply --offline writes: set mode = \"permanent\" "
                      "or run `calfwd apply` once firewalld runs"], EXIT_CONFIG)
    busy = live_firewalld(directory, host.firewalld_dir(None))
    if busy:
        return _fail([busy], EXIT_SYSTEM)
    blocking = nonregular_files(directory)  # firewall-offline-cmd would hang on them, and calfwd
    if blocking:
        return _fail([f"firewalld: nothing written to {directory}: {line}" for line in blocking], EXIT_SYSTEM)
    try:
        conf = host.read_firewalld_conf(directory)
    except OSError as exc:
        return _fail([f"firewalld: nothing written: {directory}/firewalld.conf: {exc.strerror or exc}"], EXIT_SYSTEM)
    result = apply_offline(config, OfflineFirewalld(directory), conf)
    where = f"firewalld ({directory}, offline, firewalld {result.version or 'version unknown'})"
    if result.changed:
        print(f"{where}: changed:")
        for action in result.changed:
            print(f"  - {action}")
    elif not result.remains:
        print(f"{where}: {'nothing changed' if result.conflicts else 'in sync, nothing changed'}")
    for conflict in result.conflicts:
        print(f"firewalld: conflict: {conflict}")
    if directory == host.firewalld_dir(None) or same_directory(directory, host.firewalld_dir(None)):
        guard_error = _guard_auto(args.config, config, fw_dir=directory, offline=True)
    else:  # an image's tree: its firewalld and its /etc/systemd are not this host's
        guard_error = ""
        print(f"flush guard: not judged: {directory} is not this host's firewalld configuration; the "
              "image's own `calfwd guard auto` (the package's %post) installs it where needed")
    remains = list(result.remains) + ([guard_error] if guard_error else [])
    return _fail(remains, EXIT_SYSTEM) if remains else EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from calfwd.status import document, health
    from calfwd.drivers import statusfile

    config = _load(args.config, strict_owner=False)
    reconciler = _reconciler(config)
    layers, facts = reconciler.plan(config)
    pools = reconciler.pools if config.auto_pools else None
    # What only the running daemon saw: a flush of Felix's or kube-proxy's rules not undone yet.
    daemon = statusfile.read_running()
    outages = health.daemon_outages(daemon) if daemon else ()
    # ... and calfwd's table gone while its repairs are paused (the daemon's kernel watch).
    seen = [health.outage_text(o) for o in outages] + list(health.daemon_blocking(daemon) if daemon else ())
    in_sync = all(layer.in_sync for layer in layers) and not seen
    errors = [f"{layer.layer}: {layer.error}" for layer in layers if layer.error]
    if args.json:
        print(json.dumps(document.status_json(config_path=args.config, in_sync=in_sync, daemon=daemon,
                                              seen=seen, facts=facts, errors=errors, pools=pools,
                                              layers=layers), indent=2))
    else:
        if pools is not None:
            print(_pools_line(pools))
        _print_layers(layers, "drift")
        for line in seen:
            print(f"kernel: BLOCKED: {line}")
        if daemon and daemon.get("firewalld_table_missing"):
            print(f"kernel: WARNING: {health.TABLE_GONE}")
        if daemon is None:
            print(f"daemon: not running (no live status in {statusfile.run_dir()}): nothing follows "
                  "firewalld's reloads, and flushes of Felix's or kube-proxy's rules go unseen")
    return EXIT_SYSTEM if errors else EXIT_OK if in_sync else EXIT_DRIFT


def cmd_audit(args: argparse.Namespace) -> int:
    """Reads what `status` reads (one plan, no second read that could disagree), plus the
    few host facts the page needs (audit/reads.py); exit 3 unless all of it is as configured."""
    from calfwd.audit import build as audit
    from calfwd.audit import reads as audit_reads
    from calfwd.audit import render as audit_render
    from calfwd.desired import desired

    config = _load(args.config, strict_owner=False)
    reconciler = _reconciler(config)
    layers, facts = reconciler.plan(config)
    nft_layer = next(layer for layer in layers if layer.layer == "nftables")
    seen = audit_reads.observe(config, facts, reconciler.nft, reconciler.firewalld,
                               table_present=nft_layer.read is not None, dropin=args.dropin)
    report = audit.build(config, desired(config, facts), facts, layers, seen)
    if args.json:
        print(json.dumps(audit_render.as_dict(report), indent=2))
    else:
        print(audit_render.text(report), end="")
    return EXIT_OK if report.ok else EXIT_SYSTEM


def cmd_cleanup(args: argparse.Namespace) -> int:
    from calfwd.drivers import statusfile
    from calfwd.drivers.firewalld_offline import OfflineFirewalld

    config = _load(args.config, strict_owner=True, check_program=False)
    firewalld: Optional[drivers.FirewalldDriver] = None
    bus_error = ""
    try:  # also with [firewalld] enabled = false: objects made before that switch go too
        firewalld = drivers.firewalld_driver()
    except Exception as exc:  # no bus, or a wrong DBUS_SYSTEM_BUS_ADDRESS: firewalld may still run
        bus_error = f"no system bus, so whether firewalld runs is unknown: {exc}"
    offline = OfflineFirewalld(host.firewalld_dir(args.firewalld_dir))
    # Each removal is printed (and flushed) as it is done: package removal may be killed
    # halfway, and what it already removed must be on record.
    result = Reconciler(drivers.nft_driver(), firewalld).cleanup(config, offline, bus_error, progress=_said_removed)
    removed, remains, left_alone = result.removed, result.remains, result.left_alone
    guard_action, guard_error = _remove_guard(None)
    if guard_action:
        removed += (_said_removed(guard_action),)
    try:
        status_files = statusfile.remove()
    except OSError as exc:
        status_files, remains = None, remains + (f"{statusfile.run_dir()}: {exc.strerror or exc}",)
    if status_files:
        removed += (_said_removed(status_files),)
    metrics_file, metrics_left = _remove_metrics(config.metrics_textfile)
    removed += (_said_removed(metrics_file),) if metrics_file else ()
    left_alone += (metrics_left,) if metrics_left else ()
    if guard_error:
        remains += (guard_error,)
    for line in left_alone:
        print(line)
    if not removed and not remains:
        print("nothing of calfwd's was there")
    if removed:  # package removal runs this: leave a record in the journal
        Reporter().emit("cleanup", "calfwd cleanup removed: " + "; ".join(removed)
                        + ("; NOT removed: " + "; ".join(remains) if remains else ""),
                        removed=len(removed), remains=len(remains))
    return _fail(remains, EXIT_SYSTEM) if remains else EXIT_OK


def _said_removed(action: str) -> str:
    print(f"removed: {action}", flush=True)
    return action


def _remove_metrics(path: str) -> Tuple[str, str]:
    """cleanup: the metrics file, or node_exporter serves its last values for ever; (what was
    removed, what was left alone and why). Only the regular file calfwd wrote goes: a link,
    FIFO or device there is neither followed nor waited on (status/metrics_file.remove_written)."""
    from calfwd.status.metrics_file import remove_written

    if not path:
        return "", ""
    removed, left = remove_written(path)
    return (f"metrics file {path}" if removed else ""), left


def _remove_guard(dropin: Optional[str]) -> Tuple[str, str]:
    """cleanup: calfwd's flush-guard drop-in goes too (someone else's file of that name stays)."""

    path = guard.dropin_path(dropin)
    try:
        if not guard.is_ours(dropin_file.read_dropin(path)):
            return "", ""
        dropin_file.remove_dropin(path)
    except OSError as exc:
        return "", f"{path}: {exc.strerror or exc}"
    return f"flush guard {path} (takes effect after: {guard.ACTIVATE})", ""


def _guard_auto(config_path: str, config: Config, dropin: Optional[str] = None,
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


def cmd_doctor(args: argparse.Namespace) -> int:
    snapshot = host.read_snapshot(args.config, fw_dir=args.firewalld_dir, dropin=args.dropin)
    report = doctor.diagnose(snapshot)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for line in report.lines():
            print(line)
    return report.exit_code


def cmd_guard(args: argparse.Namespace) -> int:
    if args.action == "auto":
        config = _load(args.config, strict_owner=True, check_program=False)
        error = _guard_auto(args.config, config, args.dropin)
        return _fail([error], EXIT_SYSTEM) if error else EXIT_OK
    path = guard.dropin_path(args.dropin)
    snapshot = host.read_snapshot(args.config, fw_dir=args.firewalld_dir, dropin=path, full=False)
    action = {"status": _guard_status, "disable": _guard_disable, "enable": _guard_enable}[args.action]
    return action(args, snapshot, path)


def _guard_status(args: argparse.Namespace, snapshot: Any, path: str) -> int:
    flush, why = guard.flushes(verdicts.facts(snapshot))
    print(f"firewalld: {why}" + (" (prevented by the guard)" if flush and verdicts.guard_active(snapshot) else ""))
    verdict = verdicts.guard_verdict(snapshot)  # doctor's flush-guard finding and the daemon's line
    print(verdicts.guard_finding(verdict).line())
    problems = (verdicts.WARNING, verdicts.ERROR, verdicts.UNKNOWN)
    return EXIT_DRIFT if verdict.severity in problems else EXIT_OK


def _guard_disable(args: argparse.Namespace, snapshot: Any, path: str) -> int:
    if snapshot.dropin_text is None:
        print(f"{path}: not installed; nothing to do")
        return EXIT_OK
    if not guard.is_ours(snapshot.dropin_text):
        return _fail([f"guard disable refused: {path} was not written by calfwd; left alone"], EXIT_DRIFT)
    removed, error = _remove_guard(path)
    if error:
        return _fail([error], EXIT_SYSTEM)
    print(f"removed {removed}")
    return EXIT_OK


def _guard_enable(args: argparse.Namespace, snapshot: Any, path: str) -> int:
    unreadable = snapshot.unknown.get(Read.GUARD_PATHS) or snapshot.unknown.get(Read.GUARD_DROPIN)
    if unreadable:
        return _fail([f"guard enable: {unreadable}"], EXIT_SYSTEM)
    if snapshot.dropin_text is not None and not guard.is_ours(snapshot.dropin_text):
        return _fail([f"guard enable refused: {path} exists and was not written by calfwd; left alone"],
                     EXIT_DRIFT)
    reason = guard.refusal(verdicts.facts(snapshot), snapshot.guard_paths)
    if reason:
        return _fail([f"guard enable refused: {reason}"], EXIT_DRIFT)
    text = guard.render_dropin(snapshot.guard_paths)
    if snapshot.dropin_text == text:
        print(f"{path}: already installed and current")
    else:
        try:
            dropin_file.write_dropin(path, text)
        except OSError as exc:
            return _fail([f"{path}: {exc.strerror or exc}"], EXIT_SYSTEM)
        print(f"installed {path}: firewalld cannot run {', '.join(snapshot.guard_paths)}")
    if verdicts.guard_active(snapshot) is not True:
        print(f"it takes effect when firewalld restarts: {guard.ACTIVATE}")
    if snapshot.config is not None and snapshot.config.firewalld.flush_guard is False:
        print(f"[firewalld] flush_guard = false in {args.config}: `calfwd apply` would remove it again; "
              "set it to \"auto\" or true")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    return daemon.run(args.config)


COMMANDS = {"check": cmd_check, "plan": cmd_plan, "apply": cmd_apply, "status": cmd_status,
            "cleanup": cmd_cleanup, "run": cmd_run, "doctor": cmd_doctor, "guard": cmd_guard,
            "audit": cmd_audit}


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        return _fail(exc.problems, EXIT_CONFIG)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # drivers' errors: one line, no traceback
        # Name the layer that failed, not the Python class that carried the news.
        return _fail([f"{driver_errors.layer(exc)}: {exc}"], EXIT_SYSTEM)
