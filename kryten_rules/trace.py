"""What the engine reports per rule tried: a :class:`TraceEntry` and its outcomes.

Its own module because compile makes the trace entry of every rule's firing
once (``ruleset.Plan.fired``) and the engine hands those out as they are.
"""

from __future__ import annotations

from typing import Any, NamedTuple

FIRED, BLOCKED, SKIPPED = "fired", "blocked", "skipped"
# a shadow rule that passed every gate: recorded, and evaluation goes on
WOULD_FIRE = "would_fire"


class TraceEntry(NamedTuple):
    """One rule tried: ``outcome`` is fired/would_fire/blocked/skipped, ``reason`` a code."""

    rule: str
    outcome: str
    reason: str | None = None
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "outcome": self.outcome,
            "reason": self.reason,
            "detail": self.detail,
        }


__all__ = ["BLOCKED", "FIRED", "SKIPPED", "WOULD_FIRE", "TraceEntry"]
