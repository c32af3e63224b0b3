"""Write-behind state: a :class:`MemoryStore` loaded from, and flushed to, a backend.

The engine decides against the in-memory store only (no awaits on its hot
path); this task keeps a :class:`~kryten_rules.engine.state.StateBackend` (a
JetStream KV bucket next, issue #14) in step with it: everything at start,
the journal of changed keys every ``interval`` seconds, the rest at stop.
See ``kryten_rules/state.py`` for the interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Mapping

from kryten_rules.engine.state import Key, MemoryStore, StateBackend, Value

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


class StateSync:
    """Loads a :class:`MemoryStore` from a backend, flushes its changes behind it.

    ``start`` loads everything and starts the journal; ``run`` flushes every
    ``interval`` seconds (a failed flush keeps its changes for the next one);
    ``close`` flushes what is left and closes the backend.
    """

    def __init__(self, store: MemoryStore, backend: StateBackend, interval: float = 1.0) -> None:
        self.store = store
        self.backend = backend
        self.interval = interval
        self._unflushed: dict[Key, Value | None] = {}

    async def start(self) -> int:
        loaded = self.store.restore(await self.backend.load())
        self.store.track_changes()
        return loaded

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

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception as exc:
                log.warning("state: flushing to the backend failed (kept for the next): %s", exc)

    async def close(self) -> None:
        try:
            await self.flush()
        finally:
            with contextlib.suppress(Exception):
                await self.backend.close()
