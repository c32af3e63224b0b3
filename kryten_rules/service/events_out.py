"""Events for other services: every reply and decision, on NATS, without slowing a decision.

``kryten.events.rules.reply`` carries each reply that reached the channel
(or would have, in a dry run), so a service such as kryten-economy can credit
"bot interactions" from facts (who asked, which rule and model answered, the
triggering event's ``correlation_id``) instead of guessing from chat.
``kryten.events.rules.decision`` carries decisions with their trace, for
``kryten-rules tail --decisions`` and dashboards. docs/operator.md
("Events for other services") has the fields; ``"v": 1`` versions them: a
field may be added within a version, none removed or changed.

Publishing never blocks the hot path. The inlet and the reply task hand a
decision (or a response-log record) to :meth:`EventsOut.decision` /
:meth:`EventsOut.reply`, which append it to a bounded queue (a deque
append: no JSON, no I/O); one task turns the queue into JSON and publishes
it through the :class:`~.bus.Bus`. A full queue (NATS slower than the
events) drops the newest, a publish that fails is counted; both are
logged once a minute (``kryten_rules_events_out_total{kind, outcome}``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kryten_rules.engine.decision import Decision
from kryten_rules.quietlog import QuietLog
from kryten_rules.service.bus import Bus
from kryten_rules.service.delivery import SENT
from kryten_rules.service.metrics import Metrics
from kryten_rules.trace import Reason

log = logging.getLogger("kryten_rules.service")

REPLY_SUBJECT = "kryten.events.rules.reply"
DECISION_SUBJECT = "kryten.events.rules.decision"
EVENTS_VERSION = 1
DECISION_MODES = ("all", "matched", "off")
DEFAULT_DECISIONS = "matched"
MAX_QUEUED = 4096  # events waiting for the bus; past it the newest are dropped and counted

# trace reasons of rules whose words were not there (or that are switched off)
_NOT_MATCHED = frozenset({Reason.NO_MATCH, Reason.DISABLED})


def matched(decision: Decision) -> bool:
    """Some rule matched: it fired, would fire, or a gate stopped it after its words were there."""
    return any(t.reason not in _NOT_MATCHED for t in decision.trace)


def publishes_reply(record: dict[str, Any]) -> bool:
    """Whether a response-log record becomes a reply event.

    A reply is an event when at least one part reached the channel
    (``outcome`` ``sent``, or a reply cut short with ``parts_sent`` > 0), or
    in a dry run when it would have been sent (``outcome`` ``dry_run``).
    Shadow, silent, overloaded, refused and failed replies said nothing in
    the channel: the response log has them.
    """
    outcome = record.get("outcome")
    return outcome in (SENT, "dry_run") or int(record.get("parts_sent") or 0) > 0


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def reply_event(record: dict[str, Any], domain: str, correlation_id: str) -> dict[str, Any]:
    """The ``kryten.events.rules.reply`` payload for one response-log record."""
    parts = list(record.get("parts") or [])
    return {
        "v": EVENTS_VERSION,
        "type": "reply",
        "time": record.get("time"),
        "domain": domain,
        "channel": record.get("channel"),
        "user": record.get("user"),
        "rank": record.get("rank"),
        "event": record.get("event"),
        "correlation_id": correlation_id or None,
        "rule": record.get("rule"),
        "model": record.get("model"),
        "via": record.get("via"),
        "parts": parts,
        "parts_sent": record.get("parts_sent", 0),
        "outcome": record.get("outcome"),
        "latency_ms": round(float(record.get("latency") or 0.0) * 1000.0, 1),
        "tokens": record.get("tokens"),
        "cost": record.get("cost"),
        "dry_run": bool(record.get("dry_run")),
    }


def decision_event(
    decision: Decision, at: float, domain: str, channel: str, dry_run: bool
) -> dict[str, Any]:
    """The ``kryten.events.rules.decision`` payload for one decision."""
    ev = decision.event
    return {
        "v": EVENTS_VERSION,
        "type": "decision",
        "time": _iso(at),
        "domain": domain,
        "channel": channel,
        "user": ev.user,
        "event": ev.kind,
        "correlation_id": ev.correlation_id or None,
        "fired": decision.fired,
        "would_fire": decision.would_fire_ids,
        "blocked": decision.blocked,
        "trace": [t.as_dict() for t in decision.trace],
        "dry_run": dry_run,
    }


_Item = tuple[str, float, Decision, dict[str, Any] | None]


class EventsOut:
    """The bounded queue between the hot path and the bus, and the task that empties it."""

    def __init__(
        self,
        bus: Callable[[], Bus | None],
        metrics: Metrics,
        *,
        domain: str,
        channel: str,
        dry_run: bool,
        decisions: str = DEFAULT_DECISIONS,
        replies: bool = True,
        quiet: QuietLog | None = None,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        if decisions not in DECISION_MODES:
            raise ValueError(f"events.decisions must be one of {', '.join(DECISION_MODES)}")
        self._bus = bus
        self.metrics = metrics
        self.domain = domain
        self.channel = channel
        self.dry_run = dry_run
        self.decisions = decisions
        self.replies = replies
        self._quiet = quiet or QuietLog(log)
        self._queue: deque[_Item] = deque()
        self._max = max_queued
        self._ready = asyncio.Event()

    # --- the hot path: append only ---------------------------------------------------

    def decision(self, decision: Decision) -> None:
        """Queue a decision's event, if the mode wants it (``matched``: some rule matched)."""
        mode = self.decisions
        if mode == "off" or (mode == "matched" and not matched(decision)):
            return
        self._put(("decision", time.time(), decision, None))

    def reply(self, record: dict[str, Any], decision: Decision) -> None:
        """Queue a reply's event from its response-log record, when it reached the channel."""
        if self.replies and publishes_reply(record):
            self._put(("reply", 0.0, decision, record))

    def _put(self, item: _Item) -> None:
        if len(self._queue) >= self._max:
            self._count(item[0], "dropped")
            self._quiet.warning(
                "events-out-full",
                "events for other services: %d waiting for NATS, dropping new ones",
                len(self._queue),
            )
            return
        self._queue.append(item)
        self._ready.set()

    # --- the publishing task --------------------------------------------------------

    def payload(self, item: _Item) -> tuple[str, bytes]:
        _kind, at, decision, record = item
        if record is not None:
            doc = reply_event(record, self.domain, decision.event.correlation_id)
            subject = REPLY_SUBJECT
        else:
            doc = decision_event(decision, at, self.domain, self.channel, self.dry_run)
            subject = DECISION_SUBJECT
        return subject, json.dumps(doc, ensure_ascii=False, default=str).encode("utf-8")

    async def run(self) -> None:
        """Publish what is queued, in order, for ever (cancelled at stop, after :meth:`drain`)."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            await self.drain()

    async def drain(self) -> None:
        """Publish everything queued now."""
        queue = self._queue
        while queue:
            item = queue.popleft()
            bus = self._bus()
            if bus is None or not bus.connected:
                self._count(item[0], "disconnected")
                continue
            try:
                subject, data = self.payload(item)
                await bus.publish(subject, data)
            except Exception as exc:
                self._count(item[0], "error")
                self._quiet.warning(
                    "events-out-error",
                    "events for other services: publishing failed: %s: %s",
                    type(exc).__name__,
                    exc,
                )
            else:
                self._count(item[0], "published")

    @property
    def queued(self) -> int:
        return len(self._queue)

    def _count(self, kind: str, outcome: str) -> None:
        self.metrics.events_out.labels(kind, outcome).inc()


__all__ = [
    "DECISION_MODES",
    "DECISION_SUBJECT",
    "DEFAULT_DECISIONS",
    "EVENTS_VERSION",
    "MAX_QUEUED",
    "REPLY_SUBJECT",
    "EventsOut",
    "decision_event",
    "matched",
    "publishes_reply",
    "reply_event",
]
