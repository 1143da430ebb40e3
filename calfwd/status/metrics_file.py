"""The daemon's side of [metrics] textfile: counts what it sees, keeps the file current.

status/metrics.py is the pure part (counting, the text format); drivers/textfile.py writes. The
daemon calls reconciled() after every reconcile, firewalld_restarted() on a new firewalld and
guard() with each verdict on the flush guard (the one guard.assess() gives doctor too);
every event the Reporter emits reaches event(). Each asks for a write, which the daemon
coalesces (a burst of events costs a few writes). A write that fails is reported once and
never stops anything else: metrics are not worth a lost reconcile.
"""

from __future__ import annotations

import os
import stat
import time
from typing import Any, Callable, Dict, Optional, Tuple

from calfwd import __version__
from calfwd.judge import guard
from calfwd.config import trust
from calfwd.drivers import textfile
from calfwd.status.metrics import Tally, render

WRITE_EVENT = "metrics-write-failed"


class MetricsFile:
    def __init__(self, reporter: Any, path: Callable[[], str], request_write: Callable[[], None],
                 clock: Callable[[], float] = time.time,
                 write: Callable[[str, str], None] = textfile.write_atomic,
                 remove: Callable[[str], None] = textfile.remove) -> None:
        self.reporter = reporter
        self._path = path
        self._request = request_write
        self._clock = clock
        self._write = write
        self._remove = remove
        self.tally = Tally(__version__)
        self._failed: Optional[str] = None  # the path whose failure was reported
        self._written: Optional[str] = None  # node_exporter would serve it, stale, for ever
        reporter.listeners.append(self.event)

    def reconciled(self, outcome: Any) -> None:
        self.tally.reconciled(outcome, self._clock())
        self._changed()

    def guard(self, verdict: Optional[guard.GuardVerdict]) -> None:
        """The daemon's judgement of the flush guard (guard.assess); None: it could not be read,
        which counts as not installed."""
        installed = verdict is not None and verdict.installed
        if installed != self.tally.flush_guard_installed:
            self.tally.flush_guard_installed = installed
            self._changed()

    def verdict(self, state: str, flushed_owners: Any) -> None:
        """status/health.py's verdict, after every reconcile and every flush seen or undone."""
        if self.tally.verdict(state, flushed_owners):
            self._changed()

    def firewalld_restarted(self) -> None:
        self.tally.firewalld_restarts += 1
        self._changed()

    def event(self, kind: str, fields: Dict[str, Any]) -> None:
        if kind != WRITE_EVENT and self.tally.event(kind, fields):
            self._changed()

    def _changed(self) -> None:
        if self._path() or self._written:
            self._request()

    def write(self) -> None:
        """Also removes the file calfwd wrote under a path the configuration no longer names."""
        path = self._path()
        if self._written and self._written != path:
            try:
                self._remove(self._written)
            except OSError:
                pass  # gone already, or not ours to remove any more: the new path matters
            self._written = None
        if not path:
            return
        try:
            self._write(path, render(self.tally.snapshot()))
        except OSError as exc:
            if self._failed != path:
                self.reporter.emit(WRITE_EVENT, f"cannot write the metrics file {path}: "
                                   f"{exc.strerror or exc} (reconciling goes on; with the packaged "
                                   "unit, a directory other than the usual ones needs a ReadWritePaths= "
                                   "drop-in)", path=path)
            self._failed = path
            return
        self._failed, self._written = None, path


HEADER = b"# HELP calfwd_"  # how every file render() makes begins


def remove_written(path: str) -> Tuple[str, str]:
    """cleanup: (what was removed, or ""; why what is there was left alone, or ""). Only the
    regular file calfwd wrote goes: a link, FIFO, device, another user's file or one that
    does not begin as calfwd's does stays, and is said to stay (textfile.remove_own)."""
    return textfile.remove_own(path, HEADER, "calfwd's metrics", "metrics")


METRICS_RISK = ("they could replace calfwd's metrics file or fake it (node_exporter serves every *.prom "
                "there)")


def directory_warning(path: str, risk: str = METRICS_RISK) -> str:
    """check: why someone other than root could write the textfile's directory (or one above
    it), or "". They could replace calfwd's metrics or plant something in their place (calfwd
    itself never follows or waits on what is planted). Counted as writable by others: owned
    by a user other than root; writable by all without the sticky bit (with it, as on /tmp,
    others cannot remove or rename root's file); writable by a group other than root's."""
    for directory in trust.ancestors(os.path.abspath(path)):
        try:
            info = os.stat(directory)
        except OSError:
            return ""  # a missing directory is the config check's to refuse
        mode = f"mode {info.st_mode & 0o7777:04o}"
        why = ""
        if info.st_uid != 0:
            why = f"owned by uid {info.st_uid}"
        elif info.st_mode & 0o002 and not info.st_mode & stat.S_ISVTX:
            why = f"anyone can write it ({mode})"
        elif info.st_mode & 0o020 and info.st_gid != 0:
            why = f"group {info.st_gid} can write it ({mode})"
        if why:
            return (f"its directory {directory} can be written by others: {why}; {risk}: "
                    "keep it in a directory only root can write to")
    return ""
