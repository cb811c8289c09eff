"""Clocks for live work: the system clock for real runs, a manual one for tests and simulations.

`watch` sleeps between snapshots and times its reads through a `Clock`, so a test can run an
hour-long series in no time and a simulated machine can keep its own time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """What live code asks of time: wall time, a monotonic counter, and sleeping."""

    def time(self) -> float:
        """Return seconds since the epoch."""

    def monotonic(self) -> float:
        """Return a counter in seconds for measuring durations."""

    def sleep(self, seconds: float) -> None:
        """Wait for `seconds`."""


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        """Return seconds since the epoch."""
        return time.time()

    def monotonic(self) -> float:
        """Return the system's monotonic counter."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Sleep for real."""
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """A clock that moves only when slept on (or told to); `on_sleep` runs after each move.

    >>> clock = ManualClock(start=100.0)
    >>> clock.sleep(60); clock.time()
    160.0
    """

    def __init__(
        self, start: float = 0.0, on_sleep: Callable[[ManualClock], None] | None = None
    ) -> None:
        self.now = start
        self.on_sleep = on_sleep
        self.sleeps = 0

    def time(self) -> float:
        """Return the current manual time."""
        return self.now

    def monotonic(self) -> float:
        """Return the current manual time; reads take no time on this clock."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward without sleeping."""
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        """Move time forward and run the hook, as if the world went on meanwhile."""
        self.now += seconds
        self.sleeps += 1
        if self.on_sleep is not None:
            self.on_sleep(self)
