"""The kernel's nftables changes as a stream of lines: `nft --json monitor` as a child process.

Why a child and not a netlink socket of our own: nft is the nftables project's own decoder of
every netlink event (calfwd carries no netlink parser of its own), it ships with the nftables
package on every target, and a separate process keeps its cost and its failures apart.
It never outlives calfwd for long: systemd stops the unit's whole cgroup, and outside systemd
nft dies of SIGPIPE at its next event once the pipe's reader is gone.

The pipe is read on the GLib main loop without ever blocking it: non-blocking reads from an
IO watch, complete lines handed to `on_line`. If the child cannot start or dies, `on_down` is
called (the daemon says so once and falls back to its resync) and the child is started again
after a growing delay; `on_up` says when it is back, so the caller can look at everything
once (what changed while nobody was listening).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from typing import Any, Callable, List, Optional, Tuple

NFT_ENV = "CALFWD_NFT"  # another nft binary (tests: a missing one, to prove the fallback)
DEFAULT_NFT = "/usr/sbin/nft"
RETRY_FIRST, RETRY_MAX = 1.0, 30.0  # seconds before restarting a dead monitor, doubling
HEALTHY_AFTER = 60.0  # a monitor that ran this long starts over with the short delay
CHUNK = 1 << 16
# Each wake-up of the main loop costs about 0.1 ms of CPU here, and Felix's and kube-proxy's
# churn is a line per rule: while lines keep coming, read at most once per BATCH seconds so
# that one wake-up takes several. The first line after a quiet spell is read at once, so a
# repair after a lone deletion is not delayed.
BATCH = 0.04


def nft_binary() -> str:
    return os.environ.get(NFT_ENV) or DEFAULT_NFT


class NftMonitor:
    def __init__(self, glib: Any, on_line: Callable[[str], None], on_down: Callable[[str], None],
                 on_up: Callable[[], None], clock: Callable[[], float]) -> None:
        self._glib = glib
        self._on_line = on_line
        self._on_down = on_down
        self._on_up = on_up
        self._clock = clock
        self._proc: Optional[subprocess.Popen] = None
        self._watch: Optional[int] = None
        self._retry_timer: Optional[int] = None
        self._buffer = b""
        self._said = ""  # nft's last line that was not an event: its error, if it dies
        self._delay = RETRY_FIRST
        self._started = 0.0
        self._last_read = float("-inf")
        self._resume_timer: Optional[int] = None
        self._stopping = False
        self.restarts = 0

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None

    def start(self) -> bool:
        """Start the child; False (and on_down) when it cannot be started."""
        self._retry_timer = None
        argv: List[str] = [nft_binary(), "--json", "monitor"]
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, close_fds=True, cwd="/")
        except OSError as exc:
            self._down(f"cannot start {argv[0]}: {exc.strerror or exc}")
            return False
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        self._proc, self._buffer, self._started = proc, b"", self._clock()
        self._add_watch()
        self._glib.child_watch_add(self._glib.PRIORITY_DEFAULT, proc.pid, self._exited)
        self._on_up()
        return True

    def stop(self) -> None:
        self._stopping = True
        if self._retry_timer is not None:
            self._glib.source_remove(self._retry_timer)
            self._retry_timer = None
        if self._proc is not None:
            try:
                self._proc.terminate()
            except OSError:
                pass

    # -- the loop's callbacks ----------------------------------------------------------

    def _add_watch(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        self._watch = self._glib.io_add_watch(
            self._proc.stdout.fileno(), self._glib.PRIORITY_DEFAULT,
            self._glib.IOCondition.IN | self._glib.IOCondition.HUP | self._glib.IOCondition.ERR,
            self._readable)

    def _readable(self, fd: int, _condition: Any) -> bool:
        eof, _got = self._drain(fd)
        now = self._clock()
        busy, self._last_read = now - self._last_read < BATCH, now
        if eof:
            self._watch = None
            return False
        if busy:  # churn: from now on read on a timer, one wake-up per BATCH for every line
            self._watch = None
            self._resume_timer = self._glib.timeout_add(int(BATCH * 1000), self._batch, self._proc)
            return False
        return True

    def _batch(self, proc: subprocess.Popen) -> bool:
        if self._proc is not proc or proc.stdout is None:
            self._resume_timer = None
            return False
        eof, got = self._drain(proc.stdout.fileno())
        if got and not eof:
            return True  # still churning: keep reading on the timer
        self._resume_timer = None
        if not eof:
            self._add_watch()  # quiet again: the next line wakes us at once
        return False

    def _drain(self, fd: int) -> Tuple[bool, bool]:
        """Read what is there: (end of file, anything read)."""
        got = False
        while True:
            try:
                chunk = os.read(fd, CHUNK)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    return False, got
                chunk = b""
            if not chunk:  # EOF: the child is gone or going; _exited restarts it
                return True, got
            got = True
            lines = (self._buffer + chunk).split(b"\n")
            self._buffer = lines.pop()
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                if not line.startswith("{") and line.strip():
                    self._said = line.strip()
                try:
                    self._on_line(line)
                except Exception as exc:  # never let one line take the reader (and the loop) down
                    print(f"calfwd: nft monitor line not handled: {type(exc).__name__}: {exc}",
                          file=sys.stderr)
            if len(chunk) < CHUNK:
                return False, got

    def _exited(self, pid: int, status: int, *_data: Any) -> None:
        proc = self._proc
        if proc is None or proc.pid != pid:
            return
        try:
            code = os.waitstatus_to_exitcode(status)
        except ValueError:
            code = -1
        proc.returncode = code  # GLib reaped it
        for source in (self._watch, self._resume_timer):
            if source is not None:
                self._glib.source_remove(source)
        self._watch = self._resume_timer = None
        if proc.stdout is not None:
            try:
                self._drain(proc.stdout.fileno())  # what it said last still counts
            except Exception:  # noqa: BLE001 - a dead child's pipe; its exit is what matters
                pass
            proc.stdout.close()
        tail = (self._said + " " + self._buffer.decode("utf-8", "replace")).strip()
        self._proc, self._buffer, self._said = None, b"", ""
        if self._stopping:
            return
        how = f"exited {code}" if code >= 0 else f"was killed by signal {-code}"
        if self._clock() - self._started >= HEALTHY_AFTER:
            self._delay = RETRY_FIRST
        self._down(f"nft monitor {how}" + (f" ({tail[-200:]})" if tail else ""))

    def _down(self, why: str) -> None:
        delay = self._delay
        self._delay = min(RETRY_MAX, self._delay * 2)
        self.restarts += 1
        self._on_down(f"{why}; retrying in {delay:g} s")
        self._retry_timer = self._glib.timeout_add(int(delay * 1000), self._retry)

    def _retry(self) -> bool:
        self.start()
        return False  # one-shot: a failed start arms its own retry
