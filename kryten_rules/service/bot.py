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
* ``statesync.py``: state written behind to a backend; ``timers.py``: (v1.1) timer
  turns to the inlet; ``startup.py``: the steps whose failure the operator must fix.
* ``channel.py``: one channel's parts; ``firstchannel.py``: ``bot.engine``,
  ``bot.rules``, ... as the first (with ``cytube`` + ``rules``, the only) one's.

Decisions never wait: the bus callback decodes, filters and evaluates an
event synchronously (microseconds) and hands a fired decision to a task; LLM
calls and pacing happen in those tasks, bounded in number.

A process serves one or several channels (``channels:``): each is a
:class:`~.channel.ChannelRuntime` (its rules, state, pacer, sender, watcher);
the bot owns what they share (bus, render pool, model chains, response log,
metrics, lifecycle, commands) and starts and stops them in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from kryten_rules.clock import Clock, SystemClock
from kryten_rules.config import ServiceConfig
from kryten_rules.dispatch.llm import ChainRunner
from kryten_rules.dispatch.renderpool import RenderPool
from kryten_rules.engine.evaluate import Decision
from kryten_rules.quietlog import QuietLog
from kryten_rules.redact import mask_credentials
from kryten_rules.service.bus import Bus, NatsBus, Subscription
from kryten_rules.service.channel import (
    ChannelRuntime,
    StateBackends,
    load_states,
    pick_channel,
    reload_all,
    route,
    stop_pacers,
)
from kryten_rules.service.control import RULES_COMMAND_SUBJECT, Control
from kryten_rules.service.embedded import EmbeddedNats
from kryten_rules.service.failover import hold_channels, release, stop_deciding
from kryten_rules.service.firstchannel import FirstChannel
from kryten_rules.service.lifecycle import (
    DISCOVERY_SUBJECT,
    EXIT_RESTART,
    GROUP_RESTART_SUBJECT,
    ROBOT_STARTUP_SUBJECT,
    SERVICE,
    Lifecycle,
    lifecycle_subject,
)
from kryten_rules.service.metrics import HttpEndpoint, Metrics, serve_http
from kryten_rules.service.replies import (
    FIXED_CONCURRENCY,
    MAX_PENDING_FIXED,
    MAX_PENDING_REPLIES,
)
from kryten_rules.service.responder import prepare_llm
from kryten_rules.service.responselog import ResponseLog
from kryten_rules.service.rulemanager import (
    MAX_LOGGED_ERRORS,
    RELOAD_SUBJECT,
    RulesFailed,
)
from kryten_rules.service.startup import (
    StartupError,
    Stopped,
    connect,
    make_chains,
    open_response_log,
    start_embedded,
    start_renderer,
)

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


class Bot(FirstChannel):
    """The process: the parts every channel shares, and one :class:`ChannelRuntime` each."""

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
        pacing: tuple[int, float] | None = None,  # None: the config's
        on_decision: Callable[[Decision], None] | None = None,
        send_timeout: float = SEND_TIMEOUT,
        bus: Bus | None = None,
        state_backend: StateBackends | None = None,
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
        self._pacing = pacing if pacing is not None else config.pacing
        self.bus: Bus | None = bus  # given: used as it is (not connected, not closed here)
        self._own_bus = bus is None
        self._state_backend = state_backend  # None: state lives in this process only
        self.embedded: EmbeddedNats | None = None
        self.chains: ChainRunner | None = None
        self.http: HttpEndpoint | None = None
        self.renderer: RenderPool | None = None  # templates render in its worker processes
        self.responses = ResponseLog(config.log.responses)
        self.started_at = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self._quiet = QuietLog(log)
        self.send_timeout = send_timeout
        self.channels = [
            ChannelRuntime(
                config,
                channel,
                metrics=self.metrics,
                clock=self.clock,
                responses=self.responses,
                bus=lambda: self.bus,
                spawn=self._spawn,
                report=self._publish_if_connected,
                quiet=self._quiet,
                dry_run=dry_run,
                send_timeout=send_timeout,
                on_decision=on_decision,
            )
            for channel in config.channel_configs
        ]
        self.control = Control(self)
        self.lifecycle = Lifecycle(self)
        self._subs: list[Subscription] = []

    def find_channel(self, name: object) -> ChannelRuntime:
        """The channel a command names; optional with one channel (see ``pick_channel``)."""
        return pick_channel(self.channels, name)

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
        self.started_at = self.clock.now()
        for ch in self.channels:
            ch.intake.started_at = self.started_at
        open_response_log(self.responses)
        for ch in self.channels:
            try:
                await ch.load()
            except RulesFailed as exc:
                where = f" of channel {ch.channel.label}" if len(self.channels) > 1 else ""
                raise StartupError(f"{exc}{where}") from exc
        self.chains = make_chains(self.config, self._completion)
        self.renderer = renderer = await start_renderer()
        for ch in self.channels:
            ch.start_replies(self.chains, renderer, self._pacing)
        # LiteLLM's import and first-call work (seconds) in a thread, while we connect
        warming = asyncio.ensure_future(prepare_llm(self.chains, self.config))
        try:
            if self.bus is None:
                if self.config.nats.embedded and not self._nats_url:
                    self.embedded = await start_embedded()
                await self._connect()
            assert self.bus is not None
            for ch in self.channels:
                await ch.load_ranks(self.bus)
            try:  # cooldowns and budgets: a backend per channel, if any
                await load_states(self.channels, self._state_backend, self.bus, self.metrics)
            except Exception as exc:
                raise StartupError(str(exc)) from exc
            for ch in self.channels:
                await ch.load_room(self.bus)
            await warming  # before the first event: the first reply is not the slow one
        finally:
            if not warming.done():
                warming.cancel()
        await self._subscribe()
        if self.config.state.store == "jetstream" and self.nc is not None:  # failover
            await hold_channels(self.channels, self.nc, ttl=self.config.state.lease_ttl,
                                metrics=self.metrics, spawn=self._spawn, quiet=self._quiet)
        for ch in self.channels:  # events out, timers
            ch.run_tasks()
        if self.watch_interval:
            for ch in self.channels:
                await ch.watch(self.watch_interval)
        self._spawn(self.lifecycle.heartbeat(self.heartbeat_interval), "heartbeat")
        if self.metrics_port is not None:  # None if it cannot listen: the bot matters more
            self.http = await serve_http(
                self.metrics, self.health, self.config.metrics_host, self.metrics_port
            )
        await self.lifecycle.publish("startup")
        for ch in self.channels:
            ch.log_started()

    async def _connect(self) -> None:
        self.bus = await connect(
            self.config.nats,
            self.url,
            embedded=self.embedded is not None,
            name=f"kryten-rules-{'+'.join(ch.name for ch in self.channels)}"[:200],
            stop=self._stopping,
            on_state=lambda up: self.metrics.nats_connected.set(1 if up else 0),
        )

    async def _subscribe(self) -> None:
        bus = self.bus
        assert bus is not None
        for ch in self.channels:
            await ch.subscribe(bus)
        self._subs = [
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
        for ch in self.channels:
            await ch.unsubscribe()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs = []
        await stop_deciding(self.channels)  # failover: a standby decides what comes now
        busy = [t for t in self._tasks if t.get_name() == "respond"]
        if busy:
            await asyncio.wait(busy, timeout=grace)
        await stop_pacers(self.channels, grace)  # what is still queued: "shutdown"
        busy = [t for t in self._tasks if t.get_name() == "respond"]
        if busy:  # their parts all have outcomes now: let them write their lines
            await asyncio.wait(busy, timeout=0.5)
        await release(self.channels)  # SIGTERM hands the channels over at once
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.renderer is not None:
            await self.renderer.close()
        for ch in self.channels:
            await ch.close_state()
        bus = self.bus
        if bus is not None and bus.connected:
            with contextlib.suppress(Exception):
                for ch in self.channels:  # the last replies' events, then goodbye
                    await ch.events_out.drain()
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

    async def reload(self, reason: str = "request", channel: str | None = None) -> dict[str, Any]:
        """Load and check the rule files in full; swap only a clean, changed set.

        One channel (named, or the only one): its outcome. Several and none named
        (SIGHUP): every channel's, side by side (``reload_all``)."""
        if channel is not None or len(self.channels) == 1:
            return await self.find_channel(channel).reload(reason)
        return await reload_all(self.channels, reason)

    def health(self) -> dict[str, Any]:
        return self.control.health()

    def status(self, channel: str | None = None) -> dict[str, Any]:
        return self.find_channel(channel).rules.status()

    async def command(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """One ``kryten.rules.command`` request; the data of a successful reply."""
        return await self.control.command(name, args)

    def handle(self, subject: str, data: bytes) -> Decision | None:
        """Decode, filter and decide one event in the channel ``subject`` is of (the
        first, if none); start the reply if a rule fired."""
        return route(self.channels, subject).inlet.handle(subject, data)
