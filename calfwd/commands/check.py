"""`calfwd check`: validate the config file (and, with ip_pools = "auto", read Felix's pools);
say which CNI calfwd serves here (judge/cni.py); change nothing."""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from calfwd import drivers
from calfwd.commands.common import EXIT_OK, load_config, pools_line, warn_exposures
from calfwd.reconcile import Reconciler


LABELS_RISK = ("they could replace calfwd's node labels or add labels of their own (NFD labels the "
               "node from every file there)")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, strict_owner=True)
    rec: Optional[Reconciler] = None
    if config.auto_pools:
        rec = Reconciler(drivers.nft_driver())
        state = rec.resolve_pools(config)
        print(f'{args.config}: OK (ip_pools = "auto": the pools and their natOutgoing follow Felix\'s sets, or flannel\'s '
              'network on a Canal or flannel node)')
        print(pools_line(state))
        config = Reconciler.resolve_config(config, state)  # the exposures of the pools in use
    else:
        pools = ", ".join(n.with_prefixlen for n in config.ip_pools)
        print(f"{args.config}: OK (pools {pools}; natOutgoing for {len(config.nat_outgoing)} of them)")
    print(_cni_reader(rec).judge_cni(config).line())
    warn_exposures(config)
    if config.metrics_textfile:
        from calfwd.status.metrics_file import directory_warning

        warning = directory_warning(config.metrics_textfile)
        if warning:
            print(f"calfwd: warning: {args.config}: metrics.textfile: {warning}", file=sys.stderr)
    if config.labels_features_file:
        from calfwd.status.labels import refusal
        from calfwd.status.metrics_file import directory_warning

        warning = directory_warning(config.labels_features_file, LABELS_RISK)
        if warning:
            print(f"calfwd: warning: {args.config}: labels.features_file: {warning}", file=sys.stderr)
        why = refusal(config.labels_features_file)
        if why:
            print(f"calfwd: warning: {args.config}: labels.features_file: {why}: calfwd will not write it",
                  file=sys.stderr)
    return EXIT_OK


def _cni_reader(rec: Optional[Reconciler]) -> Reconciler:
    """check needs no nftables bindings for a config with its pools listed: without them the
    CNI is judged with Felix's rules unread (cali* interfaces still show Calico)."""
    if rec is not None:
        return rec
    try:
        return Reconciler(drivers.nft_driver())
    except Exception:  # ImportError: python3-nftables is not installed
        return Reconciler(None)  # type: ignore[arg-type]
