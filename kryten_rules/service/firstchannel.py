"""The bot's one-channel face: its first channel's parts, as attributes of the bot.

Before ``channels:`` a bot had one engine, one rule manager, one pacer; the
terminal chat, the tests and the commands that take no channel still read
them as ``bot.engine``, ``bot.rules``, ``bot.replies``. With ``cytube`` +
``rules`` (one channel) they are exactly what they were; with several they
are the first channel's, and what must choose asks for a channel
(:meth:`~.bot.Bot.find_channel`).
"""

from __future__ import annotations

from collections.abc import Callable

from kryten_rules.compile.ruleset import RuleSet
from kryten_rules.engine.evaluate import Decision, Engine
from kryten_rules.intake import Intake
from kryten_rules.service.channel import ChannelRuntime
from kryten_rules.service.events_out import EventsOut
from kryten_rules.service.inlet import Inlet
from kryten_rules.service.pacing import Pacer
from kryten_rules.service.replies import Replies
from kryten_rules.service.robot import RobotSender
from kryten_rules.service.rulemanager import RuleManager
from kryten_rules.service.statesync import StateSync
from kryten_rules.service.timers import TimerTask


class FirstChannel:
    """Mixed into :class:`~.bot.Bot`, which sets ``channels`` (never empty)."""

    channels: list[ChannelRuntime]

    @property
    def channel(self) -> ChannelRuntime:
        return self.channels[0]

    @property
    def on_decision(self) -> Callable[[Decision], None] | None:
        """Called with every decision that reached the rules (tests, the terminal chat)."""
        return self.channels[0].inlet.on_decision

    @on_decision.setter
    def on_decision(self, hook: Callable[[Decision], None] | None) -> None:
        for ch in self.channels:  # every channel's decisions
            ch.inlet.on_decision = hook

    @property
    def engine(self) -> Engine | None:
        return self.channel.engine

    @property
    def ruleset(self) -> RuleSet:
        return self.channel.rules.ruleset

    @property
    def rules(self) -> RuleManager:
        return self.channel.rules

    @property
    def replies(self) -> Replies:
        return self.channel.replies

    @property
    def pacer(self) -> Pacer | None:
        return self.channel.pacer

    @property
    def robot(self) -> RobotSender:
        return self.channel.robot

    @property
    def intake(self) -> Intake:
        return self.channel.intake

    @property
    def inlet(self) -> Inlet:
        return self.channel.inlet

    @property
    def state_sync(self) -> StateSync | None:
        return self.channel.state_sync

    @property
    def events_out(self) -> EventsOut:
        return self.channel.events_out

    @property
    def timers(self) -> TimerTask:
        return self.channel.timers
