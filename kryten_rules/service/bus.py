"""All NATS traffic of the service, behind one small interface.

The service talks to the world through a :class:`Bus`: ``publish`` (events,
lifecycle, reload reports), ``request`` (commands to kryten-robot, which must
be confirmed), ``subscribe`` (channel events, ``kryten.rules.command``,
discovery) and ``kv_get`` (kryten-robot's user list). Two implementations:

* :class:`NatsBus` wraps a nats-py connection; it is the only module of the
  service that imports ``nats`` (besides ``kryten_rules.natsauth``, which reads its errors).
* :class:`MemoryBus` delivers in-process, with NATS subject wildcards
  (``*``, ``>``), request-reply and a key-value dict. Tests use it where NATS
  is not the point; the end-to-end tests keep the real nats-server.

A request that nobody answers raises :class:`NoResponders`, one that is not
answered in time :class:`RequestTimeout`; anything else a bus raises is a
send failure (see ``delivery.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from kryten_rules.errors import KrytenRulesError
from kryten_rules.natsauth import NatsRefused, fatal_connect_error, refusal_message
from kryten_rules.redact import mask_credentials

log = logging.getLogger("kryten_rules.service")


class NoResponders(KrytenRulesError, RuntimeError):
    """Nobody listens on the subject of a request."""


class RequestTimeout(KrytenRulesError, RuntimeError):
    """The request's answer did not come in time."""


class Message(Protocol):
    """One message as a subscriber receives it."""

    @property
    def subject(self) -> str: ...

    @property
    def data(self) -> bytes: ...

    @property
    def reply(self) -> str: ...

    async def respond(self, data: bytes) -> None: ...


Handler = Callable[[Message], Awaitable[None]]


class Subscription(Protocol):
    async def unsubscribe(self) -> None: ...


class Bus(Protocol):
    @property
    def connected(self) -> bool: ...

    async def publish(self, subject: str, data: bytes) -> None: ...

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        """The answer's data; :class:`NoResponders` or :class:`RequestTimeout` otherwise."""
        ...

    async def subscribe(self, subject: str, handler: Handler) -> Subscription: ...

    async def kv_get(self, bucket: str, key: str) -> bytes:
        """A key-value entry's value; raises (any exception) when it is not there."""
        ...

    async def flush(self, timeout: float = 2.0) -> None:
        """Return once the server has everything sent so far."""
        ...

    async def close(self) -> None: ...


class NatsBus:
    """A :class:`Bus` over one nats-py connection (``nc``)."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def publish(self, subject: str, data: bytes) -> None:
        await self.nc.publish(subject, data)

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        import nats.errors

        try:
            answer = await self.nc.request(subject, data, timeout=timeout)
        except nats.errors.NoRespondersError as exc:
            raise NoResponders(str(exc)) from exc
        except nats.errors.TimeoutError as exc:
            raise RequestTimeout(str(exc)) from exc
        return bytes(answer.data)

    async def subscribe(self, subject: str, handler: Handler) -> Subscription:
        sub: Subscription = await self.nc.subscribe(subject, cb=handler)
        return sub

    async def kv_get(self, bucket: str, key: str) -> bytes:
        kv = await self.nc.jetstream().key_value(bucket)
        entry = await kv.get(key)
        return bytes(entry.value or b"")

    async def flush(self, timeout: float = 2.0) -> None:
        # nats-py 2.16's flush can overtake its own write buffer, so one round
        # trip is not proof (see tests/nats_fixtures.py roundtrip)
        await self.nc.flush(timeout=timeout)
        await self.nc.flush(timeout=timeout)

    async def close(self) -> None:
        await self.nc.close()


class ConnectStopped(KrytenRulesError):
    """A stop was requested before NATS was reachable."""


async def connect_nats(
    url: str,
    *,
    name: str,
    stop: asyncio.Event,
    on_state: Callable[[bool], None],
    options: Mapping[str, Any] | None = None,
    mode: str = "no authentication",
) -> NatsBus:
    """Connect, retrying for ever (as nats-py does even the first time), until
    connected or ``stop`` is set (:class:`ConnectStopped`). ``on_state`` hears
    every disconnect (False) and reconnect (True).

    ``options`` are nats-py's authentication and TLS arguments
    (``natsauth.connect_options``). A refusal of them (wrong password, unknown
    nkey, untrusted certificate) is not retried: it raises
    :class:`NatsRefused`, one line naming the URL (masked) and ``mode``.
    """
    import nats

    safe_url = mask_credentials(url)
    box: list[Any] = []
    refused: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def disconnected() -> None:
        on_state(False)
        if not stop.is_set():
            log.warning("nats: disconnected from %s", safe_url)

    async def reconnected() -> None:
        on_state(True)
        log.info("nats: reconnected to %s; subscriptions restored", safe_url)

    last_warning = [-1e9]

    async def error(exc: Exception) -> None:
        log.debug("nats: %s", mask_credentials(str(exc)))
        reason = fatal_connect_error(exc)
        if reason is not None and not box:  # the first connect: stop, say it once
            if not refused.done():
                refused.set_result(refusal_message(url, reason, mode, exc))
            return
        now = time.monotonic()
        if not (box and box[0].is_connected) and now - last_warning[0] > 30:
            last_warning[0] = now
            log.warning(
                "nats: cannot reach %s (%s); retrying", safe_url, mask_credentials(str(exc))
            )

    # nats-py retries even the first connect for ever (max_reconnect_attempts=-1),
    # so a stop request must be able to interrupt it.
    connect = asyncio.ensure_future(
        nats.connect(
            url,
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
            connect_timeout=2,
            **(options or {}),
        )
    )
    stopped = asyncio.ensure_future(stop.wait())
    waits: set[asyncio.Future[Any]] = {connect, stopped, refused}
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not connect.done():
        connect.cancel()
        await asyncio.gather(connect, return_exceptions=True)
        if refused.done():
            raise NatsRefused(refused.result())
        raise ConnectStopped("stopped before NATS was reachable")
    refused.cancel()
    nc = connect.result()
    box.append(nc)
    on_state(True)
    log.info("nats: connected to %s", safe_url)
    return NatsBus(nc)


# --- in memory ---------------------------------------------------------------------


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS matching: ``*`` is one token, a final ``>`` one or more."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


@dataclass(slots=True)
class MemoryMessage:
    subject: str
    data: bytes
    reply: str = ""
    bus: MemoryBus | None = None

    async def respond(self, data: bytes) -> None:
        if self.bus is not None and self.reply:
            await self.bus.publish(self.reply, data)


@dataclass(slots=True)
class _MemorySub:
    bus: MemoryBus
    subject: str
    handler: Handler

    async def unsubscribe(self) -> None:
        with contextlib.suppress(ValueError):
            self.bus._subs.remove(self)


@dataclass
class MemoryBus:
    """An in-process :class:`Bus`: what is published is delivered to the
    matching subscribers before ``publish`` returns, in subscription order.

    ``published`` keeps every ``(subject, data)`` (requests too) for tests;
    ``kv`` holds ``(bucket, key) -> value``.
    """

    published: list[tuple[str, bytes]] = field(default_factory=list)
    kv: dict[tuple[str, str], bytes] = field(default_factory=dict)
    connected: bool = True
    _subs: list[_MemorySub] = field(default_factory=list)
    _inboxes: int = 0

    async def publish(self, subject: str, data: bytes) -> None:
        await self._deliver(subject, data, "")

    async def _deliver(self, subject: str, data: bytes, reply: str) -> int:
        if not self.connected:
            raise ConnectionError("the bus is closed")
        self.published.append((subject, data))
        subs = [s for s in self._subs if subject_matches(s.subject, subject)]
        for s in subs:
            await s.handler(MemoryMessage(subject, data, reply, self))
        return len(subs)

    async def request(self, subject: str, data: bytes, timeout: float) -> bytes:
        self._inboxes += 1
        inbox = f"_INBOX.memory.{self._inboxes}"
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def on_answer(msg: Message) -> None:
            if not answer.done():
                answer.set_result(msg.data)

        sub = await self.subscribe(inbox, on_answer)
        try:
            if not await self._deliver(subject, data, inbox):
                raise NoResponders(f"no responders on {subject}")
            try:
                return await asyncio.wait_for(answer, timeout)
            except TimeoutError as exc:
                raise RequestTimeout(f"no answer on {subject} in {timeout}s") from exc
        finally:
            await sub.unsubscribe()

    async def subscribe(self, subject: str, handler: Handler) -> Subscription:
        sub = _MemorySub(self, subject, handler)
        self._subs.append(sub)
        return sub

    async def kv_get(self, bucket: str, key: str) -> bytes:
        return self.kv[(bucket, key)]

    async def flush(self, timeout: float = 2.0) -> None:
        return None

    async def close(self) -> None:
        self.connected = False
        self._subs.clear()

    def sent(self, subject: str) -> list[bytes]:
        """The data of everything published or requested on ``subject``."""
        return [d for s, d in self.published if s == subject]
