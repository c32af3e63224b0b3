"""The events-for-others queue, its payloads and ``tail``'s lines, without NATS.

Which replies become events, which decisions under each ``events.decisions``
mode, a full queue and a bus that is down (counted, never raised into the
hot path), and the text ``tail`` prints.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kryten_rules.compile.load import load_ruleset
from kryten_rules.config import config_from_plain
from kryten_rules.engine.decision import Decision
from kryten_rules.engine.evaluate import Engine
from kryten_rules.events import ChatEvent
from kryten_rules.service.bus import MemoryBus
from kryten_rules.service.events_out import (
    DECISION_SUBJECT,
    REPLY_SUBJECT,
    EventsOut,
    publishes_reply,
)
from kryten_rules.service.metrics import Metrics
from kryten_rules.service.tail import TailFilter, format_line

RULES = """\
kryten_rules: 1
rules:
  - id: hi
    match: {any: [hello]}
    cooldown: {rule: 1h}
    reply: "hi {{ user.name }}"
"""


@pytest.fixture
def engine(tmp_path: Any) -> Engine:
    (tmp_path / "r.yaml").write_text(RULES, encoding="utf-8")
    return Engine(load_ruleset(tmp_path / "r.yaml", bot_name="bot"), bot_name="bot")


def out(bus: MemoryBus | None, metrics: Metrics, **kw: Any) -> EventsOut:
    return EventsOut(lambda: bus, metrics, domain="cytu.be", channel="Chan", dry_run=False, **kw)


def count(metrics: Metrics, kind: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "kryten_rules_events_out_total", {"kind": kind, "outcome": outcome}
    )
    return value or 0.0


def record(**kw: Any) -> dict[str, Any]:
    base = {
        "time": "2026-01-01T12:03:04+00:00",
        "channel": "Chan",
        "user": "alice",
        "rank": 1,
        "event": "chatmsg",
        "rule": "hi",
        "model": None,
        "via": "chat",
        "parts": ["hi alice"],
        "parts_sent": 1,
        "outcome": "sent",
        "latency": 0.0123,
        "tokens": None,
        "cost": None,
        "dry_run": False,
    }
    return base | kw


def test_which_replies_become_events() -> None:
    assert publishes_reply(record())
    assert publishes_reply(record(outcome="dry_run", parts_sent=0, dry_run=True))
    assert publishes_reply(record(outcome="refused", parts=["a", "b"], parts_sent=1))  # cut short
    for outcome in ("refused", "shadow", "silent", "overloaded", "error", "too_old"):
        assert not publishes_reply(record(outcome=outcome, parts_sent=0)), outcome


@pytest.mark.parametrize(("mode", "published"), [("all", 2), ("matched", 1), ("off", 0)])
async def test_decisions_mode(engine: Engine, mode: str, published: int) -> None:
    bus, metrics = MemoryBus(), Metrics()
    events = out(bus, metrics, decisions=mode)
    events.decision(engine.evaluate(ChatEvent(user="a", text="nothing here")))
    events.decision(engine.evaluate(ChatEvent(user="a", text="hello", correlation_id="c-1")))
    await events.drain()
    sent = [json.loads(d) for d in bus.sent(DECISION_SUBJECT)]
    assert len(sent) == published
    if published:
        assert sent[-1]["fired"] == "hi" and sent[-1]["correlation_id"] == "c-1"


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="all, matched, off"):
        out(None, Metrics(), decisions="some")


async def test_a_full_queue_drops_and_counts_and_a_down_bus_is_counted(engine: Engine) -> None:
    bus, metrics = MemoryBus(), Metrics()
    events = out(bus, metrics, decisions="all", max_queued=2)
    d = engine.evaluate(ChatEvent(user="a", text="hello"))
    for _ in range(3):
        events.decision(d)  # never raises, never awaits
    assert events.queued == 2 and count(metrics, "decision", "dropped") == 1
    bus.connected = False
    await events.drain()
    assert count(metrics, "decision", "disconnected") == 2
    events.reply(record(), d)
    await events.drain()
    assert count(metrics, "reply", "disconnected") == 1


async def test_a_publish_that_fails_is_counted_not_raised(engine: Engine) -> None:
    class Broken(MemoryBus):
        async def publish(self, subject: str, data: bytes) -> None:
            raise OSError("broken pipe")

    metrics = Metrics()
    events = out(Broken(), metrics)
    events.reply(record(), Decision(ChatEvent(user="alice", correlation_id="c-9")))
    await events.drain()
    assert count(metrics, "reply", "error") == 1


async def test_the_reply_payload(engine: Engine) -> None:
    bus = MemoryBus()
    events = out(bus, Metrics())
    events.reply(record(), Decision(ChatEvent(user="alice", correlation_id="c-9")))
    await events.drain()
    (doc,) = [json.loads(d) for d in bus.sent(REPLY_SUBJECT)]
    assert doc["v"] == 1 and doc["domain"] == "cytu.be" and doc["correlation_id"] == "c-9"
    assert doc["latency_ms"] == 12.3 and doc["parts"] == ["hi alice"] and doc["model"] is None


def test_tail_lines_and_filters() -> None:
    reply = {"v": 1, "type": "reply", **record(model="fast", latency_ms=1234.0)}
    line = format_line(reply)
    assert line.endswith('#Chan alice -> hi (fast, 1.2s): "hi alice"')
    assert format_line(reply | {"model": None}).split(" -> ")[1].startswith("hi (fixed, ")
    assert "[dry run]" in format_line(reply | {"dry_run": True})
    cut = format_line(reply | {"parts": ["a", "b"], "parts_sent": 1, "outcome": "refused"})
    assert "[1 of 2 parts sent: refused]" in cut
    decision = {
        "type": "decision",
        "time": reply["time"],
        "channel": "Chan",
        "user": "bob",
        "event": "chatmsg",
        "fired": None,
        "blocked": "cooldown.rule",
        "would_fire": [],
        "trace": [{"rule": "hi", "outcome": "blocked", "reason": "cooldown.rule"}],
    }
    assert format_line(decision).endswith("#Chan bob ? chatmsg: blocked hi: cooldown.rule")
    assert TailFilter(channel="chan").wants(reply)
    assert not TailFilter(channel="other").wants(reply)
    assert not TailFilter().wants(decision) and TailFilter(decisions=True).wants(decision)
    assert TailFilter(rule="hi", decisions=True).wants(decision)
    assert not TailFilter(rule="other").wants(reply)
    assert not TailFilter().wants({"type": "reload"})


def test_the_events_config_keys() -> None:
    config = config_from_plain({"events": {"decisions": "all", "replies": False}})
    assert (config.events.decisions, config.events.replies) == ("all", False)
    assert config_from_plain({}).events.decisions == "matched"


def test_tail_escapes_control_characters_anyone_could_publish() -> None:
    from kryten_rules.service.tail import format_line

    forged = "\u001b[31mEVIL\u001b[0m\nFAKE 12:00:00 #c admin -> help"
    line = format_line({"type": "reply", "rule": "x", "channel": "c", "user": forged,
                        "parts": ["ok"]})
    assert "\n" not in line and "\u001b" not in line
    assert "\\x1b[31mEVIL" in line
    title = format_line({"type": "decision", "event": "\u001b]0;owned\u0007chat", "user": "u"})
    assert "\u001b" not in title and "\u0007" not in title
