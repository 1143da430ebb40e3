"""Running [daemon] on_calico_flush in the background of the GLib main loop.

The command runs without a shell, at most one at a time and at most once per
on_calico_flush_interval, and is killed after on_calico_flush_timeout. It never blocks the
GLib main loop: the process is watched with a pidfd (see Processes), a timeout source and a
watch on its output pipe.

Output: read from a pipe as it comes, into OutputTail, which keeps only the last
TAIL_BYTES bytes and counts the rest. A file would take disk for all of it (`yes` writes
1.9 GB in 5 s) and a capped file keeps the head, while the error that matters is the last
line. The price is the loop's CPU while a command floods it, at most until the timeout;
reads run at low priority and a few chunks per wake-up, so the daemon's own work goes first.

Processes: it runs in a process group of its own. At the timeout the group gets SIGTERM,
and SIGKILL KILL_GRACE later. When the command itself exits, whatever it left running in its
group (`sleep 1000 &`) is killed at once, and the run ends only once they are gone: the
one-at-a-time rule holds for everything it started. Every signal goes to the group while its
leader is still unreaped (alive or a zombie), which keeps its pid, so the group's number,
from being given to another process: its exit is watched on a pidfd (or, on kernels before
5.3, by polling waitid with WNOWAIT), never with GLib's child watch, which reaps it first.
What escapes the group (setsid(), or a double fork into a new session) is not followed:
only a cgroup of its own would catch it, and a transient scope (systemd-run --scope) would
move the command out of calfwd's cgroup, so out of its TasksMax= and MemoryMax=, and needs
systemd's bus API, which plain `calfwd run` and the lab do not have. Such a process dies when calfwd.service stops
(KillMode=control-group), and gets SIGPIPE if it still writes to its output, closed at the
end of the run.

Its program is checked before each run as at the config's load (trust.program_problems): a
file that someone other than root changed since is refused, and nothing runs.
"""

from __future__ import annotations

import errno
import os
import shlex
import signal
import subprocess
import time
from typing import Any, Callable, List, Optional, Tuple

from calfwd.config import trust

TAIL_BYTES = 4096  # the end of the command's output kept for the journal
CHUNK = 65536
READS_PER_WAKE = 4  # then the loop runs other sources before reading on
DRAIN_LIMIT = 1 << 20  # bytes still read once the command exited (nothing waits for more)
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when the command times out
GONE_POLL = 0.02  # seconds between looks for the killed rest of its process group
EXIT_POLL = 0.05  # seconds between looks for its exit where there is no pidfd (kernel < 5.3)


def group_members(pgid: int) -> List[int]:
    """The processes of a process group, zombies aside, from /proc."""
    found: List[int] = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return found
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[0] != b"Z" and int(fields[2]) == pgid:
            found.append(int(name))
    return sorted(found)


class OutputTail:
    """The last `size` bytes of a stream, and how many bytes it had in all."""

    def __init__(self, size: int = TAIL_BYTES) -> None:
        self._size = size
        self._data = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self._data += chunk[-self._size:]
        del self._data[:-self._size]

    @property
    def dropped(self) -> int:
        return self.total - len(self._data)

    def text(self) -> str:
        data = bytes(self._data)
        if self.dropped:  # the cut may fall inside a character: start at the next one
            data = data.lstrip(bytes(range(0x80, 0xC0)))
        return data.decode("utf-8", "replace").strip()


class CommandRunner:
    """Runs [daemon] on_calico_flush in the background of the GLib main loop."""

    def __init__(self, glib: Any, reporter: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._glib = glib
        self._reporter = reporter
        self._clock = clock
        self._proc: Optional[subprocess.Popen] = None
        self._fd = -1  # the read end of its output pipe
        self._tail = OutputTail()
        self._watch: Optional[int] = None
        self._argv: Tuple[str, ...] = ()
        self._started = 0.0
        self._last: Optional[float] = None
        self._timer: Optional[int] = None
        self._hard_timer: Optional[int] = None
        self._timed_out = False
        self._code = 0
        self._left: List[int] = []  # what the command left running in its group, killed
        self._exited_at = 0.0
        self._pidfd = -1
        self._exit_watch: Optional[int] = None

    @property
    def running(self) -> bool:
        return self._proc is not None

    def maybe_run(self, argv: Tuple[str, ...], interval: float, timeout: float) -> str:
        """Start the command if allowed now; returns a sentence for the calico-flushed event."""
        if not argv:
            return ""
        command = shlex.join(argv)
        if self._proc is not None:
            return f"on_calico_flush not started: it is still running ({command})"
        now = self._clock()
        if self._last is not None and now - self._last < interval:
            return (f"on_calico_flush not started: it ran {now - self._last:.0f} s ago "
                    f"(at most once per {interval:g} s, [daemon] on_calico_flush_interval)")
        refused = trust.program_problems(argv[0])  # again: it may have changed since the load
        if refused:
            self._reporter.emit("flush-command-failed", f"on_calico_flush refused, not run: {command}: "
                                + "; ".join(refused), command=command)
            return "on_calico_flush refused, not run: " + "; ".join(refused)
        self._last = now
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        try:
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=write_fd,
                                    stderr=subprocess.STDOUT, close_fds=True, cwd="/",
                                    start_new_session=True)  # its own process group: killed whole
        except OSError as exc:
            os.close(read_fd)
            self._reporter.emit("flush-command-failed", f"on_calico_flush could not start: {command}: "
                                f"{exc.strerror or exc}", command=command)
            return f"on_calico_flush could not start ({exc.strerror or exc})"
        finally:
            os.close(write_fd)  # the command holds it: end of file once it (and its children) are gone
        os.set_blocking(read_fd, False)
        self._proc, self._fd, self._tail, self._argv = proc, read_fd, OutputTail(), tuple(argv)
        self._started, self._timed_out = now, False
        self._watch = self._glib.io_add_watch(
            read_fd, self._glib.PRIORITY_LOW,
            self._glib.IOCondition.IN | self._glib.IOCondition.HUP | self._glib.IOCondition.ERR,
            self._readable)
        self._watch_exit(proc.pid)
        self._timer = self._glib.timeout_add(int(timeout * 1000), self._expire, timeout)
        return f"Started on_calico_flush: {command} (pid {proc.pid})"

    def _watch_exit(self, pid: int) -> None:
        """Told of its exit without reaping it: the zombie keeps its pid (so its group's
        number) ours until _exited has signalled the group."""
        try:
            self._pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # Linux < 5.3: look every EXIT_POLL instead
            self._pidfd = -1
            self._exit_watch = self._glib.timeout_add(int(EXIT_POLL * 1000), self._poll_exit, pid)
            return
        self._exit_watch = self._glib.io_add_watch(
            self._pidfd, self._glib.PRIORITY_DEFAULT, self._glib.IOCondition.IN, self._pidfd_ready, pid)

    def _pidfd_ready(self, _fd: int, _condition: Any, pid: int) -> bool:
        self._exit_watch = None
        self._exited(pid)
        return False

    def _poll_exit(self, pid: int) -> bool:
        try:
            info: Any = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            info = True  # reaped by someone else: end the run all the same
        if info is None:
            return True
        self._exit_watch = None
        self._exited(pid)
        return False

    def _readable(self, fd: int, _condition: Any) -> bool:
        if fd != self._fd:
            return False
        open_ = self._read(READS_PER_WAKE * CHUNK)
        if not open_:
            self._watch = None
        return open_

    def _read(self, limit: int) -> bool:
        """Read what is there, up to `limit` bytes; False at end of file."""
        got = 0
        while got < limit:
            try:
                chunk = os.read(self._fd, CHUNK)
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                return exc.errno == errno.EAGAIN
            if not chunk:
                return False
            self._tail.add(chunk)
            got += len(chunk)
        return True

    def _expire(self, timeout: float) -> bool:
        self._timer = None
        if self._proc is None:
            return False
        self._timed_out = True
        self._signal(signal.SIGTERM)
        self._hard_timer = self._glib.timeout_add(int(KILL_GRACE * 1000), self._kill_hard)
        return False

    def _kill_hard(self) -> bool:
        self._hard_timer = None
        if self._proc is not None:
            self._signal(signal.SIGKILL)
        return False

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self._proc.pid, sig)  # type: ignore[union-attr]
        except OSError:
            pass

    def _exited(self, pid: int) -> None:
        """It exited and is not reaped yet: its zombie holds the pid, so the group signalled
        here is its own. Reaped only after that."""
        proc = self._proc
        if proc is None or proc.pid != pid:
            return
        for timer in (self._timer, self._hard_timer):
            if timer is not None:
                self._glib.source_remove(timer)
        self._timer = self._hard_timer = None
        self._exited_at = self._clock()
        self._left = group_members(pid)
        self._signal(signal.SIGKILL)
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        try:
            _pid, status = os.waitpid(pid, 0)  # a zombie already: returns at once
            self._code = os.waitstatus_to_exitcode(status)
        except (ChildProcessError, ValueError):
            self._code = -1
        proc.returncode = self._code  # reaped here; Popen must not wait for it again
        if self._left:
            self._glib.timeout_add(int(GONE_POLL * 1000), self._group_gone, pid, time.monotonic())
        else:
            self._finish()

    def _group_gone(self, pid: int, since: float) -> bool:
        if group_members(pid) and time.monotonic() - since < KILL_GRACE:
            return True
        self._finish()
        return False

    def _finish(self) -> None:
        pid, self._proc = self._proc.pid, None  # type: ignore[union-attr]
        self._read(DRAIN_LIMIT)  # what it wrote just before it exited
        if self._watch is not None:
            self._glib.source_remove(self._watch)
            self._watch = None
        os.close(self._fd)
        self._fd = -1
        tail, code = self._tail, self._code
        text = tail.text()
        seconds = self._exited_at - self._started
        command = shlex.join(self._argv)
        how = (f"was killed after {seconds:.1f} s (timeout, [daemon] on_calico_flush_timeout)"
               if self._timed_out else f"exited {code} after {seconds:.1f} s"
               if code >= 0 else f"was killed by signal {-code} after {seconds:.1f} s")
        left = ""
        if self._left:
            many = len(self._left) > 1
            left = (f"; it left {len(self._left)} process{'es' if many else ''} running in its "
                    f"process group, killed (pid{'s' if many else ''} "
                    f"{', '.join(map(str, self._left))}): nothing of a run outlives it")
        shown = (f"; output (its last {tail.total - tail.dropped} of {tail.total} bytes, "
                 f"{tail.dropped} dropped): " if tail.dropped else "; output: ")
        message = f"on_calico_flush {how}: {command}{left}" + (shown + text if text else "; no output")
        kind = "flush-command" if code == 0 and not self._timed_out else "flush-command-failed"
        self._reporter.emit(kind, message, command=command, pid=pid, exit_status=code, output=text or None,
                            output_bytes=tail.total, output_dropped=tail.dropped,
                            left_running=list(self._left) or None,
                            duration_ms=round(seconds * 1000, 1))
