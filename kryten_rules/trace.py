"""What the engine reports per rule tried: a :class:`TraceEntry` and its outcomes.

Its own module because compile makes the trace entry of every rule's firing
once (``ruleset.Plan.fired``) and the engine hands those out as they are.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple


class Outcome(StrEnum):
    """What happened to one rule tried (the ``outcome`` of a trace entry)."""

    FIRED = "fired"
    # a shadow rule that passed every gate: recorded, and evaluation goes on
    WOULD_FIRE = "would_fire"
    BLOCKED = "blocked"  # a gate stopped it; ``reason`` says which
    SKIPPED = "skipped"  # not tried: an earlier rule fired


class Reason(StrEnum):
    """Why a rule did not fire: the gate that stopped it (docs/rules.md "Evaluation").

    Stable, like diagnostic codes: CI filters, dashboards and ``explain`` users
    read them. ``tests/test_docs.py`` holds docs/rules.md to this list.
    """

    DISABLED = "disabled"
    NO_MATCH = "no_match"
    VETOED = "vetoed"
    CONDITION_RANK = "condition.rank"
    CONDITION_USERS = "condition.users"
    CONDITION_NOT_USERS = "condition.not_users"
    CONDITION_MEDIA = "condition.media"
    CONDITION_CHAT = "condition.chat"  # v1.1 when.chat
    COOLDOWN_GLOBAL = "cooldown.global"
    COOLDOWN_RULE = "cooldown.rule"
    COOLDOWN_USER = "cooldown.user"
    COOLDOWN_USER_RULE = "cooldown.user_rule"
    LIMIT_RULE_PER_MINUTE = "limit.rule.per_minute"
    LIMIT_RULE_PER_HOUR = "limit.rule.per_hour"
    LIMIT_RULE_PER_DAY = "limit.rule.per_day"
    LIMIT_USER_PER_MINUTE = "limit.user.per_minute"
    LIMIT_USER_PER_HOUR = "limit.user.per_hour"
    LIMIT_USER_PER_DAY = "limit.user.per_day"
    LIMIT_GLOBAL_PER_MINUTE = "limit.global.per_minute"
    LIMIT_GLOBAL_PER_HOUR = "limit.global.per_hour"
    LIMIT_GLOBAL_PER_DAY = "limit.global.per_day"
    STATE_FULL = "state_full"
    PROBABILITY = "probability"

    @classmethod
    def cooldown(cls, scope: str) -> Reason:
        """``cooldown.<scope>`` (ValueError for an unknown scope)."""
        return cls(f"cooldown.{scope}")

    @classmethod
    def limit(cls, scope: str, window: str) -> Reason:
        """``limit.<scope>.<window>`` (ValueError for an unknown one)."""
        return cls(f"limit.{scope}.{window}")


FIRED, BLOCKED, SKIPPED, WOULD_FIRE = (
    Outcome.FIRED,
    Outcome.BLOCKED,
    Outcome.SKIPPED,
    Outcome.WOULD_FIRE,
)


class TraceEntry(NamedTuple):
    """One rule tried: ``outcome`` is fired/would_fire/blocked/skipped, ``reason`` a code."""

    rule: str
    outcome: Outcome
    reason: Reason | None = None
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "outcome": str(self.outcome),
            "reason": None if self.reason is None else str(self.reason),
            "detail": self.detail,
        }


__all__ = ["BLOCKED", "FIRED", "SKIPPED", "WOULD_FIRE", "Outcome", "Reason", "TraceEntry"]
