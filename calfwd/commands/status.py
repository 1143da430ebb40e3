"""`calfwd status`: compare what exists with the config, folding in what only the running
daemon saw (its status file); the JSON is status/document.py's."""

from __future__ import annotations

import argparse
import json

from calfwd.commands.common import EXIT_DRIFT, EXIT_OK, EXIT_SYSTEM, load_config, pools_line, print_layers, \
    reconciler


def run(args: argparse.Namespace) -> int:
    from calfwd.status import health
    from calfwd.status import document
    from calfwd.drivers import statusfile

    config = load_config(args.config, strict_owner=False)
    rec = reconciler(config)
    layers, facts = rec.plan(config)
    pools = rec.pools if config.auto_pools else None
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
        print(facts.cni.line())
        if pools is not None:
            print(pools_line(pools))
        print_layers(layers, "drift")
        for line in seen:
            print(f"kernel: BLOCKED: {line}")
        if daemon and daemon.get("firewalld_table_missing"):
            print(f"kernel: WARNING: {health.TABLE_GONE}")
        if daemon is None:
            print(f"daemon: not running (no live status in {statusfile.run_dir()}): nothing follows "
                  "firewalld's reloads, and flushes of Felix's or kube-proxy's rules go unseen")
    return EXIT_SYSTEM if errors else EXIT_OK if in_sync else EXIT_DRIFT
