"""`calfwd doctor`: inspect the host, one finding per line. The host is read by doctor/reads.py;
calfwd's own drift (what `plan` would change) is computed here and handed to it, so doctor's
reads never build a reconciler."""

from __future__ import annotations

import argparse
import json
from typing import Optional

from calfwd import drivers
from calfwd.config import Config
from calfwd.doctor import checks as doctor
from calfwd.doctor import reads as host
from calfwd.doctor.snapshot import Drift
from calfwd.reconcile import Reconciler


def run(args: argparse.Namespace) -> int:
    snapshot = host.read_snapshot(args.config, fw_dir=args.firewalld_dir, dropin=args.dropin, drift=drift)
    report = doctor.diagnose(snapshot)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for line in report.lines():
            print(line)
    return report.exit_code


def drift(config: Config, nft: drivers.NftDriver, firewalld: Optional[drivers.FirewalldDriver]) -> Drift:
    """What `plan` would change and its conflicts, through the drivers doctor read the host
    with (firewalld: None without a system bus)."""
    reconciler = Reconciler(nft, firewalld if config.firewalld.enabled else None)
    layers, facts = reconciler.plan(config)
    # The other checks (forwarding, zones, exposure) judge the pools calfwd uses.
    resolved = (reconciler.resolve_config(config, reconciler.pools)
                if config.auto_pools and reconciler.pools is not None else None)
    return Drift(tuple(f"{l.layer}: {a}" for l in layers for a in l.actions),
                 tuple(c for l in layers for c in l.conflicts), resolved, facts.cni,
                 reconciler.pools if config.auto_pools else None)
