"""Bus in -> intake -> engine: one event, decided synchronously.

:meth:`Inlet.handle` decodes a message (``wire.py``), applies the rank
changes it carries, lets the intake (``intake.py``) leave out what is not
for the rules (``Ignored(reason)``: the bot itself, ignored users, CyTube's
replayed history, ...), and evaluates the rest without spending; a fired
decision goes to :meth:`Replies.dispatch`, which spends it only if it is
admitted. Everything here runs in the bus callback and takes microseconds:
decisions never wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from kryten_rules.clock import Clock
from kryten_rules.engine.evaluate import Decision, Engine
from kryten_rules.events import ChatEvent
from kryten_rules.intake import Intake
from kryten_rules.quietlog import QuietLog
from kryten_rules.senders import Ignored, IgnoreReason
from kryten_rules.service.bus import Message
from kryten_rules.service.events_out import EventsOut
from kryten_rules.service.lease import ChannelLease
from kryten_rules.service.metrics import ChannelMetrics
from kryten_rules.service.replies import Replies
from kryten_rules.service.standby import Standby
from kryten_rules.wire import MalformedEvent, decode_message, rank_changes

log = logging.getLogger("kryten_rules.service")

HELD_RETRY = 0.01  # seconds between admission tries of a takeover's held event
HELD_WAIT = 30.0  # at most this long for room per held event; then it is overloaded


class Inlet:
    def __init__(
        self,
        *,
        intake: Intake,
        engine: Callable[[], Engine | None],
        replies: Replies,
        clock: Clock,
        metrics: ChannelMetrics,
        quiet: QuietLog,
        on_decision: Callable[[Decision], None] | None = None,
        events: EventsOut | None = None,
    ) -> None:
        self.intake = intake
        self._engine = engine
        self.replies = replies
        self.clock = clock
        self.metrics = metrics
        self._quiet = quiet
        self.on_decision = on_decision
        self.events = events  # decision events for other services (a queue append)
        self._history_logged = -1e9
        # failover (state.store: jetstream): decide only while holding the channel's lease
        self.lease: ChannelLease | None = None
        self.standby = Standby()

    async def on_message(self, msg: Message) -> None:
        try:
            self.handle(msg.subject, msg.data)
        except Exception:  # a bug of ours must not stop the subscription
            self._quiet.exception("handle", "event on %s could not be handled", msg.subject)

    def handle(self, subject: str, data: bytes) -> Decision | None:
        """Decode, filter and decide one event; start the reply if a rule fired."""
        t0 = time.perf_counter()
        try:
            decoded = decode_message(subject, data)
        except MalformedEvent as exc:
            self._log_malformed(exc.reason)
            return None
        if decoded is None:
            return None
        self.metrics.events.labels(decoded.event_name).inc()
        engine = self._engine()
        assert engine is not None
        engine.apply_ranks(rank_changes(decoded.event))
        engine.room.observe(decoded.event)  # who is there, the playlist
        now = self.clock.now()
        chat = self.intake.admit(decoded, now)
        if chat is None:
            return None
        if isinstance(chat, Ignored):
            self._note_ignored(chat)
            return None
        if self.lease is not None and not self.lease.owned:
            self._stand_by(engine, replace(chat, at=now))
            return None
        # decided without spending: only an admitted reply spends its cooldown and budget
        decision = engine.evaluate(replace(chat, at=now), commit=False)
        self.metrics.decision_latency.labels().observe(time.perf_counter() - t0)
        if decision.ignored:
            self.metrics.ignored.labels(decision.ignored).inc()
            return decision
        self.deliver(decision, engine)
        return decision

    def take_turns(self, engine: Engine) -> list[Decision]:
        """v1.1: every timer whose turn has come, decided and delivered like a chat line.

        Each turn is admitted (and so spends its cooldowns) before the next
        timer is decided, so two timers due together share budgets correctly.
        """
        decisions: list[Decision] = []
        if self.lease is not None and not self.lease.owned:
            return decisions  # the lease holder's timers speak
        for decision in engine.turns(self.clock.now(), commit=False):
            self.metrics.events.labels("timer").inc()
            self.deliver(decision, engine)
            decisions.append(decision)
        return decisions

    def _stand_by(self, engine: Engine, chat: ChatEvent) -> None:
        """Another instance holds the channel: keep the event for a takeover, and
        keep the room's media current (what a takeover's first prompt shows)."""
        if chat.kind == "changemedia" and chat.media is not None:
            engine.set_media(chat.media)
        self.standby.hold(chat, time.monotonic())

    def take_over(self) -> list[ChatEvent]:
        """This instance now holds the lease: the held events the last holder may
        not have decided (see standby.py), for :meth:`decide_held`."""
        assert self.lease is not None
        return self.standby.take_over(self.lease.seen, self.lease.peer_answered)

    async def decide_held(self, engine: Callable[[], Engine | None], held: list[ChatEvent]) -> int:
        """Decide the events of a takeover, in order, each when a reply to it can be
        admitted: seconds of a busy channel at once would otherwise overflow the
        send queue and be dropped as overloaded. Live events go on meanwhile."""
        answered = 0
        for chat in held:
            give_up = time.monotonic() + HELD_WAIT
            while True:
                current = engine()
                if current is None or (self.lease is not None and not self.lease.owned):
                    return answered  # stopped, or the lease went on: the new holder decides
                decision = current.evaluate(replace(chat, at=self.clock.now()), commit=False)
                if decision.ignored or decision.fired is None:
                    break
                if self.replies.no_room_for(decision) is None or time.monotonic() > give_up:
                    break  # admitted, or logged overloaded as any reply with no room
                await asyncio.sleep(HELD_RETRY)  # the send queue drains at the pacing rate
            if not decision.ignored:
                self.deliver(decision, current)
                answered += decision.fired is not None
        return answered

    def deliver(self, decision: Decision, engine: Engine) -> None:
        """Count a decision's trace and start its reply (and its shadow rules' logs)."""
        for t in decision.trace:
            if t.reason != "no_match":
                self.metrics.decisions.labels(t.rule, t.outcome, t.reason or "").inc()
        if self.on_decision is not None:
            self.on_decision(decision)
        if self.events is not None:
            self.events.decision(decision)
        if decision.fired is not None:
            self.replies.dispatch(decision, engine)
        for shadow in decision.shadow_decisions():  # rendered and logged as "shadow", never sent
            self.replies.dispatch(shadow, engine)

    def _log_malformed(self, reason: str) -> None:
        self.metrics.malformed.labels(reason).inc()
        self._quiet.warning(f"malformed:{reason}", "skipped a malformed event: %s", reason)

    def _note_ignored(self, ignored: Ignored) -> None:
        """Count an event the intake left out; say so once a minute for replayed history,
        the one reason that can hide live lines (clocks further apart than the slack)."""
        self.metrics.ignored.labels(ignored.reason).inc()
        if ignored.reason != IgnoreReason.HISTORY:
            return
        now = time.monotonic()
        if now - self._history_logged > 60:
            self._history_logged = now
            log.info(
                "ignored CyTube's replayed history (%s); repeats are counted, not logged, for a "
                "minute. Outside a robot (re)join, check this host's clock or history_slack",
                ignored.detail,
            )
