"""The daemon's status files under /run/calfwd (the unit's RuntimeDirectory).

status.json: what `calfwd status --json` says plus what only the daemon knows (health.py).
health: one line, "<state> <why>", for node-problem-detector's check (packaging/npd/), which
may run in a container with nothing but a shell: no JSON to parse there.

Both are replaced atomically (write, fsync, rename) and world-readable: they hold nothing
secret, and NPD usually reads them through a hostPath mount as another user.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

RUN_DIR = "/run/calfwd"
STATUS, HEALTH = "status.json", "health"
MODE = 0o644


def run_dir() -> str:
    """CALFWD_RUN_DIR: tests (and a non-systemd run) point it elsewhere."""
    return os.environ.get("CALFWD_RUN_DIR") or RUN_DIR


def _replace(directory: str, name: str, text: str) -> None:
    path = os.path.join(directory, name)
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, MODE)
    try:
        os.fchmod(fd, MODE)  # the unit's UMask=0077 would make it root-only
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def publish(doc: Dict[str, Any], line: str, directory: Optional[str] = None) -> None:
    directory = directory or run_dir()
    os.makedirs(directory, mode=0o755, exist_ok=True)
    _replace(directory, STATUS, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    _replace(directory, HEALTH, line.replace("\n", " ") + "\n")


def publish_health(line: str, directory: Optional[str] = None) -> None:
    directory = directory or run_dir()
    if os.path.isdir(directory):
        _replace(directory, HEALTH, line.replace("\n", " ") + "\n")


def read_running(directory: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The running daemon's status.json; None when there is none or its writer has exited
    (a file a killed daemon left behind says nothing about now)."""
    path = os.path.join(directory or run_dir(), STATUS)
    try:
        with open(path, encoding="utf-8") as handle:
            doc = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not _alive(doc.get("pid")):
        return None
    return doc


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
