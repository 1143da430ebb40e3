"""The on_calico_flush command runner, with the real GLib main loop and real processes
(/bin/sh scripts stand in for the admin's command), so its non-blocking child watch, timeout
kill and output capture are the real thing."""

from __future__ import annotations

import time

import pytest

import mainloop

from recorder import Reporter

from calfwd.flushcommand import CommandRunner

GLib = pytest.importorskip("gi.repository.GLib")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now




def run_until(predicate, timeout: float = 20.0) -> None:
    mainloop.run_until(GLib, predicate, timeout)


def script(tmp_path, body: str) -> str:
    path = tmp_path / "cmd.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_runner_captures_output_without_blocking(tmp_path):
    reporter, clock = Reporter(), Clock()
    runner = CommandRunner(GLib, reporter, clock)
    cmd = script(tmp_path, 'echo "restarting calico-node $1"; echo oops >&2; exit 0\n')
    started = time.monotonic()
    note = runner.maybe_run((cmd, "now; rm -rf /"), 600, 30)  # an argument, never a shell line
    assert time.monotonic() - started < 5 and note.startswith("Started")
    assert runner.running
    run_until(lambda: reporter.events)
    kind, message, fields = reporter.events[0]
    assert kind == "flush-command" and fields["exit_status"] == 0
    assert "restarting calico-node now; rm -rf /" in fields["output"] and "oops" in fields["output"]
    assert not runner.running


def test_runner_at_most_once_per_interval_and_one_at_a_time(tmp_path):
    reporter, clock = Reporter(), Clock()
    runner = CommandRunner(GLib, reporter, clock)
    cmd = script(tmp_path, "sleep 1\n")
    assert runner.maybe_run((cmd,), 600, 30).startswith("Started")
    assert "still running" in runner.maybe_run((cmd,), 0.001, 30)
    run_until(lambda: reporter.events)
    clock.now += 10
    assert "at most once per 600 s" in runner.maybe_run((cmd,), 600, 30)
    clock.now += 600
    assert runner.maybe_run((cmd,), 600, 30).startswith("Started")
    run_until(lambda: len(reporter.events) == 2)
    assert reporter.kinds() == ["flush-command", "flush-command"]


def test_runner_kills_on_timeout_and_reports_failures(tmp_path):
    reporter, clock = Reporter(), Clock()
    runner = CommandRunner(GLib, reporter, clock)
    pidfile = tmp_path / "child.pid"
    cmd = script(tmp_path, f"sleep 30 &\necho $! > {pidfile}\nexec sleep 30\n")
    runner.maybe_run((cmd,), 0.001, 0.3)
    run_until(lambda: reporter.events)
    kind, message, fields = reporter.events[0]
    assert kind == "flush-command-failed" and "timeout" in message
    assert fields["exit_status"] < 0
    clock.now += 1
    runner.maybe_run((script(tmp_path, "echo bad; exit 3\n"),), 0.001, 30)
    run_until(lambda: len(reporter.events) == 2)
    assert reporter.events[1][0] == "flush-command-failed" and "exited 3" in reporter.events[1][1]
    clock.now += 1
    note = runner.maybe_run(("/nonexistent/calfwd-test",), 0.001, 30)
    assert "could not start" in note and reporter.events[2][0] == "flush-command-failed"
    # The whole process group was killed, not just the command itself.
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
