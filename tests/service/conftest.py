"""The service tests' shared fixtures: a model server, a config, started bots.

A module changes what it needs by overriding one small fixture, not by
copying the chain: ``model_script`` (what the local OpenAI-style server
answers, by model), ``rules_text`` (the rule file) and ``config_extra``
(lines added to the service config).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from kryten_rules.service.bot import Bot
from kryten_rules.service.embedded import EmbeddedNats
from tests.nats_fixtures import (
    BASE_RULES,
    KEY_ENV,
    KEY_VALUE,
    MODEL,
    MODEL_TEXT,
    BotFactory,
    started_bots,
    write_config,
)
from tests.openai_server import OpenAIServer


@pytest.fixture
def model_script() -> dict[str, str]:
    """What the model server answers, by model (tests/openai_server.py's script)."""
    return {MODEL: f"ok:{MODEL_TEXT}"}


@pytest.fixture
def openai(model_script: dict[str, str]) -> Iterator[OpenAIServer]:
    server = OpenAIServer(model_script).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def rules_text() -> str:
    return BASE_RULES


@pytest.fixture
def config_extra() -> str:
    return ""


@pytest.fixture
def config_path(
    tmp_path: Path,
    nats_server: EmbeddedNats,
    openai: OpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    rules_text: str,
    config_extra: str,
) -> Path:
    """``tmp_path/kryten-rules.yaml`` on the test's nats-server and model server."""
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    return write_config(
        tmp_path,
        nats_url=nats_server.url,
        api_base=openai.base_url,
        rules=rules_text,
        extra=config_extra,
    )


@pytest.fixture
async def start_bot(config_path: Path) -> AsyncIterator[BotFactory]:
    """A factory of started bots on ``config_path``; each is stopped at the end."""
    async with started_bots(config_path) as start:
        yield start


@pytest.fixture
async def bot(start_bot: BotFactory) -> Bot:
    """One started bot on ``config_path``."""
    return await start_bot()


def _exe() -> list[str]:
    exe = Path(sys.executable).parent / "kryten-rules"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "kryten_rules"]


@pytest.fixture
async def processes(tmp_path: Path) -> AsyncIterator[Callable[[Path], subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(cfg: Path) -> subprocess.Popen[bytes]:
        env = {**os.environ, KEY_ENV: KEY_VALUE}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        log = (tmp_path / f"run{len(procs)}.log").open("wb")
        proc = subprocess.Popen([*_exe(), "run", "--config", str(cfg)], env=env, cwd=tmp_path,
                                stdout=log, stderr=subprocess.STDOUT)
        log.close()
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
