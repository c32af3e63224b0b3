"""One channel's share of the process: its rules, state, pacing, sender and watcher.

A process serves every channel of the config's ``channels:`` (``cytube`` +
``rules`` is a list of one). Each channel is a :class:`ChannelRuntime`, and
nothing in one reaches into another:

* its own rule manager and engine (persona, rules, reloads), and its own
  in-memory state (cooldowns and budgets): a cooldown in one channel never
  blocks another;
* its own pacer: CyTube's rate limits are per channel, and a busy channel
  must not delay the others' replies;
* its own subscription (``kryten.events.cytube.{channel}.>``), sender (the
  say/pm commands name its domain and channel), rule-file watcher and health.

The :class:`~.bot.Bot` owns what they share: the bus, the render pool, the
model chains, the response log (each line names its channel), the metrics
registry (each channel counts with its ``channel`` label), lifecycle and
commands. The parts read a one-channel :class:`ServiceConfig`
(:meth:`ServiceConfig.for_channel`), so none of them needs to know there are
others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from kryten_rules.clock import Clock
from kryten_rules.config import ChannelConfig, ServiceConfig
from kryten_rules.dispatch.llm import ChainRunner
from kryten_rules.dispatch.renderpool import RenderPool
from kryten_rules.engine.evaluate import Decision, Engine
from kryten_rules.engine.state import MemoryStore, StateBackend
from kryten_rules.errors import KrytenRulesError
from kryten_rules.intake import Intake
from kryten_rules.quietlog import QuietLog
from kryten_rules.service.bus import Bus, Subscription
from kryten_rules.service.events_out import EventsOut
from kryten_rules.service.inlet import Inlet
from kryten_rules.service.metrics import Metrics
from kryten_rules.service.pacing import Pacer
from kryten_rules.service.replies import Replies
from kryten_rules.service.responder import Responder
from kryten_rules.service.responselog import ResponseLog
from kryten_rules.service.robot import RobotSender
from kryten_rules.service.roomkv import load_playlist
from kryten_rules.service.rulemanager import Report, RuleManager
from kryten_rules.service.statesync import StateSync, state_backend_for
from kryten_rules.service.timers import TimerTask
from kryten_rules.service.watch import FileWatcher
from kryten_rules.version import __version__
from kryten_rules.wire import (
    UserList,
    normalize_token,
    parse_userlist_kv,
    subscribe_subject,
    userlist_bucket,
)

log = logging.getLogger("kryten_rules.service")

Spawn = Callable[[Coroutine[Any, Any, Any], str], Any]
# one backend for every channel (a one-channel bot), or one made per channel
StateBackends = StateBackend | Callable[[ChannelConfig], StateBackend]


class UnknownChannel(KrytenRulesError, ValueError):
    """A command named a channel this process does not serve, or none where several are."""


class ChannelRuntime:
    """Everything one channel needs besides what the process shares (see the module)."""

    def __init__(
        self,
        service: ServiceConfig,
        channel: ChannelConfig,
        *,
        metrics: Metrics,
        clock: Clock,
        responses: ResponseLog,
        bus: Callable[[], Bus | None],
        spawn: Spawn,
        report: Report,
        quiet: QuietLog,
        dry_run: bool | None,
        send_timeout: float,
        on_decision: Callable[[Decision], None] | None = None,
    ) -> None:
        self.channel = channel
        self.config = config = service.for_channel(channel)
        self.dry_run = config.dry_run if dry_run is None else dry_run
        self.metrics = metrics.for_channel(channel.channel)
        self._spawn = spawn
        self.intake = Intake(
            bot_name=config.bot_name, ignore_users=config.ignore_users, slack=config.history_slack
        )
        self.robot = RobotSender(
            bus, config.cytube, self.metrics, timeout=send_timeout, quiet=quiet
        )
        self.replies = Replies(
            channel=channel.channel,
            dry_run=self.dry_run,
            max_in_flight=config.max_in_flight,
            metrics=self.metrics,
            responses=responses,
            robot=self.robot,
            spawn=spawn,
            quiet=quiet,
        )
        self.rules = RuleManager(config, self.metrics, report)
        # reply and decision events for other services, named by this channel
        self.events_out = self.replies.events = EventsOut(
            bus,
            metrics,
            domain=config.cytube.domain,
            channel=channel.channel,
            dry_run=self.dry_run,
            decisions=config.events.decisions,
            replies=config.events.replies,
            quiet=quiet,
        )
        self.inlet = Inlet(
            intake=self.intake,
            engine=lambda: self.rules.engine,
            replies=self.replies,
            clock=clock,
            metrics=self.metrics,
            quiet=quiet,
            on_decision=on_decision,
            events=self.events_out,
        )
        self.timers = TimerTask(lambda: self.rules.engine, self.inlet, clock, quiet)
        self._clock = clock
        self._quiet = quiet
        self.pacer: Pacer | None = None
        self.state_sync: StateSync | None = None
        self.watcher: FileWatcher | None = None
        self.subscription: Subscription | None = None

    @property
    def name(self) -> str:
        return self.channel.channel

    @property
    def engine(self) -> Engine | None:
        return self.rules.engine

    @property
    def subject_prefix(self) -> str:
        """What the subjects of this channel's events start with."""
        return subscribe_subject(self.name).removesuffix(">")

    # --- start and stop, in the order the bot calls them ----------------------------

    async def load(self) -> None:
        """The first rule set and the engine; :class:`RulesFailed` if it has errors."""
        ruleset = await self.rules.load()
        self.rules.engine = Engine(
            ruleset,
            clock=self._clock,
            channel=self.name,
            bot_name=self.config.bot_name,
            ignore_users=self.config.ignore_users,
        )

    async def load_state(self, backend: StateBackend) -> int:
        """Cooldowns and budgets from ``backend``; written behind to it from now on.
        An unreachable backend is a warning (``StateSync``): the channel decides
        from memory and retries it."""
        assert self.engine is not None
        if not isinstance(self.engine.state, MemoryStore):
            raise TypeError("a state backend needs the engine's in-memory store")
        sync = StateSync(self.engine.state, backend, quiet=self._quiet)
        loaded = await sync.start()
        self.state_sync = sync
        self._spawn(sync.run(), f"state-sync:{self.name}")
        return loaded if sync.loaded else 0

    def start_replies(
        self, chains: ChainRunner, renderer: RenderPool, pacing: tuple[int, float]
    ) -> None:
        self.replies.responder = Responder(self.config, chains, renderer, self.metrics, self._quiet)
        self.pacer = self.replies.pacer = Pacer(
            burst=pacing[0],
            per_second=pacing[1],
            max_age=self.config.reply_max_age,
            on_drop=lambda r: self.metrics.replies_dropped.labels(r).inc(),
        )
        self.pacer.start()

    async def load_ranks(self, bus: Bus) -> None:
        """Ranks from Kryten-Robot's KV bucket, when it exists (chat events carry none)."""
        assert self.engine is not None
        try:
            value = await bus.kv_get(userlist_bucket(self.name), "users")
            users = parse_userlist_kv(value or b"[]")
        except Exception as exc:
            log.info(
                "%s: no user list in KV yet (%s); ranks come from user events",
                self.channel.label,
                type(exc).__name__,
            )
            return
        for name, rank in users:
            self.engine.set_rank(name, rank)
        self.engine.room.observe(UserList(tuple(users)))  # who is there: `room.users`
        log.info("%s: loaded %d user ranks from KV", self.channel.label, len(users))

    async def load_room(self, bus: Bus) -> None:
        """The media playing and the playlist, from the robot's KV."""
        assert self.engine is not None
        await load_playlist(bus, self.engine.room, self.intake, self.name)

    async def subscribe(self, bus: Bus) -> None:
        self.subscription = await bus.subscribe(subscribe_subject(self.name), self.inlet.on_message)

    def run_tasks(self) -> None:
        """The channel's background work: its events out, and (v1.1) its timers."""
        self._spawn(self.events_out.run(), f"events-out:{self.name}")
        self._spawn(self.timers.run(), f"timers:{self.name}")  # sleeps until the next turn

    async def reload(self, reason: str) -> dict[str, Any]:
        """Reload this channel's rules; its timers' next turn may have moved."""
        outcome = await self.rules.reload(reason)
        self.timers.poke()
        return outcome

    async def watch(self, interval: float) -> None:
        """Reload this channel (only) when one of its rule or prompt files changes."""
        self.watcher = FileWatcher(
            self.rules.watched_paths, interval, lambda: self.reload("file change")
        )
        await self.watcher.prime()
        self._spawn(self.watcher.run(), f"watcher:{self.name}")

    async def unsubscribe(self) -> None:
        if self.subscription is not None:
            with contextlib.suppress(Exception):
                await self.subscription.unsubscribe()
            self.subscription = None

    async def close_state(self) -> None:
        if self.state_sync is not None:
            try:
                await self.state_sync.close()  # what was spent last, flushed
            except Exception as exc:
                log.warning(
                    "%s: state: the last flush to the backend failed: %s", self.channel.label, exc
                )

    def log_started(self) -> None:
        log.info(
            "kryten-rules %s: %d rules, channel %s, bot %s%s",
            __version__,
            len(self.rules.ruleset.rules),
            self.name,
            self.config.bot_name,
            " (dry run)" if self.dry_run else "",
        )

    # --- what it answers --------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """This channel's part of ``/health``: ``degraded`` while its rules are not what
        the files say or kryten-robot refused its latest message."""
        robot = self.robot
        ok = self.engine is not None and not robot.failing and not self.rules.reload_failed
        return {
            "channel": self.name,
            "domain": self.channel.cytube.domain,
            "status": "ok" if ok else "degraded",
            "rules": len(self.rules.ruleset.rules) if self.engine else 0,
            "last_reload": self.rules.health(),
            "replies_in_progress": self.replies.pending,
            "send_queue": self.pacer.pending if self.pacer else 0,
            "sending": "failing" if robot.failing else "ok",
            "send_failures": robot.failures,
            "last_send_failure": robot.last_failure,
            "dry_run": self.dry_run,
        }


def pick_channel(channels: Sequence[ChannelRuntime], name: object) -> ChannelRuntime:
    """The channel a command names (``channel`` or ``domain/channel``, as CyTube's
    names compare: case and dots aside); with one channel, naming it is optional."""
    known = ", ".join(c.channel.label for c in channels)
    if name is None or name == "":
        if len(channels) == 1:
            return channels[0]
        raise UnknownChannel(f"args.channel is required: this process serves {known}")
    if not isinstance(name, str):
        raise UnknownChannel(f"args.channel must be a channel name (one of {known})")
    domain, _, channel = name.rpartition("/")
    token = normalize_token(channel)
    for c in channels:
        if normalize_token(c.name) == token and domain in ("", c.channel.cytube.domain):
            return c
    raise UnknownChannel(f"no channel {name!r} here (channels: {known})")


async def reload_all(channels: Sequence[ChannelRuntime], reason: str) -> dict[str, Any]:
    """Every channel reloads (side by side; each keeps its rules if its files fail);
    the answer holds each channel's outcome, ``ok`` only if all are."""
    outcomes = await asyncio.gather(*(ch.reload(reason) for ch in channels))
    return {
        "ok": all(o["ok"] for o in outcomes),
        "reason": reason,
        "changed": any(o["changed"] for o in outcomes),
        "channels": {ch.name: o for ch, o in zip(channels, outcomes, strict=True)},
    }


def route(channels: Sequence[ChannelRuntime], subject: str) -> ChannelRuntime:
    """The channel whose events' subjects ``subject`` is under; the first if none is."""
    for ch in channels:
        if subject.startswith(ch.subject_prefix):
            return ch
    return channels[0]


async def stop_pacers(channels: Sequence[ChannelRuntime], grace: float) -> None:
    """Let every channel's queue drain (together, within ``grace / 2``), then stop them:
    what is still queued gets the outcome ``shutdown``."""
    pacers = [ch.pacer for ch in channels if ch.pacer is not None]
    await asyncio.gather(*(p.drain(timeout=max(0.5, grace / 2)) for p in pacers))
    for pacer in pacers:
        await pacer.stop()


async def load_states(
    channels: Sequence[ChannelRuntime],
    backends: StateBackends | None,
    bus: Bus | None,
    metrics: Metrics,
) -> None:
    """Each channel's cooldowns and budgets from its backend (a given one, or the
    config's ``state.store: jetstream``, whose keys are the channel's own); raises
    with a message for the operator (the bot's start makes it a ``StartupError``)."""
    for ch in channels:
        if backends is None:
            found = state_backend_for(ch.config, bus, ch._quiet)
            if found is None:
                continue
            backend = found
        else:
            backend = backend_for(backends, ch.channel, len(channels))
        try:
            loaded = await ch.load_state(backend)
        except Exception as exc:
            raise RuntimeError(f"cannot load the state from its backend: {exc}") from exc
        log.info("state of %s: %d running cooldowns and budgets loaded", ch.name, loaded)
    syncs = [ch.state_sync for ch in channels if ch.state_sync is not None]
    if syncs:  # the process's: up while every channel's backend answers
        metrics.state_backend_up.set_function(lambda: float(all(s.healthy for s in syncs)))
        metrics.state_unflushed.set_function(lambda: float(sum(s.unflushed for s in syncs)))


def backend_for(backends: StateBackends, channel: ChannelConfig, count: int) -> StateBackend:
    """The state backend of ``channel``: one given for all serves a single channel only,
    since channels sharing one would share (and spend) each other's cooldowns."""
    if callable(backends):
        return backends(channel)
    if count > 1:
        raise ValueError(
            "one state backend for several channels would mix their state: give a factory "
            "that makes one per channel"
        )
    return backends
