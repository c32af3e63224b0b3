"""Sending through kryten-robot: one command per message, as a request.

Only the robot's confirmation counts as sent (see ``delivery.py`` for the
outcomes). :class:`RobotSender` also remembers the robot's latest answers for
health: ``failing`` while the latest answer was not a confirmation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from kryten_rules.config import CytubeConfig
from kryten_rules.quietlog import QuietLog
from kryten_rules.service.bus import Bus, NoResponders, RequestTimeout
from kryten_rules.service.delivery import (
    ROBOT_FAILURES,
    SEND_FAILED,
    Delivery,
    no_answer,
    no_robot,
    robot_delivery,
    send_failed,
)
from kryten_rules.service.metrics import ChannelMetrics
from kryten_rules.service.outcome import PartOutcomes
from kryten_rules.wire import COMMAND_SUBJECT, pm_command, say_command

log = logging.getLogger("kryten_rules.service")


class RobotSender:
    """Makes the send callables the pacer runs; ``bus`` is read at send time
    (it is connected after this is made)."""

    def __init__(
        self,
        bus: Callable[[], Bus | None],
        cytube: CytubeConfig,
        metrics: ChannelMetrics,
        *,
        timeout: float,
        quiet: QuietLog | None = None,
    ) -> None:
        self._bus = bus
        self.cytube = cytube
        self.metrics = metrics
        self.timeout = timeout
        self._quiet = quiet or QuietLog(log)
        self.failures = 0
        self.last_failure: dict[str, Any] | None = None
        self.failing = False  # the robot's latest answer was not a confirmation

    def sender(
        self, via: str, user: str, text: str, sends: PartOutcomes, index: int
    ) -> Callable[[], Awaitable[Delivery]]:
        cy = self.cytube

        async def send() -> Delivery:
            skipped = sends.skip_reason(index)  # an earlier part failed: do not send the rest
            if skipped is not None:
                return skipped
            if via == "pm":
                data = pm_command(user, text, domain=cy.domain, channel=cy.channel)
            else:
                data = say_command(text, domain=cy.domain, channel=cy.channel)
            delivery = await self.ask(data)
            self.note(delivery, via)
            return delivery

        return send

    async def ask(self, data: bytes) -> Delivery:
        """Send one command as a request; only the robot's confirmation counts as sent."""
        cy = self.cytube
        bus = self._bus()
        if bus is None:
            return send_failed(ConnectionError("not connected to NATS"))
        try:
            answer = await bus.request(COMMAND_SUBJECT, data, self.timeout)
        except NoResponders:
            return no_robot()
        except RequestTimeout:
            if not bus.connected:  # the answer was lost with the connection
                return Delivery(SEND_FAILED, "the NATS connection dropped before the answer")
            return no_answer(self.timeout, domain=cy.domain, channel=cy.channel)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # not connected, draining, ...
            return send_failed(exc)
        return robot_delivery(answer)

    def note(self, delivery: Delivery, via: str) -> None:
        """Count a message's outcome; remember failures for health."""
        if delivery.sent:
            self.metrics.replies.labels(via).inc()
            self.failing = False
            return
        if delivery.status not in ROBOT_FAILURES:
            return
        self.metrics.send_failures.labels(delivery.status).inc()
        self.failures += 1
        self.failing = True
        self.last_failure = {
            "at": datetime.now(UTC).isoformat(),
            "reason": delivery.status,
            "error": delivery.error,
            "hint": delivery.hint,
        }
        self._quiet.warning(
            f"send:{delivery.status}",
            "kryten-robot did not send a message (%s): %s; %s",
            delivery.status,
            delivery.error,
            delivery.hint or "see the robot's log",
        )
