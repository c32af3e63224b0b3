"""Issue #9 item 6, the Proof's table: hostile templates against the running service.

Each payload is either rejected by ``validate`` with a diagnostic code, or it
passes validate and is then contained while the service runs: rendered or
refused within its budget, while a concurrent ``system.ping`` is answered in
under a second, and logged in the response log as a failed decision with its
rule id. The service is the real ``kryten-rules run`` in a subprocess on a real
nats-server, so a render that blocked its event loop (as every one of these
did) shows as an unanswered ping here instead of freezing the test.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kryten_rules.compile.load import check_paths
from kryten_rules.service.embedded import EmbeddedNats
from tests.nats_fixtures import (
    KEY_ENV,
    KEY_VALUE,
    WAIT,
    RobotClient,
    read_jsonl,
    says,
    write_config,
)
from tests.ruleformat.test_templates import run_limited

PING_BOUND = 1.0  # the bound: a ping answered in under a second
PROCESS_MEMORY = 8 * 1024**3  # address space for the service: a guard for this machine

# Rejected by validate: the field report's payloads, verbatim where it gave them.
VALIDATE_REJECTS: list[tuple[str, str, str]] = [
    ("percent-star", "{{ '%*s'|format(999999999, 'x') }}", "template-unsafe"),
    ("zfill", "{{ '1'.zfill(999999999) }}", "template-unsafe"),
    ("ljust", "{{ message.ljust(999999999) }}", "template-unsafe"),
    ("center", "{{ message.center(999999999) }}", "template-unsafe"),
    ("str-format-nested", "{{ '{:{}}'.format('x', 999999999) }}", "template-unsafe"),
    ("format-map", "{{ '{m:{w}}'.format_map({'m': message, 'w': 999999999}) }}",
     "template-unsafe"),
    ("replace", "{{ ('x'*20000).replace('x', 'x'*20000) }}", "template-unsafe"),
    ("expandtabs", "{{ ('\\t'*20000).expandtabs(20000) }}", "template-unsafe"),
    ("pow-tower", "{{ (((((9**64)**64)**64)**64)**64) }}", "template-unsafe"),
    ("nested-loops", "{% for a in 'x' * 20000 %}{% for b in 'x' * 20000 %}{{ a }}{% endfor %}"
     "{% endfor %}", "template-unsafe"),
]

# Pass validate (nothing there is provable from the template alone); contained at run time.
# (id, trigger word, template, what the response log's error must say)
CONTAINED: list[tuple[str, str, str, str]] = [
    (
        # 90,000 loop items (under the loop budget) each sorting an 18,000-item list:
        # a minute of CPU that no single operation reveals; the worker's deadline stops it
        "cpu",
        "cpu",
        "{% for a in message %}{% for b in message %}{% if (message * 60)|list|sort|length < 0 %}"
        "x{% endif %}{% endfor %}{% endfor %}",
        "time budget",
    ),
    (
        # 20,000 lists of 20,000 items: ~3 GB, stopped by the worker's memory limit
        # (on a machine too busy to reach it in 2 s, by the deadline: either is its budget;
        # test_renderworker.py proves the memory limit alone)
        "memory",
        "mem",
        "{{ ([message * 400] * 20000)|map('list')|list|length }}",
        "budget",
    ),
    (
        # a padding method reached through attr(): the sandbox sizes it at the call
        "attr-zfill",
        "pad",
        "{{ (message|attr('zfill'))(999999999) }}",
        "zfill width",
    ),
    (
        # the chat user writes the format string: '%*s' arrives as the message
        "user-format-string",
        "fmt",
        "{{ message|format(999999999, 'x') }}",
        "'*' widths",
    ),
]
# What each trigger is sent with: the CPU payload wants a 300-character message
# (len(message) * 60 stays under the repetition limit), the others a short one.
MESSAGES = {"cpu": "!cpu " + "y" * 295, "mem": "!mem " + "y" * 45, "pad": "!pad x",
            "fmt": "!fmt %*s"}


def _rules(rows: list[tuple[str, str, str, str]]) -> str:
    out = ["kryten_rules: 1", "rules:"]
    for rule_id, word, template, _ in rows:
        out += [
            f"  - id: {rule_id}",
            f"    match: {{regex: ['^!{word}\\b']}}",
            f"    reply: {_yaml_str(template)}",
        ]
    out += [
        "  - id: hello",
        "    match: {regex: ['^!hello\\b']}",
        '    reply: "hello {{ user.name }}"',
    ]
    return "\n".join(out) + "\n"


def _yaml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (PROCESS_MEMORY, PROCESS_MEMORY))


@pytest.mark.parametrize(
    ("source", "code"),
    [row[1:] for row in VALIDATE_REJECTS],
    ids=[row[0] for row in VALIDATE_REJECTS],
)
def test_attack_payload_rejected_by_validate(tmp_path: Path, source: str, code: str) -> None:
    path = tmp_path / "rules" / "attack.yaml"
    path.parent.mkdir()
    path.write_text(_rules([("attack", "attack", source, "")]), encoding="utf-8")

    def job() -> dict[str, Any]:
        checked = check_paths([path])
        return {"outcome": "checked", "ok": checked.ok,
                "codes": sorted({d.code for d in checked.diagnostics})}

    result = run_limited(job)  # validate itself must not hang or blow up on them
    assert result["outcome"] == "checked", result
    assert not result["ok"] and code in result["codes"], result


def test_contained_payloads_pass_validate(tmp_path: Path) -> None:
    """The other half of the table is not rejected statically: the run-time
    layers are what the service test below exercises."""
    path = tmp_path / "rules" / "attack.yaml"
    path.parent.mkdir()
    path.write_text(_rules(CONTAINED), encoding="utf-8")
    checked = check_paths([path])
    assert checked.ok, [f"{d.code}: {d.message}" for d in checked.diagnostics]


# --- the running service -------------------------------------------------------------------


def _kryten_rules() -> list[str]:
    exe = Path(sys.executable).parent / "kryten-rules"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "kryten_rules"]


class Service:
    """``kryten-rules run`` in a subprocess, its output in a file."""

    def __init__(self, tmp_path: Path, nats_url: str) -> None:
        self.dir = tmp_path
        self.config = write_config(
            tmp_path,
            nats_url=nats_url,
            api_base="http://127.0.0.1:9/v1",  # no rule here asks the model
            rules=_rules(CONTAINED),
        )
        self.log = tmp_path / "service.out"
        self.responses = tmp_path / "logs" / "responses.jsonl"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [*_kryten_rules(), "run", "--config", str(self.config)],
                env={**os.environ, KEY_ENV: KEY_VALUE},
                cwd=self.dir,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_limit_memory,
            )

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def response(self, rule: str) -> dict[str, Any] | None:
        return next((r for r in read_jsonl(self.responses) if r["rule"] == rule), None)


@pytest.fixture
async def service(
    tmp_path: Path, nats_server: EmbeddedNats, client: RobotClient
) -> AsyncIterator[Service]:
    svc = Service(tmp_path, nats_server.url)
    lifecycle = await client.collect("kryten.lifecycle.rules.startup")
    svc.start()
    try:
        await asyncio.wait_for(lifecycle.get(), 60)  # a cold start imports LiteLLM
        yield svc
    finally:
        svc.kill()


async def _timed_ping(client: RobotClient) -> float:
    t0 = time.monotonic()
    try:
        reply = await client.request("system.ping", timeout=PING_BOUND)
    except TimeoutError:
        return float("inf")
    assert reply["success"] is True, reply
    return time.monotonic() - t0


async def test_attack_payloads_contained_while_pings_are_answered(
    service: Service, client: RobotClient
) -> None:
    # rules.explain renders the same templates, in the workers too; asked first, while
    # both workers are up. Commands are answered one at a time, so a ping would wait for
    # the explain: a chat reply shows the loop is free.
    explain = asyncio.create_task(
        client.request("rules.explain", {"text": MESSAGES["cpu"], "user": "mallory"}, timeout=30)
    )
    await client.chat("alice", "!hello explain")
    command = await client.next_command(timeout=WAIT)
    assert says([command]) == ["hello alice"]
    assert not explain.done(), "the reply waited for explain's render"
    answer = await explain
    assert answer["success"] is True, answer
    assert answer["data"]["fired"] == "cpu" and answer["data"]["prompt"] is None
    assert "time budget" in answer["data"]["error"], answer

    for rule_id, word, _, says_what in CONTAINED:
        await client.chat("mallory", MESSAGES[word])
        pings: list[float] = []
        give_up = time.monotonic() + 60
        # ping at once, then until the decision's response-log line is written: each
        # ping before that was sent while the render was in progress (a render the
        # sandbox refuses may be done before the first)
        while not pings or service.response(rule_id) is None:
            pings.append(await _timed_ping(client))
            assert pings[-1] < PING_BOUND, (
                f"{rule_id}: a ping took {pings[-1]:.2f} s while the template rendered"
            )
            assert time.monotonic() < give_up, (
                f"{rule_id}: no response-log line\n{service.output()[-3000:]}"
            )
        record = service.response(rule_id)
        assert record is not None
        assert record["sent"] is False, record
        assert says_what in (record["error"] or ""), record
        out = service.output()
        assert f"rule {rule_id}: template failed to render" in out, out[-2000:]

    # and the bot goes on: a normal rule still answers, through a replaced worker
    await client.chat("bob", "!hello")
    command = await client.next_command(timeout=WAIT)
    assert says([command]) == ["hello bob"]
    assert "Traceback" not in service.output()


async def test_sigterm_during_a_hostile_render_stops_the_service_promptly(
    service: Service, client: RobotClient
) -> None:
    await client.chat("mallory", MESSAGES["cpu"])
    # handled in order: the hostile render was in a worker before this one started
    await client.chat("alice", "!hello")
    assert says([await client.next_command(timeout=WAIT)]) == ["hello alice"]
    assert service.response("cpu") is None, "the hostile render should still be running"
    assert service.proc is not None
    t0 = time.monotonic()
    service.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(service.proc.wait, 15)
    took = time.monotonic() - t0
    assert code == 0, service.output()[-2000:]
    assert took < 10, f"SIGTERM took {took:.1f} s to stop the service"
