"""Noticing that firewalld flushed Felix's rules, saying so once, and the optional remedy.

firewalld <= 1.x flushes every iptables table on start, reload and stop (FIELD-NOTES 2);
Felix puts its rules back only at its next refresh (IptablesRefreshInterval, 180 s). calfwd
keeps pod egress working meanwhile, but Calico's network policy is gone until then, and
nobody would know. So after every reconcile the daemon reads Felix's top-level jumps (the
jump from FORWARD to cali-FORWARD and from POSTROUTING to cali-POSTROUTING, IPv4 and IPv6)
through libnftables. When firewalld started, reloaded or stopped since the last look, and
every jump seen then is gone now, that was firewalld's flush: one `calico-flushed` warning,
then the `[daemon] on_calico_flush` command if there is one.

Why a baseline instead of "no cali- chains": a node whose Calico runs in legacy iptables or
in its native nftables table never has these jumps in the nft tables, and must not warn.
The baseline is refreshed at every reconcile (start, each resync, SIGHUP, firewalld events),
so rules Felix restored less than one resync_interval before the next flush go unreported.

The command runs without a shell, at most one at a time and at most once per
on_calico_flush_interval, and is killed after on_calico_flush_timeout. It never blocks the
GLib main loop: the process is watched with a GLib child watch and a timeout source.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
import time
from typing import Any, Callable, FrozenSet, List, Mapping, Optional, Tuple

from calfwd import guard
from calfwd.config import Config

# Felix's top-level chains: a firewalld flush takes the jumps out of these first.
FELIX_BASE_CHAINS: Tuple[Tuple[str, str, str], ...] = (
    ("ip", "filter", "FORWARD"), ("ip", "nat", "POSTROUTING"),
    ("ip6", "filter", "FORWARD"), ("ip6", "nat", "POSTROUTING"),
)
OUTPUT_LIMIT = 4000  # characters of the command's output kept for the journal
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when the command times out


def felix_jumps(chains: Mapping[Tuple[str, str, str], List[Mapping[str, Any]]]) -> FrozenSet[str]:
    """'ip filter FORWARD -> cali-FORWARD' for every jump or goto into a cali- chain."""
    found = set()
    for (family, table, chain), rules in chains.items():
        for rule in rules:
            for expr in rule.get("expr", ()):
                for verdict in ("jump", "goto"):
                    target = expr.get(verdict) if isinstance(expr, dict) else None
                    if isinstance(target, dict) and str(target.get("target", "")).startswith("cali-"):
                        found.add(f"{family} {table} {chain} -> {target['target']}")
    return frozenset(found)


def flushed_message(cause: str, version: str, lost: FrozenSet[str], refresh: float, note: str) -> str:
    who = f"firewalld {version}" if version else "firewalld"
    text = (f"{who} flushed Calico's iptables rules on {cause} (gone: {', '.join(sorted(lost))}). "
            f"Felix puts them back at its next refresh, within {refresh:g} s "
            "([calico] felix_refresh_interval); until then Calico's network policy is not enforced "
            "and Felix's natOutgoing is gone (calfwd's own table keeps pod egress working). "
            f"Fix: `calfwd guard enable && {guard.ACTIVATE}` (firewalld 1.x, nftables backend), "
            "or firewalld >= 2.0 without direct rules")
    return text + (f". {note}" if note else "")


class FlushWatch:
    """Compares Felix's top-level jumps before and after firewalld events."""

    def __init__(self, read_chains: Callable[[Tuple[Tuple[str, str, str], ...]], Any], reporter: Any,
                 runner: "CommandRunner", config: Callable[[], Config]) -> None:
        self._read = read_chains
        self._reporter = reporter
        self._runner = runner
        self._config = config
        self._seen: FrozenSet[str] = frozenset()
        self._cause: Optional[str] = None
        self.version = ""
        self.flushes = 0

    def firewalld_event(self, cause: str) -> None:
        """firewalld started, reloaded or stopped: the next check() may blame it."""
        self._cause = cause if self._cause is None else self._cause

    def check(self, version: str = "") -> bool:
        """Look now; True (and one warning) when every jump seen last time is gone after a
        firewalld event. A read that fails changes nothing: reconcile reports nftables errors."""
        self.version = version or self.version
        try:
            now = felix_jumps(self._read(FELIX_BASE_CHAINS))
        except Exception:
            return False
        cause, self._cause = self._cause, None
        seen, self._seen = self._seen, now
        if cause is None or not seen or now & seen:
            return False
        self.flushes += 1
        config = self._config()
        note = self._runner.maybe_run(config.on_calico_flush, config.on_calico_flush_interval,
                                      config.on_calico_flush_timeout)
        lost = seen - now
        self._reporter.emit("calico-flushed", flushed_message(cause, self.version, lost,
                                                              config.felix_refresh_interval, note),
                            cause=cause, lost=sorted(lost), felix_refresh_s=config.felix_refresh_interval,
                            firewalld_version=self.version or None)
        return True


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


def guard_problem(config: Config, read_dropin: Callable[[str], Optional[str]],
                  resolve_paths: Callable[[], Tuple[str, ...]]) -> Optional[str]:
    """For the daemon, which cannot write /etc (ProtectSystem=strict): what to report, or None."""
    if not config.firewalld.flush_guard:
        return None
    path = guard.dropin_path()
    try:
        return guard.dropin_problem(read_dropin(path), resolve_paths(), path)
    except OSError as exc:
        return f"[firewalld] flush_guard = true, but {path} cannot be read: {exc.strerror or exc}"
