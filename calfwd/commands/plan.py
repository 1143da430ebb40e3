"""`calfwd plan`: what `apply` would change; change nothing."""

from __future__ import annotations

import argparse

from calfwd.commands.common import (EXIT_DRIFT, EXIT_OK, EXIT_SYSTEM, load_config, pools_line, print_layers,
                                    reconciler, warn_exposures)
from calfwd.reconcile import Reconciler


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, strict_owner=False)
    rec = reconciler(config)
    layers, facts = rec.plan(config)
    print(facts.cni.line())
    if config.auto_pools:
        print(pools_line(rec.pools))
    warn_exposures(Reconciler.resolve_config(config, rec.pools) if rec.pools else config)
    print_layers(layers, "would change")
    if any(layer.error for layer in layers):
        return EXIT_SYSTEM
    return EXIT_OK if all(layer.empty for layer in layers) and not any(l.conflicts for l in layers) else EXIT_DRIFT
