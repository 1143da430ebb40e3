"""The on_calico_flush command runner, with the real GLib main loop and real processes
(/bin/sh scripts stand in for the admin's command), so its non-blocking child watch, timeout
kill and output capture are the real thing."""

from __future__ import annotations

import os
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


def script(root_dir, body: str, name: str = "cmd.sh") -> str:
    """root_dir: calfwd refuses programs in directories others can write (/tmp)."""
    path = root_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_runner_captures_output_without_blocking(root_dir):
    reporter, clock = Reporter(), Clock()
    runner = CommandRunner(GLib, reporter, clock)
    cmd = script(root_dir, 'echo "restarting calico-node $1"; echo oops >&2; exit 0\n')
    started = time.monotonic()
    note = runner.maybe_run((cmd, "now; rm -rf /"), 600, 30)  # an argument, never a shell line
    assert time.monotonic() - started < 5 and note.startswith("Started")
    assert runner.running
    run_until(lambda: reporter.events)
    kind, message, fields = reporter.events[0]
    assert kind == "flush-command" and fields["exit_status"] == 0
    assert "restarting calico-node now; rm -rf /" in fields["output"] and "oops" in fields["output"]
    assert not runner.running


def test_runner_at_most_once_per_interval_and_one_at_a_time(root_dir):
    reporter, clock = Reporter(), Clock()
    runner = CommandRunner(GLib, reporter, clock)
    cmd = script(root_dir, "sleep 1\n")
    assert runner.maybe_run((cmd,), 600, 30).startswith("Started")
    assert "still running" in runner.maybe_run((cmd,), 0.001, 30)
    run_until(lambda: reporter.events)
    clock.now += 10
    assert "at most once per 600 s" in runner.maybe_run((cmd,), 600, 30)
    clock.now += 600
    assert runner.maybe_run((cmd,), 600, 30).startswith("Started")
    run_until(lambda: len(reporter.events) == 2)
    assert reporter.kinds() == ["flush-command", "flush-command"]


def test_runner_kills_on_timeout_and_reports_failures(tmp_path, root_dir):
    reporter, clock = Reporter(), Clock()
    runner = CommandRunner(GLib, reporter, clock)
    pidfile = tmp_path / "child.pid"
    cmd = script(root_dir, f"sleep 30 &\necho $! > {pidfile}\nexec sleep 30\n")
    runner.maybe_run((cmd,), 0.001, 0.3)
    run_until(lambda: reporter.events)
    kind, message, fields = reporter.events[0]
    assert kind == "flush-command-failed" and "timeout" in message
    assert fields["exit_status"] < 0
    clock.now += 1
    runner.maybe_run((script(root_dir, "echo bad; exit 3\n", "bad.sh"),), 0.001, 30)
    run_until(lambda: len(reporter.events) == 2)
    assert reporter.events[1][0] == "flush-command-failed" and "exited 3" in reporter.events[1][1]
    clock.now += 1
    garbage = root_dir / "not-a-program"  # passes the checks, but the kernel cannot execute it
    garbage.write_bytes(b"\x00\x01 not an executable format")
    garbage.chmod(0o755)
    note = runner.maybe_run((str(garbage),), 0.001, 30)
    assert "could not start" in note and reporter.events[2][0] == "flush-command-failed"
    # The whole process group was killed, not just the command itself.
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_runner_checks_the_program_again_before_each_run(root_dir):
    """Changed after the config was loaded: refused, reported, and nothing executed."""
    reporter, clock = Reporter(), Clock()
    runner = CommandRunner(GLib, reporter, clock)
    marker = root_dir / "ran"
    cmd = script(root_dir, f"touch {marker}\n")
    for change, why in ((lambda: os.chown(cmd, 65534, 0), "owned by uid 65534"),
                        (lambda: os.chmod(cmd, 0o775), "mode 0775 lets group or others write it"),
                        (lambda: os.chmod(cmd, 0o644), "not executable"),
                        (lambda: root_dir.chmod(0o777), f"its directory {root_dir} can be written")):
        change()
        note = runner.maybe_run((cmd,), 600, 30)
        assert note.startswith("on_calico_flush refused, not run") and why in note
        kind, message, _fields = reporter.events[-1]
        assert kind == "flush-command-failed" and why in message and cmd in message
        assert not runner.running and not marker.exists()
        os.chown(cmd, 0, 0)
        os.chmod(cmd, 0o755)
        root_dir.chmod(0o755)
    # A refusal does not count as a run: once fixed, it runs at the next flush.
    assert runner.maybe_run((cmd,), 600, 30).startswith("Started")
    run_until(lambda: not runner.running)
    assert marker.exists() and reporter.kinds()[-1] == "flush-command"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
