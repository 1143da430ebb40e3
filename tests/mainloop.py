"""Driving the real GLib main loop from a unit test, one iteration at a time."""

from __future__ import annotations

import time


def run_until(glib, predicate, timeout: float = 20.0) -> None:
    context = glib.MainContext.default()
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting on the main loop"
        context.iteration(False) or time.sleep(0.005)
