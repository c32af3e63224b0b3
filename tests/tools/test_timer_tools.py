"""v1.1 timers in the tools: replay in the recorded time, explain --on timer."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner

from kryten_rules.cli import main
from kryten_rules.compile.load import load_ruleset
from kryten_rules.tools.replay import MAX_GAP_TURNS, replay
from kryten_rules.wire import envelope
from tests.timer_rules import TIMER, write_rules

T0 = 1_780_000_000


def _chat(t: float, user: str, msg: str) -> str:
    payload = {"username": user, "msg": msg, "meta": {}, "time": int((T0 + t) * 1000)}
    stamp = datetime.fromtimestamp(T0 + t, UTC).isoformat()
    return envelope(
        "chatMsg", payload, channel="420grindhouse", domain="cytu.be", timestamp=stamp
    ).decode()


def test_replay_runs_timers_in_the_recorded_time(tmp_path: Path) -> None:
    """Turns come at start + k * every of the recording; only busy ones fire."""
    ruleset = load_ruleset(write_rules(tmp_path, TIMER.format(every="10m")))
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
    ruleset = load_ruleset(write_rules(tmp_path, TIMER.format(every="1s")))
    far = float(MAX_GAP_TURNS) * 50  # a hole of 50 times the cap
    stats = replay(ruleset, [_chat(0, "alice", "hi"), _chat(far, "bob", "hi")])
    assert stats.timer_turns == MAX_GAP_TURNS
    assert stats.timer_skipped == 1


def test_explain_a_timer_on_the_command_line(tmp_path: Path) -> None:
    rules = str(write_rules(tmp_path, TIMER.format(every="10m")))
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
