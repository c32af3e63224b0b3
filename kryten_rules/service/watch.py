"""Reload on change: poll the rule set's files for changes.

Polling (mtime, size and the set of files, once a second) works the same on
every filesystem, in containers and over network mounts where inotify is
absent or silent, and costs nothing at this scale. A change triggers the
callback once the files have been still for ``settle`` seconds, so an editor
that writes in several steps causes one reload, not three.

A poll that fails (an unreadable directory, a reload that raised) is retried
on the next poll; its traceback is logged once a minute per kind of failure,
not once a second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from kryten_rules.quietlog import QuietLog

log = logging.getLogger(__name__)

Snapshot = frozenset[tuple[str, int, int]]


def snapshot(paths: Iterable[Path]) -> Snapshot:
    out = set()
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue
        out.add((str(p), st.st_mtime_ns, st.st_size))
    return frozenset(out)


class FileWatcher:
    def __init__(
        self,
        paths: Callable[[], Iterable[Path]],
        interval: float,
        on_change: Callable[[], Awaitable[object]],
        settle: float = 0.2,
    ) -> None:
        self.paths = paths
        self.interval = interval
        self.settle = settle
        self.on_change = on_change
        self._last: Snapshot | None = None
        self._quiet = QuietLog(log)

    async def prime(self) -> None:
        """Take the first snapshot now, so a change made right after start counts."""
        self._last = await asyncio.to_thread(lambda: snapshot(self.paths()))

    async def run(self) -> None:
        if self._last is None:
            await self.prime()
        last = self._last
        while True:
            await asyncio.sleep(self.interval)
            try:
                now = await asyncio.to_thread(lambda: snapshot(self.paths()))
                if now == last:
                    continue
                await asyncio.sleep(self.settle)
                now = await asyncio.to_thread(lambda: snapshot(self.paths()))
                last = now
                log.info("rule files changed; reloading")
                await self.on_change()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._quiet.exception(
                    type(exc).__name__, "watching the rule files failed; will retry"
                )
