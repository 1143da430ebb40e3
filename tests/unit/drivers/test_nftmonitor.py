"""The monitor's plumbing on the real GLib main loop, with stand-in programs for nft: lines
are handed over whole however the pipe splits them, a child that dies is reported and started
again, one that cannot start is retried. (The real `nft --json monitor` against the kernel is
proven in tests/integration/test_kernel_events_in_lab.py.)"""

from __future__ import annotations

import time
from typing import List

import pytest

import mainloop

from calfwd.drivers import nftmonitor
from calfwd.drivers.nftmonitor import NftMonitor

GLib = pytest.importorskip("gi.repository.GLib")


def run_until(predicate, timeout: float = 20.0) -> None:
    mainloop.run_until(GLib, predicate, timeout)


class Recorder:
    def __init__(self) -> None:
        self.lines: List[str] = []
        self.downs: List[str] = []
        self.ups = 0

    def monitor(self) -> NftMonitor:
        return NftMonitor(GLib, self.lines.append, self.downs.append, self._up, time.monotonic)

    def _up(self) -> None:
        self.ups += 1


def stub(tmp_path, body: str) -> str:
    path = tmp_path / "nft"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_lines_arrive_whole_and_a_dead_monitor_is_restarted(tmp_path, monkeypatch):
    # Half a line, a pause, the rest: the reader must not hand over a fragment.
    long = "x" * 100000
    monkeypatch.setenv(nftmonitor.NFT_ENV, stub(tmp_path, f"""
[ "$1 $2" = "--json monitor" ] || exit 9
printf '{{"add": {{"table"'
sleep 0.2
printf ': 1}}}}\\n{long}\\nlast\\n'
exit 3
"""))
    monkeypatch.setattr(nftmonitor, "RETRY_FIRST", 0.1)
    rec = Recorder()
    mon = rec.monitor()
    assert mon.start() and mon.running
    run_until(lambda: len(rec.downs) == 1)
    assert rec.lines[:3] == ['{"add": {"table": 1}}', long, "last"]
    assert "nft monitor exited 3" in rec.downs[0] and "retrying in 0.1 s" in rec.downs[0]
    run_until(lambda: rec.ups == 2 and len(rec.lines) == 6)  # started again, by itself
    mon.stop()
    run_until(lambda: not mon.running)


def test_a_monitor_that_cannot_start_is_retried_with_a_growing_delay(tmp_path, monkeypatch):
    monkeypatch.setenv(nftmonitor.NFT_ENV, str(tmp_path / "missing-nft"))
    monkeypatch.setattr(nftmonitor, "RETRY_FIRST", 0.05)
    rec = Recorder()
    mon = rec.monitor()
    assert not mon.start()
    run_until(lambda: len(rec.downs) == 3)
    assert "cannot start" in rec.downs[0] and "No such file" in rec.downs[0]
    assert [d.rsplit("retrying in ", 1)[1] for d in rec.downs] == ["0.05 s", "0.1 s", "0.2 s"]
    assert rec.ups == 0
    mon.stop()


def test_stop_kills_the_child_and_says_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(nftmonitor.NFT_ENV, stub(tmp_path, "exec sleep 60\n"))
    rec = Recorder()
    mon = rec.monitor()
    assert mon.start()
    pid = mon.pid
    mon.stop()
    run_until(lambda: not mon.running)
    assert rec.downs == []
    with pytest.raises(ProcessLookupError):
        import os
        os.kill(pid, 0)
