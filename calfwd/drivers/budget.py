"""One deadline shared by every blocking firewalld call of a reconcile: no binding imported.

drivers/firewalld.py reads the current deadline before each call; the reconciler and the
daemon open a budget without importing dbus-python (a host, or a unit test, without it).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator, Optional


class Deadline:
    """When the current budget (budget()) runs out, on its own clock."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.seconds = seconds
        self.clock = clock
        self.at = clock() + seconds

    def left(self) -> float:
        return self.at - self.clock()


_DEADLINE: ContextVar[Optional[Deadline]] = ContextVar("calfwd_firewalld_deadline", default=None)


def current() -> Optional[Deadline]:
    """The deadline of the innermost budget() around the caller, if any."""
    return _DEADLINE.get()


@contextmanager
def budget(seconds: float, clock: Callable[[], float] = time.monotonic) -> Iterator[None]:
    """Every blocking firewalld call inside waits, in all, at most `seconds`: each call's timeout
    is what is left, and once it is spent the rest fail at once as "not answering". The daemon's
    loop is blocked by a hung firewalld once per reconcile, not once per call. A budget inside
    another never extends it."""
    outer = _DEADLINE.get()
    inner = Deadline(seconds, clock)
    token = _DEADLINE.set(outer if outer is not None and outer.left() <= inner.left() else inner)
    try:
        yield
    finally:
        _DEADLINE.reset(token)
