"""Sending to one channel within CyTube's flood limits.

CyTube allows a burst of 20 messages and 10/s, and 4 and 1/s for users below
moderator where the channel enables antiflood (docs/operator.md). The bot's rank is
not known in advance, so the default is the strict limit. Replies wait in a
queue; one that has waited longer than ``max_age`` is dropped, not sent late
into a conversation that has moved on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Outgoing:
    send: Callable[[], Awaitable[None]]
    created: float
    label: str = ""


class Pacer:
    """A token bucket in front of one channel, drained by one task."""

    def __init__(
        self,
        *,
        burst: int = 4,
        per_second: float = 1.0,
        max_age: float = 60.0,
        max_queue: int = 100,
        clock: Callable[[], float] | None = None,
        on_drop: Callable[[str], None] | None = None,
    ) -> None:
        self.burst = burst
        self.rate = per_second
        self.max_age = max_age
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._queue: asyncio.Queue[Outgoing] = asyncio.Queue(max_queue)
        self._tokens = float(burst)
        self._last = None  # type: float | None
        self._task: asyncio.Task[None] | None = None
        self._on_drop = on_drop or (lambda reason: None)

    def now(self) -> float:
        return self._clock()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pacer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def submit(self, item: Outgoing) -> bool:
        try:
            self._queue.put_nowait(item)
            return True
        except asyncio.QueueFull:
            log.warning("send queue full: dropped %s", item.label)
            self._on_drop("queue_full")
            return False

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def drain(self, timeout: float) -> None:
        """Wait until the queue is empty (shutdown), at most ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            log.warning("shutdown: %d queued message(s) not sent", self._queue.qsize())

    def _refill(self) -> None:
        now = self.now()
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                self._refill()
                while self._tokens < 1:
                    await asyncio.sleep((1 - self._tokens) / self.rate)
                    self._refill()
                if self.now() - item.created > self.max_age:
                    log.info(
                        "dropped a reply that waited %.0fs: %s",
                        self.now() - item.created,
                        item.label,
                    )
                    self._on_drop("too_old")
                    continue
                self._tokens -= 1
                try:
                    await item.send()
                except Exception:
                    log.exception("sending %s failed", item.label)
                    self._on_drop("send_failed")
            finally:
                self._queue.task_done()
