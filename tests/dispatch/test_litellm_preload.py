"""Issue 9 item 4: LiteLLM is imported and warmed up at start, off the event loop.

The first reply after start took 4-15 s because LiteLLM's import (2-4 s) and
its lazy first-call work happened inside it. Checked in a fresh interpreter
(the test process has long imported LiteLLM), with no timing assertion:

* ``litellm`` is imported by the time ``Bot.start()`` returns, and by a
  worker thread, not the event loop's;
* the first model call after start, to a real local HTTP server, imports no
  further ``litellm`` module: the lazy first-call work is done too;
* the warm-up itself sent nothing to the model server.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kryten_rules.service.embedded import EmbeddedNats
from tests.nats_fixtures import KEY_ENV, KEY_VALUE, MODEL, write_config
from tests.openai_server import OpenAIServer

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import asyncio, json, sys, threading
from kryten_rules.dispatch.llm import litellm_client
from kryten_rules.compile.load import load_config
from kryten_rules.service.bot import Bot

on_main_thread = []
real_load = litellm_client.load_litellm


def spy():
    if not litellm_client.litellm_loaded():  # the call that imports
        on_main_thread.append(threading.current_thread() is threading.main_thread())
    return real_load()


litellm_client.load_litellm = spy


def litellm_modules():
    return {m for m in sys.modules if m == "litellm" or m.startswith("litellm.")}


async def main():
    imported_before = "litellm" in sys.modules
    bot = Bot(load_config(sys.argv[1]), watch_interval=None, serve_http=False)
    await bot.start()
    try:
        imported_at_start = "litellm" in sys.modules
        before = litellm_modules()
        result = await bot.chains.run("default", [{"role": "user", "content": "hi"}])
        first_call_imports = sorted(litellm_modules() - before)
    finally:
        await bot.stop(grace=0.5)
    print(json.dumps({
        "imported_before": imported_before,
        "imported_at_start": imported_at_start,
        "on_main_thread": on_main_thread,
        "first_call_imports": first_call_imports,
        "ok": result.ok,
    }))


asyncio.run(main())
"""


@pytest.fixture
def openai() -> Iterator[OpenAIServer]:
    server = OpenAIServer({MODEL: "ok:warm"}).start()
    try:
        yield server
    finally:
        server.stop()


async def test_litellm_is_imported_and_warmed_at_start_in_a_thread(
    tmp_path: Path, nats_server: EmbeddedNats, openai: OpenAIServer
) -> None:
    cfg = write_config(tmp_path, nats_url=nats_server.url, api_base=openai.base_url)
    env = {**os.environ, KEY_ENV: KEY_VALUE, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SCRIPT,
        str(cfg),
        cwd=str(tmp_path),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["imported_before"] is False  # importing the bot does not import it
    assert report["imported_at_start"] is True
    assert report["on_main_thread"] == [False]  # imported once, by a worker thread
    assert report["ok"] is True
    assert report["first_call_imports"] == []
    assert openai.count(MODEL) == 1  # the warm-up called no model
