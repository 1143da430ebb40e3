"""Writes a whole file atomically: a reader (node_exporter, systemd, NPD's check, `calfwd
status`) sees the old file or the new one, never half of one. Every file calfwd writes goes
through here: the metrics, the status files and the flush guard's drop-in."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from typing import Callable, Optional, Tuple


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


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def read_regular(path: str, follow: bool = False, limit: Optional[int] = None) -> bytes:
    """A regular file's bytes, judged by the open descriptor (fstat), so what is checked is
    what is read. Opened with O_NONBLOCK: a FIFO or device in its place is refused at once,
    never waited on. follow=False: a final symbolic link is refused too (O_NOFOLLOW). Raises
    OSError, whose strerror says what is there instead."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise OSError(errno.ELOOP, "a symbolic link, not followed", path) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, f"{file_kind(info.st_mode)}, not a regular file", path)
        chunks, got = [], 0
        while limit is None or got <= limit:
            chunk = os.read(fd, 1 << 16 if limit is None else min(1 << 16, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    finally:
        os.close(fd)
    if limit is not None and got > limit:
        raise OSError(errno.EFBIG, f"more than {limit} bytes", path)
    return b"".join(chunks)


def remove_written(path: str, looks_ours: Callable[[bytes], bool], what: str, head: int = 64) -> str:
    """Unlinks `path` only when it is a regular file owned by this process's user whose first
    `head` bytes `looks_ours` accepts: "" when removed, else why it was left. Nothing there
    raises FileNotFoundError. Root runs this at package removal in directories others may
    write: a link is not followed (lstat, O_NOFOLLOW), a FIFO or device is not opened to wait
    on (O_NONBLOCK, and only a regular file is opened at all), and the file removed is the one
    read (same device and inode before and after)."""
    before = os.lstat(path)
    if not stat.S_ISREG(before.st_mode):
        return f"{file_kind(before.st_mode)}, not the regular file calfwd writes"
    if before.st_uid != os.geteuid():
        return f"owned by uid {before.st_uid}, not by calfwd's user (uid {os.geteuid()})"
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        opened = os.fstat(fd)
        data = os.read(fd, head) if stat.S_ISREG(opened.st_mode) else b""
    finally:
        os.close(fd)
    same = (opened.st_dev, opened.st_ino) == (before.st_dev, before.st_ino)
    if not same or not stat.S_ISREG(opened.st_mode):
        return "replaced while calfwd looked at it"
    if not looks_ours(data):
        return f"does not start like {what}"
    now = os.lstat(path)
    if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
        return "replaced while calfwd looked at it"
    os.unlink(path)
    return ""


def remove_own(path: str, header: bytes, what: str, label: str) -> Tuple[str, str]:
    """cleanup of a file calfwd keeps current (the metrics, the node labels): (what was removed,
    or ""; why what is there was left alone, or ""). Only the regular file calfwd wrote, the
    one beginning with `header`, goes (remove_written)."""
    if not path:
        return "", ""
    try:
        left = remove_written(path, lambda head: head.startswith(header[:64]), what)
    except FileNotFoundError:
        return "", ""
    except OSError as exc:
        return "", f"{label}: {path} left alone: {exc.strerror or exc}"
    if left:
        return "", f"{label}: {path} left alone: {left}"
    return "removed", ""
