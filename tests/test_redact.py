"""Credentials in URLs are masked wherever the service logs or reports them.

The NATS tests run a real ``nats-server`` that requires a user and password,
so the bot really connects with ``nats://bot:<password>@...``, and look for
the password in every place the URL used to show up: the log, health, command
replies, the lifecycle events, the ``chat`` banner, the CLI's error message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kryten_rules.redact import MaskingFormatter, mask_credentials
from kryten_rules.service.bot import StartupError
from kryten_rules.service.embedded import find_nats_server, free_port, wait_listening
from kryten_rules.service.responselog import ResponseLog
from tests.nats_fixtures import KEY_ENV, KEY_VALUE, RobotClient, make_bot, wait_until, write_config

SECRET = "s3cretPW-9x"
SCRIPT = str(Path(sys.executable).with_name("kryten-rules"))


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("nats://bot:s3cret@10.0.0.1:4222", "nats://bot:***@10.0.0.1:4222"),
        ("nats://mytoken@host:4222", "nats://***@host:4222"),
        # an "@" in the secret: URLs split at the last "@" before the host
        ("nats://u:p@ssw0rd@127.0.0.1:4222", "nats://u:***@127.0.0.1:4222"),
        ("nats://tok@en@h:4222 refused", "nats://***@h:4222 refused"),
        ("tls://a:b@h1:1,nats://c:d@h2:2", "tls://a:***@h1:1,nats://c:***@h2:2"),
        ("cannot reach nats://u:p%40ss@h (refused)", "cannot reach nats://u:***@h (refused)"),
        ("http://user:key@llm.local/v1/chat", "http://user:***@llm.local/v1/chat"),
        ("https://x/v1?api_key=sk-123&model=m", "https://x/v1?api_key=***&model=m"),
        ("wss://h/?token=abc#frag", "wss://h/?token=***#frag"),
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("mail alice@example.com, see https://x/a@b", "mail alice@example.com, see https://x/a@b"),
        ("no urls at all", "no urls at all"),
    ],
)
def test_mask_credentials(text: str, masked: str) -> None:
    assert mask_credentials(text) == masked


def test_masked_json_stays_json() -> None:
    # replies are masked as JSON text: the secret's mask must not eat the closing quote
    doc = {"api_base": "http://h/v1?token=tok123", "odd": 'http://h/?key=a"b&x=1', "n": 1}
    masked = json.loads(mask_credentials(json.dumps(doc)))
    assert masked == {"api_base": "http://h/v1?token=***", "odd": "http://h/?key=***&x=1", "n": 1}


def test_masking_is_linear_on_hostile_text() -> None:
    # would be quadratic with a scheme pattern that re-scans every letter
    text = "a" * 200_000 + "://" + "b" * 200_000 + "?" + "&token=" * 20_000
    assert SECRET not in mask_credentials(text + f"://u:{SECRET}@h")


def test_the_cli_log_format_masks_messages_and_tracebacks() -> None:
    formatter = MaskingFormatter("%(levelname)s %(message)s")
    try:
        raise ConnectionError(f"refused by nats://bot:{SECRET}@h:4222")
    except ConnectionError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "lost %s", (f"nats://bot:{SECRET}@h",), sys.exc_info()
        )
    line = formatter.format(record)
    assert SECRET not in line
    assert "lost nats://bot:***@h" in line and "refused by nats://bot:***@h:4222" in line


def test_the_response_log_masks_credentials_in_errors(tmp_path: Path) -> None:
    log = ResponseLog(tmp_path / "responses.jsonl")
    log.write({"error": f"APIConnectionError: http://u:{SECRET}@llm.local/v1 refused"})
    text = (tmp_path / "responses.jsonl").read_text(encoding="utf-8")
    assert SECRET not in text
    assert json.loads(text)["error"] == "APIConnectionError: http://u:***@llm.local/v1 refused"


class AuthNats:
    """A real nats-server that wants user ``bot`` and :data:`SECRET`."""

    def __init__(self) -> None:
        binary = find_nats_server()
        assert binary is not None, "nats-server is needed for these tests"
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(self.port), "--user", "bot", "--pass", SECRET],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening("127.0.0.1", self.port, self.proc, 10)

    def url(self, password: str = SECRET) -> str:
        return f"nats://bot:{password}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def auth_nats() -> Iterator[AuthNats]:
    server = AuthNats()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def auth_client(auth_nats: AuthNats) -> AsyncIterator[RobotClient]:
    c = await RobotClient().connect(auth_nats.url())
    try:
        yield c
    finally:
        await c.close()


def _config(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    return write_config(tmp_path, nats_url=url, api_base="http://127.0.0.1:9/v1")


async def test_logs_health_commands_and_lifecycle_never_show_the_password(
    tmp_path: Path,
    auth_nats: AuthNats,
    auth_client: RobotClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    lifecycle = await auth_client.collect("kryten.lifecycle.rules.>")
    bot = make_bot(_config(tmp_path, auth_nats.url(), monkeypatch))
    await bot.start()
    try:
        masked = f"nats://bot:***@127.0.0.1:{auth_nats.port}"
        assert bot.health()["nats_url"] == masked
        reply = await auth_client.request("system.health")
        assert reply["data"]["nats_url"] == masked
        _subject, startup = await asyncio.wait_for(lifecycle.get(), 10)
        assert startup["service"] == "rules"
        auth_nats.stop()  # the bot notices and logs where it lost NATS
        await wait_until(lambda: "disconnected from" in caplog.text, what="a disconnect warning")
    finally:
        await bot.stop(grace=0.5)
    assert f"nats: connected to {masked}" in caplog.text
    assert f"disconnected from {masked}" in caplog.text
    assert SECRET not in caplog.text
    assert SECRET not in json.dumps(reply) + json.dumps(startup)


async def test_a_wrong_password_is_reported_without_either_password(
    tmp_path: Path,
    auth_nats: AuthNats,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A refused password is a start-up error, not a retry for ever (issue 13).
    caplog.set_level(logging.DEBUG)
    wrong = "wr0ngPW-7y"
    bot = make_bot(_config(tmp_path, auth_nats.url(wrong), monkeypatch))
    with pytest.raises(StartupError) as raised:
        await asyncio.wait_for(bot.run_forever(), 20)
    message = str(raised.value)
    assert message.startswith(
        f"authorization failed for nats://bot:***@127.0.0.1:{auth_nats.port} "
        "(credentials in the URL)"
    )
    assert wrong not in caplog.text + message and SECRET not in caplog.text + message


def test_the_chat_banner_masks_the_password(
    tmp_path: Path, auth_nats: AuthNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tmp_path, auth_nats.url(), monkeypatch)
    proc = subprocess.run(
        [SCRIPT, "chat", "--config", str(cfg), "--user", "alice"],
        input="/quit\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, KEY_ENV: KEY_VALUE},
    )
    assert proc.returncode == 0, proc.stderr
    assert f"connected to nats://bot:***@127.0.0.1:{auth_nats.port} as alice" in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr


def test_the_cli_error_for_a_bad_url_masks_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tmp_path, f"nats://bot:{SECRET}@127.0.0.1:notaport", monkeypatch)
    proc = subprocess.run(
        [SCRIPT, "run", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, KEY_ENV: KEY_VALUE},
    )
    assert proc.returncode == 2, proc.stderr
    assert "cannot connect to NATS at nats://bot:***@127.0.0.1:notaport" in proc.stderr
    assert SECRET not in proc.stderr + proc.stdout
