"""What several verbs share: exit codes, one line per failure, loading the config, the
reconciler the CLI uses, and how layers and pools are printed."""

from __future__ import annotations

import sys
from typing import Any, Sequence

from calfwd import drivers
from calfwd.config import Config, load, load_trusted
from calfwd.judge.exposure import exposures
from calfwd.reconcile import PATHS, Reconciler

EXIT_OK = 0
EXIT_DRIFT = 1
EXIT_CONFIG = 2
EXIT_SYSTEM = 3


def fail(lines: Sequence[str], code: int) -> int:
    for line in lines:
        print(f"calfwd: {line}", file=sys.stderr)
    return code


def load_config(path: str, strict_owner: bool, check_program: bool = True) -> Config:
    """Commands that change the firewall load it as the daemon does (config.load_trusted)."""
    return load_trusted(path, check_program) if strict_owner else load(path)


def reconciler(config: Config) -> Reconciler:
    """Without a system bus, a firewalld client whose every answer is that error: calfwd cannot
    tell whether firewalld runs, so nothing may be called in sync."""
    firewalld = drivers.firewalld_or_unreachable() if config.firewalld.enabled else None
    return Reconciler(drivers.nft_driver(), firewalld)


def print_layers(layers: Sequence[Any], verb: str) -> None:
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


def warn_exposures(config: Config) -> None:
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


def pools_line(state: Any) -> str:
    """ip_pools = "auto": the pools calfwd uses now, as the reconciler read them."""
    return f"pools: {state.describe()}"
