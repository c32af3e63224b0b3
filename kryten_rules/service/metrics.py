"""Prometheus metrics and the ``/health`` + ``/metrics`` HTTP endpoint.

Each service instance has its own registry (tests run several in one process).
What a channel's parts count carries its ``channel`` label: they count through
:meth:`Metrics.for_channel`'s view, so no call site names the channel.
The HTTP server is a few lines of asyncio: it serves two fixed paths, so a web
framework would be all weight and no help.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from kryten_rules.errors import KrytenRulesError

log = logging.getLogger(__name__)

F = TypeVar("F", Counter, Gauge, Histogram)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LLM_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "kryten_rules_events_total",
            "Events received, by event name.",
            ["channel", "event"],
            registry=r,
        )
        self.malformed = Counter(
            "kryten_rules_events_malformed_total",
            "Events skipped as malformed, by reason.",
            ["channel", "reason"],
            registry=r,
        )
        self.ignored = Counter(
            "kryten_rules_events_ignored_total",
            "Events that never reached the rules, by why.",
            ["channel", "why"],
            registry=r,
        )
        self.decisions = Counter(
            "kryten_rules_decisions_total",
            "Rule outcomes per evaluated event, by rule and reason.",
            ["channel", "rule", "outcome", "reason"],
            registry=r,
        )
        self.decision_latency = Histogram(
            "kryten_rules_decision_seconds",
            "Time to decide one event.",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.llm_attempts = Counter(
            "kryten_rules_llm_attempts_total",
            "LLM attempts, by model and outcome.",
            ["model", "outcome"],
            registry=r,
        )
        self.llm_latency = Histogram(
            "kryten_rules_llm_seconds",
            "Latency of LLM attempts.",
            ["model"],
            buckets=LLM_BUCKETS,
            registry=r,
        )
        self.llm_cost = Counter(
            "kryten_rules_llm_cost_total", "Cost of LLM calls where known.", ["model"], registry=r
        )
        self.replies = Counter(
            "kryten_rules_replies_total",
            "Chat messages sent, by how.",
            ["channel", "via"],
            registry=r,
        )
        self.replies_dropped = Counter(
            "kryten_rules_replies_dropped_total",
            "Replies not sent, by reason.",
            ["channel", "reason"],
            registry=r,
        )
        self.send_failures = Counter(
            "kryten_rules_send_failures_total",
            "Messages kryten-robot did not confirm (refused, no answer, no robot), by reason.",
            ["channel", "reason"],
            registry=r,
        )
        self.outcomes = Counter(
            "kryten_rules_reply_outcomes_total",
            "Decisions that fired, by what became of them (one per response-log line).",
            ["channel", "outcome"],
            registry=r,
        )
        self.log_write_errors = Counter(
            "kryten_rules_response_log_errors_total",
            "Response-log lines that could not be written.",
            registry=r,
        )
        self.reloads = Counter(
            "kryten_rules_reloads_total",
            "Rule reloads, by outcome.",
            ["channel", "outcome"],
            registry=r,
        )
        self.rules = Gauge("kryten_rules_rules", "Rules loaded.", ["channel"], registry=r)
        self.events_out = Counter(
            "kryten_rules_events_out_total",
            "Reply and decision events for other services, by kind and outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        self.in_flight = Gauge(
            "kryten_rules_dispatch_in_flight", "Replies being prepared.", registry=r
        )
        self.nats_connected = Gauge(
            "kryten_rules_nats_connected", "1 when connected to NATS.", registry=r
        )
        # set to the state sync's health when a backend is wired (bot._load_state)
        self.state_backend_up = Gauge(
            "kryten_rules_state_backend_up",
            "1 while the state backend (JetStream KV) answers, 0 while state is memory-only.",
            registry=r,
        )
        # set by bot._start_lease with state.store: jetstream (failover)
        self.lease_held = Gauge(
            "kryten_rules_lease_held",
            "1 while this instance holds the channel's lease and answers it; 0 on a standby.",
            ["channel"],
            registry=r,
        )
        self.state_unflushed = Gauge(
            "kryten_rules_state_unflushed",
            "Changed state keys kept in memory until the state backend takes them.",
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def for_channel(self, channel: str) -> ChannelMetrics:
        """The families as one channel's parts count into them (``channel`` label set)."""
        return ChannelMetrics(self, channel)


class Bound(Generic[F]):
    """A family with its ``channel`` label given: ``labels()`` takes the rest."""

    def __init__(self, family: F, channel: str) -> None:
        self._family: F = family
        self._channel = channel

    def labels(self, *values: str) -> F:
        child: F = self._family.labels(self._channel, *values)
        return child


class ChannelMetrics:
    """One channel's view of the registry: its events, decisions, replies and reloads
    carry its ``channel`` label (channels are configured, so the label's values are
    few); the model calls, the render pool and the connection are shared and not."""

    def __init__(self, metrics: Metrics, channel: str) -> None:
        m = metrics
        self.channel = channel
        self.registry = m.registry
        self.events = Bound(m.events, channel)
        self.malformed = Bound(m.malformed, channel)
        self.ignored = Bound(m.ignored, channel)
        self.decisions = Bound(m.decisions, channel)
        self.decision_latency = Bound(m.decision_latency, channel)
        self.replies = Bound(m.replies, channel)
        self.replies_dropped = Bound(m.replies_dropped, channel)
        self.send_failures = Bound(m.send_failures, channel)
        self.outcomes = Bound(m.outcomes, channel)
        self.reloads = Bound(m.reloads, channel)
        self.rules = Bound(m.rules, channel)
        # shared by every channel
        self.llm_attempts = m.llm_attempts
        self.llm_latency = m.llm_latency
        self.llm_cost = m.llm_cost
        self.in_flight = m.in_flight
        self.log_write_errors = m.log_write_errors
        self.nats_connected = m.nats_connected


class HttpEndpoint:
    """``GET /health`` (JSON) and ``GET /metrics`` (Prometheus text)."""

    def __init__(
        self,
        metrics: Metrics,
        health: Callable[[], dict[str, Any]],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.metrics = metrics
        self.health = health
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen on ``host`` (``metrics.host``) and ``port``; ``OSError`` if it cannot."""
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, limit=MAX_REQUEST_LINE
        )
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def address(self) -> str:
        """``host:port`` as a URL writes it (IPv6 in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                status, ctype, body = await self._answer(reader)
                oversized = False
            except _TooLarge as exc:
                status, ctype, body = exc.status, "text/plain", exc.body
                oversized = True
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
            if oversized:
                # Closing with the rest of the request unread would reset the
                # connection and lose the answer: read (and drop) a bounded rest.
                writer.write_eof()
                await _discard(reader)
        # OSError, not only ConnectionError: a client that hung up makes write_eof()
        # raise ENOTCONN, which is neither a reset nor a broken pipe
        except (TimeoutError, OSError, UnicodeDecodeError) as exc:
            log.debug("http: dropped a request: %r", exc)
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[str, str, bytes]:
        request = await _read_line(reader, "414 URI Too Long", b"request line too long\n")
        for _ in range(MAX_HEADERS):
            line = await _read_line(reader, _HEADERS_TOO_LARGE, b"header too long\n")
            if line in (b"\r\n", b"\n", b""):
                break
        else:
            raise _TooLarge(_HEADERS_TOO_LARGE, b"too many headers\n")
        parts = request.decode("latin-1").split()
        path = parts[1].split("?")[0] if len(parts) >= 2 else ""
        if parts[:1] != ["GET"]:
            return "405 Method Not Allowed", "text/plain", b"GET only\n"
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, self.metrics.render()
        if path in ("/health", "/healthz", "/"):
            data = self.health()
            status = "200 OK" if data.get("status") == "ok" else "503 Service Unavailable"
            return status, "application/json", json.dumps(data).encode()
        return "404 Not Found", "text/plain", b"not found\n"


async def serve_http(
    metrics: Metrics, health: Callable[[], dict[str, Any]], host: str, port: int
) -> HttpEndpoint | None:
    """The endpoint, listening; None (and an error logged) if it cannot listen: the
    bot is more important than its dashboard."""
    http = HttpEndpoint(metrics, health, host=host, port=port)
    try:
        await http.start()
    except OSError as exc:
        log.error(
            "health and metrics endpoint not started: %s port %d: %s",
            host,
            port,
            exc.strerror or exc,
        )
        return None
    logging.getLogger("kryten_rules.service").info(
        "health and metrics on http://%s/metrics", http.address
    )
    return http


MAX_REQUEST_LINE = 8 * 1024  # a scraper's request is a few dozen bytes
MAX_HEADERS = 100
_HEADERS_TOO_LARGE = "431 Request Header Fields Too Large"


class _TooLarge(KrytenRulesError):
    """A request past our bounds: answered with ``status``, never an unhandled error."""

    def __init__(self, status: str, body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


async def _read_line(reader: asyncio.StreamReader, status: str, body: bytes) -> bytes:
    """One line, within 5 s and :data:`MAX_REQUEST_LINE` bytes; ``b""`` at end of input."""
    try:
        return await asyncio.wait_for(reader.readuntil(b"\n"), 5)
    except asyncio.IncompleteReadError as exc:
        return exc.partial
    except asyncio.LimitOverrunError:
        raise _TooLarge(status, body) from None


async def _discard(
    reader: asyncio.StreamReader, limit: int = 1 << 20, timeout: float = 2.0
) -> None:
    """Read and drop up to ``limit`` bytes until the client closes or ``timeout`` passes."""
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(timeout):
            seen = 0
            while seen < limit:
                chunk = await reader.read(64 * 1024)
                if not chunk:
                    return
                seen += len(chunk)
