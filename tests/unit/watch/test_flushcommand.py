"""The on_calico_flush command runner, with the real GLib main loop and real processes
(/bin/sh scripts stand in for the admin's command), so its non-blocking child watch, timeout
kill and output capture are the real thing."""

from __future__ import annotations

import os
import resource
import sys
import time

import pytest

import mainloop

from recorder import Reporter

from calfwd.watch.flush_command import KILL_GRACE, TAIL_BYTES, CommandRunner, OutputTail
from fakes.loop import Clock

GLib = pytest.importorskip("gi.repository.GLib")




def run_until(predicate, timeout: float = 20.0) -> None:
    mainloop.run_until(GLib, predicate, timeout)


def script(root_dir, body: str, name: str = "cmd.sh") -> str:
    """root_dir: calfwd refuses programs in directories others can write (/tmp)."""
    path = root_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_runner_captures_output_without_blocking(root_dir):
    reporter, clock = Reporter(), Clock(1000.0)
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
    reporter, clock = Reporter(), Clock(1000.0)
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
    reporter, clock = Reporter(), Clock(1000.0)
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
    reporter, clock = Reporter(), Clock(1000.0)
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


def _group(pgid: int) -> list:
    """Every live process (zombies aside) whose process group is pgid."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat") as handle:
                state, _ppid, group = handle.read().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if state != "Z" and int(group) == pgid:
            found.append(int(name))
    return found


def test_what_the_command_leaves_running_is_killed_when_it_exits(root_dir, tmp_path):
    """One at a time means everything it started: the run ends once its group is empty."""
    reporter, clock = Reporter(), Clock(1000.0)
    runner = CommandRunner(GLib, reporter, clock)
    pidfile = tmp_path / "bg.pid"
    cmd = script(root_dir, f"sleep 1000 &\necho $! > {pidfile}\n(sleep 1000; echo never) &\necho done\n")
    runner.maybe_run((cmd,), 1, 30)
    run_until(lambda: reporter.events)
    kind, message, fields = reporter.events[0]
    assert not _alive(int(pidfile.read_text()))
    assert kind == "flush-command" and "exited 0" in message and message.endswith("output: done")
    assert "running in its process group, killed" in message
    assert int(pidfile.read_text()) in fields["left_running"]
    assert _group(fields["pid"]) == [], "nothing of its process group is left"
    clock.now += 1
    assert runner.maybe_run((cmd,), 1, 30).startswith("Started"), "and the next flush can run it"
    run_until(lambda: len(reporter.events) == 2)
    assert _group(reporter.events[1][2]["pid"]) == []


def test_at_the_timeout_the_whole_group_dies_even_what_ignores_sigterm(root_dir, tmp_path):
    reporter, clock = Reporter(), Clock(1000.0)
    runner = CommandRunner(GLib, reporter, clock)
    pidfile = tmp_path / "stubborn.pid"
    cmd = script(root_dir, f"(trap '' TERM; exec sleep 1000) &\necho $! > {pidfile}\nexec sleep 1000\n")
    started = time.monotonic()
    runner.maybe_run((cmd,), 1, 0.5)
    run_until(lambda: reporter.events)
    kind, message, fields = reporter.events[0]
    assert kind == "flush-command-failed" and "timeout" in message
    assert not _alive(int(pidfile.read_text()))
    assert fields["left_running"] == [int(pidfile.read_text())]
    assert _group(fields["pid"]) == []
    assert time.monotonic() - started < 0.5 + KILL_GRACE / 2, "at once, not after the SIGKILL grace"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# -- output: bounded, the tail kept (a flood of output once filled the disk, and the journal
# kept a slice from its middle) ---------------------------------------------------------------

FLOOD = 1 << 30  # bytes
PRINT_GIB_THEN_LAST_LINE = ("import os\nblock = b'x' * 65535 + b'\\n'\nfor _ in range(%d): os.write(1, block)\n"
                            "os.write(1, b'error: the final line\\nLAST LINE\\n')\n" % (FLOOD // 65536))


def _file_fds() -> set:
    """This process's open regular files (an output file would be one)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/") and not target.startswith(("/dev/", "/proc/")):
            found.add(target)
    return found


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_and_watch(argv, timeout: float):
    """Run to the end; the event, and the regular files this process opened meanwhile."""
    reporter, clock = Reporter(), Clock(1000.0)
    runner = CommandRunner(GLib, reporter, clock)
    before = _file_fds()
    opened = set()

    def sample() -> bool:  # every 20 ms while it runs
        opened.update(_file_fds() - before)
        return runner.running

    assert runner.maybe_run(argv, 600, timeout).startswith("Started")
    GLib.timeout_add(20, sample)
    run_until(lambda: reporter.events, timeout=timeout + 60)
    return reporter.events[0], opened


def test_a_flood_of_output_keeps_only_the_tail_in_memory_and_no_file():
    before_rss = _max_rss_mib()
    (kind, message, fields), opened = run_and_watch((sys.executable, "-c", PRINT_GIB_THEN_LAST_LINE), 120)
    assert kind == "flush-command", message
    assert fields["output"].endswith("error: the final line\nLAST LINE")
    assert opened == set(), "the output went to no file"
    assert _max_rss_mib() - before_rss < 64, "nor into memory"
    total = FLOOD + len(b"error: the final line\nLAST LINE\n")
    assert fields["output_bytes"] == total
    assert len(fields["output"]) <= TAIL_BYTES and fields["output_dropped"] >= total - TAIL_BYTES
    assert message.endswith("LAST LINE") and f"of {total} bytes, {fields['output_dropped']} dropped" in message


def test_a_flood_without_end_is_killed_at_the_timeout():
    before_rss = _max_rss_mib()
    started = time.monotonic()
    (kind, message, fields), opened = run_and_watch(("/usr/bin/yes", "calfwd"), 1)
    assert time.monotonic() - started < 1 + KILL_GRACE
    assert kind == "flush-command-failed" and "timeout" in message
    assert opened == set() and _max_rss_mib() - before_rss < 64
    assert set(fields["output"].split("\n")) == {"calfwd"}
    assert fields["output_bytes"] > 1 << 20 and fields["output_dropped"] > 0


def test_the_tail_starts_at_a_whole_character():
    tail = OutputTail(size=7)
    tail.add("é".encode() * 10)  # two bytes each: the cut falls inside one
    assert tail.text() == "é" * 3 and tail.total == 20 and tail.dropped == 13


# -- signals reach only its own processes: a reaped leader's pid may name another process ------

def _record_group_signals(monkeypatch):
    """Every killpg calfwd sends, with whether the group's leader still held its pid then
    (alive, or a zombie nobody reaped yet), and every waitpid, in call order."""
    import calfwd.watch.flush_command as flushcommand

    calls = []
    real_killpg, real_waitpid = os.killpg, os.waitpid

    def killpg(pgid, sig):
        calls.append(("killpg", pgid, sig, os.path.exists(f"/proc/{pgid}")))
        return real_killpg(pgid, sig)

    def waitpid(pid, options):
        calls.append(("waitpid", pid, options, None))
        return real_waitpid(pid, options)

    monkeypatch.setattr(flushcommand.os, "killpg", killpg)
    monkeypatch.setattr(flushcommand.os, "waitpid", waitpid)
    return calls


def _no_pidfd(monkeypatch):
    """A kernel before 5.3: pidfd_open fails with ENOSYS."""
    import errno

    import calfwd.watch.flush_command as flushcommand

    def pidfd_open(_pid, _flags=0):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(flushcommand.os, "pidfd_open", pidfd_open, raising=False)


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "no-pidfd"])
@pytest.mark.parametrize("body", ["echo done\n", "sleep 1000 &\necho done\n"], ids=["alone", "left-a-child"])
def test_the_group_is_signalled_before_its_leader_is_reaped(monkeypatch, root_dir, body, pidfd):
    """Once the leader is reaped and its group empty, its pid is free: killpg(pid) could then
    hit a new process that made itself a group leader under that reused number."""
    if not pidfd:
        _no_pidfd(monkeypatch)
    calls = _record_group_signals(monkeypatch)
    reporter, clock = Reporter(), Clock(1000.0)
    runner = CommandRunner(GLib, reporter, clock)
    runner.maybe_run((script(root_dir, body),), 1, 30)
    run_until(lambda: reporter.events)
    pid = reporter.events[0][2]["pid"]
    kills = [c for c in calls if c[0] == "killpg"]
    assert kills and all(c[1] == pid for c in kills)
    assert all(held for _kind, _pid, _sig, held in kills), f"a killpg after the leader was reaped: {calls}"
    reaped = [i for i, c in enumerate(calls) if c[0] == "waitpid" and c[1] == pid]
    assert reaped and max(i for i, c in enumerate(calls) if c[0] == "killpg") < reaped[0], calls
    assert reporter.events[0][0] == "flush-command" and _group(pid) == []


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "no-pidfd"])
def test_at_the_timeout_the_group_is_signalled_before_its_leader_is_reaped(monkeypatch, root_dir, pidfd):
    if not pidfd:
        _no_pidfd(monkeypatch)
    calls = _record_group_signals(monkeypatch)
    reporter, clock = Reporter(), Clock(1000.0)
    runner = CommandRunner(GLib, reporter, clock)
    runner.maybe_run((script(root_dir, "sleep 1000 &\nexec sleep 1000\n"),), 1, 0.3)
    run_until(lambda: reporter.events)
    kind, message, fields = reporter.events[0]
    assert kind == "flush-command-failed" and "timeout" in message
    kills = [c for c in calls if c[0] == "killpg"]
    assert [c[2] for c in kills][:1] == [15] and all(held for *_rest, held in kills), calls
    reaped = [i for i, c in enumerate(calls) if c[0] == "waitpid" and c[1] == fields["pid"]]
    assert reaped and max(i for i, c in enumerate(calls) if c[0] == "killpg") < reaped[0], calls
    assert _group(fields["pid"]) == []
