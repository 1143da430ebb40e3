"""Felix-flush detection and the on_calico_flush command runner.

Detection with a fake nftables read; the runner with the real GLib main loop and real
processes (/bin/sh scripts stand in for the admin's command), so its non-blocking child
watch, timeout kill and output capture are the real thing.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Dict, List, Tuple

import pytest

from calfwd import config as cfg
from calfwd.flushwatch import CommandRunner, FlushWatch, felix_jumps, flushed_message, guard_problem

CONFIG = cfg.parse('[calico]\nip_pools = ["10.244.0.0/16"]\n', "/etc/calfwd/calfwd.toml")


class Reporter:
    def __init__(self) -> None:
        self.events: List[Tuple[str, str, Dict[str, Any]]] = []

    def emit(self, event: str, message: str, **fields: Any) -> None:
        self.events.append((event, message, fields))

    def kinds(self) -> List[str]:
        return [e[0] for e in self.events]


def jump(target: str, verdict: str = "jump") -> Dict[str, Any]:
    return {"expr": [{"xt": {"type": "match", "name": "comment"}}, {verdict: {"target": target}}]}


FELIX = {("ip", "filter", "FORWARD"): [jump("cali-FORWARD"), {"expr": [{"accept": None}]}],
         ("ip", "nat", "POSTROUTING"): [jump("cali-POSTROUTING", "goto")],
         ("ip6", "filter", "FORWARD"): [jump("cali-FORWARD")]}
FLUSHED = {("ip", "filter", "FORWARD"): [], ("ip", "nat", "POSTROUTING"): []}


class FakeRunner:
    def __init__(self) -> None:
        self.calls: List[Tuple[Any, ...]] = []

    def maybe_run(self, argv, interval, timeout) -> str:
        self.calls.append((argv, interval, timeout))
        return "Started on_calico_flush" if argv else ""


def watch(states: List[Any], config: cfg.Config = CONFIG):
    reporter, runner = Reporter(), FakeRunner()

    def read(_wanted):
        state = states.pop(0)
        if isinstance(state, Exception):
            raise state
        return state
    return FlushWatch(read, reporter, runner, lambda: config), reporter, runner


def test_felix_jumps():
    assert felix_jumps(FELIX) == {"ip filter FORWARD -> cali-FORWARD", "ip nat POSTROUTING -> cali-POSTROUTING",
                                  "ip6 filter FORWARD -> cali-FORWARD"}
    assert felix_jumps({("ip", "filter", "FORWARD"): [jump("KUBE-FORWARD")]}) == frozenset()


def test_flush_after_a_firewalld_reload_is_reported_once():
    w, reporter, runner = watch([FELIX, FLUSHED, FLUSHED, FELIX])
    assert not w.check("1.3.3")  # baseline
    w.firewalld_event("reload")
    assert w.check()
    assert reporter.kinds() == ["calico-flushed"]
    event, message, fields = reporter.events[0]
    assert "firewalld 1.3.3 flushed Calico's iptables rules on reload" in message
    assert "180 s" in message and "calfwd guard enable" in message and ">= 2.0" in message
    assert fields["cause"] == "reload" and "ip filter FORWARD -> cali-FORWARD" in fields["lost"]
    w.firewalld_event("reload")  # another reload while still flushed: nothing new to say
    assert not w.check()
    assert not w.check()  # Felix restored them: new baseline, no event
    assert reporter.kinds() == ["calico-flushed"]
    assert len(runner.calls) == 1


def test_no_firewalld_event_no_blame():
    w, reporter, _ = watch([FELIX, FLUSHED])
    w.check()
    assert not w.check()  # someone else (an admin's iptables -F): not firewalld's doing
    assert reporter.events == []


def test_calico_never_in_nft_tables_never_warns():
    w, reporter, _ = watch([{}, {}])  # legacy iptables or Felix's native nftables: no jumps here
    w.check()
    w.firewalld_event("start")
    assert not w.check()
    assert reporter.events == []


def test_partial_loss_is_not_a_flush_and_read_errors_change_nothing():
    w, reporter, _ = watch([FELIX, RuntimeError("netlink"), {("ip", "filter", "FORWARD"): [jump("cali-FORWARD")]}])
    w.check()
    w.firewalld_event("reload")
    assert not w.check()  # the read failed: the event is kept for the next look
    assert not w.check()  # one jump is still there: Felix's own change, not firewalld's flush
    assert reporter.events == []


def test_command_settings_are_passed_to_the_runner():
    config = dataclasses.replace(CONFIG, on_calico_flush=("/bin/true",), on_calico_flush_interval=30.0,
                                 on_calico_flush_timeout=5.0, felix_refresh_interval=90.0)
    w, reporter, runner = watch([FELIX, FLUSHED], config)
    w.check()
    w.firewalld_event("stop")
    w.check()
    assert runner.calls == [(("/bin/true",), 30.0, 5.0)]
    assert "within 90 s" in reporter.events[0][1] and "Started on_calico_flush" in reporter.events[0][1]


def test_flushed_message_without_version():
    text = flushed_message("start", "", frozenset({"ip filter FORWARD -> cali-FORWARD"}), 180, "")
    assert text.startswith("firewalld flushed Calico's iptables rules on start")


def test_guard_problem_only_when_wanted(tmp_path, monkeypatch):
    monkeypatch.setenv("CALFWD_FLUSH_GUARD_DROPIN", str(tmp_path / "guard.conf"))
    assert guard_problem(CONFIG, lambda p: None, lambda: ("/usr/sbin/xtables-nft-multi",)) is None
    wanted = dataclasses.replace(CONFIG, firewalld=dataclasses.replace(CONFIG.firewalld, flush_guard=True))
    problem = guard_problem(wanted, lambda p: None, lambda: ("/usr/sbin/xtables-nft-multi",))
    assert str(tmp_path / "guard.conf") in problem and "calfwd guard enable" in problem


# -- the runner, on the real GLib main loop ------------------------------------------------

GLib = pytest.importorskip("gi.repository.GLib")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run_until(predicate, timeout: float = 20.0) -> None:
    context = GLib.MainContext.default()
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting on the main loop"
        context.iteration(False) or time.sleep(0.01)


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
