"""Issue 9 item 16: recurring problems are logged once a minute per reason, not per occurrence.

The attack saw 30,000 warnings in 30 s under load, one ERROR per failed
response-log write and a traceback per watcher poll. Each place is driven
here many times over; the log must hold one line (the overloaded warning of
a burst is checked in tests/service/test_burst.py).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from kryten_rules.quietlog import QuietLog
from kryten_rules.service.pacing import Outgoing, Pacer
from kryten_rules.service.responselog import ResponseLog
from kryten_rules.service.watch import FileWatcher
from tests.nats_fixtures import wait_until

REPEATS = 50


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_one_line_per_reason_per_interval_with_the_count_held_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="quiet.test")
    clock = Clock()
    quiet = QuietLog(logging.getLogger("quiet.test"), interval=60.0, clock=clock)
    written = [quiet.warning("full", "queue full: dropped %s", i) for i in range(REPEATS)]
    assert written == [True] + [False] * (REPEATS - 1)
    assert quiet.warning("other", "another reason")  # reasons are limited separately
    clock.t += 61
    assert quiet.warning("full", "queue full: dropped %s", "late")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert messages[0].startswith("queue full: dropped 0")
    assert "and 49 more like it" in messages[2]


def test_a_response_log_that_cannot_be_written_logs_one_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="kryten_rules")
    target = tmp_path / "responses.jsonl"
    target.mkdir()  # opening a directory for append fails every time, like a full disk
    responses = ResponseLog(target)
    assert [responses.write({"n": i}) for i in range(REPEATS)] == [False] * REPEATS
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert str(target) in errors[0].getMessage()


async def test_a_failing_watcher_poll_prints_one_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="kryten_rules")
    polls = 0

    def paths() -> list[Path]:
        nonlocal polls
        polls += 1
        if polls > 1:  # the first snapshot (prime) works, every poll after fails
            raise PermissionError(13, "Permission denied", "rules/")
        return []

    async def on_change() -> None:
        raise AssertionError("nothing changed")

    watcher = FileWatcher(paths, interval=0.001, on_change=on_change)
    await watcher.prime()
    task = asyncio.create_task(watcher.run())
    try:
        await wait_until(lambda: polls > REPEATS, what="the watcher's polls")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1


async def test_a_full_send_queue_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kryten_rules")

    async def send() -> None:
        return None

    pacer = Pacer(max_queue=1)
    now = pacer.now()
    accepted = [pacer.submit(Outgoing(send, now, f"m{i}")) for i in range(REPEATS)]
    assert accepted == [True] + [False] * (REPEATS - 1)
    assert len([r for r in caplog.records if "queue full" in r.getMessage()]) == 1
    await pacer.stop()


def test_a_template_that_fails_for_every_trigger_logs_one_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # the failure follows from what users type, so a channel can trigger it at will
    from kryten_rules import load_ruleset
    from kryten_rules.dispatch.prompts import render
    from kryten_rules.engine.evaluate import Engine
    from kryten_rules.events import ChatEvent

    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "kryten_rules: 1\nrules:\n"
        "  - {id: picky, match: {regex: ['^!n']}, reply: '{{ [1, 2][message|length] }}'}\n",
        encoding="utf-8",
    )
    ruleset = load_ruleset([rules], bot_name="kryten")
    engine = Engine(ruleset)
    caplog.set_level(logging.ERROR, logger="kryten_rules")
    for i in range(REPEATS):
        decision = engine.evaluate(ChatEvent("chatmsg", f"user{i}", "!nope", at=float(i)))
        assert render(decision, ruleset).error  # each one fails, and says why
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "rule picky: template failed to render" in errors[0].getMessage()
