"""The engine's gates, as rule-test tables run by the project's own runner.

``tests/engine/gates/*.test.yaml`` say what fires and what blocks, gate by
gate (enabled, match and veto, order, conditions, the four cooldown scopes,
budgets per window, rank multipliers), in the language moderators use. What
the tables cannot say, the trace's ``detail`` (what ``explain`` prints), is
checked here on the same rule files.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from kryten_rules import ChatEvent, Media, VirtualClock, load_ruleset
from kryten_rules.cli import main
from kryten_rules.engine.evaluate import Engine
from kryten_rules.trace import Outcome, Reason, TraceEntry

GATES = Path(__file__).resolve().parent / "gates"
RULES = GATES / "rules"


def test_the_gate_tables_pass() -> None:
    result = CliRunner().invoke(main, ["test", str(GATES)])
    assert result.exit_code == 0, result.output
    passed = int(result.output.strip().splitlines()[-1].split()[0])
    assert passed >= 31, result.output  # every table ran


def _engine(rules: str) -> Engine:
    return Engine(load_ruleset([RULES / rules], bot_name="cynthia"), clock=VirtualClock(), seed=7)


Step = tuple[float, str, str, int | None]  # at, user, text ("@media:title:seconds"), rank


def _run(engine: Engine, steps: list[Step]) -> TraceEntry:
    """Feed the steps; the first trace entry of the last one."""
    decision = None
    for at, user, text, rank in steps:
        if text.startswith("@media:"):
            _, title, seconds = text.split(":")
            event = ChatEvent(kind="changemedia", media=Media(title, float(seconds)), at=at)
        else:
            event = ChatEvent(user=user, text=text, rank=rank, at=at)
        decision = engine.evaluate(event)
    assert decision is not None and decision.trace
    return decision.trace[0]


DETAILS: list[tuple[str, list[Step], Reason, str]] = [
    ("conditions.yaml", [(0, "g", "hi", 0)], Reason.CONDITION_RANK, "rank 0 < 1"),
    ("conditions.yaml", [(0, "r", "yo", 1)], Reason.CONDITION_RANK, "rank 1 > 0"),
    ("conditions.yaml", [(0, "o", "hey", 4)], Reason.CONDITION_RANK, "rank 4 > 2"),
    ("conditions.yaml", [(0, "carol", "vip", None)], Reason.CONDITION_USERS, "carol is not listed"),
    ("conditions.yaml", [(0, "mallory", "rest", None)], Reason.CONDITION_NOT_USERS,
     "mallory is excluded"),
    ("conditions.yaml", [(0, "a", "long", None)], Reason.CONDITION_MEDIA, "nothing is playing"),
    ("conditions.yaml", [(0, "", "@media:Trailer:180", None), (1, "a", "long", None)],
     Reason.CONDITION_MEDIA, "3m < 20m"),
    ("conditions.yaml", [(0, "", "@media:Feature:5700", None), (1, "a", "short", None)],
     Reason.CONDITION_MEDIA, "1h35m > 5m"),
    ("conditions.yaml", [(0, "", "@media:Karate:600", None), (1, "a", "titled", None)],
     Reason.CONDITION_MEDIA, "title does not match"),
    ("cooldowns.yaml", [(0, "alice", "globalfoo", None), (10, "bob", "globalbar", None)],
     Reason.COOLDOWN_GLOBAL, "20s left, set by cooldown.global of rule global-a"),
    ("cooldowns.yaml", [(0, "alice", "globalfoo", None), (17.5, "bob", "globalbar", None)],
     Reason.COOLDOWN_GLOBAL, "12.5s left, set by cooldown.global of rule global-a"),
    ("cooldowns.yaml", [(0, "alice", "rulefoo", None), (10, "bob", "rulefoo", None)],
     Reason.COOLDOWN_RULE, "20s left, set by rule rule-a"),
    ("limit-rule.yaml", [(0, "a", "foo", None), (1, "a", "foo", None), (2, "a", "foo", None)],
     Reason.LIMIT_RULE_PER_MINUTE, "2 of 2 used"),
    ("limit-rule.yaml", [(0, "a", "zero", None)], Reason.LIMIT_RULE_PER_HOUR, "0 of 0 used"),
    ("budgets.yaml", [(0, "a", "foo", None), (2, "a", "bar", None), (4, "b", "bar", None),
                      (5, "c", "bar", None)], Reason.LIMIT_GLOBAL_PER_HOUR, "3 of 3 used"),
    ("ranks.yaml", [(0, "gst", "foo", 0), (10, "gst", "foo", None)], Reason.COOLDOWN_USER_RULE,
     "1m10s left, set by rule a"),
    ("ranks.yaml", [(i, "m", "count", 2) for i in range(9)], Reason.LIMIT_USER_PER_HOUR,
     "8 of 8 used"),
]  # fmt: skip


@pytest.mark.parametrize(("rules", "steps", "reason", "detail"), DETAILS)
def test_a_blocked_trace_says_why_in_its_detail(
    rules: str, steps: list[Step], reason: Reason, detail: str
) -> None:
    entry = _run(_engine(rules), steps)
    assert (entry.outcome, entry.reason, entry.detail) == (Outcome.BLOCKED, reason, detail)


def test_a_disabled_rule_is_in_the_full_trace_as_skipped() -> None:
    engine = _engine("basics.yaml")
    d = engine.evaluate(ChatEvent(user="alice", text="hello there", at=0), full_trace=True)
    assert d.fired == "switched-on"
    assert d.trace[0] == TraceEntry("switched-off", Outcome.SKIPPED, Reason.DISABLED)


def test_rules_whose_words_are_absent_are_left_out_of_a_candidate_trace() -> None:
    engine = _engine("basics.yaml")
    full = engine.evaluate(ChatEvent(user="alice", text="goodbye", at=0), full_trace=True)
    assert {t.reason for t in full.trace} <= {Reason.NO_MATCH, Reason.DISABLED}
    assert engine.evaluate(ChatEvent(user="alice", text="goodbye", at=1)).trace == ()
