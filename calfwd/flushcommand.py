"""Running [daemon] on_calico_flush in the background of the GLib main loop.

The command runs without a shell, at most one at a time and at most once per
on_calico_flush_interval, and is killed after on_calico_flush_timeout. It never blocks the
GLib main loop: the process is watched with a GLib child watch and a timeout source.

Its program is checked before each run as at the config's load (trust.program_problems): a
file that someone other than root changed since is refused, and nothing runs.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
import time
from typing import Any, Callable, Optional, Tuple

from calfwd import trust

OUTPUT_LIMIT = 4000  # characters of the command's output kept for the journal
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when the command times out


class CommandRunner:
    """Runs [daemon] on_calico_flush in the background of the GLib main loop."""

    def __init__(self, glib: Any, reporter: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._glib = glib
        self._reporter = reporter
        self._clock = clock
        self._proc: Optional[subprocess.Popen] = None
        self._output: Any = None
        self._argv: Tuple[str, ...] = ()
        self._started = 0.0
        self._last: Optional[float] = None
        self._timer: Optional[int] = None
        self._timed_out = False

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
        output = tempfile.TemporaryFile()
        try:
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=output,
                                    stderr=subprocess.STDOUT, close_fds=True, cwd="/",
                                    start_new_session=True)  # its own process group: killed whole
        except OSError as exc:
            output.close()
            self._reporter.emit("flush-command-failed", f"on_calico_flush could not start: {command}: "
                                f"{exc.strerror or exc}", command=command)
            return f"on_calico_flush could not start ({exc.strerror or exc})"
        self._proc, self._output, self._argv = proc, output, tuple(argv)
        self._started, self._timed_out = now, False
        self._glib.child_watch_add(self._glib.PRIORITY_DEFAULT, proc.pid, self._exited)
        self._timer = self._glib.timeout_add(int(timeout * 1000), self._expire, timeout)
        return f"Started on_calico_flush: {command} (pid {proc.pid})"

    def _expire(self, timeout: float) -> bool:
        self._timer = None
        if self._proc is None:
            return False
        self._timed_out = True
        self._signal(signal.SIGTERM)
        self._glib.timeout_add(int(KILL_GRACE * 1000), self._kill_hard, self._proc.pid)
        return False

    def _kill_hard(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            self._signal(signal.SIGKILL)
        return False

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self._proc.pid, sig)  # type: ignore[union-attr]
        except OSError:
            pass

    def _exited(self, pid: int, status: int, *_data: Any) -> None:
        proc, output = self._proc, self._output
        if proc is None or proc.pid != pid:
            return
        if self._timer is not None:
            self._glib.source_remove(self._timer)
            self._timer = None
        try:
            code = os.waitstatus_to_exitcode(status)
        except ValueError:
            code = -1
        proc.returncode = code  # GLib reaped it; Popen must not wait for it again
        self._proc, self._output = None, None
        output.seek(0)
        text = output.read(OUTPUT_LIMIT * 4).decode("utf-8", "replace").strip()[-OUTPUT_LIMIT:]
        output.close()
        seconds = self._clock() - self._started
        command = shlex.join(self._argv)
        how = (f"was killed after {seconds:.1f} s (timeout, [daemon] on_calico_flush_timeout)"
               if self._timed_out else f"exited {code} after {seconds:.1f} s"
               if code >= 0 else f"was killed by signal {-code} after {seconds:.1f} s")
        message = f"on_calico_flush {how}: {command}" + (f"; output: {text}" if text else "; no output")
        kind = "flush-command" if code == 0 and not self._timed_out else "flush-command-failed"
        self._reporter.emit(kind, message, command=command, exit_status=code, output=text or None,
                            duration_ms=round(seconds * 1000, 1))
