"""Shadow rules in the running service (rule language v1.1 "Shadow rules").

A real nats-server, the local OpenAI-style server and the bot in-process: a
shadow rule that would fire writes its response-log line with outcome
``shadow``, never sends and never calls the model, and the live rule of the
same event still answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kryten_rules.service.bot import Bot
from kryten_rules.service.embedded import EmbeddedNats
from tests.nats_fixtures import (
    KEY_ENV,
    KEY_VALUE,
    MODEL,
    RobotClient,
    read_jsonl,
    says,
    settle,
    started_bots,
    wait_until,
    write_config,
)
from tests.openai_server import OpenAIServer

pytestmark = pytest.mark.usefixtures("litellm_loaded")

BotFactory = Callable[..., Awaitable[Bot]]

RULES = """\
kryten_rules: 1
rules:
  - id: trial-greeting
    mode: shadow
    priority: 10
    match: {any: [hello]}
    reply: "hey {{ user.name }}, welcome!"

  - id: trial-film-talk
    mode: shadow
    priority: 10
    match: {any: [film]}
    prompt: "{{ user.name }} talks films: {{ message }}"

  - id: greeting
    match: {any: [hello, hi]}
    reply: "hi {{ user.name }}"
"""


@pytest.fixture
def openai() -> Iterator[OpenAIServer]:
    server = OpenAIServer({MODEL: "ok:a model reply"}).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def config_path(
    tmp_path: Path, nats_server: EmbeddedNats, openai: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    return write_config(tmp_path, nats_url=nats_server.url, api_base=openai.base_url, rules=RULES)


@pytest.fixture
async def start_bot(config_path: Path) -> AsyncIterator[BotFactory]:
    async with started_bots(config_path) as start:
        yield start


def responses(config_path: Path) -> list[dict[str, Any]]:
    return read_jsonl(config_path.parent / "logs" / "responses.jsonl")


async def test_a_shadow_rule_logs_would_fire_and_the_live_rule_answers(
    start_bot: BotFactory, client: RobotClient, config_path: Path
) -> None:
    bot = await start_bot()
    await client.chat("alice", "hello everyone")
    await settle(bot, client, events=1)
    assert says(client.drain()) == ["hi alice"]  # the live rule, never the shadow reply
    await wait_until(lambda: len(responses(config_path)) == 2, what="two response-log lines")
    by_rule = {line["rule"]: line for line in responses(config_path)}
    shadow = by_rule["trial-greeting"]
    assert (shadow["mode"], shadow["outcome"], shadow["sent"]) == ("shadow", "shadow", False)
    assert shadow["parts"] == ["hey alice, welcome!"]  # what it would have said
    assert shadow["parts_sent"] == 0
    live = by_rule["greeting"]
    assert (live["outcome"], live["sent"]) == ("sent", True)


async def test_a_shadow_prompt_rule_never_calls_the_model_and_never_sends(
    start_bot: BotFactory, client: RobotClient, config_path: Path, openai: OpenAIServer
) -> None:
    bot = await start_bot()
    await client.chat("bob", "that film was great")
    await settle(bot, client, events=1)
    assert client.drain() == []
    await wait_until(lambda: len(responses(config_path)) == 1, what="one response-log line")
    (line,) = responses(config_path)
    assert line["rule"] == "trial-film-talk"
    assert (line["mode"], line["outcome"], line["sent"]) == ("shadow", "shadow", False)
    assert line["model"] is None and line["attempts"] == []
    assert openai.bodies == []
