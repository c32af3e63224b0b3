"""Issue #9 items 9 and 13 on the running bot: a real nats-server, the bot in-process.

Item 9: a reload that fails, whatever raised, leaves the running rules whole,
publishes its ``kryten.events.rules.reload`` event and shows in health.
Item 13: while a heavy reload runs, commands are answered and a stop is prompt.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from kryten_rules.compile import ruleset as ruleset_module
from kryten_rules.service.bot import RELOAD_SUBJECT, Bot
from tests.nats_fixtures import (
    WAIT,
    RobotClient,
    write_rules,
)

pytestmark = pytest.mark.usefixtures("litellm_loaded")

V1 = """\
kryten_rules: 1
rules:
  - id: greet
    match: {any: [hello]}
    reply: "v1 hi {{ user.name }}"
"""
V2 = V1.replace("v1 hi", "v2 hi").replace("id: greet", "id: greet-v2")
V2_INFINITE_RANK_LIMIT = V2.replace(
    "rules:\n", "ranks:\n  - {min: moderator, limit: .inf}\nrules:\n"
)
INF_COLUMN = 1 + V2_INFINITE_RANK_LIMIT.splitlines()[2].index(".inf")

BotFactory = Callable[..., Awaitable[Bot]]


@pytest.fixture
def model_script() -> dict[str, str]:
    return {}


@pytest.fixture
def rules_text() -> str:
    return V1


def rules_file(config_path: Path) -> Path:
    return config_path.parent / "rules" / "main.yaml"


async def next_reload(queue: asyncio.Queue[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    _, event = await asyncio.wait_for(queue.get(), WAIT)
    return event


async def greeting(client: RobotClient) -> str:
    await client.chat("alice", "hello there")
    return str((await client.next_command())["args"]["message"])


async def test_a_reload_with_an_infinite_rank_limit_is_refused_published_and_in_health(
    bot: Bot, client: RobotClient, config_path: Path
) -> None:
    reloads = await client.collect(RELOAD_SUBJECT)
    write_rules(rules_file(config_path), V2_INFINITE_RANK_LIMIT)

    reply = await client.request("rules.reload")
    assert reply["success"] is True, reply
    assert reply["data"]["ok"] is False
    event = await next_reload(reloads)
    assert event["ok"] is False
    [diag] = [d for d in event["diagnostics"] if d["severity"] == "error"]
    assert (diag["code"], diag["line"], diag["column"]) == ("bad-number", 3, INF_COLUMN)

    assert [r.id for r in bot.ruleset.rules] == ["greet"]
    assert await greeting(client) == "v1 hi alice"
    health = (await client.request("system.health"))["data"]
    assert health["status"] == "degraded"
    assert health["last_reload"]["ok"] is False and health["last_reload"]["errors"] == 1

    write_rules(rules_file(config_path), V2)  # fixed: health recovers
    assert (await client.request("rules.reload"))["data"]["ok"] is True
    assert (await next_reload(reloads))["changed"] is True
    assert (await client.request("system.health"))["data"]["status"] == "ok"
    assert await greeting(client) == "v2 hi alice"


async def test_whatever_raises_while_installing_the_old_set_stays_and_the_event_is_published(
    bot: Bot, client: RobotClient, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reloads = await client.collect(RELOAD_SUBJECT)
    plan = ruleset_module.plan_rule

    def failing_plan(rs: Any, rule: Any, *args: Any) -> Any:  # a fault in the real build
        if rule.id == "greet-v2":
            raise RuntimeError("injected fault while planning greet-v2")
        return plan(rs, rule, *args)

    monkeypatch.setattr(ruleset_module, "plan_rule", failing_plan)
    write_rules(rules_file(config_path), V2)

    reply = await client.request("rules.reload")
    assert reply["success"] is True, reply
    assert reply["data"]["ok"] is False
    event = await next_reload(reloads)
    assert event["ok"] is False and "injected fault" in event["error"]
    assert [r.id for r in bot.ruleset.rules] == ["greet"]
    assert await greeting(client) == "v1 hi alice"  # not a half-installed v2
    health = (await client.request("system.health"))["data"]
    assert health["status"] == "degraded" and "injected fault" in health["last_reload"]["error"]
    status = (await client.request("rules.status"))["data"]
    assert status["last_reload"]["ok"] is False
    json.dumps(status)  # what the command replies with is plain JSON
