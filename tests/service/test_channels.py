"""Several channels in one process, on a real nats-server.

Three channels, each with its own rules and persona: each mention is answered
in its own channel (the say command's ``meta.channel``) by its own persona; a
cooldown spent in one channel blocks nothing in another; a reload of one
channel leaves the others' rules alone; commands name a channel, and without
one where several are served the error lists them.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kryten_rules.service.bot import Bot
from kryten_rules.service.embedded import EmbeddedNats
from kryten_rules.service.kvcodec import channel_prefix
from kryten_rules.service.statesync import MemoryBackend
from tests.nats_fixtures import (
    DOMAIN,
    RobotClient,
    make_bot,
    metric,
    roundtrip,
    settle,
    wait_until,
    write_rules,
)

# channel -> (the bot's username there, its persona)
CHANNELS = {"alpha": ("AlphaBot", "Ada"), "beta": ("BetaBot", "Bea"), "gamma": ("GammaBot", "Gus")}


def persona_rules(persona: str, greeting: str = "here") -> str:
    """A mention answered by ``persona`` by name, at most once an hour in the channel."""
    return f"""\
kryten_rules: 1
persona:
  name: {persona}
  aliases: [{persona.lower()}]
rules:
  - id: mention
    match: {{mention: true}}
    cooldown: {{rule: 1h}}
    reply: "{{{{ persona.name }}}} {greeting} in #{{{{ channel }}}}, {{{{ user.name }}}}"
"""


def write_three(tmp_path: Path, nats_url: str, extra: str = "") -> Path:
    entries = []
    for channel, (username, persona) in CHANNELS.items():
        write_rules(tmp_path / "rules" / channel / "main.yaml", persona_rules(persona))
        entries.append(
            f"  - {{domain: {DOMAIN}, channel: {channel}, username: {username}, "
            f"rules: rules/{channel}/}}"
        )
    cfg = tmp_path / "kryten-rules.yaml"
    cfg.write_text(
        "kryten_rules_config: 1\n"
        f'nats: {{url: "{nats_url}"}}\n'
        "log: {responses: logs/responses.jsonl}\n"
        + extra
        + "channels:\n"
        + "\n".join(entries)
        + "\n",
        encoding="utf-8",
    )
    return cfg


@pytest.fixture
async def robots(nats_server: EmbeddedNats) -> AsyncIterator[dict[str, RobotClient]]:
    """One stand-in robot per channel, publishing that channel's events; only the
    first answers the commands the bot sends (one answer per request, as one robot)."""
    out: dict[str, RobotClient] = {}
    for i, channel in enumerate(CHANNELS):
        robot = RobotClient(channel=channel)
        if i:
            robot.answer = None
        out[channel] = await robot.connect(nats_server.url)
    yield out
    for robot in out.values():
        await robot.close()


@pytest.fixture
async def bot(tmp_path: Path, nats_server: EmbeddedNats) -> AsyncIterator[Bot]:
    bot = make_bot(write_three(tmp_path, nats_server.url), nats_url=nats_server.url)
    await bot.start()
    await roundtrip(bot.nc)
    yield bot
    await bot.stop(grace=1.0)


def said(robot: RobotClient) -> list[tuple[str, str]]:
    """``(meta.channel, message)`` of every say command the bot sent so far."""
    return [
        (c["meta"]["channel"], c["args"]["message"]) for c in robot.drain() if c["command"] == "say"
    ]


async def test_each_channel_answers_in_its_own_channel_with_its_own_persona(
    bot: Bot, robots: dict[str, RobotClient]
) -> None:
    for channel, (_, persona) in CHANNELS.items():
        await robots[channel].chat("alice", f"hey {persona.lower()}")
    await settle(bot, robots["alpha"], events=3)
    assert sorted(said(robots["alpha"])) == [
        ("alpha", "Ada here in #alpha, alice"),
        ("beta", "Bea here in #beta, alice"),
        ("gamma", "Gus here in #gamma, alice"),
    ]
    # a persona answers to its own name only: Ada's name in #beta is no mention there
    await robots["beta"].chat("bob", "hey ada")
    await settle(bot, robots["alpha"], events=4)
    assert said(robots["alpha"]) == []
    # each line of the one response log names its channel
    log = Path(bot.responses.path or "")
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert sorted((line["channel"], line["outcome"]) for line in lines) == [
        ("alpha", "sent"),
        ("beta", "sent"),
        ("gamma", "sent"),
    ]


async def test_a_cooldown_in_one_channel_blocks_no_other(
    bot: Bot, robots: dict[str, RobotClient]
) -> None:
    await robots["alpha"].chat("alice", "ada?")
    await settle(bot, robots["alpha"], events=1)
    assert said(robots["alpha"]) == [("alpha", "Ada here in #alpha, alice")]
    await robots["alpha"].chat("bob", "ada!")  # alpha's rule cooldown: silent
    await robots["beta"].chat("bob", "bea!")  # beta has spent nothing
    await settle(bot, robots["alpha"], events=3)
    assert said(robots["alpha"]) == [("beta", "Bea here in #beta, bob")]
    cooled = {
        "channel": "alpha",
        "rule": "mention",
        "outcome": "blocked",
        "reason": "cooldown.rule",
    }
    assert metric(bot, "kryten_rules_decisions_total", cooled) == 1
    assert metric(bot, "kryten_rules_decisions_total", cooled | {"channel": "beta"}) == 0
    assert metric(bot, "kryten_rules_replies_total", {"channel": "beta", "via": "chat"}) == 1


async def test_a_reload_of_one_channel_leaves_the_others_alone(
    bot: Bot, robots: dict[str, RobotClient], tmp_path: Path
) -> None:
    robot = robots["alpha"]
    digests = {c: (await robot.request("rules.status", {"channel": c}))["data"] for c in CHANNELS}
    for channel, (_, persona) in CHANNELS.items():  # every file changes
        write_rules(tmp_path / "rules" / channel / "main.yaml", persona_rules(persona, "reloaded"))
    answer = await robot.request("rules.reload", {"channel": "beta"})
    assert answer["success"] and answer["data"]["changed"] is True
    after = {c: (await robot.request("rules.status", {"channel": c}))["data"] for c in CHANNELS}
    assert after["beta"]["digest"] != digests["beta"]["digest"]
    assert after["alpha"]["digest"] == digests["alpha"]["digest"]
    assert after["gamma"]["digest"] == digests["gamma"]["digest"]
    assert after["alpha"]["last_reload"] is None and after["beta"]["channel"] == "beta"
    for channel, (_, persona) in CHANNELS.items():
        await robots[channel].chat("carol", persona.lower())
    await settle(bot, robot, events=3)
    assert sorted(said(robot)) == [
        ("alpha", "Ada here in #alpha, carol"),
        ("beta", "Bea reloaded in #beta, carol"),
        ("gamma", "Gus here in #gamma, carol"),
    ]
    # no channel named (as SIGHUP): every channel reloads, each outcome its own
    every = await bot.reload("SIGHUP")
    assert every["ok"] is True
    assert {c: o["changed"] for c, o in every["channels"].items()} == {
        "alpha": True,
        "beta": False,
        "gamma": True,
    }
    assert metric(bot, "kryten_rules_reloads_total", {"channel": "beta", "outcome": "ok"}) == 1
    assert metric(bot, "kryten_rules_reloads_total", {"channel": "alpha", "outcome": "ok"}) == 1


async def test_commands_need_a_channel_where_several_are_served(
    bot: Bot, robots: dict[str, RobotClient]
) -> None:
    robot = robots["alpha"]
    for command in ("rules.status", "rules.explain"):
        answer = await robot.request(command, {"text": "hey bea"})
        assert answer["success"] is False
        assert answer["error"] == (
            "args.channel is required: this process serves cytu.be/alpha, cytu.be/beta, "
            "cytu.be/gamma"
        )
    answer = await robot.request("rules.status", {"channel": "nowhere"})
    assert answer["success"] is False and "no channel 'nowhere' here" in answer["error"]
    explained = await robot.request("rules.explain", {"text": "hey bea", "channel": "cytu.be/beta"})
    assert explained["success"] is True
    data: dict[str, Any] = explained["data"]
    assert data["fired"] == "mention" and data["reply"] == "Bea here in #beta, someone"
    other = await robot.request("rules.explain", {"text": "hey bea", "channel": "Alpha"})
    assert other["data"]["fired"] is None  # Bea is no one in #alpha


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
    return body


async def test_health_has_each_channel_and_the_whole(bot: Bot) -> None:
    assert bot.http is not None
    url = f"http://127.0.0.1:{bot.http.port}/health"
    data = json.loads(await asyncio.to_thread(_fetch, url))  # the loop serves it meanwhile
    assert data["status"] == "ok" and data["rules"] == 3
    assert [(c["channel"], c["status"], c["rules"]) for c in data["channels"]] == [
        ("alpha", "ok", 1),
        ("beta", "ok", 1),
        ("gamma", "ok", 1),
    ]
    stats = (await bot.command("system.stats", {}))["channels"]
    assert stats == ["alpha", "beta", "gamma"]


async def test_each_channel_keeps_its_state_in_its_own_backend(
    tmp_path: Path, nats_server: EmbeddedNats, robots: dict[str, RobotClient]
) -> None:
    backends: dict[str, MemoryBackend] = {}

    def backend(channel: Any) -> MemoryBackend:
        return backends.setdefault(channel.channel, MemoryBackend())

    cfg = write_three(tmp_path, nats_server.url)
    bot = make_bot(cfg, nats_url=nats_server.url, state_backend=backend)
    await bot.start()
    try:
        await robots["beta"].chat("dave", "bea")
        await settle(bot, robots["alpha"], events=1)
    finally:
        await bot.stop(grace=1.0)
    assert sorted(backends) == ["alpha", "beta", "gamma"]
    assert backends["beta"].data and not backends["alpha"].data and not backends["gamma"].data


async def test_one_backend_for_several_channels_is_refused(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    from kryten_rules.service.bot import StartupError

    bot = make_bot(
        write_three(tmp_path, nats_server.url),
        nats_url=nats_server.url,
        state_backend=MemoryBackend(),
    )
    try:
        with pytest.raises(StartupError, match="would mix their state"):
            await bot.start()
    finally:
        await bot.stop(grace=0.5)


async def test_each_channel_watches_its_own_files(
    tmp_path: Path, nats_server: EmbeddedNats, robots: dict[str, RobotClient]
) -> None:
    bot = make_bot(
        write_three(tmp_path, nats_server.url), nats_url=nats_server.url, watch_interval=0.1
    )
    await bot.start()
    try:
        gamma = bot.find_channel("gamma")
        before = {ch.name: ch.rules.ruleset.digest for ch in bot.channels}
        write_rules(tmp_path / "rules" / "gamma" / "main.yaml", persona_rules("Gus", "anew"))
        await wait_until(
            lambda: gamma.rules.ruleset.digest != before["gamma"], what="gamma's reload"
        )
        assert {ch.name: ch.rules.last_reload is not None for ch in bot.channels} == {
            "alpha": False,
            "beta": False,
            "gamma": True,
        }
    finally:
        await bot.stop(grace=1.0)


async def test_each_channel_keeps_its_keys_in_the_jetstream_bucket(
    tmp_path: Path, nats_server: EmbeddedNats, robots: dict[str, RobotClient]
) -> None:
    bucket = "kr_test_channels"
    cfg = write_three(tmp_path, nats_server.url, f"state: {{store: jetstream, bucket: {bucket}}}\n")
    bot = make_bot(cfg, nats_url=nats_server.url)
    await bot.start()
    kv = await robots["alpha"].nc.jetstream(timeout=2).key_value(bucket)

    async def keys() -> list[str]:
        try:
            return list(await kv.keys())
        except Exception:  # no keys yet
            return []

    try:
        await robots["gamma"].chat("erin", "gus!")
        await settle(bot, robots["alpha"], events=1)
        deadline = asyncio.get_running_loop().time() + 10
        while not await keys():  # written behind, within a second or so
            assert asyncio.get_running_loop().time() < deadline, "no state keys written"
            await asyncio.sleep(0.05)
        assert all(bot.find_channel(c).state_sync is not None for c in CHANNELS)
    finally:
        await bot.stop(grace=1.0)
    written = await keys()
    assert written and all(k.startswith(channel_prefix(DOMAIN, "gamma")) for k in written)
