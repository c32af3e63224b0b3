"""The running bot: NATS in, engine, prompts, LLM chain, output, NATS out.

Only wiring lives here; each stage is its own module. Two rules shape it:

* Decisions never wait. The NATS callback decodes, filters and evaluates an
  event synchronously (microseconds) and hands a fired decision to a task;
  LLM calls and pacing happen in those tasks, bounded in number.
* No decision vanishes. A decision that fired is admitted to its lane (model
  replies and fixed replies each have their own, see ``lanes.py``) before
  its cooldown and budget are spent; one that does not fit is logged as
  ``overloaded`` with its state untouched. Every admitted one gets its
  response-log line once kryten-robot has confirmed or refused its parts.
* The rule set changes only between two events. A reload builds the new set
  in a worker thread, then swaps it on the event loop in one assignment, so no
  event is lost, handled twice, or seen by half-swapped rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats.errors

from .. import __version__
from ..clock import Clock, SystemClock
from ..config import ChainConfig, ServiceConfig
from ..diagnostics import Diagnostic
from ..engine import Decision, Engine
from ..events import ChatEvent
from ..explain import explain_event_isolated
from ..intake import Ignored, IgnoreReason, Intake
from ..llm import ChainRunner, check_api_keys
from ..llm.chain import ChainResult
from ..load import build_ruleset
from ..output import prepare_reply
from ..prompts import render_isolated
from ..quietlog import QuietLog
from ..redact import mask_credentials
from ..renderworker import RenderPool, RenderWorkerError
from ..ruleset import RuleSet
from ..treewalk import files_under
from ..units import parse_rank
from ..wire import (
    COMMAND_SUBJECT,
    MalformedEvent,
    decode_message,
    parse_userlist_kv,
    pm_command,
    rank_changes,
    say_command,
    subscribe_subject,
    userlist_bucket,
)
from .delivery import (
    ROBOT_FAILURES,
    SEND_FAILED,
    SHUTDOWN,
    Delivery,
    no_answer,
    no_robot,
    robot_delivery,
    send_failed,
)
from .embedded import EmbeddedNats, EmbeddedNatsError
from .lanes import Lane
from .metrics import HttpEndpoint, Metrics
from .outcome import PartOutcomes, Summary
from .pacing import Outgoing, Pacer
from .responselog import ResponseLog, response_record
from .watch import FileWatcher
from .worker import in_daemon_thread

log = logging.getLogger("kryten_rules.service")

SERVICE = "rules"
RULES_COMMAND_SUBJECT = "kryten.rules.command"
RELOAD_SUBJECT = "kryten.events.rules.reload"
DISCOVERY_SUBJECT = "kryten.service.discovery.poll"
MAX_PENDING_REPLIES = 64  # model replies being prepared at once (admitted, not yet queued)
MAX_PENDING_FIXED = 256  # fixed replies likewise; they take microseconds each
FIXED_CONCURRENCY = 16
SEND_TIMEOUT = 2.0  # kryten-robot answers in milliseconds; silence means it ignored us
MAX_LOGGED_ERRORS = 5  # of a failed reload; the reload event carries all of them


class StartupError(RuntimeError):
    """The service cannot start; the message says what the operator must fix."""


class Stopped(Exception):
    """A stop was requested before the service was up; stopping is then a clean exit."""


def lifecycle_subject(event: str) -> str:
    return f"kryten.lifecycle.{SERVICE}.{event}"


class Bot:
    def __init__(
        self,
        config: ServiceConfig,
        *,
        nats_url: str | None = None,
        dry_run: bool | None = None,
        completion: Any = None,
        clock: Clock | None = None,
        heartbeat_interval: float = 15.0,
        watch_interval: float | None = 1.0,
        metrics_port: int | None = None,
        serve_http: bool = True,
        pacing: tuple[int, float] = (4, 1.0),
        on_decision: Callable[[Decision], None] | None = None,
        send_timeout: float = SEND_TIMEOUT,
    ) -> None:
        self.config = config
        self.dry_run = config.dry_run if dry_run is None else dry_run
        self.clock = clock or SystemClock()
        self.metrics = Metrics()
        self.heartbeat_interval = heartbeat_interval
        self.watch_interval = watch_interval
        # None: the config's port; serve_http=False: no endpoint at all (the terminal chat)
        port = config.metrics_port if metrics_port is None else metrics_port
        self.metrics_port = port if serve_http else None
        self.on_decision = on_decision
        self._nats_url = nats_url
        self._completion = completion
        self._pacing = pacing
        self.nc: Any = None
        self.embedded: EmbeddedNats | None = None
        self.engine: Engine | None = None
        self.chains: ChainRunner | None = None
        self.pacer: Pacer | None = None
        self.http: HttpEndpoint | None = None
        self.renderer: RenderPool | None = None  # templates render in its worker processes
        self.responses = ResponseLog(config.log.responses)
        self.started_at = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pending = 0
        self._stopping = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._last_reload: dict[str, Any] | None = None
        self._history_logged = -1e9
        self.intake = Intake(
            bot_name=config.bot_name,
            ignore_users=config.ignore_users,
            slack=config.history_slack,
        )
        self._quiet = QuietLog(log)
        self.send_timeout = send_timeout
        # model replies and fixed ones are admitted separately: a fixed reply
        # never waits behind model calls
        self._llm_lane = Lane(
            "model", limit=MAX_PENDING_REPLIES, concurrency=max(1, config.max_in_flight)
        )
        self._fixed_lane = Lane("fixed", limit=MAX_PENDING_FIXED, concurrency=FIXED_CONCURRENCY)
        self._send_failures = 0
        self._last_send_failure: dict[str, Any] | None = None
        self._sending_fails = False  # the robot's latest answer was not a confirmation
        self._subs: list[Any] = []
        self._watcher: FileWatcher | None = None

    # --- start and stop ---------------------------------------------------------

    @property
    def ruleset(self) -> RuleSet:
        assert self.engine is not None
        return self.engine.ruleset

    @property
    def url(self) -> str:
        if self._nats_url:
            return self._nats_url
        if self.embedded is not None:
            return self.embedded.url
        return self.config.nats.url

    @property
    def safe_url(self) -> str:
        """:attr:`url` as it may be logged or shown: credentials masked."""
        return mask_credentials(self.url)

    def _usable_chains(self) -> dict[str, ChainConfig]:
        """Chains without the models whose API key is missing (named in the log)."""
        missing_models = set()
        for problem in check_api_keys(self.config.models):
            log.error("%s: those models are disabled", problem)
        for name, m in self.config.models.items():
            if m.api_key_env and not os.environ.get(m.api_key_env):
                missing_models.add(name)
        chains = {}
        for name, chain in self.config.chains.items():
            models = tuple(m for m in chain.models if m not in missing_models)
            if not models:
                raise StartupError(
                    f"chain {name!r} has no usable model: set the API key variables above, "
                    "or add a model that needs none"
                )
            chains[name] = replace(chain, models=models)
        return chains

    async def start(self) -> None:
        self.started_at = self.intake.started_at = self.clock.now()
        try:
            self.responses.open()
        except OSError as exc:
            raise StartupError(
                f"cannot write the response log {self.responses.path}: {exc.strerror or exc} "
                "(check log.responses in the config and the directory's permissions)"
            ) from exc
        ruleset, diags = await asyncio.to_thread(build_ruleset, self.config.rules, self.config)
        if ruleset is None:
            for d in diags:
                log.error("%s: %s[%s]: %s", d.span, d.severity, d.code, d.message)
            raise StartupError(f"the rules have {sum(d.is_error for d in diags)} error(s)")
        self.engine = Engine(
            ruleset,
            clock=self.clock,
            channel=self.config.cytube.channel,
            bot_name=self.config.bot_name,
            ignore_users=self.config.ignore_users,
        )
        self.metrics.rules.set(len(ruleset.rules))
        self.chains = ChainRunner(
            self.config.models,
            self._usable_chains(),
            completion=self._completion,
            max_in_flight=self.config.max_in_flight,
        )
        renderer = RenderPool()
        try:
            await renderer.start()
        except RenderWorkerError as exc:
            raise StartupError(f"cannot start the template render workers: {exc}") from exc
        self.renderer = renderer
        self.pacer = Pacer(
            burst=self._pacing[0],
            per_second=self._pacing[1],
            max_age=self.config.reply_max_age,
            on_drop=lambda r: self.metrics.replies_dropped.labels(r).inc(),
        )
        self.pacer.start()
        # LiteLLM's import and first-call work (seconds) in a thread, while we connect
        warming = asyncio.ensure_future(self._prepare_llm())
        try:
            if self.config.nats.embedded and not self._nats_url:
                try:
                    self.embedded = await asyncio.to_thread(EmbeddedNats().start)
                except EmbeddedNatsError as exc:  # a message and exit 2, not a traceback
                    raise StartupError(str(exc)) from exc
                log.info("embedded nats-server listening on %s", self.embedded.url)
            await self._connect()
            await self._load_ranks()
            await warming  # before the first event: the first reply is not the slow one
        finally:
            if not warming.done():
                warming.cancel()
        await self._subscribe()
        if self.watch_interval:
            self._watcher = FileWatcher(
                self._watched_paths, self.watch_interval, lambda: self.reload("file change")
            )
            await self._watcher.prime()
            self._spawn(self._watcher.run(), "watcher")
        self._spawn(self._heartbeat(), "heartbeat")
        if self.metrics_port is not None:
            host = self.config.metrics_host
            http = HttpEndpoint(self.metrics, self.health, host=host, port=self.metrics_port)
            try:
                await http.start()
            except OSError as exc:  # the bot is more important than its dashboard
                log.error(
                    "health and metrics endpoint not started: %s port %d: %s",
                    host,
                    self.metrics_port,
                    exc.strerror or exc,
                )
            else:
                self.http = http
                log.info("health and metrics on http://%s/metrics", http.address)
        await self._publish_lifecycle("startup")
        log.info(
            "kryten-rules %s: %d rules, channel %s, bot %s%s",
            __version__,
            len(ruleset.rules),
            self.config.cytube.channel,
            self.config.bot_name,
            " (dry run)" if self.dry_run else "",
        )

    async def _prepare_llm(self) -> None:
        """Import and warm up LiteLLM off the event loop (see LiteLLMCompletion.prepare)."""
        if not self.config.models or self.chains is None:
            return
        t0 = time.perf_counter()
        try:
            await self.chains.prepare()
        except Exception as exc:  # the calls will fail and say why; the bot still starts
            log.error("preparing LiteLLM failed: %s: %s", type(exc).__name__, exc)
            return
        log.info("LiteLLM ready in %.1fs", time.perf_counter() - t0)

    async def _connect(self) -> None:
        import nats

        async def disconnected() -> None:
            self.metrics.nats_connected.set(0)
            if not self._stopping.is_set():
                log.warning("nats: disconnected from %s", self.safe_url)

        async def reconnected() -> None:
            self.metrics.nats_connected.set(1)
            log.info("nats: reconnected to %s; subscriptions restored", self.safe_url)

        last_warning = [-1e9]

        async def error(exc: Exception) -> None:
            log.debug("nats: %s", mask_credentials(str(exc)))
            now = time.monotonic()
            if not (self.nc is not None and self.nc.is_connected) and now - last_warning[0] > 30:
                last_warning[0] = now
                log.warning(
                    "nats: cannot reach %s (%s); retrying",
                    self.safe_url,
                    mask_credentials(str(exc)),
                )

        # nats-py retries even the first connect for ever (max_reconnect_attempts=-1),
        # so a stop request must be able to interrupt it.
        connect = asyncio.ensure_future(
            nats.connect(
                self.url,
                name=f"kryten-rules-{self.config.cytube.channel}",
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error,
                connect_timeout=2,
            )
        )
        stop = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({connect, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not connect.done():
            connect.cancel()
            await asyncio.gather(connect, return_exceptions=True)
            raise Stopped("stopped before NATS was reachable")
        try:
            self.nc = connect.result()
        except Exception as exc:
            raise StartupError(
                mask_credentials(f"cannot connect to NATS at {self.url}: {exc}")
            ) from exc
        self.metrics.nats_connected.set(1)
        log.info("nats: connected to %s", self.safe_url)

    async def _load_ranks(self) -> None:
        """Ranks from Kryten-Robot's KV bucket, when it exists (chat events carry none)."""
        assert self.engine is not None
        try:
            kv = await self.nc.jetstream().key_value(userlist_bucket(self.config.cytube.channel))
            entry = await kv.get("users")
            users = parse_userlist_kv(entry.value or b"[]")
        except Exception as exc:
            log.info("no user list in KV yet (%s); ranks come from user events", type(exc).__name__)
            return
        for name, rank in users:
            self.engine.set_rank(name, rank)
        log.info("loaded %d user ranks from KV", len(users))

    async def _subscribe(self) -> None:
        nc = self.nc
        self._subs = [
            await nc.subscribe(subscribe_subject(self.config.cytube.channel), cb=self._on_event),
            await nc.subscribe(RULES_COMMAND_SUBJECT, cb=self._on_command),
            await nc.subscribe(DISCOVERY_SUBJECT, cb=self._on_discovery),
        ]
        # start() returns only once the server has the subscriptions. nats-py 2.16's
        # flush can overtake its own write buffer, so one round trip is not proof.
        await nc.flush()
        await nc.flush()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self, grace: float = 3.0) -> None:
        """Stop intake, let in-flight replies finish for ``grace`` seconds, then cancel."""
        self._stopping.set()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs = []
        busy = [t for t in self._tasks if t.get_name() == "respond"]
        if busy:
            await asyncio.wait(busy, timeout=grace)
        if self.pacer is not None:
            await self.pacer.drain(timeout=max(0.5, grace / 2))
            await self.pacer.stop()  # what is still queued gets the outcome "shutdown"
        busy = [t for t in self._tasks if t.get_name() == "respond"]
        if busy:  # their parts all have outcomes now: let them write their lines
            await asyncio.wait(busy, timeout=0.5)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.renderer is not None:
            await self.renderer.close()
        if self.nc is not None and self.nc.is_connected:
            with contextlib.suppress(Exception):
                await self._publish_lifecycle("shutdown")
                await self.nc.flush(timeout=2)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        if self.http is not None:
            await self.http.stop()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.close)
            self.embedded = None
        log.info("kryten-rules stopped")

    async def run_forever(self) -> None:
        """Start, serve until SIGTERM/SIGINT, stop cleanly. SIGHUP reloads the rules."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload("SIGHUP"), "reload"))
        try:
            await self.start()
            await self._stopping.wait()
        except Stopped:
            log.info("stop requested during start-up")
        finally:
            await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    # --- events -------------------------------------------------------------------

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

    async def _on_event(self, msg: Any) -> None:
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
        engine = self.engine
        assert engine is not None
        engine.apply_ranks(rank_changes(decoded.event))
        now = self.clock.now()
        chat = self.intake.admit(decoded, now)
        if chat is None:
            return None
        if isinstance(chat, Ignored):
            self._note_ignored(chat)
            return None
        # decided without spending: only an admitted reply spends its cooldown and budget
        decision = engine.evaluate(replace(chat, at=now), commit=False)
        self.metrics.decision_latency.observe(time.perf_counter() - t0)
        if decision.ignored:
            self.metrics.ignored.labels(decision.ignored).inc()
            return decision
        for t in decision.trace:
            if t.reason != "no_match":
                self.metrics.decisions.labels(t.rule, t.outcome, t.reason or "").inc()
        if self.on_decision is not None:
            self.on_decision(decision)
        if decision.fired is not None:
            self._dispatch(decision, engine)
        return decision

    def _lane(self, decision: Decision) -> Lane:
        rule = decision.rule
        assert rule is not None
        return self._llm_lane if rule.needs_llm and not decision.shadow else self._fixed_lane

    def _no_room(self, lane: Lane) -> str | None:
        """Why a reply cannot be admitted now, or None.

        Besides its lane's limit, the send queue must have room for one more
        message than the replies already being prepared will put in it.
        """
        assert self.pacer is not None
        if not lane.has_room():
            return f"{lane.admitted} {lane.name} replies in progress (the limit)"
        preparing = self._llm_lane.admitted + self._fixed_lane.admitted
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

    def _dispatch(self, decision: Decision, engine: Engine) -> None:
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
            via = self._via(decision.rule.respond_via, decision.event)
            self._log_response(
                decision, None, None, [], via, False, 0.0, None, Summary("overloaded", 0, why)
            )
            return
        engine.commit(decision)
        lane.admit()
        self._pending += 1
        self.metrics.in_flight.inc()
        self._spawn(self._reply(decision, engine.ruleset, lane, self.pacer.now()), "respond")

    # --- replies ------------------------------------------------------------------

    async def _reply(
        self, decision: Decision, ruleset: RuleSet, lane: Lane, received: float
    ) -> None:
        """One admitted reply: prepare it in its lane, wait for its parts' outcomes, log it.

        The lane's slot is held only while preparing; waiting for the pacer
        and the robot holds nothing but this task (bounded by the send queue).
        """
        t0 = time.perf_counter()
        prepared: _Prepared | None = None
        summary: Summary | None = None
        try:
            try:
                async with lane.slot:
                    prepared = await self._respond(decision, ruleset, received)
            finally:
                lane.release()
            if prepared.sends is not None:
                summary = await prepared.sends.wait()
            self._finish(decision, prepared, summary, time.perf_counter() - t0)
        except asyncio.CancelledError:  # shutdown: still say what became of it
            if prepared is not None and prepared.sends is not None:
                done = prepared.sends.summary()
                summary = Summary(SHUTDOWN, done.parts_sent, "the service stopped")
            else:
                summary = Summary(SHUTDOWN, 0, "the service stopped before the reply was ready")
            prepared = prepared or _Prepared(None, None, [], "", None, None)
            self._finish(decision, prepared, summary, time.perf_counter() - t0)
            raise
        except Exception:
            self._quiet.exception("reply", "rule %s: logging the reply failed", decision.fired)
        finally:
            self._pending -= 1
            self.metrics.in_flight.dec()

    def _finish(
        self, decision: Decision, p: _Prepared, summary: Summary | None, took: float
    ) -> None:
        if summary is None:  # nothing was sent: dry run, shadow, silent, or a failure
            if p.outcome is not None:
                outcome = p.outcome
            elif not p.parts:
                outcome = "silent"
            else:
                outcome = "shadow" if decision.shadow else "dry_run"
            summary = Summary(outcome, 0)
        self._log_response(
            decision, p.prompt_hash, p.result, p.parts, p.via, summary.sent, took, p.error, summary
        )

    async def _respond(self, decision: Decision, ruleset: RuleSet, received: float) -> _Prepared:
        """Render, call the chain, clean and split; hand the parts to the pacer."""
        assert self.pacer is not None and self.chains is not None
        rule = decision.rule
        assert rule is not None
        result: ChainResult | None = None
        try:
            assert self.renderer is not None
            rendered = await render_isolated(decision, ruleset, self.renderer)
            text = rendered.reply
            if rendered.messages is not None and not decision.shadow:
                result = await self.chains.run(rule.chain, rendered.messages)
                for a in result.attempts:
                    self.metrics.llm_attempts.labels(a.model, a.outcome).inc()
                    if a.called:
                        self.metrics.llm_latency.labels(a.model).observe(a.latency)
                    if a.cost:
                        self.metrics.llm_cost.labels(a.model).inc(a.cost)
                text = result.text if result.ok else rendered.fallback
            names = [ruleset.persona.name] if ruleset.persona else []
            names += [self.config.bot_name] if self.config.bot_name else []
            parts = await self._prepare(text, names, rule.max_parts)
            error = rendered.error
            if not parts and text is not None:
                # All markup, filler or labels: saying nothing would look like a dead
                # bot, so this is answered as a failed model call is.
                error = error or "the reply was empty after cleaning"
                if rendered.fallback is not None and rendered.fallback != text:
                    parts = await self._prepare(rendered.fallback, names, rule.max_parts)
                    if parts:
                        error += "; used fallback_reply"
                if not parts:
                    self.metrics.replies_dropped.labels("empty").inc()
            via = self._via(rule.respond_via, decision.event)
            send = bool(parts) and not self.dry_run and not decision.shadow
            sends = PartOutcomes(len(parts)) if send else None
            if sends is not None:
                for i, part in enumerate(parts):
                    self.pacer.submit(
                        Outgoing(
                            self._sender(via, decision.event.user, part, sends, i),
                            received,
                            f"{rule.id} part {i + 1}",
                            sends.recorder(i),
                        )
                    )
            return _Prepared(rendered.prompt_hash, result, parts, via, sends, error)
        except Exception as exc:
            self._quiet.exception(
                f"prepare:{rule.id}", "rule %s: preparing the reply failed", rule.id
            )
            via = self._via(rule.respond_via, decision.event)
            error = f"{type(exc).__name__}: {exc}"
            return _Prepared(None, result, [], via, None, error[:300], "error")

    async def _prepare(self, text: str | None, names: list[str], max_parts: int) -> list[str]:
        """Clean and split a reply in a worker thread: linear and capped, but a model
        can still send megabytes, and the loop must keep answering meanwhile."""
        if not text:
            return []
        return await asyncio.to_thread(
            prepare_reply,
            text,
            persona_names=names,
            max_length=self.config.cytube.max_message_length,
            max_parts=max_parts,
        )

    @staticmethod
    def _via(respond_via: str, event: ChatEvent) -> str:
        if respond_via == "same":
            return "pm" if event.kind == "pm" else "chat"
        return respond_via

    def _sender(
        self, via: str, user: str, text: str, sends: PartOutcomes, index: int
    ) -> Callable[[], Awaitable[Delivery]]:
        cy = self.config.cytube

        async def send() -> Delivery:
            skipped = sends.skip_reason(index)  # an earlier part failed: do not send the rest
            if skipped is not None:
                return skipped
            if via == "pm":
                data = pm_command(user, text, domain=cy.domain, channel=cy.channel)
            else:
                data = say_command(text, domain=cy.domain, channel=cy.channel)
            delivery = await self._ask_robot(data)
            self._note_delivery(delivery, via)
            return delivery

        return send

    async def _ask_robot(self, data: bytes) -> Delivery:
        """Send one command as a request; only the robot's confirmation counts as sent."""
        cy = self.config.cytube
        try:
            answer = await self.nc.request(COMMAND_SUBJECT, data, timeout=self.send_timeout)
        except nats.errors.NoRespondersError:
            return no_robot()
        except nats.errors.TimeoutError:
            if not self.nc.is_connected:  # the answer was lost with the connection
                return Delivery(SEND_FAILED, "the NATS connection dropped before the answer")
            return no_answer(self.send_timeout, domain=cy.domain, channel=cy.channel)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # not connected, draining, ...
            return send_failed(exc)
        return robot_delivery(answer.data)

    def _note_delivery(self, delivery: Delivery, via: str) -> None:
        """Count a message's outcome; remember failures for health."""
        if delivery.sent:
            self.metrics.replies.labels(via).inc()
            self._sending_fails = False
            return
        if delivery.status not in ROBOT_FAILURES:
            return
        self.metrics.send_failures.labels(delivery.status).inc()
        self._send_failures += 1
        self._sending_fails = True
        self._last_send_failure = {
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

    def _log_response(
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
            channel=self.config.cytube.channel,
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

    # --- reload -------------------------------------------------------------------

    def _watched_paths(self) -> list[Path]:
        paths: list[Path] = []
        for p in self.config.rules:
            if p.is_dir():
                paths += [f for f in files_under(p)[0] if f.is_file()]  # no recursion
            else:
                paths.append(p)
        if self.engine is not None:
            paths += [Path(s) for s in self.ruleset.sources]
        return paths

    async def reload(self, reason: str = "request") -> dict[str, Any]:
        """Load and check the rule files in full; swap only a clean, changed set.

        Whatever goes wrong (a diagnostic, or an exception while building or
        installing the new set) the running set stays whole, the outcome is
        published on ``kryten.events.rules.reload`` and health shows it.
        """
        async with self._reload_lock:
            t0 = time.perf_counter()
            try:
                outcome = await self._reload(reason, t0)
            except Exception as exc:
                log.exception("reload (%s) failed; the running rules stay", reason)
                self.metrics.reloads.labels("failed").inc()
                old = self.ruleset
                outcome = {
                    "ok": False,
                    "reason": reason,
                    "files": [str(f) for f in old.files],
                    "rules": len(old.rules),
                    "diagnostics": [],
                    "error": f"{type(exc).__name__}: {exc}",
                    "took_ms": round((time.perf_counter() - t0) * 1000, 1),
                    "changed": False,
                }
            self._last_reload = {**outcome, "at": datetime.now(UTC).isoformat()}
            if self.nc is not None and self.nc.is_connected:
                try:
                    await self.nc.publish(RELOAD_SUBJECT, json.dumps(outcome, default=str).encode())
                except Exception as exc:
                    log.warning("reload (%s): the reload event was not published: %s", reason, exc)
            return outcome

    async def _reload(self, reason: str, t0: float) -> dict[str, Any]:
        config = self.config
        log.info("reload (%s): loading the rules", reason)
        ruleset, diags = await in_daemon_thread(
            lambda: build_ruleset(config.rules, config), "kryten-rules-reload"
        )
        took = round((time.perf_counter() - t0) * 1000, 1)
        engine = self.engine
        assert engine is not None
        outcome: dict[str, Any] = {
            "ok": ruleset is not None,
            "reason": reason,
            "files": [str(f) for f in (ruleset or engine.ruleset).files],
            "rules": len((ruleset or engine.ruleset).rules),
            "diagnostics": [d.as_dict() for d in diags],
            "took_ms": took,
            "changed": False,
        }
        if ruleset is None:
            self.metrics.reloads.labels("failed").inc()
            errors = [d for d in diags if d.is_error]
            more = len(errors) - MAX_LOGGED_ERRORS
            log.error(
                "reload (%s) failed; the running rules stay: %s%s",
                reason,
                "; ".join(_short(d) for d in errors[:MAX_LOGGED_ERRORS]),
                f" (and {more} more: `kryten-rules validate` lists them)" if more > 0 else "",
            )
        elif ruleset.digest == engine.ruleset.digest:
            self.metrics.reloads.labels("unchanged").inc()
            log.debug("reload (%s): no change", reason)
        else:
            engine.swap(ruleset)  # on the loop, between two events; all or nothing
            outcome["changed"] = True
            self.metrics.reloads.labels("ok").inc()
            self.metrics.rules.set(len(ruleset.rules))
            log.info(
                "reload (%s): %d rules from %d files in %.0f ms",
                reason,
                len(ruleset.rules),
                len(ruleset.files),
                took,
            )
        return outcome

    # --- lifecycle, discovery, commands ---------------------------------------------

    def _lifecycle_payload(self) -> dict[str, Any]:
        return {
            "service": SERVICE,
            "version": __version__,
            "hostname": socket.gethostname(),
            "timestamp": datetime.now(UTC).isoformat(),
            "uptime_seconds": round(self.clock.now() - self.started_at, 3),
            "metadata": {
                "channel": self.config.cytube.channel,
                "rules": len(self.ruleset.rules) if self.engine else 0,
                "dry_run": self.dry_run,
            },
        }

    async def _publish_lifecycle(self, event: str) -> None:
        payload = mask_credentials(json.dumps(self._lifecycle_payload()))
        await self.nc.publish(lifecycle_subject(event), payload.encode())

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if self.nc is not None and self.nc.is_connected:
                with contextlib.suppress(Exception):
                    await self._publish_lifecycle("heartbeat")

    async def _on_discovery(self, msg: Any) -> None:
        with contextlib.suppress(Exception):
            await self._publish_lifecycle("startup")

    def health(self) -> dict[str, Any]:
        """``degraded`` also while kryten-robot's latest answer was not a confirmation:
        the bot is mute then, and ``last_send_failure`` says why and what to check."""
        connected = bool(self.nc is not None and self.nc.is_connected)
        last = self._last_reload
        reload_failed = last is not None and not last["ok"]
        ok = connected and self.engine is not None and not self._sending_fails
        return {
            # also degraded while the last reload failed: the running rules are
            # then not what the files say
            "status": "ok" if ok and not reload_failed else "degraded",
            "last_reload": None
            if last is None
            else {k: last.get(k) for k in ("ok", "reason", "at", "error", "changed")}
            | {"errors": sum(d["severity"] == "error" for d in last["diagnostics"])},
            "service": SERVICE,
            "version": __version__,
            "nats_connected": connected,
            "nats_url": self.safe_url,
            "rules": len(self.ruleset.rules) if self.engine else 0,
            "uptime_seconds": round(self.clock.now() - self.started_at, 3),
            "replies_in_progress": self._pending,
            "send_queue": self.pacer.pending if self.pacer else 0,
            "sending": "failing" if self._sending_fails else "ok",
            "send_failures": self._send_failures,
            "last_send_failure": self._last_send_failure,
            "dry_run": self.dry_run,
        }

    def status(self) -> dict[str, Any]:
        rs = self.ruleset
        return {
            "files": [str(f) for f in rs.files],
            "rules": len(rs.rules),
            "rule_ids": [r.id for r in rs.rules],
            "digest": rs.digest,
            "last_reload": self._last_reload,
        }

    async def command(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """One ``kryten.rules.command`` request; the data of a successful reply."""
        if name == "system.ping":
            return {"pong": True, "service": SERVICE, "version": __version__}
        if name == "system.health":
            return self.health()
        if name == "rules.status":
            return self.status()
        if name == "rules.reload":
            return await self.reload("command")
        if name == "rules.explain":
            text = args.get("text")
            if not isinstance(text, str):
                raise ValueError("args.text (the chat line) is required")
            media = args.get("media")
            assert self.renderer is not None
            return await explain_event_isolated(
                self.ruleset,
                text,
                self.renderer,
                user=str(args.get("user", "someone")),
                rank=parse_rank(args.get("rank", 1)),
                kind=str(args.get("on", "chatmsg")),
                media_title=media if isinstance(media, str) else None,
                media_duration=float(args.get("media_duration", 5400)),
                channel=self.config.cytube.channel,
            )
        raise ValueError(f"unknown command {name!r}")

    async def _on_command(self, msg: Any) -> None:
        # nats-py awaits a subscription's callbacks one after another: answered
        # inline, a `rules.reload` would hold every later command (a ping) behind it.
        self._spawn(self._answer_command(msg), "command")

    async def _answer_command(self, msg: Any) -> None:
        name = "?"
        try:
            req = json.loads(msg.data)
            if not isinstance(req, dict):
                raise ValueError("the request must be a JSON object")
            name = str(req.get("command", ""))
            args = req.get("args") or {}
            if not isinstance(args, dict):
                raise ValueError("args must be an object")
            reply = {
                "service": SERVICE,
                "command": name,
                "success": True,
                "data": await self.command(name, args),
            }
        except Exception as exc:
            reply = {"service": SERVICE, "command": name, "success": False, "error": str(exc)}
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(mask_credentials(json.dumps(reply, default=str)).encode())


@dataclass(slots=True)
class _Prepared:
    """A reply made ready: what the response log needs, and its parts' outcomes."""

    prompt_hash: str | None
    result: ChainResult | None
    parts: list[str]
    via: str
    sends: PartOutcomes | None  # None: nothing handed to the pacer
    error: str | None
    outcome: str | None = None  # known without sending ("error")


def _short(d: Diagnostic) -> str:
    return f"{d.span}: [{d.code}] {d.message}"
