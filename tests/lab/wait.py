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
