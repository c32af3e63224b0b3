"""v1.1 timers: the schedule, reloads, validation, replay in recorded time."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from kryten_rules.clock import VirtualClock
from kryten_rules.compile.load import check_paths, load_ruleset
from kryten_rules.engine.evaluate import Engine
from kryten_rules.engine.timers import Schedule, Turn, next_after
from kryten_rules.events import ChatEvent
from kryten_rules.tools.replay import MAX_GAP_TURNS, replay
from kryten_rules.wire import envelope

T0 = 1_780_000_000

TIMER = """\
kryten_rules: 1
rules:
  - id: trivia
    on: timer
    every: {every}
    when: {{chat: {{min_lines: 2, within: 10m}}}}
    reply: "Did you know?"
"""


def _rules(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _codes(path: Path) -> list[str]:
    return sorted(d.code for d in check_paths([path]).diagnostics)


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
    first = load_ruleset(_rules(tmp_path, TIMER.format(every="10m")))
    clock = VirtualClock(0.0)
    engine = Engine(first, clock=clock)
    assert engine.timers.next_due() == 600.0
    clock.set(250.0)
    two = TIMER.format(every="10m") + (
        "  - id: news\n    on: timer\n    every: 5m\n    reply: news\n"
    )
    engine.swap(load_ruleset(_rules(tmp_path, two, "two.yaml")))
    assert engine.timers.turns["trivia"].next_due == 600.0  # kept
    assert engine.timers.turns["news"].next_due == 550.0  # started at the reload
    clock.set(300.0)
    engine.swap(load_ruleset(_rules(tmp_path, TIMER.format(every="20m"), "three.yaml")))
    assert set(engine.timers.turns) == {"trivia"}  # news is gone
    assert engine.timers.turns["trivia"].next_due == 300.0 + 1200.0  # every changed: anew


def test_disabled_timers_have_no_turns(tmp_path: Path) -> None:
    text = TIMER.format(every="10m").replace("    on: timer", "    enabled: false\n    on: timer")
    engine = Engine(load_ruleset(_rules(tmp_path, text)), clock=VirtualClock())
    assert engine.timers.next_due() is None
    assert engine.tick(10_000.0) == []


def test_a_tick_tries_each_due_timer_once_with_no_user(tmp_path: Path) -> None:
    ruleset = load_ruleset(_rules(tmp_path, TIMER.format(every="10m")))
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
    schedule = Schedule(load_ruleset(_rules(tmp_path, text)), 0.0)
    assert schedule.due(599.0) == []
    assert schedule.due(600.0) == ["first", "trivia"]


@pytest.mark.parametrize(
    ("text", "codes"),
    [
        (TIMER.format(every="10m"), []),
        (TIMER.format(every="30s"), ["timer-every-short"]),
        (TIMER.format(every="0.5"), ["timer-every-too-short"]),
        (TIMER.format(every="999999999999d"), ["bad-duration"]),
        (TIMER.replace("    every: {every}\n", "").format(), ["timer-every-missing"]),
        (
            TIMER.format(every="10m").replace("on: timer", "on: chatmsg"),
            ["every-not-timer"],
        ),
        (
            TIMER.format(every="10m") + "    match: {any: [hello]}\n",
            ["timer-match"],
        ),
        (
            TIMER.format(every="10m").replace("{chat:", "{rank: {min: 1}, chat:"),
            ["timer-sender-condition"],
        ),
        (TIMER.format(every="10m").replace("within: 10m", "within: 0s"), ["chat-window"]),
        (TIMER.format(every="10m").replace("Did you know?", "Hi {{ user.name }}"), ["timer-user"]),
        (TIMER.format(every="10m") + "    respond_via: pm\n", ["timer-respond-via"]),
        (TIMER.format(every="10m").replace("min_lines: 2, ", ""), ["missing-key"]),
        (TIMER.format(every="10m").replace("min_lines: 2", "min_lines: 201"), ["schema"]),
    ],
)
def test_validate_timers(tmp_path: Path, text: str, codes: list[str]) -> None:
    assert _codes(_rules(tmp_path, text)) == codes


def test_timers_do_not_shadow_each_other(tmp_path: Path) -> None:
    text = "kryten_rules: 1\nrules:\n" + "".join(
        f"  - id: t{i}\n    on: timer\n    every: 10m\n    reply: x\n" for i in range(3)
    )
    assert _codes(_rules(tmp_path, text)) == []


def _chat(t: float, user: str, msg: str) -> str:
    payload = {"username": user, "msg": msg, "meta": {}, "time": int((T0 + t) * 1000)}
    stamp = datetime.fromtimestamp(T0 + t, UTC).isoformat()
    return envelope(
        "chatMsg", payload, channel="420grindhouse", domain="cytu.be", timestamp=stamp
    ).decode()


def test_replay_runs_timers_in_the_recorded_time(tmp_path: Path) -> None:
    """Turns come at start + k * every of the recording; only busy ones fire."""
    ruleset = load_ruleset(_rules(tmp_path, TIMER.format(every="10m")))
    log = [
        _chat(0, "alice", "hi"),  # the timers' clocks start here
        _chat(500, "alice", "anyone?"),
        _chat(550, "bob", "yes"),  # turn at 600: 2 lines in 10 minutes, fires
        _chat(1900, "alice", "back"),  # turns at 1200 and 1800: 0 and 0 lines, blocked
    ]
    stats = replay(ruleset, log)
    assert stats.timer_turns == 3
    assert stats.fired["trivia"] == 1
    assert stats.blocked["trivia"]["condition.chat"] == 2
    assert stats.replies_to == {}  # a timer answers nobody


def test_replay_takes_a_bounded_number_of_turns_in_a_gap(tmp_path: Path) -> None:
    ruleset = load_ruleset(_rules(tmp_path, TIMER.format(every="1s")))
    far = float(MAX_GAP_TURNS) * 50  # a hole of 50 times the cap
    stats = replay(ruleset, [_chat(0, "alice", "hi"), _chat(far, "bob", "hi")])
    assert stats.timer_turns == MAX_GAP_TURNS
    assert stats.timer_skipped == 1


def test_explain_a_timer_on_the_command_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from kryten_rules.cli import main

    rules = str(_rules(tmp_path, TIMER.format(every="10m")))
    runner = CliRunner()
    quiet = runner.invoke(main, ["explain", "--on", "timer", "trivia", rules])
    assert quiet.exit_code == 0, quiet.output
    assert "condition.chat (0 of 2 lines from people in 10m)" in quiet.output
    assert "fires: nothing" in quiet.output
    busy = runner.invoke(main, ["explain", "--on", "timer", "", "--chat-lines", "2", rules])
    assert busy.exit_code == 0, busy.output
    assert "fires: trivia" in busy.output and "Did you know?" in busy.output
    wrong = runner.invoke(main, ["explain", "--on", "timer", "trivai", rules])
    assert wrong.exit_code == 2 and "not a timer rule (timer rules: trivia)" in wrong.output


def test_a_timer_reply_goes_to_chat_whatever_respond_via_says() -> None:
    from kryten_rules.service.responder import reply_via

    tick = ChatEvent(kind="timer", timer="trivia")
    assert reply_via("same", tick) == "chat"
    assert reply_via("pm", tick) == "chat"  # nobody to PM; validate says so too
