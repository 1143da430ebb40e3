"""The daemon's status files under /run/calfwd (the unit's RuntimeDirectory).

status.json: what `calfwd status --json` says plus what only the daemon knows (status/document.py).
health: one line, "<state> <why>", for node-problem-detector's check (packaging/npd/), which
may run in a container with nothing but a shell: no JSON to parse there.

Both are replaced atomically (write, fsync, rename) and world-readable: they hold nothing
secret, and NPD usually reads them through a hostPath mount as another user.

The directory is written only when nobody but root (calfwd's user) can write it and it is
not a symbolic link: systemd's RuntimeDirectory= makes such a one, but outside systemd
(`calfwd run` by hand, CALFWD_RUN_DIR) it may be anyone's, and whoever can write it could
plant links or FIFOs where root writes or reads. The files themselves are read without
following a link or waiting on a FIFO, and replaced by rename, which never follows one.
"""

from __future__ import annotations

import json
import os
import stat
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


MAX_BYTES = 1 << 20  # status.json is a few kB; a planted /dev/zero link is never read whole


class UnsafeDirectory(OSError):
    """The status directory can be written by someone other than root, or is a link: one
    line saying why (an OSError, so the daemon's status-file-failed path reports it once)."""


def directory_problem(directory: str) -> Optional[str]:
    """Why calfwd must not use `directory` for its status files, or None (also when it does
    not exist: publish makes it)."""
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot check it: {exc.strerror or exc}"
    fix = ("run calfwd under its systemd unit (RuntimeDirectory=calfwd), or point CALFWD_RUN_DIR "
           "at a directory only root can write to")
    if stat.S_ISLNK(info.st_mode):
        return f"not used: it is a symbolic link, which calfwd does not follow: {fix}"
    if not stat.S_ISDIR(info.st_mode):
        return "not used: it is not a directory"
    mode = f"mode {info.st_mode & 0o7777:04o}"
    why = ""
    if info.st_uid not in (0, os.geteuid()):
        why = f"owned by uid {info.st_uid}"
    elif info.st_mode & 0o002:
        why = f"anyone can write it ({mode})"
    elif info.st_mode & 0o020 and info.st_gid != 0:
        why = f"group {info.st_gid} can write it ({mode})"
    if why:
        return (f"not used: {why}, so others could plant links or FIFOs where calfwd writes its "
                f"status files: {fix}")
    return None


def _checked(directory: str) -> str:
    problem = directory_problem(directory)
    if problem:
        raise UnsafeDirectory(problem)
    return directory


def publish(doc: Dict[str, Any], line: str, directory: Optional[str] = None) -> None:
    directory = directory or run_dir()
    _checked(directory)  # before makedirs, which would follow a link in its place
    os.makedirs(directory, mode=0o755, exist_ok=True)
    _checked(directory)  # made by someone else just now
    textfile.write_atomic(os.path.join(directory, STATUS), json.dumps(doc, indent=2, sort_keys=True) + "\n", MODE)
    textfile.write_atomic(os.path.join(directory, HEALTH), line.replace("\n", " ") + "\n", MODE)


def publish_health(line: str, directory: Optional[str] = None) -> None:
    directory = directory or run_dir()
    if os.path.lexists(directory):
        _checked(directory)
    if os.path.isdir(directory):
        textfile.write_atomic(os.path.join(directory, HEALTH), line.replace("\n", " ") + "\n", MODE)


def read_previous(directory: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The last status.json, whoever wrote it and whenever (the daemon before a restart:
    RuntimeDirectoryPreserve keeps it; /run itself is gone after a reboot). None from a
    directory calfwd would not write to, and for anything but a regular file (not followed
    if a link, not waited on if a FIFO)."""
    directory = directory or run_dir()
    if directory_problem(directory):
        return None
    try:
        doc = json.loads(textfile.read_regular(os.path.join(directory, STATUS), limit=MAX_BYTES))
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
    if type(pid) is not int or pid <= 0 or isinstance(updated, bool) or not isinstance(updated, (int, float)):
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

