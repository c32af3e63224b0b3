"""When each timer rule is due (v1.1, docs/rules.md "Timers"): a small, pure schedule.

A timer rule with ``every: E`` whose clock started at ``S`` is due at
``S + E``, ``S + 2E``, ... Its clock starts when the engine starts, or at the
reload that added it (or changed its ``every``). At a tick at time ``now``
every timer whose next due time is ``<= now`` is tried **once**, at ``now``;
whatever its gates say (fired, blocked by ``when.chat``, a cooldown, a
missed draw), its next chance is the next multiple after ``now``. Missed
multiples are not caught up: a bot that slept through three turns speaks at
most once when it wakes, not three times in a row. A blocked timer therefore
does not jump at the next chat line either; it waits for its next turn, which
is what keeps a quiet room from getting a reply the moment somebody types.

The schedule is keyed by rule id, like cooldowns, so a reload keeps the turns
of every timer it did not change. Nothing here reads a clock or the state
store: the engine (``Engine.tick``), the rule tests, ``replay`` and the
service's timer task pass ``now`` in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from kryten_rules.compile.ruleset import RuleSet
from kryten_rules.events import EventKind


@dataclass(frozen=True, slots=True)
class Turn:
    """One timer's clock: its period, when it started, and its next turn."""

    every: float
    anchor: float
    next_due: float


def next_after(turn: Turn, now: float) -> float:
    """The first due time of ``turn`` strictly after ``now`` (a multiple of ``every``)."""
    if now < turn.anchor + turn.every:
        return turn.anchor + turn.every
    k = math.floor((now - turn.anchor) / turn.every) + 1
    due = turn.anchor + k * turn.every
    while due <= now:  # floating point: never hand back a turn that is already due
        k += 1
        due = turn.anchor + k * turn.every
    return due


def plan(ruleset: RuleSet, previous: Mapping[str, Turn], now: float) -> dict[str, Turn]:
    """Every enabled timer rule of ``ruleset`` and its clock, in evaluation order.

    A timer ``previous`` already had with the same ``every`` keeps its turns;
    a new one (or one whose ``every`` changed) starts its clock at ``now``.
    Disabled timers have no turns: they cost no wake-ups.
    """
    out: dict[str, Turn] = {}
    for rule in ruleset.rules:
        if rule.on != EventKind.TIMER or not rule.enabled or rule.every <= 0:
            continue
        old = previous.get(rule.id)
        if old is not None and old.every == rule.every:
            out[rule.id] = old
        else:
            out[rule.id] = Turn(rule.every, now, now + rule.every)
    return out


class Schedule:
    """The turns of a rule set's timers; :meth:`sync` on every reload."""

    def __init__(self, ruleset: RuleSet, now: float) -> None:
        self.turns: dict[str, Turn] = plan(ruleset, {}, now)

    def sync(self, ruleset: RuleSet, now: float) -> None:
        """Follow a reload: unchanged timers keep their turns, new ones start at ``now``."""
        self.turns = plan(ruleset, self.turns, now)

    def due(self, now: float) -> list[str]:
        """Ids of the timers whose turn has come by ``now``, in evaluation order."""
        return [rid for rid, turn in self.turns.items() if turn.next_due <= now]

    def done(self, rule_id: str, now: float) -> None:
        """The timer had its turn at ``now``: its next one is the next multiple after it."""
        turn = self.turns.get(rule_id)
        if turn is not None:
            self.turns[rule_id] = Turn(turn.every, turn.anchor, next_after(turn, now))

    def skip_to(self, now: float) -> None:
        """Every timer's next turn after ``now``, without taking the ones in between."""
        for rule_id in list(self.turns):
            self.done(rule_id, now)

    def next_due(self) -> float | None:
        """The earliest next turn of any timer (None: no timers), for a sleeping task."""
        return min((t.next_due for t in self.turns.values()), default=None)


__all__ = ["Schedule", "Turn", "next_after", "plan"]
