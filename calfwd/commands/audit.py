"""`calfwd audit`: what calfwd makes this host accept, forward and masquerade, and why; exit 3
unless all of it is in effect as configured (calfwd/audit/ builds and renders it)."""

from __future__ import annotations

import argparse
import json

from calfwd.commands.common import EXIT_OK, EXIT_SYSTEM, load_config, reconciler


def run(args: argparse.Namespace) -> int:
    """Reads what `status` reads (one plan, no second read that could disagree), plus the
    few host facts the page needs (audit/reads.py); exit 3 unless all of it is as configured."""
    from calfwd.audit import build as audit
    from calfwd.audit import reads as audit_reads
    from calfwd.audit import render as audit_render
    from calfwd.desired import desired

    config = load_config(args.config, strict_owner=False)
    rec = reconciler(config)
    layers, facts = rec.plan(config)
    nft_layer = next(layer for layer in layers if layer.layer == "nftables")
    from calfwd.doctor import reads as host
    seen = audit_reads.observe(config, facts, rec.nft, rec.firewalld,
                               table_present=nft_layer.read is not None, dropin=args.dropin,
                               read_conf=lambda: host.read_firewalld_conf(host.firewalld_dir(None)))
    report = audit.build(config, desired(config, facts), facts, layers, seen)
    if args.json:
        print(json.dumps(audit_render.as_dict(report), indent=2))
    else:
        print(audit_render.text(report), end="")
    return EXIT_OK if report.ok else EXIT_SYSTEM
