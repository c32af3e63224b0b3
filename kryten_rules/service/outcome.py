"""The outcome of one reply: its parts' deliveries, summed up for the response log.

A reply of several parts is sent part by part through the pacer; each part
gets one :class:`~kryten_rules.service.delivery.Delivery`. :class:`PartOutcomes`
collects them, lets a later part see that an earlier one failed (it is then
skipped rather than sent out of context, or left to wait for another
timeout), and says when all are known, so the response-log line is written
with what really happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from kryten_rules.service.delivery import SENT, SKIPPED, Delivery


@dataclass(frozen=True, slots=True)
class Summary:
    outcome: str  # "sent", or the status of the first part that was not sent
    parts_sent: int
    error: str | None = None
    hint: str | None = None

    @property
    def sent(self) -> bool:
        return self.outcome == SENT


class PartOutcomes:
    """The deliveries of ``n`` parts, in order; :meth:`wait` returns when all are in."""

    def __init__(self, n: int) -> None:
        self._outcomes: list[Delivery | None] = [None] * n
        self._left = n
        self._all_in = asyncio.Event()
        if n == 0:
            self._all_in.set()

    def recorder(self, index: int) -> Callable[[Delivery], None]:
        def done(delivery: Delivery) -> None:
            if self._outcomes[index] is None:
                self._outcomes[index] = delivery
                self._left -= 1
                if self._left == 0:
                    self._all_in.set()

        return done

    def skip_reason(self, index: int) -> Delivery | None:
        """A ``skipped`` delivery for part ``index`` when an earlier part was not sent."""
        for i, d in enumerate(self._outcomes[:index]):
            if d is not None and not d.sent:
                return Delivery(SKIPPED, f"part {i + 1} was not sent ({d.status})", d.hint)
        return None

    async def wait(self) -> Summary:
        await self._all_in.wait()
        return self.summary()

    def summary(self) -> Summary:
        known = [d for d in self._outcomes if d is not None]
        sent = sum(d.sent for d in known)
        failed = next((d for d in known if not d.sent), None)
        if failed is None:
            return Summary(SENT, sent)
        return Summary(failed.status, sent, failed.error, failed.hint)


__all__ = ["PartOutcomes", "Summary"]
