"""Cooldowns and budgets in a JetStream KV bucket (``state: {store: jetstream}``).

The engine never waits for this module: it decides against the in-memory
store, and :class:`~.statesync.StateSync` loads this backend at start, flushes
the store's journal to it every second and merges what other instances write
(:meth:`JetStreamBackend.watch`). So a restarted bot, or a second instance on
the same bucket, sees the cooldowns and budgets the first one spent.

Keys and values are written as ``kvcodec.py`` says: each key under its domain
and channel, each value compact JSON with its writer's id.

Growth is bounded twice: each value is written with a per-message TTL (its
own expiry, NATS 2.11+), so the server drops it when it is over, and the
bucket's ``max_age`` (:data:`MAX_AGE`) drops anything not rewritten for that
long (a bucket made elsewhere without per-message TTLs still stays bounded).
The bucket keeps one revision per key (``history=1``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any

from kryten_rules.engine.state import Key, Value
from kryten_rules.errors import KrytenRulesError
from kryten_rules.quietlog import QuietLog
from kryten_rules.service.kvcodec import (
    channel_prefix,
    decode_key,
    decode_value,
    encode_key,
    fit_value,
)

log = logging.getLogger("kryten_rules.service")

MAX_AGE = 31 * 86400.0  # the bucket's backstop; a value's own TTL normally drops it first
LOAD_TIMEOUT = 120.0  # a whole load (a busy channel's bucket: seconds)
LOAD_STALL = 5.0  # the load gives up when no key comes for this long
WATCH_RETRY = 1.0  # between attempts to make a watcher
OP_TIMEOUT = 2.0  # one KV request; the flush task waits at most this per batch
BATCH = 256  # puts in flight at once
VALUE_MARGIN = 4096  # of max_payload, for the subject and headers of a put
PURGE_MARKER_TTL = 3600  # a dropped key's purge marker: long enough for every watcher


class StateUnavailable(KrytenRulesError, RuntimeError):
    """The bucket cannot be reached or made; the message says what the operator can do."""


# --- the backend ----------------------------------------------------------------------


class JetStreamBackend:
    """A :class:`~kryten_rules.state.StateBackend` over one nats-py connection.

    Every method raises :class:`StateUnavailable` (or the client's error) when
    the bucket cannot be reached; :class:`~.statesync.StateSync` then keeps the
    changes and tries again, and the engine goes on deciding from memory.
    """

    def __init__(
        self,
        nc: Any,
        bucket: str,
        *,
        domain: str,
        channel: str,
        clock: Callable[[], float] = time.time,
        quiet: QuietLog | None = None,
    ) -> None:
        self.nc = nc
        self.bucket = bucket
        self.prefix = channel_prefix(domain, channel)
        self.writer = uuid.uuid4().hex[:12]  # this instance, in every value it writes
        self._clock = clock
        self._quiet = quiet or QuietLog(log)
        self._kv: Any = None
        self._js: Any = None
        self._ttl = True  # the bucket takes per-message TTLs
        self._fresh = asyncio.Event()  # set when the bucket came back: watch afresh

    # --- the bucket ---------------------------------------------------------------

    async def _bucket(self) -> Any:
        if self._kv is not None:
            return self._kv
        import nats.errors
        import nats.js.errors

        js = self._js = self.nc.jetstream(timeout=OP_TIMEOUT)
        try:
            try:
                kv = await js.key_value(self.bucket)
            except nats.js.errors.BucketNotFoundError:
                kv = await js.create_key_value(
                    bucket=self.bucket,
                    history=1,
                    ttl=MAX_AGE,
                    description="kryten-rules cooldowns and budgets",
                )
                log.info("state: created the JetStream KV bucket %s", self.bucket)
            status = await kv.status()
        except (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError) as exc:
            raise StateUnavailable(
                "JetStream is not enabled on the NATS server (start nats-server with -js, "
                "or set state.store: memory)"
            ) from exc
        self._ttl = bool(getattr(status.stream_info.config, "allow_msg_ttl", False))
        if not self._ttl:
            log.warning(
                "state: bucket %s takes no per-message TTL (made without it); over values "
                "stay until its max_age",
                self.bucket,
            )
        self._kv = kv
        return kv

    def _max_value(self) -> int:
        """The largest value the server takes: its max_payload, less room for headers."""
        limit = getattr(self.nc, "max_payload", 0)
        return (limit if isinstance(limit, int) and limit > 0 else 1 << 20) - VALUE_MARGIN

    def _failed(self) -> None:
        """Forget the bucket handle: the next call looks it up (or makes it) again."""
        self._kv = None

    # --- StateBackend -------------------------------------------------------------

    async def load(self, keys: Collection[Key] | None = None) -> dict[Key, Value]:
        """Every running value of this channel (``keys``: only those)."""
        try:
            kv = await self._bucket()
            values = await asyncio.wait_for(self._read_all(kv), LOAD_TIMEOUT)
        except Exception:
            self._failed()
            raise
        self._fresh.set()
        if keys is not None:
            wanted = set(keys)
            values = {k: v for k, v in values.items() if k in wanted}
        return values

    async def _read_all(self, kv: Any) -> dict[Key, Value]:
        watcher = await kv.watch(self.prefix + ">", ignore_deletes=True)
        out: dict[Key, Value] = {}
        try:
            while (entry := await watcher.updates(timeout=LOAD_STALL)) is not None:
                decoded = self._decode(entry.key, entry.value)
                if decoded is not None:
                    out[decoded[0]] = decoded[1]
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()
        return out

    def _decode(self, kv_key: str, data: bytes | None) -> tuple[Key, Value, str] | None:
        try:
            key = decode_key(self.prefix, kv_key)
            value, writer = decode_value(data or b"")
        except ValueError as exc:
            self._quiet.warning("state_bad_value", "state: left out KV key %s: %s", kv_key, exc)
            return None
        return key, value, writer

    async def flush(self, changes: Mapping[Key, Value | None]) -> None:
        """Write each changed value (with its TTL); a dropped key is purged."""
        try:
            kv = await self._bucket()
            items = list(changes.items())
            for i in range(0, len(items), BATCH):
                batch = items[i : i + BATCH]
                done = await asyncio.gather(
                    *(self._write(kv, k, v) for k, v in batch), return_exceptions=True
                )
                failed = [r for r in done if isinstance(r, BaseException)]
                if failed:  # all kept for the next flush (rewriting a value is harmless)
                    raise failed[0]
        except Exception:
            self._failed()
            raise

    async def _write(self, kv: Any, key: Key, value: Value | None) -> None:
        name = encode_key(self.prefix, key)
        if value is None:  # a removed rule's state: gone, and its marker goes too
            await kv.purge(name, msg_ttl=PURGE_MARKER_TTL if self._ttl else None)
            return
        left = value.expires - self._clock()
        if left <= 0:
            return  # over already: its stored value (if any) is over too, and has a TTL
        data, cut = fit_value(value, self.writer, self._max_value())
        if cut:
            self._quiet.warning(
                "state_value_too_big",
                "state: budget %s has more timestamps than one NATS message holds; the bucket "
                "keeps its newest, %d left out (a restart counts that many fewer)",
                name,
                cut,
            )
        if self._ttl:
            ttl = min(MAX_AGE, max(1, math.ceil(left)))
            await self._js.publish(f"$KV.{self.bucket}.{name}", data, msg_ttl=ttl)
        else:
            await kv.put(name, data)

    async def watch(self, apply: Callable[[Mapping[Key, Value]], object]) -> None:
        """Hand what other instances write to ``apply``, for ever (a task to cancel).

        Runs one KV watcher over this channel's keys, from the first load on;
        its first pass is every current value (merging them again is harmless:
        a merge is idempotent). The watcher is made afresh whenever NATS
        reconnected or the bucket was away (a load or flush failed, then
        worked), since an old one may have died with the server.
        """
        await self._fresh.wait()
        while True:
            self._fresh.clear()
            reconnects = self._reconnects()
            try:
                kv = await self._bucket()
                watcher = await kv.watch(self.prefix + ">", ignore_deletes=True)
            except Exception as exc:
                self._failed()
                self._quiet.warning("state_watch", "state: cannot watch the bucket: %s", exc)
                await asyncio.sleep(WATCH_RETRY)
                continue
            try:
                await self._follow(watcher, apply, reconnects)
            except Exception as exc:
                self._quiet.warning("state_watch", "state: watching the bucket failed: %s", exc)
                await asyncio.sleep(WATCH_RETRY)
            finally:
                with contextlib.suppress(Exception):
                    await watcher.stop()

    def _reconnects(self) -> int:
        stats = getattr(self.nc, "stats", None)
        return int(stats.get("reconnects", 0)) if isinstance(stats, dict) else 0

    async def _follow(
        self, watcher: Any, apply: Callable[[Mapping[Key, Value]], object], reconnects: int
    ) -> None:
        """Apply updates until the watcher must be made afresh."""
        import nats.errors

        task = asyncio.current_task()
        while not self._fresh.is_set() and self._reconnects() == reconnects:
            if task is not None and task.cancelling():  # a cancel wait_for swallowed
                raise asyncio.CancelledError
            try:
                entry = await watcher.updates(timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            if entry is None:
                continue  # the end of the first pass
            decoded = self._decode(entry.key, entry.value)
            if decoded is not None and decoded[2] != self.writer:
                apply({decoded[0]: decoded[1]})

    def recovered(self) -> None:
        """The bucket is back after an outage: the watcher is made afresh."""
        self._fresh.set()

    async def close(self) -> None:
        self._kv = None
