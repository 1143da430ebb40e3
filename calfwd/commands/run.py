"""`calfwd run`: the daemon (calfwd/daemon.py)."""

from __future__ import annotations

import argparse

from calfwd import daemon


def run(args: argparse.Namespace) -> int:
    return daemon.run(args.config)
