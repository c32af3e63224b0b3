"""Failover with real ``kryten-rules run`` processes on a real nats-server (JetStream on).

* two instances on one channel: only the lease holder answers; ``kill -9`` it
  and the other answers, with the dead one's cooldowns honoured;
* 1,000 events published across a ``kill -9`` of the holder: each answered
  exactly once, by one instance or the other;
* SIGTERM hands the channel over at once: nothing published around the stop
  is lost.

Waits are on conditions (a command arrived, a lease holder known), never on time.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from kryten_rules.engine.state import Cooldown
from kryten_rules.service.embedded import EmbeddedNats
from kryten_rules.service.kvcodec import channel_prefix
from kryten_rules.service.lease import DEFAULT_BUCKET
from kryten_rules.service.lifecycle import lifecycle_subject
from tests.nats_fixtures import (
    CHANNEL,
    DOMAIN,
    KEY_ENV,
    KEY_VALUE,
    RobotClient,
    says,
    write_config,
)
from tests.service.test_kvstate import BUCKET, eventually, stored

RULES = """\
kryten_rules: 1
persona: {name: Cynthia, aliases: [cynthia]}
rules:
  - id: hello
    match: {any: [hello]}
    cooldown: {user_rule: 1h}
    reply: "{{ user.name }}: hello"
  - id: echo
    match: {regex: ['\\bq\\d+\\b']}
    reply: "ack {{ match }}"
"""
EXTRA = (
    f"state: {{store: jetstream, bucket: {BUCKET}, lease_ttl: 1s}}\n"
    "pacing: {burst: 1000, per_second: 1000}\n"
)
LEASE_KEY = channel_prefix(DOMAIN, CHANNEL).rstrip(".")
Start = Callable[[Path], subprocess.Popen[bytes]]


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)


def _config(tmp_path: Path, url: str) -> Path:
    return write_config(tmp_path, nats_url=url, api_base="http://127.0.0.1:9/v1",
                        rules=RULES, extra=EXTRA)


async def holder_pid(client: RobotClient) -> int | None:
    """The pid in the lease's holder (``host:pid:random``), or None while nobody holds it."""
    try:
        kv = await client.nc.jetstream(timeout=1).key_value(DEFAULT_BUCKET)
        entry = await kv.get(LEASE_KEY)
    except Exception:
        return None
    if not entry.value:
        return None
    return int(json.loads(entry.value)["owner"].split(":")[1])


async def two_instances(
    tmp_path: Path, nats_server: EmbeddedNats, client: RobotClient, start: Start
) -> dict[int, subprocess.Popen[bytes]]:
    cfg = _config(tmp_path, nats_server.url)
    startups = await client.collect(lifecycle_subject("startup"))
    procs = [start(cfg), start(cfg)]
    for _ in procs:
        await asyncio.wait_for(startups.get(), 60)
    await eventually(lambda: holder_pid(client), "a lease holder")
    return {p.pid: p for p in procs}


async def test_kill_9_of_the_holder_and_the_other_answers_with_its_cooldowns(
    tmp_path: Path, nats_server: EmbeddedNats, client: RobotClient, processes: Start
) -> None:
    procs = await two_instances(tmp_path, nats_server, client, processes)
    await client.chat("alice", "hello there")
    assert says([await client.next_command(timeout=30)]) == ["alice: hello"]
    spent = await eventually(lambda: stored(client, ("user_rule", "alice", "hello")),
                             "alice's cooldown in the state bucket")
    assert isinstance(spent, Cooldown)
    assert says(client.drain()) == []  # one instance answered, not two

    first = await holder_pid(client)
    assert first in procs
    procs[first].send_signal(signal.SIGKILL)
    await asyncio.to_thread(procs[first].wait, 15)

    await client.chat("alice", "hello again")  # her cooldown came from the dead one
    await client.chat("bob", "hello")
    assert says([await client.next_command(timeout=30)]) == ["bob: hello"]
    second = await eventually(lambda: holder_pid(client), "the new holder")
    assert second != first and second in procs
    assert says(client.drain()) == []


async def test_1000_events_across_a_kill_9_are_each_answered_exactly_once(
    tmp_path: Path, nats_server: EmbeddedNats, client: RobotClient, processes: Start
) -> None:
    procs = await two_instances(tmp_path, nats_server, client, processes)
    first = await holder_pid(client)
    assert first in procs
    for i in range(1000):
        await client.chat(f"user{i % 50}", f"q{i}")
        if i == 400:  # mid-stream, without a goodbye
            procs[first].send_signal(signal.SIGKILL)
        if i % 50 == 49:
            await asyncio.sleep(0)  # let the commands in
    answered: Counter[str] = Counter()

    async def all_answered() -> bool:
        for cmd in client.drain():
            answered[cmd["args"]["message"]] += 1
        return len(answered) >= 1000

    await eventually(all_answered, "an answer to every event", timeout=60)
    assert sorted(answered) == sorted(f"ack q{i}" for i in range(1000))
    twice = [m for m, n in answered.items() if n > 1]
    assert not twice, f"answered by two instances: {twice[:10]}"


async def test_sigterm_hands_over_at_once_and_loses_nothing(
    tmp_path: Path, nats_server: EmbeddedNats, client: RobotClient, processes: Start
) -> None:
    procs = await two_instances(tmp_path, nats_server, client, processes)
    first = await holder_pid(client)
    assert first in procs
    for i in range(100):
        await client.chat(f"user{i % 10}", f"q{i}")
        if i == 30:
            procs[first].send_signal(signal.SIGTERM)
    answered: Counter[str] = Counter()

    async def all_answered() -> bool:
        for cmd in client.drain():
            answered[cmd["args"]["message"]] += 1
        return len(answered) >= 100

    await eventually(all_answered, "an answer to every event", timeout=60)
    assert set(answered) == {f"ack q{i}" for i in range(100)}
    assert max(answered.values()) == 1
    assert await asyncio.to_thread(procs[first].wait, 30) == 0
