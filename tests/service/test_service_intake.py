"""What a real CyTube channel sends that is not people talking now, end to end.

A real nats-server, the bot in-process, a real local OpenAI-style server, and
a test client that publishes exactly what Kryten-Robot publishes. Measured on
a real channel (CyTube 3.86 with kryten-robot 1.12.6): a moderator bot
receives CyTube's own notices as chat from ``[server]``, and CyTube replays its
last 15 lines, with their original ``time``, on every robot (re)join.

No timed assertions: "no reply" is a fact after :func:`settle`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kryten_rules.service.bot import Bot
from kryten_rules.service.embedded import EmbeddedNats
from tests.nats_fixtures import (
    BOT_NAME,
    KEY_ENV,
    KEY_VALUE,
    MODEL,
    MODEL_TEXT,
    RobotClient,
    make_bot,
    metric,
    now_ms,
    roundtrip,
    says,
    settle,
    write_config,
)
from tests.openai_server import OpenAIServer

NOTICE = {"addClass": "server-whisper"}

# The mention prompt quotes the room's recent lines, as the repo's mention.j2 does.
RULES = """\
kryten_rules: 1
persona:
  name: Cynthia
  aliases: [cynthia]
  system_prompt: "You are Cynthia."
rules:
  - id: intro
    on: changemedia
    reply: 'Now playing: {{ media.title }}'
  - id: mention
    match: {mention: true}
    prompt: |
      {% for h in history %}{{ h.user }}: {{ h.text }}
      {% endfor %}{{ user.name }} said: {{ message }}
"""

pytestmark = pytest.mark.usefixtures("litellm_loaded")

BotFactory = Callable[..., Awaitable[Bot]]


class MovingClock:
    """Wall-clock time plus an offset the test moves forward: the bot's clock after it
    has been up a while, without a test that waits minutes. CyTube's ``time`` in these
    tests is read from the same clock, as a synced CyTube server's would be."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def ms(self) -> int:
        return int(self.now() * 1000)


@pytest.fixture
def rules_text() -> str:
    return RULES


def prompts(openai: OpenAIServer) -> list[str]:
    """The user prompt of every model call, in order."""
    return [str(b["messages"][-1]["content"]) for b in openai.bodies]


def ignored(bot: Bot, why: str) -> float:
    return metric(bot, "kryten_rules_events_ignored_total", {"why": why})


async def test_a_rejoin_replay_of_the_last_15_lines_is_answered_once(
    start_bot: BotFactory, client: RobotClient, openai: OpenAIServer
) -> None:
    bot = await start_bot()
    t0 = now_ms()
    lines = [(f"user{i % 3}", f"just chatting {i}", t0 + i) for i in range(14)]
    lines.append(("alice", "cynthia, best kick ever?", t0 + 14))
    for user, msg, at in lines:
        await client.chat(user, msg, at_ms=at)
    await settle(bot, client, events=15)
    assert says(client.drain()) == [MODEL_TEXT]  # alice answered

    # kryten-robot rejoins: CyTube sends its last 15 lines again, with their own time
    for user, msg, at in lines:
        await client.chat(user, msg, at_ms=at)
    await client.chat("bob", "cynthia, and me?")  # someone talking now
    await settle(bot, client, events=31)

    assert says(client.drain()) == [MODEL_TEXT]  # bob's; alice is not answered again
    assert openai.count(MODEL) == 2
    assert prompts(openai)[-1].endswith("bob said: and me?")
    assert ignored(bot, "history") == 15
    # each replayed line is in the history once, not twice
    assert prompts(openai)[-1].count("just chatting 3") == 1


async def test_a_mention_sent_127_s_before_it_arrives_is_not_answered(
    start_bot: BotFactory, client: RobotClient, openai: OpenAIServer
) -> None:
    clock = MovingClock()
    bot = await start_bot(clock=clock)
    clock.offset += 600  # the bot has been up ten minutes when the robot rejoins
    await client.chat("alice", "cynthia, you there?", at_ms=clock.ms() - 127_000)
    await client.chat("bob", "cynthia, hi!", at_ms=clock.ms())
    await settle(bot, client, events=2)

    assert says(client.drain()) == [MODEL_TEXT]  # bob's only
    assert openai.count(MODEL) == 1
    assert prompts(openai)[0].endswith("bob said: hi!")
    assert "you there" not in prompts(openai)[0]  # history is not in the room's history
    assert ignored(bot, "history") == 1


async def test_the_history_slack_is_the_configs(
    tmp_path: Path,
    nats_server: EmbeddedNats,
    openai: OpenAIServer,
    client: RobotClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    config = write_config(
        tmp_path,
        nats_url=nats_server.url,
        api_base=openai.base_url,
        rules=RULES,
        extra="history_slack: 5m\n",
    )
    clock = MovingClock()
    bot = make_bot(config, clock=clock)
    await bot.start()
    try:
        await roundtrip(bot.nc)
        clock.offset += 600
        await client.chat("alice", "cynthia, you there?", at_ms=clock.ms() - 127_000)
        await settle(bot, client, events=1)
        assert says(client.drain()) == [MODEL_TEXT]  # within five minutes: live
        assert ignored(bot, "history") == 0
    finally:
        await bot.stop(grace=1.0)


async def test_cytube_notices_are_never_answered_nor_in_history(
    start_bot: BotFactory, client: RobotClient, openai: OpenAIServer
) -> None:
    bot = await start_bot()
    await client.chat("carol", "what a fight scene")
    await client.chat("[server]", f"{BOT_NAME} cleared chat.", meta=NOTICE)
    await client.chat("[server]", f"alice joined (aliases: {BOT_NAME}, alice)", meta=NOTICE)
    await client.chat("[voteskip]", "cynthia, 2 of 5 votes to skip")
    await client.chat("bob", "cynthia, who joined?")
    await settle(bot, client, events=5)

    assert says(client.drain()) == [MODEL_TEXT]  # bob's only
    assert openai.count(MODEL) == 1
    (prompt,) = prompts(openai)
    assert prompt.startswith("carol: what a fight scene\n")  # history is there...
    for private in ("aliases", "cleared chat", "votes to skip", "[server]", "[voteskip]"):
        assert private not in prompt  # ...without CyTube's notices
    assert ignored(bot, "notice") == 3


def change_media(media_id: str, title: str, position: float) -> dict[str, Any]:
    return {
        "id": media_id,
        "title": title,
        "seconds": 5400,
        "duration": "01:30:00",
        "type": "yt",
        "meta": {},
        "currentTime": position,
        "paused": False,
    }


async def test_the_media_re_sent_on_a_rejoin_is_not_introduced_again(
    start_bot: BotFactory, client: RobotClient
) -> None:
    bot = await start_bot()
    await client.publish("changeMedia", change_media("a1", "Yes, Madam!", -3))
    # kryten-robot rejoins ten minutes in: CyTube sends it what plays, where it is
    await client.publish("changeMedia", change_media("a1", "Yes, Madam!", 612.5))
    await client.publish("changeMedia", change_media("b2", "China O'Brien", -3))
    await settle(bot, client, events=3)

    # renders run in parallel worker processes: two replies may finish in either order
    replies = sorted(says(client.drain()))
    assert replies == ["Now playing: China O'Brien", "Now playing: Yes, Madam!"]
    assert ignored(bot, "history") == 1
