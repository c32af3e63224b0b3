"""The running bot: the wiring of the service's stages, and start/stop/run.

The data flows one way::

    bus in -> intake -> engine -> replies (responder -> pacer -> robot) -> bus out

* ``bus.py``: all NATS traffic (:class:`~.bus.NatsBus`, or a
  :class:`~.bus.MemoryBus` given as ``bus=`` where NATS is not the point).
* ``inlet.py``: decode, then ``intake.py`` (the package's) makes an event or
  an ``Ignored(reason)``; then the engine decides, synchronously.
* ``replies.py``: admission to a lane, spending, the reply task and its
  response-log line; ``responder.py`` turns a decision into a reply plan
  (render, chain, clean, fallback; no NATS); ``robot.py`` sends each part as
  a request kryten-robot must confirm, paced by ``pacing.py``.
* ``rulemanager.py``: loading, reloading aside and swapping the rule set.
* ``control.py``: commands (``commands.py`` reads them) and health;
  ``lifecycle.py``: startup, heartbeat, shutdown and restart on request.
* ``statesync.py``: cooldowns and budgets written behind to a state backend.
* ``timers.py``: (v1.1) sleeps until the next timer turn and hands it to the inlet.

Decisions never wait: the bus callback decodes, filters and evaluates an
event synchronously (microseconds) and hands a fired decision to a task; LLM
calls and pacing happen in those tasks, bounded in number.

(About 450 lines: ``start`` and ``stop`` are ordered sequences, each step
depending on the one before, and they read best whole and in one place.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from kryten_rules.clock import Clock, SystemClock
from kryten_rules.compile.ruleset import RuleSet
from kryten_rules.config import ServiceConfig
from kryten_rules.dispatch.llm import ChainRunner
from kryten_rules.dispatch.renderpool import RenderPool, RenderWorkerError
from kryten_rules.engine.evaluate import Decision, Engine
from kryten_rules.engine.state import MemoryStore, StateBackend
from kryten_rules.errors import KrytenRulesError
from kryten_rules.intake import Intake
from kryten_rules.natsauth import NatsAuthError, NatsRefused, auth_mode, connect_options
from kryten_rules.quietlog import QuietLog
from kryten_rules.redact import mask_credentials
from kryten_rules.service.bus import Bus, ConnectStopped, NatsBus, Subscription, connect_nats
from kryten_rules.service.control import RULES_COMMAND_SUBJECT, Control
from kryten_rules.service.embedded import EmbeddedNats, EmbeddedNatsError
from kryten_rules.service.events_out import EventsOut
from kryten_rules.service.inlet import Inlet
from kryten_rules.service.lifecycle import (
    DISCOVERY_SUBJECT,
    EXIT_RESTART,
    GROUP_RESTART_SUBJECT,
    ROBOT_STARTUP_SUBJECT,
    SERVICE,
    Lifecycle,
    lifecycle_subject,
)
from kryten_rules.service.metrics import HttpEndpoint, Metrics
from kryten_rules.service.pacing import Pacer
from kryten_rules.service.replies import (
    FIXED_CONCURRENCY,
    MAX_PENDING_FIXED,
    MAX_PENDING_REPLIES,
    Replies,
)
from kryten_rules.service.responder import NoUsableModel, Responder, prepare_llm, usable_chains
from kryten_rules.service.responselog import ResponseLog
from kryten_rules.service.robot import RobotSender
from kryten_rules.service.roomkv import load_playlist
from kryten_rules.service.rulemanager import (
    MAX_LOGGED_ERRORS,
    RELOAD_SUBJECT,
    RuleManager,
    RulesFailed,
)
from kryten_rules.service.statesync import StateSync, state_backend_for
from kryten_rules.service.timers import TimerTask
from kryten_rules.service.watch import FileWatcher
from kryten_rules.version import __version__
from kryten_rules.wire import UserList, parse_userlist_kv, subscribe_subject, userlist_bucket

__all__ = [
    "DISCOVERY_SUBJECT",
    "EXIT_RESTART",
    "FIXED_CONCURRENCY",
    "MAX_LOGGED_ERRORS",
    "MAX_PENDING_FIXED",
    "MAX_PENDING_REPLIES",
    "RELOAD_SUBJECT",
    "RULES_COMMAND_SUBJECT",
    "SEND_TIMEOUT",
    "SERVICE",
    "Bot",
    "StartupError",
    "Stopped",
    "lifecycle_subject",
]

log = logging.getLogger("kryten_rules.service")

SEND_TIMEOUT = 2.0  # kryten-robot answers in milliseconds; silence means it ignored us


class StartupError(KrytenRulesError, RuntimeError):
    """The service cannot start; the message says what the operator must fix."""


class Stopped(KrytenRulesError):
    """A stop was requested before the service was up; stopping is then a clean exit."""


class Bot:
    def __init__(
        self,
        config: ServiceConfig,
        *,
        nats_url: str | None = None,
        dry_run: bool | None = None,
        completion: Any = None,
        clock: Clock | None = None,
        heartbeat_interval: float | None = None,
        watch_interval: float | None = 1.0,
        metrics_port: int | None = None,
        serve_http: bool = True,
        pacing: tuple[int, float] = (4, 1.0),
        on_decision: Callable[[Decision], None] | None = None,
        send_timeout: float = SEND_TIMEOUT,
        bus: Bus | None = None,
        state_backend: StateBackend | None = None,
    ) -> None:
        self.config = config
        self.dry_run = config.dry_run if dry_run is None else dry_run
        self.clock = clock or SystemClock()
        self.metrics = Metrics()
        # None: the config's `heartbeat` (30 s, as the other Kryten services)
        self.heartbeat_interval = (
            config.heartbeat if heartbeat_interval is None else heartbeat_interval
        )
        # set by request_restart(): why the process should exit with EXIT_RESTART
        self.restart_reason: str | None = None
        self.watch_interval = watch_interval
        # None: the config's port; serve_http=False: no endpoint at all (the terminal chat)
        port = config.metrics_port if metrics_port is None else metrics_port
        self.metrics_port = port if serve_http else None
        self._nats_url = nats_url
        self._completion = completion
        self._pacing = pacing
        self.bus: Bus | None = bus  # given: used as it is (not connected, not closed here)
        self._own_bus = bus is None
        self._state_backend = state_backend  # None: state lives in this process only
        self.state_sync: StateSync | None = None
        self.embedded: EmbeddedNats | None = None
        self.chains: ChainRunner | None = None
        self.pacer: Pacer | None = None
        self.http: HttpEndpoint | None = None
        self.renderer: RenderPool | None = None  # templates render in its worker processes
        self.responses = ResponseLog(config.log.responses)
        self.started_at = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self.intake = Intake(
            bot_name=config.bot_name,
            ignore_users=config.ignore_users,
            slack=config.history_slack,
        )
        self._quiet = QuietLog(log)
        self.send_timeout = send_timeout
        self.robot = RobotSender(
            lambda: self.bus, config.cytube, self.metrics, timeout=send_timeout, quiet=self._quiet
        )
        self.replies = Replies(
            channel=config.cytube.channel,
            dry_run=self.dry_run,
            max_in_flight=config.max_in_flight,
            metrics=self.metrics,
            responses=self.responses,
            robot=self.robot,
            spawn=self._spawn,
            quiet=self._quiet,
        )
        self.rules = RuleManager(config, self.metrics, self._publish_if_connected)
        self.events_out = self.replies.events = EventsOut(
            lambda: self.bus,
            self.metrics,
            domain=config.cytube.domain,
            channel=config.cytube.channel,
            dry_run=self.dry_run,
            decisions=config.events.decisions,
            replies=config.events.replies,
            quiet=self._quiet,
        )
        self.control = Control(self)
        self.lifecycle = Lifecycle(self)
        self.inlet = Inlet(
            intake=self.intake,
            engine=lambda: self.rules.engine,
            replies=self.replies,
            clock=self.clock,
            metrics=self.metrics,
            quiet=self._quiet,
            on_decision=on_decision,
            events=self.events_out,
        )
        self.timers = TimerTask(lambda: self.rules.engine, self.inlet, self.clock, self._quiet)
        self._subs: list[Subscription] = []
        self._watcher: FileWatcher | None = None

    @property
    def on_decision(self) -> Callable[[Decision], None] | None:
        """Called with every decision that reached the rules (tests, the terminal chat)."""
        return self.inlet.on_decision

    @on_decision.setter
    def on_decision(self, hook: Callable[[Decision], None] | None) -> None:
        self.inlet.on_decision = hook

    # --- parts ----------------------------------------------------------------------

    @property
    def engine(self) -> Engine | None:
        return self.rules.engine

    @property
    def ruleset(self) -> RuleSet:
        return self.rules.ruleset

    @property
    def nc(self) -> Any:
        """The nats-py connection, when the bus is NATS (tests reach for it)."""
        return self.bus.nc if isinstance(self.bus, NatsBus) else None

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

    # --- start and stop ---------------------------------------------------------------

    async def start(self) -> None:
        self.started_at = self.intake.started_at = self.clock.now()
        try:
            self.responses.open()
        except OSError as exc:
            raise StartupError(
                f"cannot write the response log {self.responses.path}: {exc.strerror or exc} "
                "(check log.responses in the config and the directory's permissions)"
            ) from exc
        try:
            ruleset = await self.rules.load()
        except RulesFailed as exc:
            raise StartupError(str(exc)) from exc
        self.rules.engine = Engine(
            ruleset,
            clock=self.clock,
            channel=self.config.cytube.channel,
            bot_name=self.config.bot_name,
            ignore_users=self.config.ignore_users,
        )
        try:
            chains = usable_chains(self.config)
        except NoUsableModel as exc:
            raise StartupError(str(exc)) from exc
        self.chains = ChainRunner(
            self.config.models,
            chains,
            completion=self._completion,
            max_in_flight=self.config.max_in_flight,
        )
        renderer = RenderPool()
        try:
            await renderer.start()
        except RenderWorkerError as exc:
            raise StartupError(f"cannot start the template render workers: {exc}") from exc
        self.renderer = renderer
        self.replies.responder = Responder(
            self.config, self.chains, renderer, self.metrics, self._quiet
        )
        self.pacer = self.replies.pacer = Pacer(
            burst=self._pacing[0],
            per_second=self._pacing[1],
            max_age=self.config.reply_max_age,
            on_drop=lambda r: self.metrics.replies_dropped.labels(r).inc(),
        )
        self.pacer.start()
        # LiteLLM's import and first-call work (seconds) in a thread, while we connect
        warming = asyncio.ensure_future(prepare_llm(self.chains, self.config))
        try:
            if self.bus is None:
                if self.config.nats.embedded and not self._nats_url:
                    try:
                        self.embedded = await asyncio.to_thread(EmbeddedNats().start)
                    except EmbeddedNatsError as exc:  # a message and exit 2, not a traceback
                        raise StartupError(str(exc)) from exc
                    log.info("embedded nats-server listening on %s", self.embedded.url)
                await self._connect()
            await self._load_ranks()
            await self._load_state()
            assert self.bus is not None and self.engine is not None
            await load_playlist(self.bus, self.engine.room, self.intake, self.config.cytube.channel)
            await warming  # before the first event: the first reply is not the slow one
        finally:
            if not warming.done():
                warming.cancel()
        self._spawn(self.events_out.run(), "events-out")
        await self._subscribe()
        self._spawn(self.timers.run(), "timers")  # v1.1: sleeps until the next timer turn
        if self.watch_interval:
            self._watcher = FileWatcher(
                self.rules.watched_paths, self.watch_interval, lambda: self.reload("file change")
            )
            await self._watcher.prime()
            self._spawn(self._watcher.run(), "watcher")
        self._spawn(self.lifecycle.heartbeat(self.heartbeat_interval), "heartbeat")
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
        await self.lifecycle.publish("startup")
        log.info(
            "kryten-rules %s: %d rules, channel %s, bot %s%s",
            __version__,
            len(ruleset.rules),
            self.config.cytube.channel,
            self.config.bot_name,
            " (dry run)" if self.dry_run else "",
        )

    async def _load_state(self) -> None:
        """Cooldowns and budgets from the state backend, if there is one (a
        given one, or the config's ``state.store: jetstream``). An unreachable
        backend is a warning: the bot decides from memory and retries it."""
        engine = self.engine
        backend = self._state_backend or state_backend_for(self.config, self.bus, self._quiet)
        if backend is None or engine is None:
            return
        if not isinstance(engine.state, MemoryStore):
            raise StartupError("a state backend needs the engine's in-memory store")
        sync = StateSync(engine.state, backend, quiet=self._quiet)
        loaded = await sync.start()
        self.state_sync = sync
        self.metrics.state_backend_up.set_function(lambda: 1.0 if sync.healthy else 0.0)
        self.metrics.state_unflushed.set_function(lambda: float(sync.unflushed))
        self._spawn(sync.run(), "state-sync")
        if sync.loaded:
            log.info("state: %d running cooldowns and budgets loaded", loaded)

    async def _connect(self) -> None:
        nats_cfg = self.config.nats
        try:  # the embedded server is ours: it takes no credentials
            options = {} if self.embedded is not None else connect_options(nats_cfg, os.environ)
        except NatsAuthError as exc:
            raise StartupError(str(exc)) from None
        try:
            self.bus = await connect_nats(
                self.url,
                name=f"kryten-rules-{self.config.cytube.channel}",
                stop=self._stopping,
                on_state=lambda up: self.metrics.nats_connected.set(1 if up else 0),
                options=options,
                mode=auth_mode(nats_cfg, self.url),
            )
        except ConnectStopped as exc:
            raise Stopped(str(exc)) from exc
        except NatsRefused as exc:  # already one masked line
            raise StartupError(str(exc)) from None
        except Exception as exc:
            raise StartupError(
                mask_credentials(f"cannot connect to NATS at {self.url}: {exc}")
            ) from exc

    async def _load_ranks(self) -> None:
        """Ranks from Kryten-Robot's KV bucket, when it exists (chat events carry none)."""
        assert self.engine is not None and self.bus is not None
        try:
            value = await self.bus.kv_get(userlist_bucket(self.config.cytube.channel), "users")
            users = parse_userlist_kv(value or b"[]")
        except Exception as exc:
            log.info("no user list in KV yet (%s); ranks come from user events", type(exc).__name__)
            return
        for name, rank in users:
            self.engine.set_rank(name, rank)
        self.engine.room.observe(UserList(tuple(users)))  # who is there: `room.users`
        log.info("loaded %d user ranks from KV", len(users))

    async def _subscribe(self) -> None:
        bus = self.bus
        assert bus is not None
        events = subscribe_subject(self.config.cytube.channel)
        self._subs = [
            await bus.subscribe(events, self.inlet.on_message),
            await bus.subscribe(RULES_COMMAND_SUBJECT, self.control.on_command),
            await bus.subscribe(DISCOVERY_SUBJECT, self.lifecycle.announce),
            await bus.subscribe(ROBOT_STARTUP_SUBJECT, self.lifecycle.announce),
            await bus.subscribe(GROUP_RESTART_SUBJECT, self.lifecycle.on_group_restart),
        ]
        # start() returns only once the server has the subscriptions
        await bus.flush(timeout=10)

    @property
    def stopping(self) -> bool:
        """A stop was asked for (SIGTERM, SIGINT, :meth:`stop`), or the bot has stopped."""
        return self._stopping.is_set()

    def reload_in_background(self, reason: str = "SIGHUP") -> asyncio.Task[Any]:
        """Start a reload without waiting for it, as SIGHUP does; :meth:`stop` cancels it."""
        return self._spawn(self.reload(reason), "reload")

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _publish_if_connected(self, subject: str, data: bytes) -> None:
        bus = self.bus
        if bus is not None and bus.connected:
            await bus.publish(subject, data)

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
        if self.state_sync is not None:
            try:
                await self.state_sync.close()  # what was spent last, flushed
            except Exception as exc:
                log.warning("state: the last flush to the backend failed: %s", exc)
        bus = self.bus
        if bus is not None and bus.connected:
            with contextlib.suppress(Exception):
                await self.events_out.drain()  # the last replies' events, then goodbye
                reason = self.restart_reason or "Normal shutdown"
                await self.lifecycle.publish("shutdown", reason=reason)
                await bus.flush(timeout=2)
        if bus is not None and self._own_bus:
            with contextlib.suppress(Exception):
                await bus.close()
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
        loop.add_signal_handler(signal.SIGHUP, self.reload_in_background)
        try:
            await self.start()
            await self._stopping.wait()
        except Stopped:
            log.info("stop requested during start-up")
        finally:
            await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    def request_restart(self, reason: str) -> None:
        """Stop cleanly; ``kryten-rules run`` then exits with :data:`EXIT_RESTART`."""
        self.restart_reason = reason
        self._stopping.set()

    # --- what the other parts answer ---------------------------------------------------

    async def reload(self, reason: str = "request") -> dict[str, Any]:
        """Load and check the rule files in full; swap only a clean, changed set."""
        outcome = await self.rules.reload(reason)
        self.timers.poke()  # the timers' next turn may have moved
        return outcome

    def health(self) -> dict[str, Any]:
        return self.control.health()

    def status(self) -> dict[str, Any]:
        return self.rules.status()

    async def command(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """One ``kryten.rules.command`` request; the data of a successful reply."""
        return await self.control.command(name, args)

    def handle(self, subject: str, data: bytes) -> Decision | None:
        """Decode, filter and decide one event; start the reply if a rule fired."""
        return self.inlet.handle(subject, data)
