"""v1.1 timers in the running service, end to end on a real nats-server.

The timer task sleeps until the next turn (computed from the engine's
schedule) and feeds each turn through the chat path: admission, responder,
pacer, robot, response log, metrics. ``every: 1s`` (a warning, not an error)
keeps these tests short; every wait is on a condition with a timeout.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kryten_rules.events import ChatEvent, EventKind
from kryten_rules.service.responder import reply_via
from tests.nats_fixtures import (
    BASE_RULES,
    MODEL,
    WAIT,
    BotFactory,
    Decisions,
    RobotClient,
    metric,
    read_jsonl,
    says,
    settle,
    wait_until,
    write_rules,
)

pytestmark = pytest.mark.usefixtures("litellm_loaded")

TIMER_RULE = """\
  - id: trivia
    on: timer
    every: 1s
    when: {chat: {min_lines: 1, within: 1m}}
    cooldown: {rule: 1h}
    prompt: "One line of trivia for #{{ channel }}."
"""


@pytest.fixture
def model_script() -> dict[str, str]:
    return {MODEL: "ok:Michelle Yeoh did her own stunts."}


@pytest.fixture
def rules_text() -> str:
    return BASE_RULES + TIMER_RULE


async def test_a_timer_speaks_through_the_chat_path_when_people_talk(
    start_bot: BotFactory, client: RobotClient, config_path: Path
) -> None:
    decisions = Decisions()
    bot = await start_bot(on_decision=decisions)
    await client.chat("alice", "what a fight scene")
    command = await client.next_command()
    assert says([command]) == ["Michelle Yeoh did her own stunts."]
    log = config_path.parent / "logs" / "responses.jsonl"
    await wait_until(lambda: any(r.get("rule") == "trivia" for r in read_jsonl(log)), WAIT)
    (line,) = [r for r in read_jsonl(log) if r.get("rule") == "trivia"]
    assert line["event"] == "timer" and line["outcome"] == "sent"
    assert metric(bot, "kryten_rules_events_total", {"event": "timer"}) >= 1
    fired = [d for d in decisions.items if d.fired == "trivia"]
    assert len(fired) == 1 and fired[0].event.user == ""
    # its cooldown was spent on admission: the next turns are blocked by it, not sent
    await wait_until(lambda: "cooldown.rule" in decisions.reasons("trivia"), WAIT)
    await settle(bot, client, 1)
    assert client.drain() == []


async def test_a_timer_stays_silent_in_an_empty_room(
    start_bot: BotFactory, client: RobotClient
) -> None:
    decisions = Decisions()
    bot = await start_bot(on_decision=decisions)
    await wait_until(lambda: "condition.chat" in decisions.reasons("trivia"), WAIT)
    labels = {"rule": "trivia", "outcome": "blocked", "reason": "condition.chat"}
    assert metric(bot, "kryten_rules_decisions_total", labels) >= 1
    await settle(bot, client, 0)
    assert client.drain() == []


async def test_a_reload_that_adds_a_timer_wakes_the_timer_task(
    start_bot: BotFactory, client: RobotClient, config_path: Path
) -> None:
    """With no timers the task sleeps until poked; a reload must recompute its sleep."""
    rules = config_path.parent / "rules" / "main.yaml"
    write_rules(rules, BASE_RULES)
    decisions = Decisions()
    bot = await start_bot(on_decision=decisions)
    assert bot.engine is not None and bot.engine.timers.next_due() is None
    write_rules(rules, BASE_RULES + TIMER_RULE)
    outcome = await bot.reload("test")
    assert outcome["changed"] is True
    await client.chat("alice", "hello")
    await wait_until(lambda: "trivia" in decisions.fired(), WAIT)
    assert says([await client.next_command()]) == ["Michelle Yeoh did her own stunts."]


async def test_rules_explain_answers_for_a_timer_with_the_live_room(
    start_bot: BotFactory, client: RobotClient
) -> None:
    await start_bot()
    reply = await client.request("rules.explain", {"text": "trivia", "on": "timer"})
    assert reply["success"] is True
    (entry,) = reply["data"]["trace"]
    assert entry["rule"] == "trivia" and entry["reason"] == "condition.chat"
    bad = await client.request("rules.explain", {"text": "nope", "on": "timer"})
    assert bad["success"] is False and "not a timer rule" in bad["error"]


def test_a_timer_reply_goes_to_chat_whatever_respond_via_says() -> None:
    tick = ChatEvent(kind=EventKind.TIMER, timer="trivia")
    assert reply_via("same", tick) == "chat"
    assert reply_via("pm", tick) == "chat"  # nobody to PM; validate says so too
