"""calfwd's command line: argument parsing and dispatch. Each command is a module of
calfwd/commands/ (check, plan, apply, status, audit, cleanup, run, doctor, guard) with
run(args) -> int.

Every command works without firewalld (the nftables layer alone); firewalld is reached over
the system bus when it is there. Failures print one line per problem and never a traceback.
"""

from __future__ import annotations

import argparse
from typing import List, Optional

from calfwd import __version__
from calfwd.commands import apply as cmd_apply, audit as cmd_audit, check as cmd_check, \
    cleanup as cmd_cleanup, doctor as cmd_doctor, guard as cmd_guard, plan as cmd_plan, run as cmd_run, \
    status as cmd_status
from calfwd.commands.common import EXIT_CONFIG, EXIT_DRIFT, EXIT_OK, EXIT_SYSTEM, fail
from calfwd.config import DEFAULT_PATH, ConfigError
from calfwd.drivers import errors as driver_errors
from calfwd.judge.guard import DROPIN_PATH

__all__ = ["EXIT_CONFIG", "EXIT_DRIFT", "EXIT_OK", "EXIT_SYSTEM", "COMMANDS", "main"]

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


COMMANDS = {"check": cmd_check.run, "plan": cmd_plan.run, "apply": cmd_apply.run, "status": cmd_status.run,
            "cleanup": cmd_cleanup.run, "run": cmd_run.run, "doctor": cmd_doctor.run, "guard": cmd_guard.run,
            "audit": cmd_audit.run}


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        return fail(exc.problems, EXIT_CONFIG)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # drivers' errors: one line, no traceback
        # Name the layer that failed, not the Python class that carried the news.
        return fail([f"{driver_errors.layer(exc)}: {exc}"], EXIT_SYSTEM)
