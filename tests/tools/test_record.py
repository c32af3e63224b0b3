"""``record`` against a real nats-server, and its recording through ``replay``."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from click.testing import CliRunner

from kryten_rules.cli import main
from kryten_rules.service.embedded import EmbeddedNats
from kryten_rules.tools.record import record_line
from kryten_rules.wire import envelope, event_subject

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = shutil.which("kryten-rules") or str(Path(sys.executable).with_name("kryten-rules"))
CHANNEL, DOMAIN = "420Grindhouse", "cytu.be"
T0 = 1_800_000_000


def _chat(t: int, user: str, msg: str) -> bytes:
    payload = {"username": user, "msg": msg, "meta": {}, "time": (T0 + t) * 1000}
    stamp = datetime.fromtimestamp(T0 + t, UTC).isoformat()
    return envelope("chatMsg", payload, channel=CHANNEL, domain=DOMAIN, timestamp=stamp)


async def _lines_in(path: Path, n: int, timeout: float = 15.0) -> list[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        lines = path.read_text("utf-8").splitlines() if path.exists() else []
        if len(lines) >= n:
            return lines
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path}: fewer than {n} lines after {timeout}s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_record_writes_what_replay_reads_and_stops_cleanly(
    nats_server: EmbeddedNats, tmp_path: Path, sig: signal.Signals
) -> None:
    out = tmp_path / "channel.jsonl"
    proc = await asyncio.create_subprocess_exec(
        SCRIPT, "record", str(out), "--nats", nats_server.url, "--channel", CHANNEL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        first = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert b"recording kryten.events.cytube.420grindhouse.>" in first, first
        nc = await nats.connect(nats_server.url)
        try:
            await nc.publish(event_subject(CHANNEL, "chatMsg"), _chat(1, "alice", "!help"))
            await nc.publish(event_subject(CHANNEL, "chatMsg"), _chat(2, "bob", "cynthia hi"))
            await nc.publish(event_subject(CHANNEL, "usercount"), b"not even JSON")
            # another channel's events are not recorded
            other = envelope("chatMsg", {"username": "x", "msg": "!help", "meta": {}, "time": 0},
                             channel="elsewhere", domain=DOMAIN)
            await nc.publish(event_subject("elsewhere", "chatMsg"), other)
            await nc.flush()
        finally:
            await nc.close()
        lines = await _lines_in(out, 3)
        proc.send_signal(sig)
        rc = await asyncio.wait_for(proc.wait(), 15)
        rest = (await proc.stderr.read()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert rc == 0, rest
    assert "recorded 3 event(s)" in rest and "Traceback" not in rest
    assert len(out.read_text("utf-8").splitlines()) == 3
    first_rec = json.loads(lines[0])
    assert first_rec["subject"] == "kryten.events.cytube.420grindhouse.chatmsg"
    assert first_rec["data"]["payload"]["msg"] == "!help"

    r = CliRunner().invoke(main, [
        "replay", str(out), "--config", str(ROOT / "kryten-rules.example.yaml"),
        "--rules", str(ROOT / "rules"), "--format", "json", "--verbose",
    ])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["events"] == 3 and d["chat_lines"] == 2
    assert d["rules"]["help"]["fired"] == 1
    assert d["skipped_lines"] == [{"line": 3, "reason": "bad JSON"}]


def test_record_line_keeps_a_message_that_is_not_json() -> None:
    line = record_line("s", b"\xffnot json")
    assert json.loads(line) == {"subject": "s", "data": "\ufffdnot json"}


def test_record_needs_a_server_and_a_channel(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["record", str(tmp_path / "o.jsonl")])
    assert r.exit_code == 2 and "--nats URL and --channel" in r.stderr
    r = runner.invoke(main, ["record", str(tmp_path / "o.jsonl"),
                             "--config", str(ROOT / "kryten-rules.example.yaml")])
    assert r.exit_code == 2 and "embedded" in r.stderr
    existing = tmp_path / "e.jsonl"
    existing.write_text("{}\n", encoding="utf-8")
    r = runner.invoke(main, ["record", str(existing), "--nats", "nats://x", "--channel", "c"])
    assert r.exit_code == 2 and "--append" in r.stderr
    assert existing.read_text("utf-8") == "{}\n"
    r = runner.invoke(main, ["record", str(tmp_path / "o.jsonl"), "--nats", "nats://x",
                             "--channel", "..."])
    assert r.exit_code == 2 and "channel" in r.stderr
