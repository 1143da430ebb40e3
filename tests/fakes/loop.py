"""The one virtual loop and clock: a GLib stand-in whose time moves only when a test says so,
so timers, hold-offs and deadlines are tested to the millisecond without waiting for them.
(Code that needs real file descriptors or child processes uses GLib itself: test_flushcommand.)"""

from __future__ import annotations

import heapq
import itertools
from types import SimpleNamespace
from typing import Any, Callable, List, Set, Tuple


class Clock:
    """A monotonic clock that stands still: calling it says the time, advance() moves it."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Loop:
    """GLib's timeout_add/idle_add/source_remove on a Clock: run_until(t) and run(seconds) fire
    what is due, in order, moving the clock to each; a callback returning True is due again
    after its interval, as in GLib."""

    PRIORITY_HIGH = -100
    PRIORITY_DEFAULT = 0

    def __init__(self, now: float = 0.0) -> None:
        self.clock = Clock(now)
        self._timers: List[Tuple[float, int, int, int, Callable[..., Any], tuple]] = []
        self._ids = itertools.count(1)
        self._order = itertools.count()
        self._removed: Set[int] = set()

    @property
    def now(self) -> float:
        return self.clock.now

    @now.setter
    def now(self, value: float) -> None:
        self.clock.now = value

    def timeout_add(self, ms: int, fn: Callable[..., Any], *args: Any) -> int:
        source = next(self._ids)
        self._push(self.now + ms / 1000, source, ms, fn, args)
        return source

    def idle_add(self, fn: Callable[..., Any], *args: Any) -> int:
        return self.timeout_add(0, fn, *args)

    def source_remove(self, source: int) -> bool:
        self._removed.add(source)
        return True

    def pending(self) -> int:
        """How many sources are still due to fire."""
        return sum(1 for timer in self._timers if timer[2] not in self._removed)

    def MainLoop(self) -> SimpleNamespace:  # noqa: N802 (GLib's name)
        return SimpleNamespace(run=lambda: None, quit=lambda: None)

    def run_until(self, t: float) -> None:
        """Fires every source due by time t, then leaves the clock at t."""
        while self._timers and self._timers[0][0] <= t:
            due, _order, source, ms, fn, args = heapq.heappop(self._timers)
            if source in self._removed:
                continue
            self.now = max(self.now, due)
            if fn(*args):  # due again; a 0 ms source after 1 ms, so that virtual time moves on
                self._push(self.now + max(ms, 1) / 1000, source, ms, fn, args)
        self.now = max(self.now, t)

    def run(self, seconds: float = 10.0) -> None:
        """run_until() `seconds` from now."""
        self.run_until(self.now + seconds)

    def _push(self, due: float, source: int, ms: int, fn: Callable[..., Any], args: tuple) -> None:
        # Ties fire in the order they were added, as GLib does for equal deadlines.
        heapq.heappush(self._timers, (due, next(self._order), source, ms, fn, args))
