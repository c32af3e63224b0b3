"""Log a recurring problem once a minute, not once per occurrence.

Under load the same warning can repeat thousands of times a second (a full
send queue, a robot that refuses every message, a full disk, a rule file the
watcher cannot read). One line per occurrence buries everything else in the
log and costs CPU when the service can least afford it. :class:`QuietLog`
logs the first occurrence of each *reason* at once, counts the repeats for
``interval`` seconds, and says how many it held back with the next line of
that reason, so nothing is hidden, only summarised. Metrics count every
occurrence; the log tells the story.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

DEFAULT_INTERVAL = 60.0
MAX_REASONS = 1_000  # reasons are codes, not free text; bound the table anyway


class QuietLog:
    """A rate limit per reason in front of one logger."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def log(self, level: int, reason: str, msg: str, *args: Any, exc_info: bool = False) -> bool:
        """Log ``msg % args`` unless ``reason`` was logged less than ``interval`` ago.

        Returns True when the line was written. ``exc_info`` (a traceback) is
        attached only to the lines written, so a failing poll loop prints one
        traceback a minute, not one a second.
        """
        now = self._clock()
        last = self._last.get(reason)
        if last is not None and now - last < self.interval:
            self._held[reason] = self._held.get(reason, 0) + 1
            return False
        if last is None and len(self._last) >= MAX_REASONS:
            self._last.pop(next(iter(self._last)))
        self._last[reason] = now
        held = self._held.pop(reason, 0)
        if held:
            msg += " (and %d more like it in the last %.0fs)"
            args = (*args, held, now - last if last is not None else self.interval)
        else:
            msg += " (repeats are counted, not logged, for %.0fs)"
            args = (*args, self.interval)
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def warning(self, reason: str, msg: str, *args: Any) -> bool:
        return self.log(logging.WARNING, reason, msg, *args)

    def error(self, reason: str, msg: str, *args: Any) -> bool:
        return self.log(logging.ERROR, reason, msg, *args)

    def exception(self, reason: str, msg: str, *args: Any) -> bool:
        """An ERROR with the current exception's traceback, rate-limited per reason."""
        return self.log(logging.ERROR, reason, msg, *args, exc_info=True)

    def held(self, reason: str) -> int:
        """Occurrences of ``reason`` counted but not yet logged."""
        return self._held.get(reason, 0)


__all__ = ["QuietLog"]
