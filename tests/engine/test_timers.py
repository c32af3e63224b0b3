"""v1.1 timers in the engine: the schedule (engine/timers.py), ticks, reloads."""

from __future__ import annotations

from pathlib import Path

from kryten_rules.clock import VirtualClock
from kryten_rules.compile.load import load_ruleset
from kryten_rules.engine.evaluate import Engine
from kryten_rules.engine.timers import Schedule, Turn, next_after
from kryten_rules.events import ChatEvent
from tests.timer_rules import TIMER, write_rules


def test_next_after_is_the_next_multiple_strictly_after_now() -> None:
    turn = Turn(every=600.0, anchor=100.0, next_due=700.0)
    assert next_after(turn, 100.0) == 700.0
    assert next_after(turn, 700.0) == 1300.0  # a turn taken at its time: the next one
    assert next_after(turn, 2000.0) == 2500.0  # missed turns are not caught up
    odd = Turn(every=0.1, anchor=0.0, next_due=0.1)
    for k in range(1, 200):
        assert next_after(odd, k * 0.1) > k * 0.1  # never a turn that is already due


def test_a_reload_keeps_the_turns_of_unchanged_timers(tmp_path: Path) -> None:
    """Keyed by rule id: an unchanged timer keeps its clock, a new or changed one starts anew."""
    first = load_ruleset(write_rules(tmp_path, TIMER.format(every="10m")))
    clock = VirtualClock(0.0)
    engine = Engine(first, clock=clock)
    assert engine.timers.next_due() == 600.0
    clock.set(250.0)
    two = TIMER.format(every="10m") + (
        "  - id: news\n    on: timer\n    every: 5m\n    reply: news\n"
    )
    engine.swap(load_ruleset(write_rules(tmp_path, two, "two.yaml")))
    assert engine.timers.turns["trivia"].next_due == 600.0  # kept
    assert engine.timers.turns["news"].next_due == 550.0  # started at the reload
    clock.set(300.0)
    engine.swap(load_ruleset(write_rules(tmp_path, TIMER.format(every="20m"), "three.yaml")))
    assert set(engine.timers.turns) == {"trivia"}  # news is gone
    assert engine.timers.turns["trivia"].next_due == 300.0 + 1200.0  # every changed: anew


def test_disabled_timers_have_no_turns(tmp_path: Path) -> None:
    text = TIMER.format(every="10m").replace("    on: timer", "    enabled: false\n    on: timer")
    engine = Engine(load_ruleset(write_rules(tmp_path, text)), clock=VirtualClock())
    assert engine.timers.next_due() is None
    assert engine.tick(10_000.0) == []


def test_a_tick_tries_each_due_timer_once_with_no_user(tmp_path: Path) -> None:
    ruleset = load_ruleset(write_rules(tmp_path, TIMER.format(every="10m")))
    clock = VirtualClock()
    engine = Engine(ruleset, clock=clock)
    for i, user in enumerate(("alice", "bob")):
        engine.evaluate(ChatEvent(user=user, text="hi", at=60.0 + i))
    clock.set(600.0)
    (decision,) = engine.tick()
    assert decision.fired == "trivia"
    assert decision.event.kind == "timer" and decision.event.user == ""
    assert decision.context is not None and decision.context["user"] is None
    assert engine.tick() == []  # the turn was taken


def test_schedule_due_is_in_evaluation_order(tmp_path: Path) -> None:
    text = TIMER.format(every="10m") + (
        "  - id: first\n    priority: 5\n    on: timer\n    every: 10m\n    reply: x\n"
    )
    schedule = Schedule(load_ruleset(write_rules(tmp_path, text)), 0.0)
    assert schedule.due(599.0) == []
    assert schedule.due(600.0) == ["first", "trivia"]
