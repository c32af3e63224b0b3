"""What the engine decided for one event, and why: :class:`Decision`.

A decision carries the trace (every rule tried and the gate that stopped it)
and, for a rule that fired, what its templates will see, built on first use
(``engine/context.py``) from what was true when the event was decided.
"""

from __future__ import annotations

from typing import Any

from kryten_rules.compile.ruleset import Rule
from kryten_rules.engine.context import build_context
from kryten_rules.events import ChatEvent
from kryten_rules.trace import Reason, TraceEntry

_NOT_MATCHED = (Reason.NO_MATCH, Reason.DISABLED)
_NO_SHADOW: tuple[Rule, ...] = ()


class Decision:
    """What the engine decided for one event, and why.

    ``context`` (what the templates see) is built on first access from what
    was true when the event was decided.
    """

    __slots__ = (
        "_context",
        "_make_context",
        "_shadow_ids",
        "_uncommitted",
        "event",
        "ignored",
        "rule",
        "trace",
        "would_fire",
    )

    def __init__(
        self,
        event: ChatEvent,
        rule: Rule | None = None,
        trace: tuple[TraceEntry, ...] = (),
        ignored: str | None = None,
        make_context: Any = None,
        would_fire: tuple[Rule, ...] = _NO_SHADOW,
        shadow_ids: frozenset[str] = frozenset(),
    ) -> None:
        self.event = event
        # shadow rules that passed every gate (docs/rules.md "Shadow rules"); never `rule`
        self.would_fire = would_fire
        self._shadow_ids = shadow_ids
        self.rule = rule
        self.trace = trace
        self.ignored = ignored  # why the event never reached the rules (an IgnoreReason)
        self._make_context = make_context
        self._context: dict[str, Any] | None = None
        # (user key, time) of a firing whose cooldowns and budgets are not yet
        # spent: see Engine.evaluate(commit=False) and Engine.commit
        self._uncommitted: tuple[str, float] | None = None

    @property
    def fired(self) -> str | None:
        """The id of the rule that fired, or None."""
        return self.rule.id if self.rule is not None else None

    @property
    def would_fire_ids(self) -> list[str]:
        return [r.id for r in self.would_fire]

    def shadow_decisions(self) -> list[Decision]:
        """One decision per shadow rule that would have fired, as if it had fired
        (``shadow`` is true): what the service renders and logs, never sends."""
        return [
            Decision(self.event, r, self.trace, None, self._make_context)
            for r in self.would_fire
        ]

    @property
    def context(self) -> dict[str, Any] | None:
        if self._context is None and self._make_context is not None and self.rule is not None:
            # _make_context is kept: shadow_decisions() builds theirs from it too
            self._context = build_context(self.rule, self.event, *self._make_context)
        return self._context

    @property
    def shadow(self) -> bool:
        return self.rule is not None and self.rule.mode == "shadow"

    @property
    def blocked(self) -> str | None:
        """The reason that stopped the first rule that matched, when nothing fired.

        A vetoed rule counts as matched: its words were there, a veto stopped it.
        """
        entry = self.blocked_by
        return entry.reason if entry is not None else None

    @property
    def blocked_by(self) -> TraceEntry | None:
        """The trace entry of that rule (``test --coverage`` counts the rule as tried)."""
        if self.fired is not None:
            return None
        shadow = self._shadow_ids
        for t in self.trace:
            if t.reason is not None and t.reason not in _NOT_MATCHED and t.rule not in shadow:
                return t  # a shadow rule's gates are its own: they stop nothing
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "fired": self.fired,
            "would_fire": self.would_fire_ids,
            "trace": [t.as_dict() for t in self.trace],
            "ignored": self.ignored,
        }

    def __repr__(self) -> str:
        return f"Decision(fired={self.fired!r}, blocked={self.blocked!r}, ignored={self.ignored!r})"


__all__ = ["Decision"]
