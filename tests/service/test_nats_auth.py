"""Authenticated NATS end to end: a real nats-server per mode (tests/nats_auth.py).

For each of user/password, token, nkey, credentials file (operator JWTs) and
TLS with a client certificate: the bot connects with the config's keys and
answers a mention; the wrong credential makes ``kryten-rules run`` exit 2 with
one line naming the masked URL and the mode, with no traceback and no retry
for ever; and no secret shows in any log line or error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kryten_rules.service.bot import StartupError
from tests.nats_auth import MODES, PASSWORD_ENV, AuthServer, start_auth_server
from tests.nats_fixtures import (
    KEY_ENV,
    KEY_VALUE,
    MODEL_TEXT,
    RobotClient,
    make_bot,
    started_bots,
    write_config,
)
from tests.openai_server import OpenAIServer

SCRIPT = str(Path(sys.executable).with_name("kryten-rules"))
MODE_WORDS = {
    "users": "user/password as 'bot'",
    "token": "token",
    "nkey": "nkey",
    "creds": "credentials file",
    "tls": "TLS with a client certificate",
}
REFUSALS = {
    "users": "authorization failed",
    "token": "authorization failed",
    "nkey": "authorization failed",
    "creds": "authorization failed",
    "tls": "TLS failed: the server refused the client certificate",
}


@pytest.fixture(params=MODES)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuthServer]:
    srv = start_auth_server(request.param, tmp_path / "nats")
    try:
        yield srv
    finally:
        srv.stop()


def _config(tmp_path: Path, server: AuthServer, api_base: str, *, bad: bool = False) -> Path:
    return write_config(
        tmp_path, nats_url=server.url, api_base=api_base, nats_extra=server.nats_yaml(bad=bad)
    )


@pytest.mark.usefixtures("litellm_loaded")
async def test_the_bot_authenticates_and_answers_a_mention(
    tmp_path: Path,
    server: AuthServer,
    openai: OpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    # the port from the environment: ${VAR} expansion on the way a deployment uses it
    monkeypatch.setenv("TEST_NATS_PORT", str(server.port))
    cfg = write_config(
        tmp_path,
        nats_url=f"{server.scheme}://${{TEST_NATS_HOST:-127.0.0.1}}:${{TEST_NATS_PORT}}",
        api_base=openai.base_url,
        nats_extra=server.nats_yaml(),
    )
    client = await RobotClient().connect(server.url, **server.client_options)
    try:
        async with started_bots(cfg) as start:
            await start()
            await client.chat("alice", "hey CynthiaBot, are you there?")
            cmd = await client.next_command()
            health = await client.request("system.health")
            shown = await client.request("system.config")
    finally:
        await client.close()
    assert cmd["command"] == "say" and cmd["args"] == {"message": MODEL_TEXT}
    assert f"nats: connected to {server.url}" in caplog.text
    # system.config shows the nats keys as written: names and paths, never a value
    nats_keys = json.dumps(shown).split('"nats"', 1)[1]
    for key, value in server.config.items():
        assert f'"{key}"' in nats_keys and (key == "tls" or json.dumps(value) in nats_keys)
    for secret in server.secrets:
        assert secret not in caplog.text + json.dumps(health) + json.dumps(shown)


def _run(cfg: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, "run", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,  # a retry for ever would run into this and fail the test
        cwd=cfg.parent,
        env={**os.environ, KEY_ENV: KEY_VALUE, **env},
    )


def test_a_refused_credential_is_one_line_and_exit_2(tmp_path: Path, server: AuthServer) -> None:
    cfg = _config(tmp_path, server, "http://127.0.0.1:9/v1", bad=True)
    proc = _run(cfg, server.bad_env or server.env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {REFUSALS[server.mode]} for {server.url} ({MODE_WORDS[server.mode]}): "
        + errors[0].split("): ", 1)[1]
    ], proc.stderr
    assert proc.stderr.count(REFUSALS[server.mode]) == 1  # said once, not per retry
    for secret in server.secrets:
        assert secret not in proc.stderr + proc.stdout


def test_an_unset_password_variable_is_a_start_up_error(tmp_path: Path) -> None:
    server = start_auth_server("users", tmp_path / "nats")
    try:
        cfg = _config(tmp_path, server, "http://127.0.0.1:9/v1")
        env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
        proc = subprocess.run(
            [SCRIPT, "run", "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={**env, KEY_ENV: KEY_VALUE},
        )
    finally:
        server.stop()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (
        f"error: nats.password_env names the environment variable {PASSWORD_ENV}, which is "
        "not set: set it before starting the service"
    ) in proc.stderr


async def test_a_server_certificate_from_an_unknown_ca_is_refused_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_auth_server("tls", tmp_path / "nats")
    try:
        tls = dict(server.config["tls"])
        tls["ca_file"] = str(tmp_path / "nats" / "other" / "other-ca.pem")
        server.config = {"tls": tls}
        monkeypatch.setenv(KEY_ENV, KEY_VALUE)
        bot = make_bot(_config(tmp_path, server, "http://127.0.0.1:9/v1"))
        with pytest.raises(StartupError) as raised:
            await asyncio.wait_for(bot.run_forever(), 60)
    finally:
        server.stop()
    assert str(raised.value).startswith(
        f"TLS failed: the server's certificate is not trusted for {server.url} "
        "(TLS with a client certificate): "
    )


async def test_record_uses_the_config_credentials_and_stops_on_a_refusal(
    tmp_path: Path,
) -> None:
    server = start_auth_server("users", tmp_path / "nats")
    secret_url = f"nats://bot:{server.secrets[0]}@127.0.0.1:{server.port}"
    try:
        cfg = _config(tmp_path, server, "http://127.0.0.1:9/v1")
        out = tmp_path / "channel.jsonl"
        proc = await asyncio.create_subprocess_exec(
            SCRIPT, "record", str(out), "--config", str(cfg),
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **server.env},
        )
        try:
            assert proc.stderr is not None
            first = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert f"from {server.url}".encode() in first, first
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 15) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        # a password in --nats was printed as given ("recording ... from nats://bot:pw@")
        proc = await asyncio.create_subprocess_exec(
            SCRIPT, "record", str(tmp_path / "url.jsonl"), "--nats", secret_url, "--channel", "c",
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stderr is not None
            line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 15)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert f"from nats://bot:***@127.0.0.1:{server.port}" in line, line
        bad = subprocess.run(
            [SCRIPT, "record", str(tmp_path / "bad.jsonl"), "--config", str(cfg)],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, **server.bad_env},
        )
        # a password in --nats is masked in what record says
        masked = subprocess.run(
            [SCRIPT, "record", str(tmp_path / "m.jsonl"), "--nats", secret_url.replace(
                server.secrets[0], server.secrets[1]), "--channel", "c"],
            capture_output=True, text=True, timeout=120,
        )
    finally:
        server.stop()
    assert bad.returncode == 2, bad.stderr
    # the server may reset the socket before its -ERR is read: a "cannot reach"
    # warning can come first, the refusal is the last line, once
    assert bad.stderr.strip().splitlines()[-1] == (
        f"error: authorization failed for {server.url} (user/password as 'bot'): "
        "'Authorization Violation'"
    ), bad.stderr
    assert bad.stderr.count("authorization failed") == 1
    assert masked.returncode == 2, masked.stderr
    assert (
        f"error: authorization failed for nats://bot:***@127.0.0.1:{server.port} "
        "(credentials in the URL)"
    ) in masked.stderr
    for secret in server.secrets:
        assert secret not in bad.stderr + masked.stderr


async def test_tail_logs_in_with_the_config_and_a_refusal_is_exit_2(tmp_path: Path) -> None:
    """tail reads the bot's events on the operator's NATS: with the service's login."""
    from kryten_rules.service.events_out import reply_event

    server = start_auth_server("users", tmp_path / "nats")
    try:
        cfg = _config(tmp_path, server, "http://127.0.0.1:9/v1")
        proc = await asyncio.create_subprocess_exec(
            SCRIPT, "tail", "--config", str(cfg), "--format", "json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **server.env},
        )
        client = await RobotClient().connect(server.url, **server.client_options)
        try:
            assert proc.stdout is not None
            event = reply_event(
                {"channel": "c", "user": "alice", "rule": "mention", "parts": ["hi"],
                 "parts_sent": 1, "outcome": "sent"}, "cytu.be", "cid-1",
            )
            line = b""
            for _ in range(600):  # until tail is subscribed and prints it (at most ~60 s)
                await client.nc.publish("kryten.events.rules.reply", json.dumps(event).encode())
                try:
                    line = await asyncio.wait_for(proc.stdout.readline(), 0.1)
                    break
                except TimeoutError:
                    continue
            assert json.loads(line)["user"] == "alice"
            proc.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(proc.wait(), 15) == 0
        finally:
            await client.close()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        bad = subprocess.run(
            [SCRIPT, "tail", "--config", str(cfg)], capture_output=True, text=True, timeout=120,
            env={**os.environ, **server.bad_env},
        )
    finally:
        server.stop()
    assert bad.returncode == 2, bad.stderr
    assert "Traceback" not in bad.stderr
    for secret in server.secrets:
        assert secret not in bad.stderr
