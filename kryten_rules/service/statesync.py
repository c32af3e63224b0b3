"""Write-behind state: a :class:`MemoryStore` loaded from, and flushed to, a backend.

The engine decides against the in-memory store only (no awaits on its hot
path); this task keeps a :class:`~kryten_rules.engine.state.StateBackend` (a
JetStream KV bucket: ``kvstate.py``) in step with it: everything at start,
the journal of changed keys every ``interval`` seconds, what other
instances write as they write it (a backend with ``watch``), the rest at stop.
See ``kryten_rules/engine/state.py`` for the interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Mapping
from typing import Any

from kryten_rules.config import ServiceConfig
from kryten_rules.engine.state import (
    Cooldown,
    Counter,
    Key,
    MemoryStore,
    StateBackend,
    StateFull,
    Value,
)
from kryten_rules.quietlog import QuietLog
from kryten_rules.service.bus import Bus, NatsBus

log = logging.getLogger("kryten_rules.service")


class MemoryBackend:
    """A :class:`StateBackend` in a dict: the reference for tests and for a KV one."""

    def __init__(self) -> None:
        self.data: dict[Key, Value] = {}
        self.flushes = 0
        self.closed = False

    async def load(self, keys: Collection[Key] | None = None) -> dict[Key, Value]:
        if keys is None:
            return dict(self.data)
        return {k: self.data[k] for k in keys if k in self.data}

    async def flush(self, changes: Mapping[Key, Value | None]) -> None:
        self.flushes += 1
        for key, value in changes.items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value

    async def close(self) -> None:
        self.closed = True


def merge_value(mine: Value | None, theirs: Value) -> Value:
    """One key's value from here and from the backend, as one.

    Idempotent and order-free, so instances that merge each other's writes
    agree in the end: the cooldown that ends later wins; a budget keeps the
    union of both timestamp lists, to the millisecond (the same firing, seen
    twice, is one timestamp), its newest ``keep``; the later expiry holds.
    """
    if mine is None or type(mine) is not type(theirs):
        return theirs
    expires = max(mine.expires, theirs.expires)
    if isinstance(mine, Cooldown) and isinstance(theirs, Cooldown):
        best = max(mine, theirs, key=lambda c: (c.fired_at + c.duration, c.fired_at))
        return Cooldown(best.fired_at, best.duration, expires)
    assert isinstance(mine, Counter) and isinstance(theirs, Counter)
    keep = max(mine.keep, theirs.keep)
    # at millisecond resolution, as a backend keeps them (kvstate.py): a firing
    # seen here and read back from the bucket is one timestamp, not two
    ms = sorted({round(t * 1000) for t in mine.times} | {round(t * 1000) for t in theirs.times})
    return Counter(tuple(t / 1000 for t in ms[-keep:]), keep, expires)


class StateSync:
    """Loads a :class:`MemoryStore` from a backend, flushes its changes behind it.

    ``start`` loads everything and starts the journal; ``run`` flushes every
    ``interval`` seconds (a failed flush keeps its changes for the next one)
    and, for a backend with a ``watch``, merges what other instances write;
    ``close`` flushes what is left and closes the backend.

    A backend that cannot be reached never stops the bot nor a decision: the
    store goes on in memory, a warning says so (once a minute at most), and
    the load and the flushes are retried every ``interval`` until they work;
    then what was spent meanwhile is flushed and the backend's values merged in.
    """

    def __init__(
        self,
        store: MemoryStore,
        backend: StateBackend,
        interval: float = 1.0,
        quiet: QuietLog | None = None,
    ) -> None:
        self.store = store
        self.backend = backend
        self.interval = interval
        self.loaded = False  # the backend's values are in the store
        self.healthy = False  # the last load or flush worked
        self._quiet = quiet or QuietLog(log)
        self._unflushed: dict[Key, Value | None] = {}

    async def start(self) -> int:
        """Load what the backend has (0 and a warning when it is unreachable)."""
        self.store.track_changes()
        try:
            return await self._load()
        except Exception as exc:
            self._down(exc)
            return 0

    async def _load(self) -> int:
        loaded = self.apply(await self.backend.load())
        self.loaded = True
        self._up()
        return loaded

    def apply(self, values: Mapping[Key, Value]) -> int:
        """Merge values from the backend into the store; how many are running.

        A key the merge left newer than the backend's value (spent here while
        the backend was away, or by this instance and another at once) is
        journalled, so the next flush writes the merged value back."""
        store = self.store
        merged = {k: merge_value(store.value(k), v) for k, v in values.items()}
        try:
            n = store.restore(merged)
        except StateFull as exc:  # every entry here is still running: keep them
            self._quiet.warning("state_full_load", "state: loaded entries left out: %s", exc)
            n = 0
        store.touch(k for k, v in merged.items() if v != values[k])
        return n

    def _down(self, exc: BaseException) -> None:
        self.healthy = False
        self._quiet.warning(
            "state_backend_down",
            "state: the state backend is unreachable (%s); deciding from memory, "
            "changes are kept and written when it is back",
            exc,
        )

    def _up(self) -> None:
        if not self.healthy:
            self.healthy = True
            recovered = getattr(self.backend, "recovered", None)
            if callable(recovered):
                recovered()

    @property
    def unflushed(self) -> int:
        """Changed keys kept since a flush failed (the journal since then comes on top)."""
        return len(self._unflushed)

    async def flush(self) -> int:
        """Hand the changes so far to the backend; how many keys went."""
        pending = self._unflushed
        pending.update(self.store.changes())
        if not pending:
            return 0
        self._unflushed = {}
        try:
            await self.backend.flush(pending)
        except BaseException:
            # newer changes of the same keys win when both are kept
            self._unflushed = pending | self._unflushed
            raise
        return len(pending)

    async def step(self) -> None:
        """One round of :meth:`run`: load if that has not worked yet, then flush."""
        was_down = not self.healthy
        try:
            if not self.loaded:
                n = await self._load()
                log.info("state: the backend is reachable; %d running entries merged", n)
            flushed = await self.flush()
        except Exception as exc:
            self._down(exc)
            return
        self._up()
        if was_down and self.loaded:
            log.info("state: the backend is back; %d changed keys written", flushed)

    async def run(self) -> None:
        watch = getattr(self.backend, "watch", None)
        watcher = asyncio.ensure_future(watch(self.apply)) if callable(watch) else None
        me = asyncio.current_task()
        try:
            while True:
                await asyncio.sleep(self.interval)
                await self.step()
                if me is not None and me.cancelling():  # swallowed in a KV request
                    raise asyncio.CancelledError
        finally:
            if watcher is not None:
                await cancel_for_sure(watcher)

    async def close(self, timeout: float = 5.0) -> None:
        """The last flush (bounded by ``timeout``: a dead backend cannot hold
        up the stop), then the backend's close."""
        try:
            await asyncio.wait_for(self.flush(), timeout)
        finally:
            with contextlib.suppress(Exception):
                await self.backend.close()


async def cancel_for_sure(task: asyncio.Future[Any], every: float = 0.5) -> None:
    """Cancel ``task`` and wait until it is done, cancelling again as needed.

    Python 3.11's ``asyncio.wait_for`` (which nats-py's KV watcher uses) can
    swallow a cancellation that arrives as its inner future completes; the
    watch then went on for ever and the bot's stop hung on it.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=every)
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.result()


def state_backend_for(
    config: ServiceConfig, bus: Bus | None, quiet: QuietLog
) -> StateBackend | None:
    """The backend ``state.store`` asks for: None for ``memory`` (the default),
    a :class:`~.kvstate.JetStreamBackend` on the bot's NATS connection for
    ``jetstream``. A bus that is not NATS (tests' MemoryBus) has no JetStream:
    a warning, and the state stays in memory."""
    if config.state.store != "jetstream":
        return None
    if not isinstance(bus, NatsBus):
        log.warning("state: store jetstream needs a NATS connection; state stays in memory")
        return None
    from kryten_rules.service.kvstate import JetStreamBackend

    return JetStreamBackend(
        bus.nc,
        config.state.bucket,
        domain=config.cytube.domain,
        channel=config.cytube.channel,
        quiet=quiet,
    )
