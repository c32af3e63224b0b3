"""Commands and health: how the service answers the ecosystem.

* ``kryten.rules.command`` requests (``system.ping``, ``system.health``,
  ``system.stats``, ``system.config``, ``rules.status``, ``rules.reload``,
  ``rules.explain``), nested or flat (``commands.py`` reads both):
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
from kryten_rules.service.lifecycle import SERVICE
from kryten_rules.tools.explain import check_timer_name, explain_event_isolated
from kryten_rules.units import parse_rank
from kryten_rules.version import __version__

if TYPE_CHECKING:
    from kryten_rules.service.bot import Bot

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


def live_engine(bot: Bot) -> Engine:
    """An engine on a copy of the running bot's cooldowns and budgets, at its
    clock's time: ``rules.explain`` with ``state: live`` answers "would this
    line be answered now?" (how long a cooldown has left) and spends nothing
    of the live state."""
    live = bot.engine.state if bot.engine is not None else None
    store = MemoryStore(bot.clock.now)
    if isinstance(live, MemoryStore):
        store.restore(live.snapshot())
    return Engine(
        bot.ruleset,
        clock=bot.clock,
        seed=0,
        state=store,
        channel=bot.config.cytube.channel,
        bot_name=bot.config.bot_name,
    )


class Control:
    """The service's answers; reads the running :class:`~.bot.Bot`'s parts."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    # --- health ---------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``degraded`` also while kryten-robot's latest answer was not a confirmation:
        the bot is mute then, and ``last_send_failure`` says why and what to check."""
        bot = self.bot
        robot = bot.robot
        connected = bool(bot.bus is not None and bot.bus.connected)
        ok = connected and bot.engine is not None and not robot.failing
        return {
            # also degraded while the last reload failed: the running rules are
            # then not what the files say
            "status": "ok" if ok and not bot.rules.reload_failed else "degraded",
            "last_reload": bot.rules.health(),
            "service": SERVICE,
            "version": __version__,
            "nats_connected": connected,
            "nats_url": bot.safe_url,
            "rules": len(bot.ruleset.rules) if bot.engine else 0,
            "uptime_seconds": round(bot.clock.now() - bot.started_at, 3),
            "replies_in_progress": bot.replies.pending,
            "send_queue": bot.pacer.pending if bot.pacer else 0,
            "sending": "failing" if robot.failing else "ok",
            "send_failures": robot.failures,
            "last_send_failure": robot.last_failure,
            "dry_run": bot.dry_run,
            "state": self._state_health(),
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
            return bot.rules.status()
        if name == "rules.reload":
            return await bot.reload("command")
        if name == "rules.explain":
            text = args.get("text")
            if not isinstance(text, str):
                raise ValueError("args.text (the chat line) is required")
            media = args.get("media")
            assert bot.renderer is not None
            kind = str(args.get("on", "chatmsg"))
            timer = kind == "timer"  # v1.1: text names the timer; the room's own lines count
            if timer:
                check_timer_name(bot.ruleset, text)
            # "state": "live" decides against a copy of the live store, spending nothing
            live = live_engine(bot) if args.get("state") == "live" else None
            room = bot.engine
            return await explain_event_isolated(
                bot.ruleset,
                text,
                bot.renderer,
                chat_times=tuple(room.room.times) if timer and room is not None else (),
                now=bot.clock.now() if timer or live is not None else 1.0,
                user=str(args.get("user", "someone")),
                rank=parse_rank(args.get("rank", 1)),
                kind=kind,
                media_title=media if isinstance(media, str) else None,
                media_duration=float(args.get("media_duration", 5400)),
                channel=bot.config.cytube.channel,
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
