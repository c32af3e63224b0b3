"""The service from the outside: the README's demo, ranks from KV at start, SIGHUP.

Each test runs the real ``kryten-rules`` console script as a process, against
a real nats-server (embedded or started here), the way an operator would.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nats
import pytest

from kryten_rules.service.embedded import EmbeddedNats
from kryten_rules.wire import COMMAND_SUBJECT, envelope, event_subject, userlist_bucket

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = shutil.which("kryten-rules") or str(Path(sys.executable).with_name("kryten-rules"))
CHANNEL, DOMAIN, BOT = "kvchan", "cytu.be", "KvBot"
WAIT = 45.0  # a process start imports LiteLLM: seconds on a busy machine; a bound, not a timing

RULES = """\
kryten_rules: 1
rules:
  - id: mods-only
    match: {regex: ['^!mod\\b']}
    when: {rank: {min: moderator}}
    reply: "{{ user.name }}: hello moderator"
  - id: ping
    match: {regex: ['^!ping\\b']}
    reply: "pong v1"
"""


def test_chat_demo_runs_the_whole_pipeline_offline(tmp_path: Path) -> None:
    """README's first command, with lines on stdin instead of the paced demo script."""
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    lines = "hey cynthia, what's your favourite fight scene?\n!help\n/quit\n"
    proc = subprocess.run(
        [SCRIPT, "chat", "--config", str(ROOT / "kryten-rules.example.yaml"), "--user", "alice",
         "--chain", "demo"],
        input=lines, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "connected to nats://127.0.0.1:" in out
    assert "rules: mention fired" in out
    # the example's `demo` model answers through LiteLLM's mock_response and says so
    assert "CynthiaRothbot> (offline demo, no model reachable)" in out
    assert "rules: help" in out
    # every rule answered by the demo chain: the real models and their keys are out of it
    assert "OPENAI_API_KEY" not in proc.stderr


def _config(tmp_path: Path, url: str) -> Path:
    rules = tmp_path / "rules" / "rules.yaml"
    rules.parent.mkdir(parents=True, exist_ok=True)
    rules.write_text(RULES, encoding="utf-8")
    cfg = tmp_path / "kryten-rules.yaml"
    cfg.write_text(
        f"""\
kryten_rules_config: 1
nats: {{url: "{url}"}}
cytube: {{domain: {DOMAIN}, channel: {CHANNEL}, username: {BOT}}}
rules: rules/
models:
  m: {{model: openai/never-called, mock_response: "unused"}}
chains:
  default: {{models: [m]}}
log: {{responses: logs/responses.jsonl, level: INFO}}
""",
        encoding="utf-8",
    )
    return cfg


class _Robot:
    """A stand-in for Kryten-Robot: publishes events, collects the bot's commands."""

    def __init__(self, nc: nats.NATS) -> None:
        self.nc = nc
        self.commands: asyncio.Queue[dict] = asyncio.Queue()
        self.startup = asyncio.Event()

    async def start(self) -> None:
        async def on_cmd(msg) -> None:
            await self.commands.put(json.loads(msg.data))

        async def on_startup(msg) -> None:
            self.startup.set()

        await self.nc.subscribe(COMMAND_SUBJECT, cb=on_cmd)
        await self.nc.subscribe("kryten.lifecycle.rules.startup", cb=on_startup)

    async def say(self, user: str, text: str) -> None:
        payload = {"username": user, "msg": text, "meta": {}, "time": int(time.time() * 1000)}
        await self.nc.publish(event_subject(CHANNEL, "chatMsg"),
                              envelope("chatMsg", payload, channel=CHANNEL, domain=DOMAIN))
        await self.nc.flush()

    async def next_say(self) -> str:
        cmd = await asyncio.wait_for(self.commands.get(), WAIT)
        assert cmd["command"] == "say"
        return cmd["args"]["message"]


@pytest.fixture
def server():
    srv = EmbeddedNats().start()
    yield srv
    srv.close()


def _start(cfg: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([SCRIPT, "run", "--config", str(cfg)], cwd=cfg.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


async def test_ranks_are_loaded_from_kryten_robots_kv_bucket(tmp_path: Path, server) -> None:
    nc = await nats.connect(server.url)
    js = nc.jetstream()
    kv = await js.create_key_value(bucket=userlist_bucket(CHANNEL))
    await kv.put("users", json.dumps([{"name": "modmary", "rank": 2, "meta": {}},
                                      {"name": "guestgus", "rank": 0}]).encode())
    robot = _Robot(nc)
    await robot.start()
    proc = _start(_config(tmp_path, server.url))
    try:
        await asyncio.wait_for(robot.startup.wait(), WAIT)
        # chat events carry no rank: only the KV bucket says modmary is a moderator
        await robot.say("guestgus", "!mod")
        await robot.say("modmary", "!mod")
        assert await robot.next_say() == "modmary: hello moderator"
        await robot.say("guestgus", "!ping")
        assert await robot.next_say() == "pong v1"  # guestgus's !mod got nothing
    finally:
        out = _stop(proc)
        await nc.close()
    assert proc.returncode == 0, out
    assert "loaded 2 user ranks from KV" in out


async def test_sighup_reloads_the_rules(tmp_path: Path, server) -> None:
    nc = await nats.connect(server.url)
    robot = _Robot(nc)
    await robot.start()
    reloads: asyncio.Queue[dict] = asyncio.Queue()

    async def on_reload(msg) -> None:
        await reloads.put(json.loads(msg.data))

    await nc.subscribe("kryten.events.rules.reload", cb=on_reload)
    cfg = _config(tmp_path, server.url)
    proc = _start(cfg)
    try:
        await asyncio.wait_for(robot.startup.wait(), WAIT)
        await robot.say("alice", "!ping")
        assert await robot.next_say() == "pong v1"
        rules = tmp_path / "rules" / "rules.yaml"
        text = RULES.replace("pong v1", "pong v2")
        # keep the file's size and mtime as they were, so only SIGHUP can notice
        stat = rules.stat()
        rules.write_text(text, encoding="utf-8")
        os.utime(rules, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert len(text) == stat.st_size
        proc.send_signal(signal.SIGHUP)
        outcome = await asyncio.wait_for(reloads.get(), WAIT)
        assert outcome["ok"] is True and outcome["changed"] is True
        assert outcome["reason"] == "SIGHUP"
        await robot.say("alice", "!ping")
        assert await robot.next_say() == "pong v2"
    finally:
        out = _stop(proc)
        await nc.close()
    assert proc.returncode == 0, out
