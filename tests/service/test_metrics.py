"""Health and Prometheus metrics over HTTP from a running bot, and the send pacer.

The HTTP checks run a real bot (real nats-server, real local OpenAI-style
server) with ``metrics_port=0`` and fetch with urllib from a worker thread, as
a scraper would. The pacer tests drive :class:`Pacer` on virtual time: its
clock is injected and ``asyncio.sleep`` advances that clock instead of
waiting, so every send time is exact.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kryten_rules.compile.load import load_config
from kryten_rules.service.bot import Bot
from kryten_rules.service.embedded import EmbeddedNats
from kryten_rules.service.pacing import Outgoing, Pacer
from tests.nats_fixtures import (
    CHANNEL,
    KEY_ENV,
    KEY_VALUE,
    MODEL,
    RobotClient,
    make_bot,
    settle,
    wait_until,
    write_config,
)
from tests.openai_server import OpenAIServer

# ------------------------------------------------------------------ HTTP endpoint


pytestmark = pytest.mark.usefixtures("litellm_loaded")


@pytest.fixture
def model_script() -> dict[str, str]:
    return {MODEL: "ok:metrics are fun"}


def _get(url: str, method: str = "GET") -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


async def get(bot: Bot, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    assert bot.http is not None
    return await asyncio.to_thread(_get, f"http://127.0.0.1:{bot.http.port}{path}", method)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_health_is_json_and_ok(bot: Bot) -> None:
    assert bot.http is not None and bot.http.port > 0
    status, ctype, body = await get(bot, "/health")
    assert status == 200
    assert ctype.startswith("application/json")
    data = json.loads(body)
    assert data["status"] == "ok"
    assert data["nats_connected"] is True
    assert data["rules"] == 3
    assert data["service"] == "rules"


async def test_metrics_after_traffic(bot: Bot, client: RobotClient, openai: OpenAIServer) -> None:
    await client.chat("alice", "cynthia, count me")  # fires mention, LLM ok
    await client.chat("bob", "just chatting")  # matches nothing
    await settle(bot, client, events=2)
    openai.set(MODEL, "status:500")
    await client.chat("carol", "cynthia, again")  # LLM fails, fallback sent
    await settle(bot, client, events=3)
    await bot.reload("test")  # unchanged

    status, ctype, body = await get(bot, "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain")
    text = body.decode()
    s = samples(text)
    ch = ("channel", CHANNEL)  # what a channel's parts count carries its name
    assert s[("kryten_rules_events_total", (ch, ("event", "chatMsg")))] == 3
    fired = (ch, ("outcome", "fired"), ("reason", ""), ("rule", "mention"))
    assert s[("kryten_rules_decisions_total", fired)] == 2
    # model calls are shared by the channels: no channel label
    assert s[("kryten_rules_llm_attempts_total", (("model", "m"), ("outcome", "ok")))] == 1
    assert (
        s[("kryten_rules_llm_attempts_total", (("model", "m"), ("outcome", "server_error")))] == 1
    )
    assert s[("kryten_rules_reloads_total", (ch, ("outcome", "unchanged")))] == 1
    assert s[("kryten_rules_replies_total", (ch, ("via", "chat")))] == 2
    assert s[("kryten_rules_rules", (ch,))] == 3
    # histograms: the decision latency and the LLM latency per model
    assert s[("kryten_rules_decision_seconds_count", (ch,))] == 3
    assert s[("kryten_rules_decision_seconds_bucket", (ch, ("le", "+Inf")))] == 3
    assert s[("kryten_rules_llm_seconds_bucket", (("le", "+Inf"), ("model", "m")))] == 2
    # and as a scraper sees the raw lines
    assert f'kryten_rules_decision_seconds_bucket{{channel="{CHANNEL}",le="0.005"}}' in text
    assert (
        f'kryten_rules_decisions_total{{channel="{CHANNEL}",outcome="fired",reason="",'
        'rule="mention"} 2.0'
    ) in text
    assert 'kryten_rules_llm_attempts_total{model="m",outcome="ok"} 1.0' in text
    assert "kryten_rules_nats_connected 1.0" in text


async def test_unknown_path_is_404_and_other_methods_405(bot: Bot) -> None:
    status, _, body = await get(bot, "/nope")
    assert status == 404 and body == b"not found\n"
    status, _, _ = await get(bot, "/metrics/../secret")
    assert status == 404
    status, _, _ = await get(bot, "/metrics", method="POST")
    assert status == 405
    status, _, _ = await get(bot, "/health?verbose=1")
    assert status == 200


async def test_health_is_503_while_nats_is_down(bot: Bot, nats_server: EmbeddedNats) -> None:
    await asyncio.to_thread(nats_server.stop)
    await wait_until(lambda: not bot.nc.is_connected, what="the disconnect")
    status, _, body = await get(bot, "/health")
    assert status == 503
    assert json.loads(body)["status"] == "degraded"
    _, _, metrics = await get(bot, "/metrics")
    assert "kryten_rules_nats_connected 0.0" in metrics.decode()
    await asyncio.to_thread(nats_server.start)
    await wait_until(lambda: bot.nc.is_connected, what="the reconnect")
    status, _, _ = await get(bot, "/health")
    assert status == 200


# ------------------------------------------------------------------ pacer


class VirtualTime:
    """A clock for the pacer whose ``asyncio.sleep`` moves time instead of waiting."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def vtime(monkeypatch: pytest.MonkeyPatch) -> VirtualTime:
    vt = VirtualTime()
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float, result: Any = None) -> Any:
        vt.t += max(0.0, delay)
        await real_sleep(0)
        return result

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    return vt


def recorder(sent: list[tuple[str, float]], clock: VirtualTime | None, name: str) -> Any:
    async def send() -> None:
        sent.append((name, clock() if clock else 0.0))

    return send


async def test_pacer_sends_a_burst_then_at_the_rate(vtime: VirtualTime) -> None:
    drops: list[str] = []
    pacer = Pacer(burst=3, per_second=2.0, max_age=60, clock=vtime, on_drop=drops.append)
    sent: list[tuple[str, float]] = []
    for i in range(7):
        assert pacer.submit(Outgoing(recorder(sent, vtime, f"m{i}"), vtime(), f"m{i}"))
    pacer.start()
    await pacer.drain(timeout=10)
    await pacer.stop()
    assert [name for name, _ in sent] == [f"m{i}" for i in range(7)]
    offsets = [round(t - 100.0, 6) for _, t in sent]
    assert offsets == [0.0, 0.0, 0.0, 0.5, 1.0, 1.5, 2.0]
    assert drops == []


async def test_pacer_refills_while_idle_but_never_beyond_the_burst(vtime: VirtualTime) -> None:
    pacer = Pacer(burst=2, per_second=1.0, clock=vtime)
    sent: list[tuple[str, float]] = []
    pacer.start()
    pacer.submit(Outgoing(recorder(sent, vtime, "a"), vtime(), "a"))
    await pacer.drain(timeout=10)
    vtime.t += 100.0  # a long quiet spell: the bucket fills up to `burst`, no more
    for name in "bcd":
        pacer.submit(Outgoing(recorder(sent, vtime, name), vtime(), name))
    await pacer.drain(timeout=10)
    await pacer.stop()
    assert [round(t - 200.0, 6) for _, t in sent[1:]] == [0.0, 0.0, 1.0]


async def test_pacer_drops_items_that_waited_too_long(vtime: VirtualTime) -> None:
    drops: list[str] = []
    pacer = Pacer(burst=1, per_second=1.0, max_age=1.0, clock=vtime, on_drop=drops.append)
    sent: list[tuple[str, float]] = []
    for name in "abcd":
        pacer.submit(Outgoing(recorder(sent, vtime, name), vtime(), name))
    pacer.start()
    await pacer.drain(timeout=10)
    # an item submitted already stale (the LLM took longer than max_age)
    pacer.submit(Outgoing(recorder(sent, vtime, "stale"), vtime() - 5.0, "stale"))
    await pacer.drain(timeout=10)
    await pacer.stop()
    # a at 0, b at 1.0 (age 1.0: not over), c and d are over 1 s old: dropped, not sent
    assert [(n, round(t - 100.0, 6)) for n, t in sent] == [("a", 0.0), ("b", 1.0)]
    assert drops == ["too_old", "too_old", "too_old"]


async def test_pacer_drops_stale_items_on_real_time() -> None:
    drops: list[str] = []
    pacer = Pacer(burst=5, per_second=100.0, max_age=0.5, on_drop=drops.append)
    sent: list[tuple[str, float]] = []
    pacer.start()
    created = pacer.now()
    pacer.submit(Outgoing(recorder(sent, None, "old"), created - 10.0, "old"))
    pacer.submit(Outgoing(recorder(sent, None, "fresh"), created, "fresh"))
    await pacer.drain(timeout=10)
    await pacer.stop()
    assert [n for n, _ in sent] == ["fresh"]
    assert drops == ["too_old"]


async def test_pacer_drops_when_the_queue_is_full() -> None:
    drops: list[str] = []
    pacer = Pacer(burst=10, per_second=100.0, max_queue=2, on_drop=drops.append)
    sent: list[tuple[str, float]] = []
    now = pacer.now()
    results = [
        pacer.submit(Outgoing(recorder(sent, None, name), now, name)) for name in ("a", "b", "c")
    ]
    assert results == [True, True, False]
    assert drops == ["queue_full"]
    assert pacer.pending == 2
    pacer.start()
    await pacer.drain(timeout=10)
    await pacer.stop()
    assert [n for n, _ in sent] == ["a", "b"]


async def test_pacer_survives_a_failing_send() -> None:
    drops: list[str] = []
    pacer = Pacer(burst=10, per_second=100.0, on_drop=drops.append)
    sent: list[tuple[str, float]] = []

    async def boom() -> None:
        raise ConnectionError("nats went away")

    pacer.start()
    pacer.submit(Outgoing(boom, pacer.now(), "boom"))
    pacer.submit(Outgoing(recorder(sent, None, "next"), pacer.now(), "next"))
    await pacer.drain(timeout=10)
    await pacer.stop()
    assert drops == ["send_failed"]
    assert [n for n, _ in sent] == ["next"]


async def test_a_busy_metrics_port_does_not_stop_the_bot(
    tmp_path: Path,
    nats_server: EmbeddedNats,
    openai: OpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import socket

    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = load_config(
            write_config(tmp_path, nats_url=nats_server.url, api_base=openai.base_url)
        )
        bot = Bot(config, metrics_port=port, watch_interval=None)
        await bot.start()
        try:
            assert bot.http is None
            assert bot.health()["nats_connected"] is True
            assert any("not started" in r.getMessage() for r in caplog.records)
        finally:
            await bot.stop(grace=0.1)


# ------------------------------------------- issue #9 item 15: bounds and metrics.host


def _raw_request(port: int, data: bytes, host: str = "127.0.0.1") -> bytes:
    """Send ``data`` as is and read the whole answer (the server closes after it)."""
    import socket

    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


async def test_an_overlong_request_line_is_414_and_the_endpoint_goes_on(bot: Bot) -> None:
    assert bot.http is not None
    port = bot.http.port
    line = b"GET /metrics?" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = await asyncio.to_thread(_raw_request, port, line)
    assert answer.startswith(b"HTTP/1.1 414 URI Too Long\r\n"), answer[:200]
    headers = b"GET /health HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n"
    answer = await asyncio.to_thread(_raw_request, port, headers)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:200]
    long_header = b"GET /health HTTP/1.1\r\nX-A: " + b"b" * 70_000 + b"\r\n\r\n"
    answer = await asyncio.to_thread(_raw_request, port, long_header)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    status, _, body = await get(bot, "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"


def _hang_up_after_the_answer(port: int, data: bytes) -> bytes:
    """Send ``data``, read the first bytes of the answer, and close at once (a client
    that has what it wanted and does not wait for the server to finish)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        return s.recv(64)


async def test_clients_that_hang_up_on_an_oversized_request_log_no_traceback(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    assert bot.http is not None
    port = bot.http.port
    line = b"GET /metrics?" + b"a" * 9_000 + b" HTTP/1.1\r\n"
    with caplog.at_level(logging.DEBUG):
        for _ in range(20):
            answer = await asyncio.to_thread(_hang_up_after_the_answer, port, line)
            assert answer.startswith(b"HTTP/1.1 414 "), answer
        status, _, _ = await get(bot, "/health")  # every handler has finished by now
    assert status == 200
    unhandled = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not unhandled, [r.getMessage() for r in unhandled]


async def test_metrics_host_is_the_address_bound(
    tmp_path: Path,
    nats_server: EmbeddedNats,
    openai: OpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    cfg = write_config(
        tmp_path,
        nats_url=nats_server.url,
        api_base=openai.base_url,
        extra="metrics: {port: 0, host: 127.0.0.2}\n",
    )
    b = make_bot(cfg)
    await b.start()
    try:
        assert b.http is not None
        # bound to 127.0.0.2 only: the same port on 127.0.0.1 takes no connection
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", b.http.port), timeout=2).close()
        url = f"http://127.0.0.2:{b.http.port}/health"
        status, _, _ = await asyncio.to_thread(_get, url)
        assert status == 200
        with pytest.raises(urllib.error.URLError):
            await asyncio.to_thread(_get, f"http://127.0.0.1:{b.http.port}/health")
    finally:
        await b.stop(grace=1.0)
