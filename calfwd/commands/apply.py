"""`calfwd apply`: reconcile once (nftables, and firewalld if it runs), carry out
[firewalld] flush_guard, then exit; `--offline` is apply_offline.py's."""

from __future__ import annotations

import argparse
import sys

from calfwd.commands import apply_offline
from calfwd.commands.common import EXIT_CONFIG, EXIT_OK, EXIT_SYSTEM, fail, load_config, pools_line, print_layers, \
    reconciler
from calfwd.commands.guard import guard_auto
from calfwd.reconcile import PATHS


def run(args: argparse.Namespace) -> int:
    if args.firewalld_dir is not None and not args.offline:
        return fail(["apply: --firewalld-dir is for --offline; a running firewalld is asked over D-Bus"],
                    EXIT_CONFIG)
    config = load_config(args.config, strict_owner=True)
    if args.offline:
        return apply_offline.run(args, config)
    outcome = reconciler(config).reconcile(config, trigger="cli")
    if outcome.pools is not None:
        print(pools_line(outcome.pools))
    print_layers(outcome.layers, "changed")
    guard_error = guard_auto(args.config, config) if config.firewalld.enabled else ""
    if outcome.errors or guard_error:
        return fail(list(outcome.errors) + ([guard_error] if guard_error else []), EXIT_SYSTEM)
    if not outcome.verified:
        blocked = [c for layer in outcome.layers if layer.layer != PATHS for c in layer.blocking]
        return fail(blocked or ["applied, but reading back does not match the config yet"], EXIT_SYSTEM)
    # calfwd's objects are in place; what else shuts a path (forwarding still off on a node
    # Calico has not started on yet, panic mode, ...) is the host's: said, and `status` exits 1.
    for line in (b for layer in outcome.layers if layer.layer == PATHS for b in layer.blocking):
        print(f"calfwd: warning: applied, but BLOCKED: {line}", file=sys.stderr)
    return EXIT_OK
