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


def until_steady(value: Callable[[], object], steady: float, timeout: float, what: str,
                 interval: float = 0.1) -> object:
    """value() once it has not changed for `steady` seconds (a burst of events is over, say);
    AssertionError naming `what` when it still changes after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last, since = value(), time.monotonic()
    while True:
        time.sleep(interval)
        now, current = time.monotonic(), value()
        if current != last:
            last, since = current, now
        elif now - since >= steady:
            return current
        if now > deadline:
            raise AssertionError(f"not within {timeout}s: {what} (still changing)")


def settle(seconds: float, why: str) -> None:
    """A pause with nothing to observe (a process settling): `why` says what it waits for.
    Prefer wait_until, until_steady or quiet_for whenever there is a condition to check."""
    assert why, "say what the pause waits for"
    time.sleep(seconds)
