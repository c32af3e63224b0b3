"""``kryten-rules test --coverage``: which rules the rule tests exercise.

The definition (docs/rules.md "Rule coverage"), chosen for a CI gate that asks
"does some test check what this rule does?":

* A rule is **covered** when an event that has an ``expect`` ended with it:
  it fired, it would have fired (a shadow rule), or nothing fired and it is
  the rule whose gate stopped the event (the rule behind ``blocked:``, the
  first rule that matched).
* Events without ``expect`` set a case up (a film starts, a user speaks
  first); what they fire covers nothing, so a rule cannot be covered by
  accident.
* Passing and failing cases count alike: the pass count says whether the
  tests hold, coverage what they reach.
* Every rule of every rule set a test file loads counts, whether or not
  ``-k`` ran its cases; a rule with ``enabled: false`` cannot fire and is
  left out (and counted as such). A rule loaded by two test files is one rule.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from kryten_rules.compile.ruleset import Rule
from kryten_rules.tools.ruletests import EventResult, Suite

RuleKey = tuple[str, str]  # (rule file, normalised; rule id)


@dataclass(frozen=True, slots=True)
class RuleSpot:
    """A rule and where it is written, for the list of uncovered rules."""

    id: str
    file: str
    line: int

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "file": self.file, "line": self.line}


@dataclass(slots=True)
class Coverage:
    covered: list[RuleSpot] = field(default_factory=list)
    uncovered: list[RuleSpot] = field(default_factory=list)
    disabled: int = 0  # rules with enabled: false, not counted

    @property
    def total(self) -> int:
        return len(self.covered) + len(self.uncovered)

    @property
    def percent(self) -> float:
        """Covered rules in percent; 100 when there is no rule to cover."""
        return 100.0 * len(self.covered) / self.total if self.total else 100.0

    def below(self, minimum: float) -> bool:
        """Exactly (no rounding): 2 of 3 rules is below 66.67 and not below 66.66."""
        return len(self.covered) * 100 < minimum * self.total

    def as_dict(self) -> dict[str, Any]:
        return {
            "covered": len(self.covered),
            "total": self.total,
            "percent": round(self.percent, 2),
            "disabled": self.disabled,
            "uncovered": [r.as_dict() for r in self.uncovered],
        }


def _key(rule: Rule) -> RuleKey:
    return (os.path.normpath(rule.span.file), rule.id)


def event_covers(event: EventResult) -> set[str]:
    """The ids of the rules one event covers (the module docstring says which)."""
    if not event.expect:
        return set()
    d = event.decision
    ids = set(d.would_fire_ids)
    if d.fired is not None:
        ids.add(d.fired)
    stopped = d.blocked_by
    if stopped is not None:
        ids.add(stopped.rule)
    return ids


def _spot(rule: Rule) -> RuleSpot:
    return RuleSpot(rule.id, os.path.normpath(rule.span.file), rule.span.line)


def coverage(suite: Suite) -> Coverage:
    """Coverage of every rule set ``suite`` loaded, by the cases it ran."""
    rules: dict[RuleKey, Rule] = {}
    for ruleset in suite.rulesets:
        for rule in ruleset.rules:
            rules.setdefault(_key(rule), rule)
    hit: set[RuleKey] = set()
    for case in suite.cases:
        by_id = case.ruleset.by_id if case.ruleset is not None else {}
        for event in case.events:
            hit.update(_key(by_id[rid]) for rid in event_covers(event) if rid in by_id)
    out = Coverage()
    for key, rule in sorted(rules.items(), key=lambda kv: (kv[0][0], kv[1].span.line)):
        if not rule.enabled:
            out.disabled += 1
        elif key in hit:
            out.covered.append(_spot(rule))
        else:
            out.uncovered.append(_spot(rule))
    return out


def format_text(cov: Coverage) -> str:
    lines = [f"coverage: {len(cov.covered)}/{cov.total} rules ({cov.percent:.1f}%)"]
    if cov.disabled:
        lines[0] += f", {cov.disabled} disabled not counted"
    lines += [f"  not covered: {r.file}:{r.line}: {r.id}" for r in cov.uncovered]
    return "\n".join(lines)


def below_message(cov: Coverage, minimum: float) -> str:
    return (
        f"error: rule coverage {cov.percent:.1f}% ({len(cov.covered)}/{cov.total}) "
        f"is below --min-coverage {minimum:g}%"
    )


__all__ = ["Coverage", "RuleSpot", "below_message", "coverage", "event_covers", "format_text"]
