"""The flush guard's drop-in on disk, and the real iptables binaries it names.

The only file calfwd writes outside its own package: only `calfwd guard enable|disable` and
`calfwd cleanup` write or remove it (the daemon's file system is read-only); the daemon and
doctor read it. What it should say, and whether it is right, is judge/guard.py's (pure).
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

from calfwd.judge import guard
from calfwd.drivers import textfile


def resolve_guard_paths() -> Tuple[str, ...]:
    """The real iptables binaries on this host: what the guard hides from firewalld."""
    resolved = {}
    for path in guard.FIREWALLD_COMMANDS + guard.MULTI_BINARIES:
        resolved[path] = os.path.realpath(path) if os.path.exists(path) else None
    return guard.guard_paths(resolved)



def read_dropin(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_dropin(path: str, text: str) -> None:
    """Atomically: systemd must never read half a drop-in."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    textfile.write_atomic(path, text)


def remove_dropin(path: str) -> None:
    os.unlink(path)
    try:
        os.rmdir(os.path.dirname(path))  # only if now empty
    except OSError:
        pass
