"""Issue 9 item 3: a reply counts as sent only when kryten-robot confirmed it.

The robot here is the real one: kryten-robot 1.12.6's ``RobotCommandHandler``
on its own ``NatsClient``, on the same real nats-server as the bot, run from
the conformance venv by ``tests/conformance/robot_probe.py --serve``. Its
``commands.enabled`` (default false) decides whether it has a sender, and its
``cytube.domain`` whether it answers at all, exactly as in production.
The pacer's own drops (too old, queue full, shutdown) are checked here too:
each one is a response-log line with ``sent: false`` and the reason.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import pytest

from kryten_rules.service.embedded import EmbeddedNats
from kryten_rules.service.pacing import Outgoing, Pacer
from kryten_rules.wire import envelope, event_subject
from tests.nats_fixtures import (
    CHANNEL,
    DOMAIN,
    KEY_ENV,
    KEY_VALUE,
    MODEL,
    WAIT,
    RobotClient,
    chat_payload,
    make_bot,
    metric,
    read_jsonl,
    settle,
    wait_until,
    write_config,
)
from tests.openai_server import OpenAIServer
from tests.wire.test_conformance_robot import PROBE
from tests.wire.test_conformance_robot import _robot_python as robot_python

pytestmark = pytest.mark.usefixtures("litellm_loaded")

LONG = "This sentence is long enough to need a second part of the reply. " * 8


class RealRobot:
    """kryten-robot's command handler in a subprocess; what it sent to CyTube."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.emitted: asyncio.Queue[list[Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, **config: Any) -> RealRobot:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(config) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        assert json.loads(line) == {"ready": True}, line
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.emitted.put_nowait(json.loads(line)["emitted"])

    def drain(self) -> list[list[Any]]:
        out = []
        while not self.emitted.empty():
            out.append(self.emitted.get_nowait())
        return out

    async def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()


RobotFactory = Callable[..., Awaitable[RealRobot]]


@pytest.fixture
async def real_robot(nats_server: EmbeddedNats) -> AsyncIterator[RobotFactory]:
    python = await asyncio.to_thread(robot_python)
    robots: list[RealRobot] = []

    async def start(*, domain: str = DOMAIN, commands_enabled: bool) -> RealRobot:
        proc = await asyncio.create_subprocess_exec(
            str(python),
            str(PROBE),
            "--serve",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=str(PROBE.parent),  # only the venv's kryten on sys.path
        )
        robot = RealRobot(proc)
        robots.append(robot)
        return await robot.start(
            url=nats_server.url, domain=domain, channel=CHANNEL, commands_enabled=commands_enabled
        )

    try:
        yield start
    finally:
        for robot in robots:
            await robot.close()


@pytest.fixture
def model_script() -> dict[str, str]:
    return {MODEL: f"ok:{LONG}"}


@pytest.fixture
async def events(client: RobotClient) -> RobotClient:
    """Publishes events as the robot would; never answers a command (the real robot does)."""
    client.answer = None
    return client


def responses(config_path: Path) -> list[dict[str, Any]]:
    return read_jsonl(config_path.parent / "logs" / "responses.jsonl")


async def one_line(config_path: Path) -> dict[str, Any]:
    await wait_until(lambda: len(responses(config_path)) >= 1, what="the response-log line")
    (line,) = responses(config_path)
    return line


async def test_a_confirmed_send_is_sent(
    real_robot: RobotFactory, start_bot: Any, events: RobotClient, config_path: Path
) -> None:
    robot = await real_robot(commands_enabled=True)
    bot = await start_bot()
    await events.add_user("mod", 2)
    await events.chat("mod", "!secret")
    assert await asyncio.wait_for(robot.emitted.get(), WAIT) == [
        "chatMsg",
        {"msg": "mod: the secret is 42"},
    ]
    line = await one_line(config_path)
    assert (line["sent"], line["outcome"], line["parts_sent"]) == (True, "sent", 1)
    assert line["send_error"] is None and line["hint"] is None
    assert metric(bot, "kryten_rules_replies_total", {"via": "chat"}) == 1
    health = bot.health()
    assert health["status"] == "ok" and health["send_failures"] == 0


async def test_a_refusal_is_not_sent_and_says_which_robot_setting_to_check(
    real_robot: RobotFactory, start_bot: Any, events: RobotClient, config_path: Path
) -> None:
    robot = await real_robot(commands_enabled=False)  # kryten-robot's default
    bot = await start_bot()
    await events.chat("alice", "cynthia, tell me a long story")  # a two-part model reply
    line = await one_line(config_path)
    await settle(bot, events, events=1)
    assert len(line["parts"]) == 2
    assert (line["sent"], line["outcome"], line["parts_sent"]) == (False, "refused", 0)
    assert line["send_error"] == "Not connected or sender not available"  # the robot's words
    assert "commands" in line["hint"] and "enabled: true" in line["hint"]
    # the second part was not sent after the first was refused
    assert len(events.raw_commands) == 1
    assert robot.drain() == []
    assert metric(bot, "kryten_rules_send_failures_total", {"reason": "refused"}) == 1
    assert metric(bot, "kryten_rules_replies_total", {"via": "chat"}) == 0
    assert metric(bot, "kryten_rules_reply_outcomes_total", {"outcome": "refused"}) == 1
    health = bot.health()
    assert health["status"] == "degraded" and health["sending"] == "failing"
    assert health["send_failures"] == 1
    failure = health["last_send_failure"]
    assert failure["reason"] == "refused" and "commands" in failure["hint"]


async def test_a_robot_for_another_domain_never_answers(
    real_robot: RobotFactory, start_bot: Any, events: RobotClient, config_path: Path
) -> None:
    # kryten-robot compares meta.domain exactly, port included
    robot = await real_robot(domain=f"{DOMAIN}:443", commands_enabled=True)
    bot = await start_bot(send_timeout=0.5)
    await events.add_user("mod", 2)
    await events.chat("mod", "!secret")
    line = await one_line(config_path)
    assert (line["sent"], line["outcome"]) == (False, "no_answer")
    assert "cytube.domain" in line["hint"] and DOMAIN in line["hint"]
    assert robot.drain() == []
    assert metric(bot, "kryten_rules_send_failures_total", {"reason": "no_answer"}) == 1
    assert bot.health()["last_send_failure"]["reason"] == "no_answer"


async def test_no_robot_on_the_bus(
    nats_server: EmbeddedNats, start_bot: Any, config_path: Path
) -> None:
    bot = await start_bot()
    nc = await nats.connect(nats_server.url)
    try:
        await nc.publish(
            event_subject(CHANNEL, "chatMsg"),
            envelope("chatMsg", chat_payload("alice", "cynthia?"), channel=CHANNEL, domain=DOMAIN),
        )
        await nc.flush()
        line = await one_line(config_path)
    finally:
        await nc.close()
    assert (line["sent"], line["outcome"]) == (False, "no_robot")
    assert "kryten-robot running" in line["hint"]
    assert metric(bot, "kryten_rules_send_failures_total", {"reason": "no_robot"}) == 1


async def test_a_reply_the_pacer_holds_too_long_is_logged_unsent(
    real_robot: RobotFactory,
    events: RobotClient,
    tmp_path: Path,
    nats_server: EmbeddedNats,
    openai: OpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    openai.set(MODEL, "slow:1.0:late")  # the model takes longer than reply_max_age
    cfg = write_config(
        tmp_path, nats_url=nats_server.url, api_base=openai.base_url, extra="reply_max_age: 0.2s\n"
    )
    robot = await real_robot(commands_enabled=True)
    bot = make_bot(cfg)
    await bot.start()
    try:
        await events.chat("alice", "cynthia, slowly")
        line = await one_line(cfg)
        assert (line["sent"], line["outcome"]) == (False, "too_old")
        assert "waited" in line["send_error"]
        assert robot.drain() == []
        assert metric(bot, "kryten_rules_replies_dropped_total", {"reason": "too_old"}) == 1
    finally:
        await bot.stop(grace=1.0)


# ------------------------------------------------------------------ the pacer's outcomes


async def test_the_pacer_reports_every_message_it_does_not_send() -> None:
    got: dict[str, Any] = {}  # label -> its Delivery

    async def ok() -> None:
        return None

    pacer = Pacer(burst=10, per_second=100.0, max_queue=2, max_age=5.0)
    now = pacer.now()
    for name, created in (("a", now), ("old", now - 10.0), ("full", now)):
        pacer.submit(Outgoing(ok, created, name, lambda d, name=name: got.__setitem__(name, d)))
    assert got["full"].status == "queue_full" and not got["full"].sent
    pacer.start()
    await pacer.drain(WAIT)
    await pacer.stop()
    assert got["a"].sent
    assert got["old"].status == "too_old" and "waited 10s" in (got["old"].error or "")
    # what is still queued at stop gets an outcome too
    pacer = Pacer(max_queue=5)
    pacer.submit(Outgoing(ok, now, "late", lambda d: got.__setitem__("late", d)))
    await pacer.stop()
    assert got["late"].status == "shutdown"
