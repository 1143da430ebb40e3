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
import time
from typing import Any, Callable, Dict, Optional

from calfwd.drivers import textfile

RUN_DIR = "/run/calfwd"
STATUS, HEALTH = "status.json", "health"
MODE = 0o644
# The daemon rewrites status.json at least every minute (daemon.HEARTBEAT): a file much older
# than that is a hung daemon's, and says nothing of now.
STALE_AFTER = 180.0


def run_dir() -> str:
    """CALFWD_RUN_DIR: tests (and a non-systemd run) point it elsewhere."""
    return os.environ.get("CALFWD_RUN_DIR") or RUN_DIR


def publish(doc: Dict[str, Any], line: str, directory: Optional[str] = None) -> None:
    directory = directory or run_dir()
    os.makedirs(directory, mode=0o755, exist_ok=True)
    textfile.write_atomic(os.path.join(directory, STATUS), json.dumps(doc, indent=2, sort_keys=True) + "\n", MODE)
    textfile.write_atomic(os.path.join(directory, HEALTH), line.replace("\n", " ") + "\n", MODE)


def publish_health(line: str, directory: Optional[str] = None) -> None:
    directory = directory or run_dir()
    if os.path.isdir(directory):
        textfile.write_atomic(os.path.join(directory, HEALTH), line.replace("\n", " ") + "\n", MODE)


def read_previous(directory: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The last status.json, whoever wrote it and whenever (the daemon before a restart:
    RuntimeDirectoryPreserve keeps it; /run itself is gone after a reboot)."""
    try:
        with open(os.path.join(directory or run_dir(), STATUS), encoding="utf-8") as handle:
            doc = json.load(handle)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") == 1 else None


def read_running(directory: Optional[str] = None, now: Callable[[], float] = time.time) -> Optional[Dict[str, Any]]:
    """The running daemon's status.json; None when there is none, it is not calfwd's current
    format, its writer has exited (a killed daemon's file, or its pid reused by another
    process: the start time differs), or it is stale (a hung daemon)."""
    doc = read_previous(directory)
    if doc is None:
        return None
    pid, updated = doc.get("pid"), doc.get("updated")
    if type(pid) is not int or pid <= 0 or type(updated) not in (int, float):
        return None
    start = process_start(pid)  # None: no such process
    if now() - updated > STALE_AFTER or start is None or start != doc.get("pid_start"):
        return None
    return doc


def process_start(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22): with the
    pid, it names one process for as long as the machine runs."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def remove(directory: Optional[str] = None) -> Optional[str]:
    """cleanup: the status files and their directory (kept across restarts by the unit).
    Returns what went, or None when nothing was there."""
    directory = directory or run_dir()
    gone = []
    for name in (STATUS, HEALTH):
        try:
            os.unlink(os.path.join(directory, name))
            gone.append(name)
        except FileNotFoundError:
            pass
    try:
        os.rmdir(directory)
    except OSError:
        pass  # not there, or someone else's files in it: left alone
    return f"status files {', '.join(gone)} in {directory}" if gone else None

