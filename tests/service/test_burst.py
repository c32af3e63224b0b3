"""Issue 9 item 8: in a burst no decision vanishes, and none spends state it does not use.

Over 64 model replies in progress, the rest of a burst were dropped as
"overloaded" with their cooldown and budget already spent and no
response-log line. Here the model hangs, so the replies admitted stay in
progress while the whole burst is decided (``events_received`` proves every
event was handled; deciding is synchronous), which makes the split between
admitted and overloaded exact without any timing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from kryten_rules.events import ChatEvent
from kryten_rules.service.bot import MAX_PENDING_REPLIES
from kryten_rules.service.embedded import EmbeddedNats
from tests.nats_fixtures import (
    KEY_ENV,
    KEY_VALUE,
    MODEL,
    RobotClient,
    events_received,
    make_bot,
    metric,
    read_jsonl,
    wait_until,
    write_config,
)
from tests.openai_server import OpenAIServer

pytestmark = pytest.mark.usefixtures("litellm_loaded")

RULES = """\
kryten_rules: 1
persona: {name: Cynthia, aliases: [cynthia]}
rules:
  - id: mention
    match: {mention: true}
    cooldown: {user: 1h}
    limit: {per_hour: 1000}
    prompt: "{{ user.name }} said: {{ message }}"
  - id: ping
    match: {regex: ['^!ping\\b']}
    reply: "{{ user.name }}: pong"
"""
BURST = 100


@pytest.fixture
def model_script() -> dict[str, str]:
    return {MODEL: "hang:30"}  # model replies stay in progress


@pytest.fixture
def config_path(
    tmp_path: Path, nats_server: EmbeddedNats, openai: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    cfg = write_config(
        tmp_path,
        nats_url=nats_server.url,
        api_base=openai.base_url,
        rules=RULES,
        model_timeout="25s",
        extra="max_in_flight: 64\n",
    )
    # model replies stay in progress until the test stops the bot
    cfg.write_text(cfg.read_text().replace("deadline: 5s", "deadline: 25s"))
    return cfg


def lines(config_path: Path) -> list[dict[str, object]]:
    return read_jsonl(config_path.parent / "logs" / "responses.jsonl")


async def test_a_burst_logs_every_decision_and_spends_only_what_is_attempted(
    config_path: Path, client: RobotClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kryten_rules")
    bot = make_bot(config_path)
    await bot.start()
    try:
        base = events_received(bot)
        for i in range(BURST):
            await client.chat(f"user{i}", "cynthia, are you there?")
        await wait_until(lambda: events_received(bot) >= base + BURST, what="the burst")

        overloaded = [line for line in lines(config_path) if line["outcome"] == "overloaded"]
        admitted = BURST - len(overloaded)
        assert admitted == MAX_PENDING_REPLIES  # the model lane's limit, all in progress
        assert all(line["sent"] is False and line["send_error"] for line in overloaded)
        # only admitted replies spent the rule's budget and their users' cooldowns
        engine = bot.engine
        assert engine is not None
        assert engine.state.count_since(("count_rule", "mention"), 0) == admitted
        again = [
            engine.evaluate(ChatEvent("chatmsg", str(line["user"]), "cynthia?"), commit=False)
            for line in overloaded
        ]
        assert [d.fired for d in again] == ["mention"] * len(overloaded)
        assert metric(bot, "kryten_rules_replies_dropped_total", {"reason": "overloaded"}) == len(
            overloaded
        )
        # one warning for the whole burst, not one per dropped decision
        warned = [r for r in caplog.records if "overloaded" in r.getMessage()]
        assert len(warned) == 1
    finally:
        await bot.stop(grace=0.2)
    # the replies still waiting on the model when the service stopped have their lines too
    outcomes = [line["outcome"] for line in lines(config_path)]
    assert len(outcomes) == BURST
    assert outcomes.count("shutdown") == MAX_PENDING_REPLIES


async def test_fixed_replies_do_not_wait_behind_model_calls(
    config_path: Path, client: RobotClient
) -> None:
    bot = make_bot(config_path)
    await bot.start()
    try:
        for i in range(MAX_PENDING_REPLIES):
            await client.chat(f"user{i}", "cynthia, hello?")
        await wait_until(lambda: bot.replies.pending == MAX_PENDING_REPLIES, what="model replies")
        await client.chat("carol", "!ping")
        cmd = await client.next_command()
        assert cmd["args"]["message"] == "carol: pong"
        await wait_until(lambda: any(line["rule"] == "ping" for line in lines(config_path)))
        (ping,) = [line for line in lines(config_path) if line["rule"] == "ping"]
        assert ping["outcome"] == "sent" and ping["sent"] is True
    finally:
        await bot.stop(grace=0.2)


def test_an_uncommitted_decision_spends_nothing_until_committed(tmp_path: Path) -> None:
    from kryten_rules import VirtualClock, load_ruleset
    from kryten_rules.engine.evaluate import Engine

    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "kryten_rules: 1\nrules:\n"
        "  - {id: a, match: {any: [foo]}, cooldown: {user: 1m}, limit: {per_hour: 5}, reply: hi}\n",
        encoding="utf-8",
    )
    clock = VirtualClock()
    engine = Engine(load_ruleset([rules], bot_name="kryten"), clock=clock)
    event = ChatEvent("chatmsg", "alice", "foo", at=0.0)
    first = engine.evaluate(event, commit=False)
    assert first.fired == "a"
    assert engine.evaluate(event, commit=False).fired == "a"  # nothing was spent
    assert engine.state.count_since(("count_rule", "a"), -1) == 0
    engine.commit(first)
    engine.commit(first)  # once only
    assert engine.state.count_since(("count_rule", "a"), -1) == 1
    assert engine.evaluate(event, commit=False).blocked == "cooldown.user"


PACED_RULES = """\
kryten_rules: 1
rules:
  - id: fixed
    match: {regex: ['^!f\\b']}
    limit: {per_hour: 20}
    reply: "{{ user.name }}: ok"
"""


async def test_a_reply_that_would_wait_past_its_max_age_is_refused_unspent(
    tmp_path: Path,
    nats_server: EmbeddedNats,
    openai: OpenAIServer,
    client: RobotClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # CyTube's strict pacing (a burst of 4, then 1/s) and replies that may wait 5 s:
    # of 30 at once, only those that can go out within 5 s are admitted. Before, 20
    # were admitted, 12 of them dropped as too old with the budget spent, and a user
    # who came after the queue had drained found the budget gone.
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    cfg = write_config(
        tmp_path,
        nats_url=nats_server.url,
        api_base=openai.base_url,
        rules=PACED_RULES,
        extra="reply_max_age: 5s\n",
    )
    caplog.set_level(logging.INFO, logger="kryten_rules")
    bot = make_bot(cfg, pacing=(4, 1.0))
    await bot.start()
    try:
        for i in range(30):
            await client.chat(f"user{i}", "!f")
        await wait_until(lambda: len(lines(cfg)) == 30, timeout=30, what="30 response-log lines")
        outcomes = [line["outcome"] for line in lines(cfg)]
        sent = outcomes.count("sent")
        assert outcomes.count("too_old") == 0
        assert sent + outcomes.count("overloaded") == 30
        assert 4 <= sent < 20
        engine = bot.engine
        assert engine is not None
        assert engine.state.count_since(("count_rule", "fixed"), 0) == sent  # only what went out
        later = engine.evaluate(ChatEvent("chatmsg", "late", "!f"), commit=False)
        assert later.fired == "fixed"
        # every refusal is in the response log; the service log says it once
        said = [r for r in caplog.records if "not sent: overloaded" in r.getMessage()]
        assert len(said) == 1
    finally:
        await bot.stop(grace=0.2)
