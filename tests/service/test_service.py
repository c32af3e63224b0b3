"""The running bot end to end: a real nats-server, a real local OpenAI-style
server, the bot in-process (or as `kryten-rules run`), and a test client that
plays Kryten-Robot on the bus.

Nothing here asserts how long something took: waits have generous upper
bounds, and "nothing was sent" is checked after :func:`settle`, which proves
the bot has handled every event and flushed every send.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from kryten_rules.emit.clean import js_length
from kryten_rules.service.bot import (
    DISCOVERY_SUBJECT,
    RELOAD_SUBJECT,
    Bot,
    lifecycle_subject,
)
from kryten_rules.service.embedded import EmbeddedNats, free_port
from kryten_rules.wire import envelope, userlist_bucket
from tests.nats_fixtures import (
    BASE_RULES,
    BOT_NAME,
    CHANNEL,
    DOMAIN,
    KEY_ENV,
    KEY_VALUE,
    MODEL,
    MODEL_TEXT,
    WAIT,
    Decisions,
    RobotClient,
    chat_payload,
    make_bot,
    metric,
    now_ms,
    read_jsonl,
    says,
    settle,
    wait_until,
    write_config,
    write_rules,
)
from tests.openai_server import OpenAIServer

LIFECYCLE_KEYS = {"service", "version", "hostname", "timestamp", "uptime_seconds", "metadata"}

BotFactory = Callable[..., Awaitable[Bot]]


# ------------------------------------------------------------------ fixtures


pytestmark = pytest.mark.usefixtures("litellm_loaded")


def responses_path(config_path: Path) -> Path:
    return config_path.parent / "logs" / "responses.jsonl"


def rules_path(config_path: Path) -> Path:
    return config_path.parent / "rules" / "main.yaml"


async def next_on(
    queue: asyncio.Queue[tuple[str, dict[str, Any]]],
    pred: Callable[[str, dict[str, Any]], bool] = lambda s, d: True,
    timeout: float = WAIT,
) -> tuple[str, dict[str, Any]]:
    """The next queued message that satisfies ``pred`` (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no matching message arrived")
        subject, data = await asyncio.wait_for(queue.get(), left)
        if pred(subject, data):
            return subject, data


def assert_command_meta(cmd: dict[str, Any]) -> None:
    meta = cmd["meta"]
    assert set(meta) == {"source", "timestamp", "domain", "channel", "request_id"}
    assert meta["source"] == "rules"
    assert meta["domain"] == DOMAIN
    assert meta["channel"] == CHANNEL
    assert datetime.fromisoformat(meta["timestamp"]).tzinfo is not None
    assert uuid.UUID(meta["request_id"]).version == 4


# ------------------------------------------------------------------ replies


async def test_mention_is_answered_with_a_say_command(
    start_bot: BotFactory, client: RobotClient, openai: OpenAIServer
) -> None:
    await start_bot()
    await client.chat("alice", "hey CynthiaBot, how are you?")

    cmd = await client.next_command()
    assert set(cmd) == {"command", "args", "meta"}
    assert cmd["command"] == "say"
    assert cmd["args"] == {"message": MODEL_TEXT}
    assert_command_meta(cmd)
    # what the model saw: the persona's system prompt and the rule's prompt,
    # with the key sent as a bearer token
    body = openai.bodies[-1]
    assert body["model"] == MODEL
    assert body["messages"][0] == {
        "role": "system",
        "content": f"You are Cynthia, a chat bot in #{CHANNEL}.",
    }
    assert body["messages"][1]["role"] == "user"
    assert body["messages"][1]["content"].startswith("alice said: ")
    assert "how are you?" in body["messages"][1]["content"]
    assert openai.last_headers["authorization"] == f"Bearer {KEY_VALUE}"


@pytest.mark.parametrize(
    ("why", "user", "payload_kw"),
    [
        ("self", BOT_NAME, {}),  # the bot's own line echoed back by CyTube
        ("history", "olduser", {"at_ms": "old"}),  # replayed on join, older than our start
        ("muted", "muted", {"meta": {"shadow": True}}),  # shadow-muted sender
    ],
)
async def test_ignored_events_get_no_reply(
    start_bot: BotFactory,
    client: RobotClient,
    openai: OpenAIServer,
    why: str,
    user: str,
    payload_kw: dict[str, Any],
) -> None:
    bot = await start_bot()
    if payload_kw.get("at_ms") == "old":
        payload_kw = {"at_ms": int((bot.started_at - 60) * 1000)}
    await client.chat(user, "cynthia, can you hear me?", **payload_kw)
    await client.chat("bob", "cynthia, and me?")  # a good event right after
    await settle(bot, client, events=2)

    assert says(client.drain()) == [MODEL_TEXT]  # one reply: bob's
    assert openai.count(MODEL) == 1
    assert openai.bodies[0]["messages"][1]["content"].startswith("bob said:")
    assert metric(bot, "kryten_rules_events_ignored_total", {"why": why}) == 1


async def test_rank_from_add_user_changes_the_outcome(
    start_bot: BotFactory, client: RobotClient
) -> None:
    decisions = Decisions()
    bot = await start_bot(on_decision=decisions)
    await client.chat("carol", "!secret please")  # rank unknown: a guest
    await settle(bot, client, events=1)
    assert client.drain() == []
    assert decisions.reasons("mod-secret") == ["condition.rank"]

    await client.add_user("carol", 2)  # moderator
    await client.chat("carol", "!secret please")
    cmd = await client.next_command()
    assert cmd["command"] == "say"
    assert cmd["args"]["message"] == "carol: the secret is 42"
    assert decisions.items[-1].fired == "mod-secret"


async def test_rank_from_the_robot_kv_bucket(
    nats_server: EmbeddedNats, start_bot: BotFactory, client: RobotClient
) -> None:
    # Kryten-Robot keeps the user list in JetStream KV; a bot that starts
    # mid-session knows ranks before any addUser arrives.
    kv = await client.nc.jetstream().create_key_value(bucket=userlist_bucket(CHANNEL))
    users = [{"name": "modmin", "rank": 3, "meta": {}, "profile": {}}, {"name": "g", "rank": 0}]
    await kv.put("users", json.dumps(users).encode())
    await start_bot()
    await client.chat("modmin", "!secret")
    cmd = await client.next_command()
    assert cmd["args"]["message"] == "modmin: the secret is 42"


async def test_pm_is_answered_by_pm_when_respond_via_same(
    start_bot: BotFactory, client: RobotClient, openai: OpenAIServer
) -> None:
    await start_bot()
    await client.pm("erin", "are you the real one?")
    cmd = await client.next_command()
    assert set(cmd) == {"command", "args", "meta"}
    assert cmd["command"] == "pm"
    assert cmd["args"] == {"to": "erin", "msg": MODEL_TEXT}
    assert_command_meta(cmd)
    assert openai.bodies[-1]["messages"][1]["content"].startswith("private message from erin")


async def test_model_failure_sends_the_fallback_reply(
    start_bot: BotFactory, client: RobotClient, openai: OpenAIServer, config_path: Path
) -> None:
    openai.set(MODEL, "status:500")
    await start_bot()
    await client.chat("alice", "cynthia?")
    cmd = await client.next_command()
    assert cmd["args"]["message"] == "alice: the comms are down, try again later."
    await wait_until(lambda: len(read_jsonl(responses_path(config_path))) == 1)
    (line,) = read_jsonl(responses_path(config_path))
    assert [a["outcome"] for a in line["attempts"]] == ["server_error"]
    assert line["model"] is None
    assert line["sent"] is True


@pytest.mark.parametrize(
    "model_text", ["As an AI language model.", "Cynthia:", "```\n```", "**Cynthia:** \u200b"]
)
async def test_a_model_reply_that_cleans_to_nothing_sends_the_fallback_reply(
    start_bot: BotFactory,
    client: RobotClient,
    openai: OpenAIServer,
    config_path: Path,
    model_text: str,
) -> None:
    """Issue #9 item 18: the model answered, but nothing was left to say."""
    openai.set(MODEL, f"ok:{model_text}")
    bot = await start_bot()
    await client.chat("alice", "cynthia?")
    cmd = await client.next_command()
    assert cmd["args"]["message"] == "alice: the comms are down, try again later."
    await wait_until(lambda: len(read_jsonl(responses_path(config_path))) == 1)
    (line,) = read_jsonl(responses_path(config_path))
    assert [a["outcome"] for a in line["attempts"]] == ["ok"]
    assert line["sent"] is True and line["parts"] == [cmd["args"]["message"]]
    assert line["error"] == "the reply was empty after cleaning; used fallback_reply"
    assert metric(bot, "kryten_rules_replies_dropped_total", {"reason": "empty"}) == 0


async def test_a_reply_that_cleans_to_nothing_without_fallback_is_logged_and_counted(
    start_bot: BotFactory, client: RobotClient, openai: OpenAIServer, config_path: Path
) -> None:
    openai.set(MODEL, "ok:As an AI language model.")
    bot = await start_bot()
    await client.pm("erin", "hello?")  # pm-answer has no fallback_reply
    await settle(bot, client, events=1)
    assert client.drain() == []
    (line,) = read_jsonl(responses_path(config_path))
    assert line["sent"] is False and line["parts"] == []
    assert line["error"] == "the reply was empty after cleaning"
    assert metric(bot, "kryten_rules_replies_dropped_total", {"reason": "empty"}) == 1


@pytest.mark.parametrize(
    "model_text",
    ["/clear", "  /clear the chat", "Cynthia: /clear", "\u200b/kick alice", "`/mute bob`"],
)
async def test_a_model_reply_starting_with_a_slash_is_neutralised(
    start_bot: BotFactory, client: RobotClient, openai: OpenAIServer, model_text: str
) -> None:
    openai.set(MODEL, f"ok:{model_text}")
    bot = await start_bot()
    await client.chat("alice", "cynthia, say something")
    await settle(bot, client, events=1)
    messages = says(client.drain())
    assert messages, "the reply should still be sent, defused"
    for m in messages:
        assert not m.startswith("/")
        assert not m.lstrip().startswith("/")
        assert not m.lstrip("\u200b\u200c\u200d\ufeff `\"'").startswith("/")


async def test_long_model_output_is_split_into_at_most_max_parts(
    start_bot: BotFactory, client: RobotClient, openai: OpenAIServer
) -> None:
    sentence = "This film has a wonderful fight scene on a rooftop 🎬 in the rain. "
    openai.set(MODEL, "ok:" + sentence * 30)  # ~2000 characters, emoji count 2 in UTF-16
    bot = await start_bot()
    await client.chat("alice", "cynthia, tell me everything")
    await settle(bot, client, events=1)
    parts = says(client.drain())
    assert len(parts) == 2  # the mention rule's max_parts
    assert all(0 < js_length(p) <= 320 for p in parts)
    assert all(not p.startswith("/") for p in parts)


# ------------------------------------------------------------------ robustness


async def test_start_returns_with_subscriptions_live(
    config_path: Path, client: RobotClient, openai: OpenAIServer
) -> None:
    """A line published the moment start() returns is answered: the subscriptions
    reached the server before start() returned (no round trip in between here)."""
    bot = make_bot(config_path)
    await bot.start()
    try:
        await client.chat("alice", "hey CynthiaBot, are you up?")
        assert (await client.next_command())["command"] == "say"
    finally:
        await bot.stop(grace=0.5)


async def test_malformed_events_are_skipped_and_the_next_good_event_answered(
    start_bot: BotFactory,
    client: RobotClient,
    openai: OpenAIServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="kryten_rules")
    bot = await start_bot()
    ok = chat_payload("mallory", "cynthia hello")

    def env(**over: Any) -> bytes:
        doc = json.loads(envelope("chatMsg", ok, channel=CHANNEL, domain=DOMAIN))
        doc.update(over)
        return json.dumps(doc).encode()

    raw_events: list[bytes] = [
        b"{not json",
        b"\xff\xfe\xfd not utf-8",
        b"[1, 2, 3]",
        b'{"event_name": "chatMsg", "payload": {"msg": NaN}, "channel": "x", "domain": "y"}',
        json.dumps({"payload": ok, "channel": CHANNEL, "domain": DOMAIN}).encode(),
        env(payload={"msg": "cynthia hi", "meta": {}, "time": now_ms()}),  # no username
        env(payload={**ok, "msg": None}),
        env(payload={**ok, "msg": 42}),
        env(payload={**ok, "time": "yesterday"}),
        env(payload={**ok, "time": 10**400}),
        env(payload={**ok, "meta": "not a dict"}),
        env(payload={**ok, "username": "a\u200bb\u202e"}),  # invisible/bidi in the name
        env(payload={**ok, "username": "x" * 500}),
        env(payload=["not", "an", "object"]),
        env(channel="SomeOtherChannel"),  # subject and envelope disagree
        env(domain=None),
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,  # deeply nested
    ]
    for data in raw_events:
        await client.raw("chatMsg", data)
    # well-formed but hostile: ~1 MB of text, and odd unicode (lone surrogates,
    # NUL, bidi overrides, combining marks, emoji) from an ordinary user
    await client.chat("bigtalker", "word " * 200_000)
    await client.chat("weird", "\ud800 \x00 \u202e\u0301\u0301 🤖\u200d🦾 \ufeff ok")
    await client.chat("weird2", "cynthia \ud83d \u0000 \u2066 zalgo z\u0336\u0337 🙂")
    await client.chat("dave", "cynthia, are you still there?")
    await settle(bot, client, events=len(raw_events) + 4)

    messages = says(client.drain())
    assert messages == [MODEL_TEXT, MODEL_TEXT]  # weird2 and dave
    prompts = [b["messages"][1]["content"] for b in openai.bodies]
    assert sorted(p.split(" said:")[0] for p in prompts) == ["dave", "weird2"]
    assert all("\ud83d" not in p and "\x00" not in p for p in prompts)
    malformed = sum(
        s.value
        for fam in bot.metrics.registry.collect()
        for s in fam.samples
        if s.name == "kryten_rules_events_malformed_total"
    )
    assert malformed == len(raw_events)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_stop_request_while_nats_is_unreachable_ends_start(
    tmp_path: Path,
    openai: OpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    dead = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    bot = make_bot(write_config(tmp_path, nats_url=dead, api_base=openai.base_url))
    caplog.set_level(logging.DEBUG, logger="kryten_rules.service")
    start = asyncio.create_task(bot.start())
    try:
        await wait_until(
            lambda: any("Connect call failed" in r.getMessage() for r in caplog.records),
            what="a failed connect attempt",
        )
        bot.request_stop()  # what SIGTERM does in run_forever
        done, _ = await asyncio.wait({start}, timeout=5.0)
        assert start in done, "start() kept retrying NATS after a stop request"
    finally:
        if not start.done():
            start.cancel()
        await asyncio.gather(start, return_exceptions=True)
        await bot.stop(grace=0.1)


async def test_nats_server_restart_the_bot_answers_again(
    nats_server: EmbeddedNats, start_bot: BotFactory, client: RobotClient
) -> None:
    bot = await start_bot()
    await client.chat("alice", "cynthia, before")
    assert (await client.next_command())["args"]["message"] == MODEL_TEXT

    await asyncio.to_thread(nats_server.stop)
    await wait_until(lambda: not bot.nc.is_connected, what="the bot to notice")
    await asyncio.to_thread(nats_server.start)

    # a request-reply round trip proves the bot's subscriptions are back
    async def ping() -> bool:
        with contextlib.suppress(Exception):
            reply = await client.request("system.ping", timeout=1.0)
            return bool(reply.get("success"))
        return False

    deadline = time.monotonic() + 20
    while not await ping():
        assert time.monotonic() < deadline, "the bot did not come back after the restart"
        await asyncio.sleep(0.2)
    assert bot.nc.is_connected
    await wait_until(lambda: metric(bot, "kryten_rules_nats_connected") == 1, what="the gauge")

    await client.chat("alice", "cynthia, after")
    assert (await client.next_command())["args"]["message"] == MODEL_TEXT


# ------------------------------------------------------------------ reload


BROKEN_RULES = BASE_RULES.replace(
    "match: {mention: true}", "match: {mention: true, regex: ['(?<=x)']}"
)
V2_RULES = BASE_RULES.replace(
    'prompt: "{{ user.name }} said: {{ message }}"', 'reply: "v2 says hi to {{ user.name }}"'
)


async def test_reload_keeps_old_rules_on_error_and_the_watcher_switches_on_a_fix(
    start_bot: BotFactory, client: RobotClient, config_path: Path
) -> None:
    reloads = await client.collect(RELOAD_SUBJECT)
    bot = await start_bot(watch_interval=0.2)
    digest = bot.ruleset.digest

    write_rules(rules_path(config_path), BROKEN_RULES)
    reply = await client.request("rules.reload")
    assert reply["success"] is True
    data = reply["data"]
    assert data["ok"] is False and data["changed"] is False
    assert any(d["severity"] == "error" for d in data["diagnostics"])
    assert all({"code", "message"} <= set(d) for d in data["diagnostics"])
    _, event = await next_on(reloads, lambda s, d: d["reason"] == "command")
    assert event["ok"] is False and event["diagnostics"]
    assert bot.ruleset.digest == digest
    assert metric(bot, "kryten_rules_reloads_total", {"outcome": "failed"}) >= 1

    # the old rules still answer
    await client.chat("alice", "cynthia, still there?")
    assert (await client.next_command())["args"]["message"] == MODEL_TEXT

    # fix the file: the watcher reloads on its own
    write_rules(rules_path(config_path), V2_RULES)
    _, event = await next_on(
        reloads, lambda s, d: d["reason"] == "file change" and d["ok"] and d["changed"]
    )
    assert event["diagnostics"] == [] or all(d["severity"] != "error" for d in event["diagnostics"])
    assert bot.ruleset.digest != digest
    status = (await client.request("rules.status"))["data"]
    assert status["digest"] == bot.ruleset.digest
    assert status["last_reload"]["changed"] is True

    await client.chat("alice", "cynthia, now?")
    assert (await client.next_command())["args"]["message"] == "v2 says hi to alice"


async def test_reload_of_identical_content_is_a_no_op(
    start_bot: BotFactory, client: RobotClient, config_path: Path
) -> None:
    reloads = await client.collect(RELOAD_SUBJECT)
    bot = await start_bot(watch_interval=0.2)
    digest = bot.ruleset.digest

    reply = await client.request("rules.reload")
    assert reply["success"] and reply["data"]["ok"] is True
    assert reply["data"]["changed"] is False

    # rewritten with the same bytes (new mtime): the watcher reloads, nothing changes
    write_rules(rules_path(config_path), BASE_RULES)
    os.utime(rules_path(config_path))
    _, event = await next_on(reloads, lambda s, d: d["reason"] == "file change")
    assert event["ok"] is True and event["changed"] is False
    assert bot.ruleset.digest == digest
    assert metric(bot, "kryten_rules_reloads_total", {"outcome": "unchanged"}) >= 2
    assert metric(bot, "kryten_rules_reloads_total", {"outcome": "ok"}) == 0


async def test_cooldown_state_survives_a_reload(
    start_bot: BotFactory, client: RobotClient, config_path: Path
) -> None:
    rules = BASE_RULES.replace("max_parts: 2\n", "max_parts: 2\n    cooldown: {rule: 1h}\n", 1)
    write_rules(rules_path(config_path), rules)
    decisions = Decisions()
    bot = await start_bot(on_decision=decisions)
    await client.chat("alice", "cynthia, one")
    assert (await client.next_command())["args"]["message"] == MODEL_TEXT

    # an edit that changes the rule set but keeps the rule id
    write_rules(
        rules_path(config_path), rules.replace("{{ user.name }} said:", "{{ user.name }} wrote:")
    )
    reply = await client.request("rules.reload")
    assert reply["data"]["ok"] is True and reply["data"]["changed"] is True

    await client.chat("bob", "cynthia, two")
    await settle(bot, client, events=2)
    assert client.drain() == []
    assert decisions.items[-1].fired is None
    assert decisions.reasons("mention")[-1] == "cooldown.rule"


# ------------------------------------------------------------------ output modes and logs


async def test_dry_run_sends_nothing_but_logs(
    start_bot: BotFactory, client: RobotClient, openai: OpenAIServer, config_path: Path
) -> None:
    bot = await start_bot(dry_run=True)
    await client.chat("alice", "cynthia, dry?")
    await client.pm("erin", "dry pm?")
    await settle(bot, client, events=2)
    assert client.drain() == []
    assert client.raw_commands == []
    lines = read_jsonl(responses_path(config_path))
    assert len(lines) == 2
    for line in lines:
        assert line["dry_run"] is True
        assert line["sent"] is False
        assert line["parts"] == [MODEL_TEXT]
    assert metric(bot, "kryten_rules_replies_total", {"via": "chat"}) == 0


async def test_response_log_line_has_every_field(
    start_bot: BotFactory, client: RobotClient, config_path: Path
) -> None:
    await start_bot()
    await client.add_user("alice", 1)
    await client.chat("alice", "cynthia, log me")
    await client.next_command()
    await wait_until(lambda: len(read_jsonl(responses_path(config_path))) == 1)
    text = responses_path(config_path).read_text(encoding="utf-8")
    (line,) = read_jsonl(responses_path(config_path))

    required = {
        "time", "channel", "user", "rank", "rule", "trace", "prompt_hash", "model",
        "attempts", "latency", "tokens", "cost", "parts", "dry_run",
    }  # fmt: skip
    assert required <= set(line)
    assert datetime.fromisoformat(line["time"]).tzinfo is not None
    assert line["channel"] == CHANNEL
    assert line["user"] == "alice"
    assert line["rank"] == 1
    assert line["rule"] == "mention"
    assert line["trace"] == ["mention:fired"]
    assert len(line["prompt_hash"]) == 16 and int(line["prompt_hash"], 16) >= 0
    assert line["model"] == "m"
    assert [a["outcome"] for a in line["attempts"]] == ["ok"]
    assert line["attempts"][0]["model"] == "m"
    assert isinstance(line["latency"], float) and line["latency"] >= 0
    assert isinstance(line["tokens"], int) and line["tokens"] > 0
    assert "cost" in line
    assert line["parts"] == [MODEL_TEXT]
    assert line["dry_run"] is False and line["sent"] is True
    assert KEY_VALUE not in text


# ------------------------------------------------------------------ commands and lifecycle


async def test_request_reply_commands(start_bot: BotFactory, client: RobotClient) -> None:
    bot = await start_bot()

    ping = await client.request("system.ping")
    assert ping["success"] is True and ping["service"] == "rules"
    assert ping["command"] == "system.ping"
    assert ping["data"]["pong"] is True

    health = (await client.request("system.health"))["data"]
    assert health["status"] == "ok"
    assert health["nats_connected"] is True
    assert health["rules"] == 3
    assert health["dry_run"] is False

    status = (await client.request("rules.status"))["data"]
    assert set(status["rule_ids"]) == {"mention", "mod-secret", "pm-answer"}
    assert status["digest"] == bot.ruleset.digest
    assert status["rules"] == 3

    explained = await client.request(
        "rules.explain", {"text": "!secret", "user": "zed", "rank": "moderator"}
    )
    assert explained["success"] is True
    assert explained["data"]["fired"] == "mod-secret"
    assert explained["data"]["reply"] == "zed: the secret is 42"
    guest = (await client.request("rules.explain", {"text": "!secret", "rank": 0}))["data"]
    assert guest["fired"] is None
    assert {"rule": "mod-secret", "outcome": "blocked"}.items() <= next(
        t for t in guest["trace"] if t["rule"] == "mod-secret"
    ).items()
    prompt = (await client.request("rules.explain", {"text": "cynthia hi", "user": "amy"}))["data"]
    assert prompt["fired"] == "mention"
    assert "amy said:" in prompt["prompt"]

    # errors are replies, not silence
    missing = await client.request("rules.explain", {})
    assert missing["success"] is False and "text" in missing["error"]
    unknown = await client.request("no.such.command")
    assert unknown["success"] is False and "Unknown command" in unknown["error"]
    bad = await client.nc.request("kryten.rules.command", b"not json", timeout=WAIT)
    assert json.loads(bad.data)["success"] is False
    # and nothing was said in the channel
    await settle(bot, client, events=0)
    assert client.drain() == []


async def test_lifecycle_startup_discovery_heartbeat_and_shutdown(
    start_bot: BotFactory, client: RobotClient
) -> None:
    lifecycle = await client.collect("kryten.lifecycle.rules.>")
    bot = await start_bot(heartbeat_interval=0.3)

    subject, startup = await next_on(lifecycle)
    assert subject == lifecycle_subject("startup")
    assert set(startup) == LIFECYCLE_KEYS
    assert startup["service"] == "rules"
    assert startup["metadata"]["channel"] == CHANNEL
    assert startup["metadata"]["rules"] == 3
    datetime.fromisoformat(startup["timestamp"])

    await client.nc.publish(DISCOVERY_SUBJECT, b"{}")
    await next_on(lifecycle, lambda s, d: s == lifecycle_subject("startup"))
    _, beat = await next_on(lifecycle, lambda s, d: s == lifecycle_subject("heartbeat"))
    assert set(beat) == LIFECYCLE_KEYS
    _, beat2 = await next_on(lifecycle, lambda s, d: s == lifecycle_subject("heartbeat"))
    assert beat2["uptime_seconds"] >= beat["uptime_seconds"]

    await bot.stop(grace=1.0)
    await next_on(lifecycle, lambda s, d: s == lifecycle_subject("shutdown"))


async def test_stop_lets_a_reply_in_flight_finish(
    start_bot: BotFactory, client: RobotClient, openai: OpenAIServer
) -> None:
    openai.set(MODEL, "slow:0.5:late but sent")
    lifecycle = await client.collect(lifecycle_subject("shutdown"))
    bot = await start_bot()
    await client.chat("alice", "cynthia, take your time")
    await wait_until(lambda: bot.replies.pending == 1, what="the reply to start")
    await bot.stop(grace=WAIT)
    assert (await client.next_command())["args"]["message"] == "late but sent"
    await next_on(lifecycle)


def _kryten_rules_exe() -> list[str]:
    exe = Path(sys.executable).parent / "kryten-rules"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("kryten-rules")
    assert found, "the kryten-rules console script is not installed"
    return [found]


async def test_sigterm_shuts_the_service_down_cleanly(
    config_path: Path, client: RobotClient, tmp_path: Path
) -> None:
    lifecycle = await client.collect("kryten.lifecycle.rules.>")
    env = {**os.environ, KEY_ENV: KEY_VALUE}
    proc = subprocess.Popen(
        [*_kryten_rules_exe(), "run", "--config", str(config_path)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        subject, startup = await next_on(lifecycle, timeout=60)
        assert subject == lifecycle_subject("startup")
        assert startup["metadata"]["channel"] == CHANNEL

        # it is serving: a fixed-reply rule answers through the subprocess
        await client.add_user("mod", 2)
        await client.chat("mod", "!secret")
        assert (await client.next_command(timeout=30))["args"]["message"] == "mod: the secret is 42"

        # SIGHUP reloads the rules
        reloads = await client.collect(RELOAD_SUBJECT)
        proc.send_signal(signal.SIGHUP)
        _, reload = await next_on(reloads, timeout=30)
        assert reload["reason"] == "SIGHUP" and reload["ok"] is True

        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 15)
        out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        assert code == 0, out
        await next_on(lifecycle, lambda s, d: s == lifecycle_subject("shutdown"), timeout=5)
        assert "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
