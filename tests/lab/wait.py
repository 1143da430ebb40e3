"""Polling for a condition the lab cannot be told about (a file, a state, a log line)."""

from __future__ import annotations

import time
from typing import Callable


def wait_until(check: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> object:
    """check()'s first truthy value; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(interval)


def quiet_for(check: Callable[[], object], seconds: float, why: str, interval: float = 0.1) -> None:
    """Asserts that check() stays truthy for `seconds`: a test that nothing happens (`why`)."""
    deadline = time.monotonic() + seconds
    while True:
        if not check():
            raise AssertionError(f"within {seconds}s, {why}: it did not hold")
        if time.monotonic() > deadline:
            return
        time.sleep(interval)
