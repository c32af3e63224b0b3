"""Clocks: the engine reads time only through one of these.

``VirtualClock`` makes rule tests, ``replay`` and unit tests exact: time moves
only when the caller says so, and nothing ever sleeps.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds; only differences matter to the engine."""
        ...


class SystemClock:
    """Wall-clock time (``time.time``), so event timestamps and state agree."""

    def now(self) -> float:
        return time.time()


class VirtualClock:
    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def set(self, t: float) -> None:
        """Move to ``t``; time never runs backwards."""
        self._now = max(self._now, float(t))

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, float(seconds))
