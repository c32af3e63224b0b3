"""The timer task (v1.1): wake at the next timer turn, take it, sleep again.

The schedule is the engine's (``engine/timers.py``); this task only sleeps
until its earliest turn and hands the turns to the inlet
(:meth:`Inlet.take_turns`), which decides and delivers them exactly as it does
chat lines: admission, the responder, pacing, ``dry_run``, the response log and
the metrics all apply. No busy loop: with no timers it waits for a reload;
otherwise it sleeps until the next turn, at most :data:`MAX_SLEEP` at a time
(the engine's clock is wall time, asyncio's is monotonic: a clock step is
noticed within that). A reload wakes it (:meth:`TimerTask.poke`) to recompute.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from kryten_rules.clock import Clock
from kryten_rules.engine.evaluate import Engine
from kryten_rules.quietlog import QuietLog
from kryten_rules.service.inlet import Inlet

MAX_SLEEP = 60.0  # seconds at most between two looks at the clock


class TimerTask:
    def __init__(
        self,
        engine: Callable[[], Engine | None],
        inlet: Inlet,
        clock: Clock,
        quiet: QuietLog,
    ) -> None:
        self._engine = engine
        self._inlet = inlet
        self._clock = clock
        self._quiet = quiet
        self._wake = asyncio.Event()

    def poke(self) -> None:
        """The rule set may have changed: recompute the next turn now."""
        self._wake.set()

    def delay(self) -> float | None:
        """Seconds until the next turn (None: no timers, sleep until poked)."""
        engine = self._engine()
        due = engine.timers.next_due() if engine is not None else None
        if due is None:
            return None
        return min(MAX_SLEEP, max(0.0, due - self._clock.now()))

    async def run(self) -> None:
        while True:
            self._wake.clear()
            delay = self.delay()
            if delay is None or delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
            engine = self._engine()
            if engine is None:
                continue
            try:
                self._inlet.take_turns(engine)
            except Exception:  # a bug of ours must not stop the timers for good
                self._quiet.exception("timers", "a timer turn could not be handled")
                await asyncio.sleep(1.0)  # and must not spin on it either


__all__ = ["MAX_SLEEP", "TimerTask"]
