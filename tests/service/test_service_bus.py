"""The service on a :class:`MemoryBus`: the seam where NATS is not the point.

The bot runs whole (rules, render workers, responder, pacer, robot sender,
control) but its traffic goes through an in-process bus, so these tests need
no nats-server; the end-to-end tests (``test_service.py`` and others) keep
the real one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kryten_rules import ChatEvent
from kryten_rules.compile.load import load_config, load_ruleset
from kryten_rules.config import ModelConfig
from kryten_rules.dispatch.llm import ChainRunner
from kryten_rules.dispatch.llm.litellm_client import CompletionResult
from kryten_rules.dispatch.renderpool import RenderPool
from kryten_rules.engine.evaluate import Engine
from kryten_rules.service.bot import RULES_COMMAND_SUBJECT, Bot
from kryten_rules.service.bus import (
    MemoryBus,
    Message,
    NoResponders,
    RequestTimeout,
    subject_matches,
)
from kryten_rules.service.lifecycle import lifecycle_subject
from kryten_rules.service.metrics import Metrics
from kryten_rules.service.responder import Responder
from kryten_rules.service.statesync import MemoryBackend
from kryten_rules.wire import COMMAND_SUBJECT, envelope, event_subject, userlist_bucket
from tests.nats_fixtures import (
    BASE_RULES,
    BOT_NAME,
    CHANNEL,
    DOMAIN,
    KEY_ENV,
    KEY_VALUE,
    Decisions,
    chat_payload,
    make_bot,
    read_jsonl,
    wait_until,
    write_config,
)


class Robot:
    """Kryten-Robot's command handler on the memory bus: confirms (or not) every command."""

    def __init__(self, bus: MemoryBus) -> None:
        self.bus = bus
        self.commands: list[dict[str, Any]] = []
        self.confirm = True

    async def attach(self) -> Robot:
        await self.bus.subscribe(COMMAND_SUBJECT, self._on_command)
        return self

    async def _on_command(self, msg: Message) -> None:
        command = json.loads(msg.data)
        self.commands.append(command)
        if self.confirm:
            answer = {"service": "robot", "command": command["command"], "success": True}
            await msg.respond(json.dumps(answer).encode())

    def says(self) -> list[str]:
        return [c["args"]["message"] for c in self.commands if c["command"] == "say"]


class Model:
    """A completion that answers every prompt with ``text``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.prompts: list[list[dict[str, str]]] = []

    async def __call__(
        self, model: ModelConfig, messages: list[dict[str, str]], timeout: float
    ) -> CompletionResult:
        self.prompts.append(messages)
        return CompletionResult(self.text, 1, 1, 0.0)


async def publish(bus: MemoryBus, event_name: str, payload: dict[str, Any]) -> None:
    data = envelope(event_name, payload, channel=CHANNEL, domain=DOMAIN)
    await bus.publish(event_subject(CHANNEL, event_name), data)


@pytest.fixture
def bus() -> MemoryBus:
    return MemoryBus()


@pytest.fixture
async def bot(
    tmp_path: Path, bus: MemoryBus, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Bot]:
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    # the URLs are never dialled: the bus is given
    cfg = write_config(tmp_path, nats_url="nats://unused:1", api_base="http://unused:1/v1")
    bus.kv[(userlist_bucket(CHANNEL), "users")] = json.dumps(
        [{"name": "mod", "rank": 2}]
    ).encode()
    b = make_bot(cfg, bus=bus, completion=Model("Hello there, alice!"), metrics_port=0,
                 serve_http=False)
    await b.start()
    yield b
    await b.stop(grace=1.0)


async def settled(bot: Bot, lines: int) -> list[dict[str, Any]]:
    assert bot.config.log.responses is not None
    path = Path(bot.config.log.responses)
    await wait_until(lambda: len(read_jsonl(path)) >= lines, what=f"{lines} response lines")
    await wait_until(lambda: bot.replies.pending == 0, what="replies in progress")
    return read_jsonl(path)


async def idle(bot: Bot) -> None:
    """Until every reply in progress has its response-log line."""
    await wait_until(lambda: bot.replies.pending == 0, what="replies in progress")


def test_subject_wildcards() -> None:
    assert subject_matches("kryten.events.cytube.c.>", "kryten.events.cytube.c.chatmsg")
    assert not subject_matches("kryten.events.cytube.c.>", "kryten.events.cytube.c")
    assert subject_matches("a.*.c", "a.b.c")
    assert not subject_matches("a.*.c", "a.b.c.d")
    assert not subject_matches("a.b", "a.b.c")


async def test_request_reply_no_responders_and_timeout(bus: MemoryBus) -> None:
    with pytest.raises(NoResponders):
        await bus.request("nobody.home", b"?", timeout=0.1)

    async def echo(msg: Message) -> None:
        await msg.respond(msg.data.upper())

    async def mute(msg: Message) -> None:
        return None

    await bus.subscribe("echo", echo)
    assert await bus.request("echo", b"hi", timeout=1) == b"HI"
    await bus.subscribe("mute", mute)
    with pytest.raises(RequestTimeout):
        await bus.request("mute", b"hi", timeout=0.05)


async def test_a_chat_line_is_answered_through_the_bus(bot: Bot, bus: MemoryBus) -> None:
    robot = await Robot(bus).attach()
    await publish(bus, "chatMsg", chat_payload("alice", "hey cynthia, how are you?"))
    (line,) = await settled(bot, 1)
    assert robot.says() == ["Hello there, alice!"]
    assert (line["rule"], line["outcome"], line["sent"]) == ("mention", "sent", True)
    assert bus.sent(lifecycle_subject("startup"))  # control published through the bus too


async def test_ranks_come_from_the_bus_kv(bot: Bot, bus: MemoryBus) -> None:
    robot = await Robot(bus).attach()
    await publish(bus, "chatMsg", chat_payload("mod", "!secret"))
    await settled(bot, 1)
    assert robot.says() == ["mod: the secret is 42"]


async def test_no_robot_is_logged_and_degrades_health(bot: Bot, bus: MemoryBus) -> None:
    await publish(bus, "chatMsg", chat_payload("alice", "cynthia?"))
    (line,) = await settled(bot, 1)
    assert line["outcome"] == "no_robot"
    health = bot.health()
    assert (health["status"], health["sending"], health["send_failures"]) == (
        "degraded",
        "failing",
        1,
    )


async def test_commands_over_the_bus(bot: Bot, bus: MemoryBus) -> None:
    async def ask(command: str, **args: Any) -> dict[str, Any]:
        body = json.dumps({"command": command, "args": args}).encode()
        answer: dict[str, Any] = json.loads(await bus.request(RULES_COMMAND_SUBJECT, body, 5))
        return answer

    ping = await ask("system.ping")
    assert ping["success"] and ping["data"]["pong"]
    status = await ask("rules.status")
    assert status["data"]["rule_ids"] == ["mention", "mod-secret", "pm-answer"]
    explained = await ask("rules.explain", text="cynthia, hello", user="alice")
    assert explained["success"] and explained["data"]["fired"] == "mention"
    unknown = await ask("rules.nope")
    assert not unknown["success"] and "Unknown command" in unknown["error"]
    assert (await ask("system.health"))["data"]["nats_connected"] is True


async def test_the_bot_does_not_answer_itself(bot: Bot, bus: MemoryBus) -> None:
    robot = await Robot(bus).attach()
    await publish(bus, "chatMsg", chat_payload(BOT_NAME, "cynthia, echo"))
    assert bot.replies.pending == 0 and robot.commands == []


async def test_a_cooldown_outlives_a_restart_through_the_state_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    rules = BASE_RULES.replace("max_parts: 2\n", "max_parts: 2\n    cooldown: {rule: 1h}\n", 1)
    cfg = write_config(
        tmp_path, nats_url="nats://unused:1", api_base="http://unused:1/v1", rules=rules
    )
    backend = MemoryBackend()
    fired: list[list[str | None]] = []
    for _ in range(2):  # the same channel, the bot restarted
        bus = MemoryBus()
        robot = await Robot(bus).attach()
        decisions = Decisions()
        b = make_bot(cfg, bus=bus, completion=Model("Hi!"), serve_http=False,
                     state_backend=backend, on_decision=decisions)
        await b.start()
        try:
            await publish(bus, "chatMsg", chat_payload("alice", "cynthia, hello"))
            await idle(b)
        finally:
            await b.stop(grace=1.0)
        fired.append(decisions.fired())
        assert robot.says() == (["Hi!"] if len(fired) == 1 else [])
    assert fired == [["mention"], [None]]
    assert decisions.reasons("mention") == ["cooldown.rule"]


async def test_the_responder_plans_a_reply_with_no_bus_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decision -> ReplyPlan on its own: a reply that cleans down to nothing takes
    the fallback_reply; nothing is sent (the plan only says what to send)."""
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    cfg = load_config(
        write_config(tmp_path, nats_url="nats://unused:1", api_base="http://unused:1/v1")
    )
    ruleset = load_ruleset(cfg.rules, cfg)
    decision = Engine(ruleset, bot_name=BOT_NAME).evaluate(
        ChatEvent(user="alice", text="cynthia, hello", at=1.0)
    )
    assert decision.fired == "mention"
    pool = RenderPool()
    await pool.start()
    try:
        model = Model("As an AI language model.")  # filler: nothing left after cleaning
        chains = ChainRunner(cfg.models, cfg.chains, completion=model)
        plan = await Responder(cfg, chains, pool, Metrics()).plan(decision, ruleset)
    finally:
        await pool.close()
    assert model.prompts and plan.sends is None and plan.outcome is None
    assert plan.parts == ["alice: the comms are down, try again later."]
    assert plan.via == "chat"
    assert plan.error == "the reply was empty after cleaning; used fallback_reply"
