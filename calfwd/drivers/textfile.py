"""Writes a whole file atomically: a reader (node_exporter, systemd, NPD's check, `calfwd
status`) sees the old file or the new one, never half of one. Every file calfwd writes goes
through here: the metrics, the status files and the flush guard's drop-in."""

from __future__ import annotations

import os
import tempfile


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """A temporary file in the same directory (rename is atomic only within one file system),
    created exclusively (a planted symlink is never followed), synced, given `mode` (the unit's
    UMask=0077 would leave it unreadable to node_exporter and NPD), then renamed over `path`.
    Its name ends in .tmp, not .prom: node_exporter's collector skips it."""
    fd, tmp = tempfile.mkstemp(prefix=".calfwd-", suffix=".tmp", dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def remove(path: str) -> None:
    os.unlink(path)
