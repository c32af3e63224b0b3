"""Admitted replies: lanes, the reply task, the pacer, the response log.

No decision vanishes. A decision that fired is admitted to its lane (model
replies and fixed replies each have their own, see ``lanes.py``) before its
cooldown and budget are spent; one that does not fit is logged as
``overloaded`` with its state untouched. An admitted one is planned by the
:class:`~.responder.Responder`, its parts go to the pacer with a sender from
:class:`~.robot.RobotSender`, and it gets its response-log line once
kryten-robot has confirmed or refused its parts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from kryten_rules.compile.ruleset import RuleSet
from kryten_rules.dispatch.llm.chain import ChainResult
from kryten_rules.engine.evaluate import Decision, Engine
from kryten_rules.quietlog import QuietLog
from kryten_rules.service.delivery import SHUTDOWN
from kryten_rules.service.events_out import EventsOut
from kryten_rules.service.lanes import Lane
from kryten_rules.service.metrics import ChannelMetrics
from kryten_rules.service.outcome import PartOutcomes, Summary
from kryten_rules.service.pacing import Outgoing, Pacer
from kryten_rules.service.responder import ReplyPlan, Responder, reply_via
from kryten_rules.service.responselog import ResponseLog, response_record
from kryten_rules.service.robot import RobotSender

log = logging.getLogger("kryten_rules.service")

MAX_PENDING_REPLIES = 64  # model replies being prepared at once (admitted, not yet queued)
MAX_PENDING_FIXED = 256  # fixed replies likewise; they take microseconds each
FIXED_CONCURRENCY = 16
NOT_OWNER = "not_owner"  # the response-log outcome of a reply fenced off by the lease

Spawn = Callable[[Coroutine[Any, Any, None], str], object]


class Replies:
    """Admits fired decisions and sees each admitted reply through to its log line."""

    def __init__(
        self,
        *,
        channel: str,
        dry_run: bool,
        max_in_flight: int,
        metrics: ChannelMetrics,
        responses: ResponseLog,
        robot: RobotSender,
        spawn: Spawn,
        quiet: QuietLog | None = None,
    ) -> None:
        self.channel = channel
        self.dry_run = dry_run
        self.metrics = metrics
        self.responses = responses
        self.robot = robot
        self._spawn = spawn
        self._quiet = quiet or QuietLog(log)
        self.pacer: Pacer | None = None  # set once started
        self.responder: Responder | None = None
        self.events: EventsOut | None = None  # reply events for other services
        self.pending = 0  # replies admitted and not yet logged
        # failover: claims the event in the channel's lease before a part is sent;
        # False (the lease was lost) drops the reply (service/lease.py)
        self.fence: Callable[[Decision], Awaitable[bool]] | None = None
        # model replies and fixed ones are admitted separately: a fixed reply
        # never waits behind model calls
        self.llm_lane = Lane("model", limit=MAX_PENDING_REPLIES, concurrency=max(1, max_in_flight))
        self.fixed_lane = Lane("fixed", limit=MAX_PENDING_FIXED, concurrency=FIXED_CONCURRENCY)

    def _lane(self, decision: Decision) -> Lane:
        rule = decision.rule
        assert rule is not None
        return self.llm_lane if rule.needs_llm and not decision.shadow else self.fixed_lane

    def no_room_for(self, decision: Decision) -> str | None:
        """Why a reply to this fired decision could not be admitted now, or None."""
        return self._no_room(self._lane(decision))

    def _no_room(self, lane: Lane) -> str | None:
        """Why a reply cannot be admitted now, or None.

        Besides its lane's limit, the send queue must have room for one more
        message than the replies already being prepared will put in it.
        """
        assert self.pacer is not None
        if not lane.has_room():
            return f"{lane.admitted} {lane.name} replies in progress (the limit)"
        preparing = self.llm_lane.admitted + self.fixed_lane.admitted
        if self.pacer.room <= preparing:
            return (
                f"the send queue is full ({self.pacer.pending} queued, "
                f"{preparing} replies being prepared)"
            )
        wait = self.pacer.expected_wait(preparing)
        # one send interval of slack: the estimate leaves out the robot's round trips
        if wait + 1.0 / self.pacer.rate > self.pacer.max_age:  # it would only be too old
            return (
                f"a reply now would wait {wait:.0f}s to be sent, over reply_max_age "
                f"({self.pacer.max_age:g}s; {self.pacer.pending} queued, "
                f"{preparing} being prepared)"
            )
        return None

    def dispatch(self, decision: Decision, engine: Engine) -> None:
        """Admit a fired decision and spend its state, or log it as overloaded, unspent."""
        assert self.pacer is not None and decision.rule is not None
        lane = self._lane(decision)
        why = self._no_room(lane)
        if why is not None:
            self.metrics.replies_dropped.labels("overloaded").inc()
            self._quiet.warning(
                "overloaded",
                "overloaded, %s: not answering %s for %s (its cooldown and budget are not spent)",
                why,
                decision.rule.id,
                decision.event.user,
            )
            via = reply_via(decision.rule.respond_via, decision.event)
            overloaded = Summary("overloaded", 0, why)
            self._log(decision, None, None, [], via, False, 0.0, None, overloaded)
            return
        engine.commit(decision)
        lane.admit()
        self.pending += 1
        self.metrics.in_flight.inc()
        self._spawn(self._reply(decision, engine.ruleset, lane, self.pacer.now()), "respond")

    async def _reply(
        self, decision: Decision, ruleset: RuleSet, lane: Lane, received: float
    ) -> None:
        """One admitted reply: prepare it in its lane, wait for its parts' outcomes, log it.

        The lane's slot is held only while preparing; waiting for the pacer
        and the robot holds nothing but this task (bounded by the send queue).
        """
        t0 = time.perf_counter()
        plan: ReplyPlan | None = None
        summary: Summary | None = None
        try:
            try:
                async with lane.slot:
                    plan = await self._prepare(decision, ruleset, received)
            finally:
                lane.release()
            if plan.sends is not None:
                summary = await plan.sends.wait()
            self._finish(decision, plan, summary, time.perf_counter() - t0)
        except asyncio.CancelledError:  # shutdown: still say what became of it
            if plan is not None and plan.sends is not None:
                done = plan.sends.summary()
                summary = Summary(SHUTDOWN, done.parts_sent, "the service stopped")
            else:
                summary = Summary(SHUTDOWN, 0, "the service stopped before the reply was ready")
            plan = plan or ReplyPlan(None, None, [], "")
            self._finish(decision, plan, summary, time.perf_counter() - t0)
            raise
        except Exception:
            self._quiet.exception("reply", "rule %s: logging the reply failed", decision.fired)
        finally:
            self.pending -= 1
            self.metrics.in_flight.dec()

    async def _prepare(self, decision: Decision, ruleset: RuleSet, received: float) -> ReplyPlan:
        """The responder's plan, its parts handed to the pacer unless nothing is sent."""
        assert self.pacer is not None and self.responder is not None
        rule = decision.rule
        assert rule is not None
        plan = await self.responder.plan(decision, ruleset)
        if plan.outcome is not None or not plan.parts or self.dry_run or decision.shadow:
            return plan
        if self.fence is not None and not await self.fence(decision):
            # failover: the lease is another instance's now; it decides this event
            why = "another instance holds the channel's lease"
            return ReplyPlan(None, plan.result, [], plan.via, error=why, outcome=NOT_OWNER)
        try:
            sends = PartOutcomes(len(plan.parts))
            for i, part in enumerate(plan.parts):
                self.pacer.submit(
                    Outgoing(
                        self.robot.sender(plan.via, decision.event.user, part, sends, i),
                        received,
                        f"{rule.id} part {i + 1}",
                        sends.recorder(i),
                    )
                )
        except Exception as exc:
            self._quiet.exception(
                f"prepare:{rule.id}", "rule %s: preparing the reply failed", rule.id
            )
            error = f"{type(exc).__name__}: {exc}"
            return ReplyPlan(None, plan.result, [], plan.via, error=error[:300], outcome="error")
        plan.sends = sends
        return plan

    def _finish(
        self, decision: Decision, p: ReplyPlan, summary: Summary | None, took: float
    ) -> None:
        if summary is None:  # nothing was sent: dry run, shadow, silent, or a failure
            if p.outcome is not None:
                outcome = p.outcome
            elif decision.shadow:  # a shadow prompt rule has no parts: it calls no model
                outcome = "shadow"
            elif not p.parts:
                outcome = "silent"
            else:
                outcome = "dry_run"
            summary = Summary(outcome, 0)
        self._log(
            decision, p.prompt_hash, p.result, p.parts, p.via, summary.sent, took, p.error, summary
        )

    def _log(
        self,
        decision: Decision,
        prompt_hash: str | None,
        result: ChainResult | None,
        parts: list[str],
        via: str,
        sent: bool,
        took: float,
        error: str | None,
        summary: Summary,
    ) -> None:
        record = response_record(
            decision,
            channel=self.channel,
            prompt_hash=prompt_hash,
            result=result,
            parts=parts,
            via=via,
            sent=sent,
            dry_run=self.dry_run,
            took=took,
            error=error,
            outcome=summary.outcome,
            parts_sent=summary.parts_sent,
            send_error=summary.error,
            hint=summary.hint,
        )
        self.metrics.outcomes.labels(summary.outcome).inc()
        if not self.responses.write(record) and self.responses.path is not None:
            self.metrics.log_write_errors.inc()
        if self.events is not None:
            self.events.reply(record, decision)
        verbs = {"sent": "replied", "dry_run": "would reply", "shadow": "would reply"}
        verb = verbs.get(summary.outcome) or (
            "stayed silent" if summary.outcome == "silent" else f"not sent: {summary.outcome}"
        )
        args = (
            record["user"],
            record["rule"],
            verb,
            record["model"] or "no model",
            f", {len(parts)} part(s)" if parts else "",
        )
        if summary.outcome in verbs or summary.outcome == "silent":
            log.info("%s -> %s %s (%s%s)", *args)  # at most what the channel sees
        else:  # overload and failures come in floods: the response log has every line
            self._quiet.log(logging.INFO, f"outcome:{summary.outcome}", "%s -> %s %s (%s%s)", *args)
