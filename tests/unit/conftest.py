"""Fixtures shared by the unit tests."""

from __future__ import annotations

import signal

import pytest


class Blocked(BaseException):
    """Raised by the alarm: not an OSError, so nothing in calfwd swallows it."""


@pytest.fixture
def no_hang():
    """A regression that blocks (on a FIFO's open, say) fails after 5 s instead of hanging."""
    def expired(*_args):
        raise Blocked("blocked")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, 5)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)
