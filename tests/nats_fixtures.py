"""Helpers for the service tests: a fake Kryten-Robot on a real nats-server.

Imported by ``tests/service/test_service.py`` and ``tests/service/test_metrics.py`` (no conftest:
each test module declares its own fixtures with these building blocks).

* :func:`write_config` / :func:`write_rules` write the operator's config and a
  rule file to ``tmp_path``; the config points at a real nats-server and at
  ``tests.openai_server`` (model ``openai/test-model``, key from ``TEST_KEY``).
* :class:`RobotClient` plays Kryten-Robot: it publishes event envelopes exactly
  as the bridge does (``kryten_rules.wire.envelope`` on ``event_subject``) and
  collects what the bot sends on ``kryten.robot.command``.
* :func:`settle` waits, without guessing sleeps, until the bot has received a
  number of events, finished every reply in progress and flushed its sends
  through the server to the client: after it, "no command arrived" is a fact.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import nats

from kryten_rules.compile.load import load_config
from kryten_rules.engine.evaluate import Decision
from kryten_rules.service.bot import RULES_COMMAND_SUBJECT, Bot
from kryten_rules.wire import COMMAND_SUBJECT, envelope, event_subject

CHANNEL = "TestChannel"
DOMAIN = "cytu.be"
BOT_NAME = "CynthiaBot"
MODEL = "test-model"
MODEL_TEXT = "Hello from the model"  # what the test model server answers by default
KEY_ENV = "TEST_KEY"
KEY_VALUE = "sk-test-service-key"
WAIT = 10.0  # generous upper bound for anything to arrive; never a timing assertion

BASE_RULES = """\
kryten_rules: 1
persona:
  name: Cynthia
  aliases: [cynthia]
  system_prompt: "You are Cynthia, a chat bot in #{{ channel }}."
rules:
  - id: mention
    priority: 100
    match: {mention: true}
    max_parts: 2
    prompt: "{{ user.name }} said: {{ message }}"
    fallback_reply: "{{ user.name }}: the comms are down, try again later."
  - id: mod-secret
    priority: 50
    match: {regex: ['^!secret\\b']}
    when: {rank: {min: moderator}}
    reply: "{{ user.name }}: the secret is 42"
  - id: pm-answer
    on: pm
    respond_via: same
    max_parts: 1
    prompt: "private message from {{ user.name }}: {{ message }}"
"""


def write_rules(path: Path, text: str = BASE_RULES) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_config(
    tmp_path: Path,
    *,
    nats_url: str,
    api_base: str,
    rules: str = BASE_RULES,
    extra: str = "",
    model_timeout: str = "2s",
    nats_extra: str = "",
) -> Path:
    """``tmp_path/kryten-rules.yaml`` plus ``tmp_path/rules/main.yaml``; returns the config.

    ``nats_extra``: more ``nats:`` keys (authentication), as lines indented 2."""
    write_rules(tmp_path / "rules" / "main.yaml", rules)
    cfg = tmp_path / "kryten-rules.yaml"
    cfg.write_text(
        f"""\
kryten_rules_config: 1
nats:
  url: "{nats_url}"
{nats_extra}cytube:
  domain: {DOMAIN}
  channel: {CHANNEL}
  username: {BOT_NAME}
rules: rules/
models:
  m:
    model: openai/{MODEL}
    api_base: "{api_base}"
    api_key_env: {KEY_ENV}
    timeout: {model_timeout}
chains:
  default: {{models: [m], deadline: 5s}}
log:
  responses: logs/responses.jsonl
  level: INFO
{extra}""",
        encoding="utf-8",
    )
    return cfg


def make_bot(config_path: Path, **kw: Any) -> Bot:
    """A Bot with test-friendly defaults: fast pacing, slow heartbeat, no watcher, and
    /health on a free port (the default 28292 would collide between tests)."""
    kw.setdefault("pacing", (100, 100.0))
    kw.setdefault("metrics_port", 0)
    kw.setdefault("heartbeat_interval", 60.0)
    kw.setdefault("watch_interval", None)
    return Bot(load_config(config_path), **kw)


BotFactory = Callable[..., Awaitable[Bot]]


@contextlib.asynccontextmanager
async def started_bots(config_path: Path) -> AsyncIterator[BotFactory]:
    """A factory of started bots on ``config_path``; all are stopped on the way out.

    start() flushes its SUBs (test_start_returns_with_subscriptions_live); the
    round trip also waits for whatever else start() published to arrive.
    """
    bots: list[Bot] = []

    async def start(**kw: Any) -> Bot:
        bot = make_bot(config_path, **kw)
        bots.append(bot)
        await bot.start()
        await roundtrip(bot.nc)
        return bot

    try:
        yield start
    finally:
        for bot in bots:
            if not bot.stopping:
                await bot.stop(grace=1.0)


def now_ms() -> int:
    return int(time.time() * 1000)


def chat_payload(
    user: str, msg: str, *, meta: dict[str, Any] | None = None, at_ms: int | None = None
) -> dict[str, Any]:
    return {
        "username": user,
        "msg": msg,
        "meta": {} if meta is None else meta,
        "time": now_ms() if at_ms is None else at_ms,
    }


async def wait_until(
    pred: Callable[[], bool], timeout: float = WAIT, what: str | Callable[[], str] = ""
) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            desc = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout}s waiting for {desc or pred}")
        await asyncio.sleep(0.02)


def metric(bot: Bot, name: str, labels: dict[str, str] | None = None) -> float:
    """A sample's value, summed over the labels not given (``channel``, most often)."""
    want = labels or {}
    total = 0.0
    for family in bot.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in want.items()):
                total += sample.value
    return total


def _metric_sum(bot: Bot, name: str) -> float:
    total = 0.0
    for family in bot.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


def events_received(bot: Bot) -> float:
    """Event messages the bot has taken off its subscription (decoded or malformed)."""
    return _metric_sum(bot, "kryten_rules_events_total") + _metric_sum(
        bot, "kryten_rules_events_malformed_total"
    )


class RobotClient:
    """Kryten-Robot's side of the bus, for tests."""

    def __init__(self, channel: str = CHANNEL, domain: str = DOMAIN) -> None:
        self.channel = channel
        self.domain = domain
        self.nc: Any = None
        self.subscription: Any = None
        self.commands: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.raw_commands: list[bytes] = []
        # What kryten-robot 1.12.6 answers a command it sent on; None: no answer
        # (as it does for another domain). See tests/service/test_send_outcomes.py for
        # the real robot's handler in the loop.
        self.answer: dict[str, Any] | None = {"service": "robot", "success": True}

    async def connect(self, url: str, **options: Any) -> RobotClient:
        """``options``: more nats-py connect arguments (credentials, TLS)."""
        self.nc = await nats.connect(
            url,
            name="test-robot",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.2,
            connect_timeout=2,
            **options,
        )
        self.subscription = await self.nc.subscribe(COMMAND_SUBJECT, cb=self._on_command)
        await roundtrip(self.nc)
        return self

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()

    async def _on_command(self, msg: Any) -> None:
        self.raw_commands.append(msg.data)
        command = json.loads(msg.data)
        self.commands.put_nowait(command)
        if msg.reply and self.answer is not None:
            answer = {"command": command.get("command"), "data": {"success": True}, **self.answer}
            await self.nc.publish(msg.reply, json.dumps(answer).encode())

    # --- publishing events ------------------------------------------------------

    async def publish(self, event_name: str, payload: Any) -> None:
        data = envelope(event_name, payload, channel=self.channel, domain=self.domain)
        await self.nc.publish(event_subject(self.channel, event_name), data)
        await self.nc.flush()

    async def raw(self, event_name: str, data: bytes) -> None:
        await self.nc.publish(event_subject(self.channel, event_name), data)
        await self.nc.flush()

    async def chat(self, user: str, msg: str, **kw: Any) -> None:
        await self.publish("chatMsg", chat_payload(user, msg, **kw))

    async def pm(self, user: str, msg: str, to: str = BOT_NAME) -> None:
        await self.publish("pm", {**chat_payload(user, msg), "to": to})

    async def add_user(self, name: str, rank: int) -> None:
        await self.publish("addUser", {"name": name, "rank": rank, "meta": {}, "profile": {}})

    # --- reading commands and talking to the bot ----------------------------------

    async def next_command(self, timeout: float = WAIT) -> dict[str, Any]:
        return await asyncio.wait_for(self.commands.get(), timeout)

    def drain(self) -> list[dict[str, Any]]:
        out = []
        while not self.commands.empty():
            out.append(self.commands.get_nowait())
        return out

    async def request(
        self, command: str, args: dict[str, Any] | None = None, timeout: float = WAIT
    ) -> dict[str, Any]:
        body = {"command": command, "args": args or {}}
        msg = await self.nc.request(RULES_COMMAND_SUBJECT, json.dumps(body).encode(), timeout)
        return json.loads(msg.data)

    async def collect(self, subject: str) -> asyncio.Queue[tuple[str, dict[str, Any]]]:
        """Subscribe to ``subject``; each message lands in the queue as (subject, JSON)."""
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

        async def cb(msg: Any) -> None:
            queue.put_nowait((msg.subject, json.loads(msg.data)))

        await self.nc.subscribe(subject, cb=cb)
        await roundtrip(self.nc)
        return queue


async def roundtrip(nc: Any, timeout: float = WAIT) -> None:
    """Return once the server has processed everything ``nc`` has sent so far.

    One ``flush()`` is not enough with nats-py 2.16: ``_send_ping`` writes the
    PING straight to the transport, ahead of commands still in the client's
    write buffer, so the PONG can come back before a just-made SUB or PUB
    reaches the server (measured: 3 of 200 subscriptions missed a message
    published right after ``await sub_conn.flush()``). The first flush gets the
    buffer written (the flusher runs before the PONG can be read); the
    second PING then follows it on the wire.
    """
    await nc.flush(timeout=timeout)
    await nc.flush(timeout=timeout)


async def settle(bot: Bot, client: RobotClient, events: float, timeout: float = WAIT) -> None:
    """Wait until ``bot`` has taken ``events`` events in total, every reply in
    progress is done, the send queue is empty, and what was sent has reached
    ``client`` (NATS keeps order per connection, so a flush round trip after
    the bot's flush puts any sent command ahead of us)."""
    await wait_until(
        lambda: events_received(bot) >= events,
        timeout,
        lambda: f"{events} events (got {events_received(bot)})",
    )
    await wait_until(
        lambda: all(ch.replies.pending == 0 for ch in bot.channels),
        timeout,
        "replies in progress",
    )
    for ch in bot.channels:
        assert ch.pacer is not None
        await ch.pacer.drain(timeout)
    await roundtrip(bot.nc, timeout)
    await roundtrip(client.nc, timeout)
    # every command that arrived has been taken off the subscription's queue, and
    # the callback queues it before it first awaits anything
    await wait_until(lambda: client.subscription.pending_msgs == 0, timeout, "commands handled")


class Decisions:
    """An ``on_decision`` hook that records every decision."""

    def __init__(self) -> None:
        self.items: list[Decision] = []

    def __call__(self, d: Decision) -> None:
        self.items.append(d)

    def fired(self) -> list[str | None]:
        return [d.fired for d in self.items]

    def reasons(self, rule: str) -> list[str | None]:
        return [t.reason for d in self.items for t in d.trace if t.rule == rule]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def says(commands: Iterable[dict[str, Any]]) -> list[str]:
    return [c["args"]["message"] for c in commands if c.get("command") == "say"]
