"""Commands and health: how the service answers the ecosystem.

* ``kryten.rules.command`` requests (``system.ping``, ``system.health``,
  ``system.stats``, ``system.config``, ``rules.status``, ``rules.reload``,
  ``rules.explain``; the ``rules.*`` ones take a ``channel``, required where
  the process serves several), nested or flat (``commands.py`` reads both):
  :meth:`Control.command` gives a successful reply's data or raises;
  :meth:`Control.on_command` wraps it in the ``{service, command, success,
  data|error}`` envelope. A new command is one more branch in
  :meth:`Control.command` (and a line in docs/operator.md).
* Lifecycle events are ``lifecycle.py``'s.
* Health (``/health`` and ``system.health``): ``degraded`` while NATS is down
  or kryten-robot's latest answer was not a confirmation.

Everything goes out through the bot's :class:`~.bus.Bus`; replies are masked
(credentials never leave in a payload).
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from kryten_rules.engine.evaluate import Engine
from kryten_rules.engine.state import MemoryStore
from kryten_rules.redact import mask_credentials
from kryten_rules.service import commands
from kryten_rules.service.bus import Message
from kryten_rules.service.failover import lease_health
from kryten_rules.service.lifecycle import SERVICE
from kryten_rules.tools.explain import check_timer_name, explain_event_isolated
from kryten_rules.units import parse_rank
from kryten_rules.version import __version__

if TYPE_CHECKING:
    from kryten_rules.clock import Clock
    from kryten_rules.service.bot import Bot
    from kryten_rules.service.channel import ChannelRuntime

RULES_COMMAND_SUBJECT = f"kryten.{SERVICE}.command"
COMMANDS = (
    "system.ping",
    "system.health",
    "system.stats",
    "system.config",
    "rules.status",
    "rules.reload",
    "rules.explain",
)


def live_engine(ch: ChannelRuntime, clock: Clock) -> Engine:
    """An engine on a copy of a running channel's cooldowns and budgets, at the
    clock's time: ``rules.explain`` with ``state: live`` answers "would this
    line be answered now?" (how long a cooldown has left) and spends nothing
    of the live state."""
    live = ch.engine.state if ch.engine is not None else None
    store = MemoryStore(clock.now)
    if isinstance(live, MemoryStore):
        store.restore(live.snapshot())
    return Engine(
        ch.rules.ruleset,
        clock=clock,
        seed=0,
        state=store,
        channel=ch.name,
        bot_name=ch.config.bot_name,
    )


class Control:
    """The service's answers; reads the running :class:`~.bot.Bot`'s parts."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    # --- health ---------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``degraded`` also while kryten-robot's latest answer was not a confirmation:
        the bot is mute then, and ``last_send_failure`` says why and what to check.

        The top-level fields are the whole process's (``ok`` only if every channel
        is); ``channels`` has each channel's own (``ChannelRuntime.health``)."""
        bot = self.bot
        channels = [ch.health() for ch in bot.channels]
        for entry, ch in zip(channels, bot.channels, strict=True):
            if (lease := lease_health(ch)) is not None:  # failover: held here, or standing by
                entry["lease"] = lease
        connected = bool(bot.bus is not None and bot.bus.connected)
        ok = connected and all(c["status"] == "ok" for c in channels)
        failures = [c["last_send_failure"] for c in channels if c["last_send_failure"]]
        reloads = [c["last_reload"] for c in channels if c["last_reload"]]
        return {
            # also degraded while the last reload failed: the running rules are
            # then not what the files say
            "status": "ok" if ok else "degraded",
            "last_reload": max(reloads, key=lambda r: str(r["at"]), default=None),
            "service": SERVICE,
            "version": __version__,
            "nats_connected": connected,
            "nats_url": bot.safe_url,
            "rules": sum(c["rules"] for c in channels),
            "uptime_seconds": round(bot.clock.now() - bot.started_at, 3),
            "replies_in_progress": sum(c["replies_in_progress"] for c in channels),
            "send_queue": sum(c["send_queue"] for c in channels),
            "sending": "failing" if any(c["sending"] != "ok" for c in channels) else "ok",
            "send_failures": sum(c["send_failures"] for c in channels),
            "last_send_failure": max(failures, key=lambda f: str(f["at"]), default=None),
            "dry_run": bot.dry_run,
            "state": self._state_health(),
            "channels": channels,
        }

    def _state_health(self) -> dict[str, Any]:
        """Where cooldowns and budgets live, and whether the backend keeps up.
        A backend that is away does not degrade the bot: it decides from memory."""
        state, sync = self.bot.config.state, self.bot.state_sync
        out: dict[str, Any] = {"store": state.store if sync is not None else "memory"}
        if sync is not None:
            out |= {
                "bucket": state.bucket,
                "backend": "ok" if sync.healthy else "unreachable",
                "unflushed": sync.unflushed,
            }
        return out

    # --- commands -------------------------------------------------------------------

    async def command(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """One ``kryten.rules.command`` request; the data of a successful reply."""
        bot = self.bot
        if name == "system.ping":
            return commands.ping(bot)
        if name == "system.health":
            return self.health()
        if name == "system.stats":
            return commands.stats(bot)
        if name == "system.config":
            return commands.config(bot)
        if name == "rules.status":
            ch = bot.find_channel(args.get("channel"))
            return {"channel": ch.name, **ch.rules.status()}
        if name == "rules.reload":
            channel = args.get("channel")  # none: every channel
            if channel is not None:
                return await bot.find_channel(channel).reload("command")
            return await bot.reload("command")
        if name == "rules.explain":
            text = args.get("text")
            if not isinstance(text, str):
                raise ValueError("args.text (the chat line) is required")
            ch = bot.find_channel(args.get("channel"))
            media = args.get("media")
            assert bot.renderer is not None
            kind = str(args.get("on", "chatmsg"))
            timer = kind == "timer"  # v1.1: text names the timer; the room's own lines count
            if timer:
                check_timer_name(ch.rules.ruleset, text)
            # "state": "live" decides against a copy of the live store, spending nothing
            live = live_engine(ch, bot.clock) if args.get("state") == "live" else None
            room = ch.engine
            return await explain_event_isolated(
                ch.rules.ruleset,
                text,
                bot.renderer,
                chat_times=tuple(room.room.times) if timer and room is not None else (),
                now=bot.clock.now() if timer or live is not None else 1.0,
                user=str(args.get("user", "someone")),
                rank=parse_rank(args.get("rank", 1)),
                kind=kind,
                media_title=media if isinstance(media, str) else None,
                media_duration=float(args.get("media_duration", 5400)),
                channel=ch.name,
                engine=live,
            )
        # "Unknown command" as the robot words it: kryten-shell looks for it
        raise ValueError(f"Unknown command {name!r} (known: {', '.join(COMMANDS)})")

    async def on_command(self, msg: Message) -> None:
        # nats-py awaits a subscription's callbacks one after another: answered
        # inline, a `rules.reload` would hold every later command (a ping) behind it.
        self.bot._spawn(self._answer(msg), "command")

    async def _answer(self, msg: Message) -> None:
        name = "?"
        try:
            req = commands.parse_request(msg.data)
            name = req.command
            reply = {
                "service": SERVICE,
                "command": name,
                "success": True,
                "data": await self.command(name, req.args),
            }
        except Exception as exc:
            reply = {"service": SERVICE, "command": name, "success": False, "error": str(exc)}
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(mask_credentials(json.dumps(reply, default=str)).encode())
