"""``state: {store: jetstream}`` against a real nats-server with JetStream.

* a restart mid-cooldown, with real ``kryten-rules run`` processes: the
  second process blocks alice with the first one's cooldown, seconds left and all;
* an outage: the server goes away mid-run, decisions go on from memory with a
  warning, and what was spent meanwhile reaches the bucket once it is back;
* two instances on one bucket: the second loads the first's state at start,
  and sees what the first spends afterwards through its watch;
* a server without JetStream: a clear warning, and the bot runs from memory.

Waits are on conditions (a KV key present, a command arrived), never on time.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kryten_rules.engine.evaluate import SHADOW
from kryten_rules.engine.state import Cooldown, Counter, Key
from kryten_rules.service.bot import Bot
from kryten_rules.service.embedded import EmbeddedNats
from kryten_rules.service.kvcodec import channel_prefix, decode_value, encode_key
from kryten_rules.service.lifecycle import lifecycle_subject
from kryten_rules.units import parse_duration
from kryten_rules.wire import envelope, event_subject
from tests.nats_fixtures import (
    CHANNEL,
    DOMAIN,
    KEY_ENV,
    KEY_VALUE,
    WAIT,
    RobotClient,
    chat_payload,
    metric,
    says,
    started_bots,
    wait_until,
    write_config,
)

BUCKET = "kr_test_state"
COOLDOWN = 3600.0
RULES = """\
kryten_rules: 1
persona: {name: Cynthia, aliases: [cynthia]}
rules:
  - id: hello
    match: {mention: true}
    cooldown: {user_rule: 1h}
    reply: "{{ user.name }}: hello"
  - id: probe
    mode: shadow
    priority: 200
    match: {any: [cynthia]}
    limit: {per_hour: 5}
    reply: "shadow"
"""
STATE = f"state: {{store: jetstream, bucket: {BUCKET}}}\n"
PREFIX = channel_prefix(DOMAIN, CHANNEL)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)


def config(tmp_path: Path, url: str, extra: str = STATE) -> Path:
    # the fixed replies call no model: the api_base is never reached
    return write_config(tmp_path, nats_url=url, api_base="http://127.0.0.1:9/v1",
                        rules=RULES, extra=extra)


async def stored(client: RobotClient, key: Key) -> Any:
    """The value under ``key`` in the bucket, or None (also when unreachable)."""
    try:
        kv = await client.nc.jetstream(timeout=1).key_value(BUCKET)
        entry = await kv.get(encode_key(PREFIX, key))
    except Exception:
        return None
    return decode_value(entry.value or b"")[0] if entry.value else None


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = WAIT) -> Any:
    """Poll an async check until it gives something truthy."""
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)
    return result


def blocking(explained: dict[str, Any], rule: str = "hello") -> dict[str, Any] | None:
    """The trace entry of ``rule`` in an explain answer, if it was blocked."""
    for t in explained["trace"]:
        if t["rule"] == rule and t["outcome"] == "blocked":
            return dict(t)
    return None


def seconds_left(entry: dict[str, Any]) -> float:
    return parse_duration(entry["detail"].split(" left")[0])


async def live_explain(bot: Bot, user: str) -> dict[str, Any]:
    return await bot.command("rules.explain", {"text": "cynthia, hi", "user": user,
                                               "state": "live"})


def chat_event(user: str, text: str) -> tuple[str, bytes]:
    return event_subject(CHANNEL, "chatMsg"), envelope(
        "chatMsg", chat_payload(user, text), channel=CHANNEL, domain=DOMAIN
    )


# --- a restart, with real processes -------------------------------------------------------


async def test_a_restarted_process_keeps_alice_in_her_cooldown(
    tmp_path: Path,
    nats_server: EmbeddedNats,
    client: RobotClient,
    processes: Callable[[Path], subprocess.Popen[bytes]],
) -> None:
    cfg = config(tmp_path, nats_server.url)
    startups = await client.collect(lifecycle_subject("startup"))
    first = processes(cfg)
    await asyncio.wait_for(startups.get(), 60)
    before = time.time()
    await client.chat("alice", "cynthia, hello")
    assert says([await client.next_command(timeout=30)]) == ["alice: hello"]
    # written behind within a second or so; then the process dies without a goodbye
    spent = await eventually(lambda: stored(client, ("user_rule", "alice", "hello")),
                             "alice's cooldown in the bucket")
    assert isinstance(spent, Cooldown) and spent.duration == COOLDOWN
    assert spent.fired_at >= before - 1
    shadow = await eventually(lambda: stored(client, ("count_rule", SHADOW, "probe")),
                              "the shadow rule's budget in the bucket")
    assert isinstance(shadow, Counter) and len(shadow.times) == 1
    first.send_signal(signal.SIGKILL)
    await asyncio.to_thread(first.wait, 15)

    processes(cfg)
    await asyncio.wait_for(startups.get(), 60)
    explained = await client.request("rules.explain",
                                     {"text": "cynthia, again", "user": "alice", "state": "live"})
    entry = blocking(explained["data"])
    assert entry is not None and entry["reason"] == "cooldown.user_rule", explained
    elapsed = time.time() - spent.fired_at
    assert COOLDOWN - elapsed - 1 <= seconds_left(entry) <= COOLDOWN
    # the shadow budget came back too (its own namespace): one of five used
    shadow_entry = [t for t in explained["data"]["trace"] if t["rule"] == "probe"]
    assert shadow_entry and shadow_entry[0]["outcome"] == "would_fire"

    # the real line: alice is not answered, bob (no cooldown) is
    await client.chat("alice", "cynthia, hello again")
    await client.chat("bob", "cynthia, hi")
    assert says([await client.next_command(timeout=30)]) == ["bob: hello"]
    assert says(client.drain()) == []


# --- an outage ----------------------------------------------------------------------------


async def test_an_outage_degrades_to_memory_and_the_state_is_written_when_nats_is_back(
    tmp_path: Path,
    nats_server: EmbeddedNats,
    client: RobotClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "kryten_rules.service")
    async with started_bots(config(tmp_path, nats_server.url)) as start:
        bot = await start()
        assert bot.state_sync is not None and bot.state_sync.loaded
        assert bot.health()["state"] == {"store": "jetstream", "bucket": BUCKET,
                                         "backend": "ok", "unflushed": 0}
        assert metric(bot, "kryten_rules_state_backend_up") == 1
        await client.chat("alice", "cynthia, hello")
        assert says([await client.next_command()]) == ["alice: hello"]
        await eventually(lambda: stored(client, ("user_rule", "alice", "hello")), "alice's key")

        await asyncio.to_thread(nats_server.stop)
        # decisions go on from memory: alice still cooling down, bob answered
        blocked = bot.handle(*chat_event("alice", "cynthia, again"))
        fired = bot.handle(*chat_event("bob", "cynthia, hi"))
        assert blocked is not None and blocked.fired is None
        assert [t.reason for t in blocked.trace if t.rule == "hello"] == ["cooldown.user_rule"]
        assert fired is not None and fired.fired == "hello"
        await wait_until(lambda: "state backend is unreachable" in caplog.text,
                         what="the outage warning")
        assert not bot.state_sync.healthy
        assert metric(bot, "kryten_rules_state_backend_up") == 0
        await wait_until(lambda: metric(bot, "kryten_rules_state_unflushed") >= 1,
                         what="bob's cooldown kept for the bucket")

        await asyncio.to_thread(nats_server.start)
        bob = await eventually(lambda: stored(client, ("user_rule", "bob", "hello")),
                               "bob's cooldown, spent during the outage, in the bucket", 30)
        assert isinstance(bob, Cooldown) and bob.duration == COOLDOWN
        await wait_until(lambda: metric(bot, "kryten_rules_state_backend_up") == 1,
                         what="the backend healthy again")
        assert bot.health()["state"]["unflushed"] == 0


# --- two instances ------------------------------------------------------------------------


async def test_two_instances_on_one_bucket_see_each_others_state(
    tmp_path: Path, nats_server: EmbeddedNats, client: RobotClient
) -> None:
    async with started_bots(config(tmp_path, nats_server.url)) as start:
        first = await start()
        await client.chat("alice", "cynthia, hello")
        assert says([await client.next_command()]) == ["alice: hello"]
        await eventually(lambda: stored(client, ("user_rule", "alice", "hello")), "alice's key")

        second = await start()  # loads at start what the first one spent
        entry = blocking(await live_explain(second, "alice"))
        assert entry is not None and entry["reason"] == "cooldown.user_rule"
        assert blocking(await live_explain(second, "bob")) is None

        # the first spends bob's cooldown (this event reaches the first only);
        # the second's watch applies it
        fired = first.handle(*chat_event("bob", "cynthia, hi"))
        assert fired is not None and fired.fired == "hello"

        async def second_blocks_bob() -> dict[str, Any] | None:
            return blocking(await live_explain(second, "bob"))

        entry = await eventually(second_blocks_bob, "the second instance to see bob's cooldown")
        assert entry["reason"] == "cooldown.user_rule"
        assert seconds_left(entry) <= COOLDOWN

        # the watch outlives a restart of the server (the bucket is on disk)
        await asyncio.to_thread(nats_server.stop)
        await asyncio.to_thread(nats_server.start)
        await wait_until(lambda: first.bus is not None and first.bus.connected
                         and second.bus is not None and second.bus.connected,
                         what="both instances reconnected")
        fired = first.handle(*chat_event("carol", "cynthia, hi"))
        assert fired is not None and fired.fired == "hello"

        async def second_blocks_carol() -> dict[str, Any] | None:
            return blocking(await live_explain(second, "carol"))

        await eventually(second_blocks_carol, "carol's cooldown, after the restart", 30)


async def test_explain_without_live_state_still_meets_a_fresh_engine(
    tmp_path: Path, nats_server: EmbeddedNats, client: RobotClient
) -> None:
    async with started_bots(config(tmp_path, nats_server.url)) as start:
        bot = await start()
        await client.chat("alice", "cynthia, hello")
        await client.next_command()
        fresh = await bot.command("rules.explain", {"text": "cynthia, hi", "user": "alice"})
        assert fresh["fired"] == "hello"
        assert blocking(await live_explain(bot, "alice")) is not None


# --- no JetStream ---------------------------------------------------------------------------


@pytest.fixture
async def plain_nats() -> AsyncIterator[EmbeddedNats]:
    server = EmbeddedNats(jetstream=False)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.close)


async def test_a_server_without_jetstream_is_a_clear_warning_and_memory(
    tmp_path: Path, plain_nats: EmbeddedNats, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "kryten_rules.service")
    client = await RobotClient().connect(plain_nats.url)
    try:
        async with started_bots(config(tmp_path, plain_nats.url)) as start:
            bot = await start()
            assert bot.state_sync is not None and not bot.state_sync.loaded
            assert "JetStream is not enabled on the NATS server" in caplog.text
            await client.chat("alice", "cynthia, hello")
            assert says([await client.next_command()]) == ["alice: hello"]
            blocked = bot.handle(*chat_event("alice", "cynthia, again"))
            assert blocked is not None and blocked.fired is None
            # the bot is fine (it answers); the health says where state lives
            health = bot.health()
            assert health["status"] == "ok"
            assert health["state"]["store"] == "jetstream"
            assert health["state"]["backend"] == "unreachable"
            assert metric(bot, "kryten_rules_state_backend_up") == 0
    finally:
        await client.close()


async def test_the_memory_store_is_the_default(
    tmp_path: Path, nats_server: EmbeddedNats, client: RobotClient
) -> None:
    async with started_bots(config(tmp_path, nats_server.url, extra="")) as start:
        bot = await start()
        assert bot.state_sync is None
        assert bot.health()["state"] == {"store": "memory"}
        assert metric(bot, "kryten_rules_state_backend_up") == 0
