"""Sending to one channel within CyTube's flood limits.

CyTube allows a burst of 20 messages and 10/s, and 4 and 1/s for users below
moderator where the channel enables antiflood (docs/operator.md). The bot's rank is
not known in advance, so the default is the strict limit. Replies wait in a
queue; one that has waited longer than ``max_age`` is dropped, not sent late
into a conversation that has moved on.

Every message submitted gets exactly one outcome (a :class:`Delivery`)
through its ``done`` callback: what its ``send`` returned (kryten-robot's
confirmation or refusal), ``too_old``, ``queue_full``, ``send_failed`` or
``shutdown``. The response log is written from those outcomes, so a line
never says "sent" for a message that was dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kryten_rules.quietlog import QuietLog
from kryten_rules.service.delivery import (
    CONFIRMED,
    QUEUE_FULL,
    SHUTDOWN,
    TOO_OLD,
    Delivery,
    send_failed,
)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Outgoing:
    """One message: ``send`` returns its :class:`Delivery` (None: sent, unconfirmed)."""

    send: Callable[[], Awaitable[Delivery | None]]
    created: float
    label: str = ""
    done: Callable[[Delivery], None] | None = None

    def finish(self, outcome: Delivery) -> None:
        if self.done is not None:
            done, self.done = self.done, None  # exactly one outcome per message
            done(outcome)


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
        self.max_queue = max_queue
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._queue: asyncio.Queue[Outgoing] = asyncio.Queue(max_queue)
        self._tokens = float(burst)
        self._last: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_drop = on_drop or (lambda reason: None)
        self._quiet = QuietLog(log)

    def now(self) -> float:
        return self._clock()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pacer")

    async def stop(self) -> None:
        """Stop sending; whatever is still queued gets the outcome ``shutdown``."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            item = self._queue.get_nowait()
            self._queue.task_done()
            self._on_drop(SHUTDOWN)
            item.finish(Delivery(SHUTDOWN, "the service stopped before it was sent"))

    def submit(self, item: Outgoing) -> bool:
        try:
            self._queue.put_nowait(item)
            return True
        except asyncio.QueueFull:
            self._quiet.warning(QUEUE_FULL, "send queue full: dropped %s", item.label)
            self._on_drop(QUEUE_FULL)
            item.finish(Delivery(QUEUE_FULL, f"the send queue was full ({self.max_queue})"))
            return False

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    @property
    def room(self) -> int:
        """Messages the queue can still take."""
        return self.max_queue - self._queue.qsize()

    def expected_wait(self, behind: int) -> float:
        """Seconds until a message submitted after ``behind`` more ones (beyond those
        queued) could go out, at the bucket's rate: a lower bound, since a reply
        still being prepared takes its own time too. Admission uses it so that a
        reply certain to be dropped as too old never spends its state."""
        tokens = self._tokens
        if self._last is not None:
            tokens = min(self.burst, tokens + (self.now() - self._last) * self.rate)
        ahead = self._queue.qsize() + behind
        return max(0.0, (ahead + 1 - tokens) / self.rate)

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
                await self._send_one(item)
            finally:
                self._queue.task_done()

    async def _send_one(self, item: Outgoing) -> None:
        try:
            self._refill()
            while self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self.rate)
                self._refill()
            age = self.now() - item.created
            if age > self.max_age:
                self._quiet.log(
                    logging.INFO, TOO_OLD, "dropped a reply that waited %.0fs: %s", age, item.label
                )
                self._on_drop(TOO_OLD)
                item.finish(Delivery(TOO_OLD, f"waited {age:.0f}s, over {self.max_age:g}s"))
                return
            self._tokens -= 1
            try:
                outcome = await item.send()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._quiet.exception("send_failed", "sending %s failed", item.label)
                self._on_drop("send_failed")
                item.finish(send_failed(exc))
                return
            item.finish(outcome or CONFIRMED)
        except asyncio.CancelledError:
            item.finish(Delivery(SHUTDOWN, "the service stopped while it was being sent"))
            raise
