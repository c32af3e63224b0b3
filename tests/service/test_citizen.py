"""The service as a Kryten citizen: lifecycle, commands, health, restart, default config.

A real nats-server, the bot in-process (``kryten-rules run`` as a subprocess for
the restart's exit code), and a test client on the bus. The ecosystem's own
code checks the same things in tests/service/test_conformance_kryten.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kryten_rules.cli.configpath import NoConfigFound, choose_config
from kryten_rules.compile.load import load_config
from kryten_rules.service.bot import (
    EXIT_RESTART,
    RULES_COMMAND_SUBJECT,
    lifecycle_subject,
)
from kryten_rules.service.commands import REDACTED, BadRequest, parse_request
from kryten_rules.service.embedded import EmbeddedNats
from kryten_rules.service.lifecycle import (
    GROUP_RESTART_SUBJECT,
    ROBOT_STARTUP_SUBJECT,
    RestartNoticeError,
    parse_restart_notice,
)
from tests.nats_fixtures import (
    CHANNEL,
    KEY_ENV,
    KEY_VALUE,
    MODEL,
    WAIT,
    BotFactory,
    RobotClient,
    roundtrip,
    settle,
    started_bots,
    write_config,
)
from tests.openai_server import OpenAIServer
from tests.service.test_service import _kryten_rules_exe, next_on

pytestmark = pytest.mark.usefixtures("litellm_loaded")


@pytest.fixture
def model_script() -> dict[str, str]:
    return {MODEL: "ok:hello"}


async def ask(client: RobotClient, body: dict[str, Any] | bytes) -> dict[str, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg = await client.nc.request(RULES_COMMAND_SUBJECT, data, timeout=WAIT)
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


def http_get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# ------------------------------------------------------------------ lifecycle


async def test_startup_names_endpoints_that_answer(
    start_bot: BotFactory, client: RobotClient
) -> None:
    lifecycle = await client.collect(lifecycle_subject("startup"))
    bot = await start_bot()
    _, startup = await next_on(lifecycle)
    endpoints = startup["metadata"]["endpoints"]
    assert bot.http is not None
    # kryten-robot's registry reads {port, path}; url is the whole address
    assert endpoints["health"] == {
        "port": bot.http.port,
        "path": "/health",
        "url": f"http://{bot.http.address}/health",
    }
    assert endpoints["metrics"]["url"] == f"http://{bot.http.address}/metrics"
    status, body = await asyncio.to_thread(http_get, endpoints["health"]["url"])
    assert status == 200
    assert {"status", "uptime_seconds", "nats_connected"} <= set(body)
    assert body["status"] == "ok" and body["nats_connected"] is True


async def test_no_endpoints_without_an_http_server(
    start_bot: BotFactory, client: RobotClient
) -> None:
    lifecycle = await client.collect(lifecycle_subject("startup"))
    await start_bot(serve_http=False)
    _, startup = await next_on(lifecycle)
    assert "endpoints" not in startup["metadata"]
    ping = await ask(client, {"command": "system.ping"})
    assert ping["data"]["metrics_endpoint"] is None


async def test_a_robot_startup_is_answered_with_our_startup(
    start_bot: BotFactory, client: RobotClient
) -> None:
    await start_bot()
    lifecycle = await client.collect(lifecycle_subject("startup"))
    await client.nc.publish(ROBOT_STARTUP_SUBJECT, b'{"service": "robot"}')
    _, again = await next_on(lifecycle)
    assert again["service"] == "rules"


async def test_the_heartbeat_interval_comes_from_the_config(
    config_path: Path, nats_server: EmbeddedNats, openai: OpenAIServer, client: RobotClient
) -> None:
    tmp_path = config_path.parent
    cfg = write_config(
        tmp_path, nats_url=nats_server.url, api_base=openai.base_url, extra="heartbeat: 0.2s\n"
    )
    assert load_config(cfg).heartbeat == 0.2
    beats = await client.collect(lifecycle_subject("heartbeat"))
    async with started_bots(cfg) as start:
        bot = await start(heartbeat_interval=None)  # the config's, not the test default
        assert bot.heartbeat_interval == 0.2
        await next_on(beats)
        await next_on(beats)


def test_the_default_heartbeat_is_the_ecosystems(config_path: Path) -> None:
    assert load_config(config_path).heartbeat == 30.0


# ------------------------------------------------------------------ group restart


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"{}", ("unknown", "No reason provided", 5.0)),
        (b'{"initiator": "ops", "reason": "upgrade", "delay_seconds": 0}', ("ops", "upgrade", 0.0)),
        (b'{"delay_seconds": 2.5}', ("unknown", "No reason provided", 2.5)),
    ],
)
def test_restart_notices(data: bytes, expected: tuple[str, str, float]) -> None:
    assert parse_restart_notice(data) == expected


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "object"),
        (b'{"delay_seconds": "soon"}', "number"),
        (b'{"delay_seconds": true}', "number"),
        (b'{"delay_seconds": -1}', "within"),
        (b'{"delay_seconds": 1e9}', "within"),
        (b'{"delay_seconds": NaN}', "number"),
    ],
)
def test_bad_restart_notices_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(RestartNoticeError, match=why):
        parse_restart_notice(data)


async def test_a_bad_restart_notice_leaves_the_service_running(
    start_bot: BotFactory, client: RobotClient
) -> None:
    bot = await start_bot()
    await client.nc.publish(GROUP_RESTART_SUBJECT, b'{"delay_seconds": "soon"}')
    await roundtrip(client.nc)
    ping = await ask(client, {"command": "system.ping"})  # answered after the notice
    assert ping["success"] is True
    assert bot.restart_reason is None and not bot.lifecycle.restart_pending


async def test_group_restart_stops_cleanly_and_exits_75(
    config_path: Path, client: RobotClient, tmp_path: Path
) -> None:
    lifecycle = await client.collect("kryten.lifecycle.rules.>")
    proc = subprocess.Popen(
        [*_kryten_rules_exe(), "run", "--config", str(config_path)],
        env={**os.environ, KEY_ENV: KEY_VALUE},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        await next_on(lifecycle, lambda s, d: s == lifecycle_subject("startup"), timeout=60)
        notice = {"initiator": "ops", "reason": "new config", "delay_seconds": 0.2}
        await client.nc.publish(GROUP_RESTART_SUBJECT, json.dumps(notice).encode())
        code = await asyncio.to_thread(proc.wait, 30)
        out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        assert code == EXIT_RESTART, out
        _, shutdown = await next_on(lifecycle, lambda s, d: s == lifecycle_subject("shutdown"))
        assert shutdown["reason"] == "group restart by ops: new config"
        assert "group restart requested by ops (new config)" in out
        assert "Traceback" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


# ------------------------------------------------------------------ commands


@pytest.mark.parametrize(
    ("data", "command", "args"),
    [
        (b'{"command": "system.ping"}', "system.ping", {}),
        (b'{"service": "system", "command": "system.ping"}', "system.ping", {}),
        (
            b'{"command": "rules.explain", "args": {"text": "hi"}, "meta": {"source": "x"}}',
            "rules.explain",
            {"text": "hi"},
        ),
        (b'{"service": "rules", "command": "rules.explain", "text": "hi"}', "rules.explain",
         {"text": "hi"}),
        (b'{"command": "c", "text": "flat", "args": {"text": "nested"}}', "c", {"text": "nested"}),
    ],
)
def test_requests_nested_and_flat(data: bytes, command: str, args: dict[str, Any]) -> None:
    req = parse_request(data)
    assert (req.command, req.args) == (command, args)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"nope", "not JSON"),
        (b'"system.ping"', "object"),
        (b"{}", "command"),
        (b'{"command": 3}', "command"),
        (b'{"command": "system.ping", "args": [1]}', "args"),
        (b'{"service": "robot", "command": "system.ping"}', "'robot'"),
    ],
)
def test_bad_requests(data: bytes, why: str) -> None:
    with pytest.raises(BadRequest, match=why):
        parse_request(data)


async def test_flat_nested_and_system_forms_are_answered(
    start_bot: BotFactory, client: RobotClient
) -> None:
    bot = await start_bot()
    ping = await ask(client, {"service": "system", "command": "system.ping"})
    assert set(ping) == {"service", "command", "success", "data"}
    assert (ping["service"], ping["command"], ping["success"]) == ("rules", "system.ping", True)
    data = ping["data"]
    assert {"pong", "service", "version", "uptime_seconds", "timestamp"} <= set(data)
    assert bot.http is not None
    assert data["metrics_endpoint"] == f"http://{bot.http.address}/metrics"

    flat = await ask(client, {"service": "rules", "command": "rules.explain", "text": "cynthia hi"})
    nested = await ask(client, {"command": "rules.explain", "args": {"text": "cynthia hi"},
                                "meta": {"source": "test", "channel": CHANNEL}})
    assert flat["data"]["fired"] == nested["data"]["fired"] == "mention"

    wrong = await ask(client, {"service": "robot", "command": "system.ping"})
    assert wrong["success"] is False and "'robot'" in wrong["error"]
    assert set(wrong) == {"service", "command", "success", "error"}
    unknown = await ask(client, {"service": "system", "command": "system.nope"})
    assert "Unknown command" in unknown["error"]  # kryten-shell's cue to try system.health


async def test_stats_count_what_happened(start_bot: BotFactory, client: RobotClient) -> None:
    bot = await start_bot()
    await client.add_user("mod", 2)
    await client.chat("mod", "!secret")
    await client.next_command()
    await settle(bot, client, events=2)
    stats = (await ask(client, {"command": "system.stats"}))["data"]
    assert stats["rules"] == 3
    assert stats["events"]["seen"] == 2
    assert stats["events"]["by_event"] == {"addUser": 1, "chatMsg": 1}
    assert stats["decisions"] == 2  # each event the rules evaluated
    assert stats["rule_outcomes"]["fired"] == 1
    assert stats["replies"]["sent"] == 1 and stats["failures"]["send"] == 0
    assert stats["uptime_seconds"] >= 0 and stats["nats_connected"] is True


async def test_config_is_shown_with_secrets_redacted(
    tmp_path: Path, nats_server: EmbeddedNats, openai: OpenAIServer, client: RobotClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    # a password in the NATS URL and in a model's api_base, a token in a query
    nats_url = nats_server.url.replace("nats://", "nats://bot:natspass@")
    api_base = openai.base_url.replace("http://", "http://u:basepass@") + "?token=tok123"
    cfg = write_config(tmp_path, nats_url=nats_url, api_base=api_base)
    async with started_bots(cfg) as start:
        await start(nats_url=nats_server.url)  # the server itself has no auth
        msg = await client.nc.request(
            RULES_COMMAND_SUBJECT, b'{"command": "system.config"}', timeout=WAIT
        )
    text = msg.data.decode()
    for secret in ("natspass", "basepass", "tok123", KEY_VALUE):
        assert secret not in text
    data = json.loads(text)["data"]
    assert data["nats"]["url"] == nats_url.replace("natspass", "***")
    assert data["models"]["m"]["api_key_env"] == KEY_ENV  # the name, never the value
    assert data["cytube"]["channel"] == CHANNEL
    assert data["heartbeat_seconds"] == 60.0


def test_secret_keys_are_redacted_whatever_the_section() -> None:
    from kryten_rules.service.commands import redacted

    doc = {"nats": {"password": "p", "password_env": "NATS_PASSWORD", "token": "t",
                    "creds_file": "/etc/x.creds", "user": "bot"}, "api_key": None}
    assert redacted(doc) == {
        "nats": {"password": REDACTED, "password_env": "NATS_PASSWORD", "token": REDACTED,
                 "creds_file": "/etc/x.creds", "user": "bot"},
        "api_key": None,
    }


# ------------------------------------------------------------------ default config path


def test_the_config_path_given_wins(tmp_path: Path) -> None:
    choice = choose_config("x.yaml", (tmp_path / "a.yaml",))
    assert (choice.path, choice.given) == ("x.yaml", True)


def test_the_first_default_that_exists(tmp_path: Path) -> None:
    first, second = tmp_path / "kryten-rules.yaml", tmp_path / "etc.yaml"
    second.write_text("x")
    assert choose_config(None, (first, second)).path == str(second)
    first.write_text("x")
    choice = choose_config(None, (first, second))
    assert (choice.path, choice.given) == (str(first), False)
    assert str(first) in choice.describe()
    with pytest.raises(NoConfigFound, match="--config"):
        choose_config(None, (tmp_path / "none.yaml",))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kryten_rules", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )


NOWHERE = {"nats_url": "nats://127.0.0.1:1", "api_base": "http://127.0.0.1:1"}  # never dialled


def test_validate_without_paths_uses_the_default_config(tmp_path: Path) -> None:
    write_config(tmp_path, **NOWHERE)
    done = _cli("validate", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "using the service config kryten-rules.yaml (the default path" in done.stderr


@pytest.mark.skipif(
    Path("/etc/kryten/kryten-rules/config.yaml").exists(), reason="this host has a real config"
)
@pytest.mark.parametrize("command", ["run", "validate"])
def test_no_config_anywhere_is_a_clear_error(tmp_path: Path, command: str) -> None:
    done = _cli(command, cwd=tmp_path)
    assert done.returncode == 2
    assert "kryten-rules.yaml" in done.stderr and "/etc/kryten/kryten-rules/config.yaml" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr


def test_validate_rejects_a_zero_heartbeat(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, extra="heartbeat: 0\n", **NOWHERE)
    done = _cli("validate", str(cfg), cwd=tmp_path)
    assert done.returncode == 1
    assert "bad-duration" in done.stdout and "heartbeat" in done.stdout
