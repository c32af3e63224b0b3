"""Conformance with the Kryten ecosystem's own code: kryten-py, kryten-robot, kryten-shell.

Each package runs in its own cached virtualenv (tests/conformance/venvs.py) as
a subprocess (tests/conformance/citizen_probe.py) against a real nats-server,
with kryten-rules running in-process on the same server:

* kryten-py 0.17.5's client sends our commands (flat, nested as its
  ``send_command`` writes them, kryten-shell's ``system`` form) and reads our
  replies; our lifecycle events carry every field its own publisher writes;
  its ``publish_group_restart`` stops us for a restart.
* kryten-robot 1.12.6's ``ServiceRegistry`` lists us, after a robot startup,
  with our version and endpoints, and keeps us active across heartbeats.
* kryten-shell 0.1.4's ``ping_service`` gets the fields its ``services``
  command shows.

The probes run as asyncio subprocesses: the bot answers on this event loop
while they wait.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from kryten_rules import __version__
from kryten_rules.service.bot import Bot
from kryten_rules.service.embedded import EmbeddedNats
from tests.conformance.venvs import pinned_python
from tests.nats_fixtures import (
    MODEL,
    WAIT,
    BotFactory,
    wait_until,
)

PY_VERSION = "0.17.5"
ROBOT_VERSION = "1.12.6"
SHELL_VERSION = "0.1.4"
PROBE = Path(__file__).resolve().parents[1] / "conformance" / "citizen_probe.py"
HEARTBEAT = 0.2

pytestmark = pytest.mark.usefixtures("litellm_loaded")


@pytest.fixture(scope="module")
def py_python() -> Path:
    return pinned_python("kryten-py-venv", "kryten-py", PY_VERSION)


@pytest.fixture(scope="module")
def robot_python() -> Path:
    return pinned_python("robot-venv", "kryten-robot", ROBOT_VERSION)


@pytest.fixture(scope="module")
def shell_python() -> Path:
    return pinned_python("kryten-shell-venv", "kryten-shell", SHELL_VERSION)


@pytest.fixture
def model_script() -> dict[str, str]:
    return {MODEL: "ok:hello"}


@pytest.fixture
def config_extra() -> str:
    return f"heartbeat: {HEARTBEAT}s\n"  # the registry must see several, quickly


async def probe(python: Path, scenario: str, **params: Any) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        str(python), str(PROBE), scenario, json.dumps({"timeout": WAIT, **params}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(PROBE.parent),  # keep the repo off sys.path: only the venv's packages
    )
    out, err = await asyncio.wait_for(proc.communicate(), WAIT * 3)
    assert proc.returncode == 0, err.decode(errors="replace")
    result: dict[str, Any] = json.loads(out)
    return result


def endpoint_urls(bot: Bot) -> dict[str, str]:
    assert bot.http is not None
    return {p: f"http://{bot.http.address}/{p}" for p in ("health", "metrics")}


# ------------------------------------------------------------------ kryten-py


async def test_kryten_py_commands_replies_and_lifecycle(
    py_python: Path, start_bot: BotFactory, nats_server: EmbeddedNats
) -> None:
    bot = await start_bot(heartbeat_interval=None)
    r = await probe(py_python, "py-commands", url=nats_server.url, text="cynthia, hello")

    for key in ("flat", "system_ping", "stats", "nested"):
        reply = r[key]
        assert set(reply) == {"service", "command", "success", "data"}, (key, reply)
        assert reply["service"] == "rules" and reply["success"] is True
    assert r["flat"]["data"]["fired"] == "mention"
    assert r["nested_sent"]["args"] == {"text": "cynthia, hello"}  # kryten-py's own nesting
    assert r["nested_sent"]["meta"]["channel"] == "probe"
    assert r["nested"]["command"] == "rules.explain"
    assert r["nested"]["data"]["fired"] == "mention"
    ping = r["system_ping"]["data"]
    assert ping["version"] == __version__ and ping["pong"] is True
    assert ping["metrics_endpoint"] == endpoint_urls(bot)["metrics"]
    assert r["stats"]["data"]["rules"] == 3

    ours, ref = r["ours"], r["reference"]
    assert ours["subject"] == "kryten.lifecycle.rules.startup"
    assert set(ref) <= set(ours)
    for key in ref:
        assert type(ours[key]) is type(ref[key]) or key == "uptime_seconds", key
    for name in ("health", "metrics"):
        theirs, mine = ref["metadata"]["endpoints"][name], ours["metadata"]["endpoints"][name]
        assert set(theirs) <= set(mine)
        assert mine["path"] == theirs["path"] == f"/{name}"
        assert isinstance(mine["port"], int) and mine["url"] == endpoint_urls(bot)[name]


async def test_kryten_py_group_restart_stops_us_for_a_restart(
    py_python: Path, start_bot: BotFactory, nats_server: EmbeddedNats
) -> None:
    bot = await start_bot()
    await probe(
        py_python, "py-restart", url=nats_server.url,
        reason="config update", delay_seconds=0, initiator="kryten-py",
    )
    await wait_until(lambda: bot.restart_reason is not None, what="the restart to be requested")
    assert bot.restart_reason == "group restart by kryten-py: config update"


# ------------------------------------------------------------------ kryten-robot


async def test_kryten_robot_registry_lists_us_across_heartbeats(
    robot_python: Path, start_bot: BotFactory, nats_server: EmbeddedNats
) -> None:
    bot = await start_bot(heartbeat_interval=None)  # the config's 0.2 s
    assert bot.http is not None
    r = await probe(robot_python, "robot-registry", url=nats_server.url, heartbeats=3)
    first, later = r["first"], r["later"]
    assert first["name"] == "rules" and first["version"] == __version__
    assert first["health_port"] == first["metrics_port"] == bot.http.port
    assert first["health_path"] == "/health" and first["metrics_path"] == "/metrics"
    assert first["health_url"] == f"http://{bot.lifecycle.hostname}:{bot.http.port}/health"
    assert later["heartbeat_count"] >= 3
    assert later["is_stale"] is False and "rules" in r["active"]
    assert later["first_seen"] == first["first_seen"]  # the same entry, kept


# ------------------------------------------------------------------ kryten-shell


async def test_kryten_shell_ping_gets_what_services_shows(
    shell_python: Path, start_bot: BotFactory, nats_server: EmbeddedNats
) -> None:
    bot = await start_bot()
    info = (await probe(shell_python, "shell-ping", url=nats_server.url))["info"]
    assert info is not None, "kryten-shell saw us offline"
    # what cmd_services reads: service, version, uptime_seconds, metrics_endpoint
    assert info["service"] == "rules" and info["version"] == __version__
    assert isinstance(info["uptime_seconds"], float)
    assert info["metrics_endpoint"] == endpoint_urls(bot)["metrics"]
    assert info["pong"] is True
