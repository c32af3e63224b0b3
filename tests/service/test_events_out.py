"""Events for other services and the room from the robot's KV, end to end.

A real nats-server, the local OpenAI-style server, the bot in process and a
stand-in for Kryten-Robot: a mention's reply arrives on
``kryten.events.rules.reply`` with the triggering envelope's
``correlation_id``; ``kryten-rules tail`` (a subprocess) prints it; decisions
arrive on ``kryten.events.rules.decision``; and a bot started next to the
robot's ``kryten_{channel}_playlist`` bucket knows what is playing before the
next ``changeMedia``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from kryten_rules.service.embedded import EmbeddedNats
from kryten_rules.service.events_out import DECISION_SUBJECT, REPLY_SUBJECT
from kryten_rules.wire import envelope, event_subject, userlist_bucket
from kryten_rules.wire.playlist import playlist_bucket
from tests.nats_fixtures import (
    BOT_NAME,
    CHANNEL,
    DOMAIN,
    MODEL_TEXT,
    WAIT,
    BotFactory,
    RobotClient,
    chat_payload,
    metric,
    settle,
    started_bots,
)
from tests.openai_server import OpenAIServer

pytestmark = pytest.mark.usefixtures("litellm_loaded")

RULES = """\
kryten_rules: 1
persona:
  name: Cynthia
  aliases: [cynthia]
rules:
  - id: mention
    priority: 100
    match: {mention: true}
    prompt: >-
      {{ user.name }} said: {{ message }}
      {%- if media %} | playing: {{ media.title }} ({{ media.duration }}s){% endif %}
      {%- if playlist.next %} | next: {{ playlist.next.title }}{% endif %}
      | users: {{ room.users }}
  - id: hello
    match: {any: [hello]}
    cooldown: {rule: 1h}
    reply: "hi {{ user.name }}"
"""

# What kryten-robot 1.12.6's state_manager writes (update_current_media, set_playlist):
# `current` is the changeMedia payload with the playlist uid stamped on; `items`
# CyTube's nested playlist items.
CURRENT = {
    "id": "abc123",
    "title": "Lady Reporter",
    "seconds": 5700,
    "duration": "01:35:00",
    "type": "yt",
    "meta": {},
    "currentTime": 1200.5,
    "paused": False,
    "uid": 7,
}
ITEMS = [
    {
        "uid": 6,
        "media": {"id": "old1", "title": "Earlier Film", "seconds": 60, "type": "yt", "meta": {}},
        "temp": False,
        "queueby": "bob",
    },
    {
        "uid": 7,
        "media": {"id": "abc123", "title": "Lady Reporter", "seconds": 5700, "type": "yt"},
        "temp": False,
        "queueby": "bob",
    },
    {
        "uid": 8,
        "media": {"id": "xyz789", "title": "Five Deadly Venoms", "seconds": 6120, "type": "yt"},
        "temp": True,
        "queueby": "carol",
    },
]


@pytest.fixture
def rules_text() -> str:
    return RULES


@pytest.fixture
def config_extra() -> str:
    return "events: {decisions: matched}\n"


async def say(client: RobotClient, user: str, msg: str) -> str:
    """A chat line as the robot publishes it; its correlation_id."""
    cid = str(uuid.uuid4())
    data = envelope(
        "chatMsg", chat_payload(user, msg), channel=CHANNEL, domain=DOMAIN, correlation_id=cid
    )
    await client.nc.publish(event_subject(CHANNEL, "chatMsg"), data)
    await client.nc.flush()
    return cid


async def next_event(queue: asyncio.Queue[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    return (await asyncio.wait_for(queue.get(), WAIT))[1]


async def test_a_mention_publishes_its_reply_event_with_the_triggering_correlation_id(
    start_bot: BotFactory, client: RobotClient
) -> None:
    replies = await client.collect(REPLY_SUBJECT)
    await start_bot()
    cid = await say(client, "alice", "cynthia, who did the stunts?")
    event = await next_event(replies)
    assert event["v"] == 1 and event["type"] == "reply"
    assert event["correlation_id"] == cid
    assert (event["domain"], event["channel"], event["user"]) == (DOMAIN, CHANNEL, "alice")
    assert (event["rule"], event["event"], event["via"]) == ("mention", "chatmsg", "chat")
    assert event["model"] == "m"
    assert event["parts"] == [MODEL_TEXT] and event["parts_sent"] == 1
    assert event["outcome"] == "sent" and event["dry_run"] is False
    assert event["latency_ms"] > 0
    assert event["time"].endswith("+00:00")
    # the robot really got the message the event reports
    command = await client.next_command()
    assert command["args"]["message"] == MODEL_TEXT


async def test_a_fixed_reply_has_no_model_and_a_refused_one_publishes_nothing(
    start_bot: BotFactory, client: RobotClient
) -> None:
    replies = await client.collect(REPLY_SUBJECT)
    bot = await start_bot()
    await say(client, "bob", "hello there")
    event = await next_event(replies)
    assert (event["rule"], event["model"], event["parts"]) == ("hello", None, ["hi bob"])
    client.answer = {"service": "robot", "success": False, "error": "commands disabled"}
    await say(client, "carol", "cynthia, hi")
    await settle(bot, client, 2)
    await bot.events_out.drain()  # anything queued is on the wire, then through the server
    await settle(bot, client, 2)
    assert replies.empty()  # the refused reply said nothing in the channel: no event


async def test_decisions_that_matched_are_published_with_their_trace(
    start_bot: BotFactory, client: RobotClient
) -> None:
    decisions = await client.collect(DECISION_SUBJECT)
    bot = await start_bot()
    await say(client, "bob", "nothing for the rules here")  # matched nothing: not published
    cid = await say(client, "bob", "hello there")
    first = await next_event(decisions)
    assert (first["fired"], first["correlation_id"], first["user"]) == ("hello", cid, "bob")
    assert {"rule": "hello", "outcome": "fired", "reason": None, "detail": None} in first["trace"]
    await say(client, "dave", "hello again")  # the rule's cooldown stops it
    second = await next_event(decisions)
    assert second["fired"] is None and second["blocked"] == "cooldown.rule"
    await settle(bot, client, 3)
    await bot.events_out.drain()
    await settle(bot, client, 3)
    assert decisions.empty()


async def test_the_room_comes_from_the_robots_kv_before_any_media_event(
    config_path: Path, client: RobotClient, openai: OpenAIServer
) -> None:
    js = client.nc.jetstream()
    kv = await js.create_key_value(bucket=playlist_bucket(CHANNEL))
    await kv.put("current", json.dumps(CURRENT).encode())
    await kv.put("items", json.dumps(ITEMS).encode())
    users = await js.create_key_value(bucket=userlist_bucket(CHANNEL))
    people = [{"name": n, "rank": 1, "meta": {}} for n in ("alice", "bob", BOT_NAME)]
    await users.put("users", json.dumps(people).encode())
    async with started_bots(config_path) as start:
        bot = await start()
        await client.chat("alice", "cynthia, what is on?")
        await client.next_command()
        prompt = json.dumps(openai.bodies[-1]["messages"])
        assert "playing: Lady Reporter (5700.0s)" in prompt
        assert "next: Five Deadly Venoms" in prompt
        assert "users: 3" in prompt
        # the playlist follows the robot's events: the next item deleted, the last one
        await client.publish("delete", {"uid": 8})
        await client.add_user("erin", 0)
        await client.chat("alice", "cynthia, and now?")
        await client.next_command()
        prompt = json.dumps(openai.bodies[-1]["messages"])
        assert "next:" not in prompt and "users: 4" in prompt
        # the robot rejoining mid-play re-announces the media: known, so not news
        await client.publish("changeMedia", {**CURRENT, "currentTime": 1300.0})
        await settle(bot, client, 5)
        assert metric(bot, "kryten_rules_events_ignored_total", {"why": "history"}) == 1


async def test_tail_prints_the_reply_event_of_a_mention(
    start_bot: BotFactory, client: RobotClient, nats_server: EmbeddedNats
) -> None:
    replies = await client.collect(REPLY_SUBJECT)
    await start_bot()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kryten_rules",
        "tail",
        "--nats",
        nats_server.url,
        "--channel",
        CHANNEL.lower(),
        "--decisions",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        banner = await asyncio.wait_for(proc.stderr.readline(), WAIT)
        assert b"tailing" in banner  # subscribed: what follows reaches it
        await say(client, "alice", "cynthia, who did the stunts?")
        await next_event(replies)
        lines: list[str] = []
        while not any(" -> mention " in line for line in lines):
            raw = await asyncio.wait_for(proc.stdout.readline(), WAIT)
            assert raw, "tail exited"
            lines.append(raw.decode())
        decision_line = next(line for line in lines if " ? chatmsg: fired mention" in line)
        assert f"#{CHANNEL} alice" in decision_line
        reply_line = next(line for line in lines if " -> mention " in line)
        assert f"#{CHANNEL} alice -> mention (m, " in reply_line
        assert reply_line.rstrip().endswith(f': "{MODEL_TEXT}"')
    finally:
        proc.send_signal(2)  # Ctrl-C
        code = await asyncio.wait_for(proc.wait(), WAIT)
    assert code == 0


def test_tail_without_a_server_exits_2_with_a_clear_message(free_url: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kryten_rules", "tail", "--nats", free_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert f"error: cannot connect to NATS at {free_url}" in out.stderr


@pytest.fixture
def free_url() -> str:
    from kryten_rules.service.embedded import free_port

    return f"nats://127.0.0.1:{free_port()}"
