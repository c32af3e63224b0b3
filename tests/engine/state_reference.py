"""The state store as it was before issue #9, kept as the reference semantics.

``tests/engine/test_state.py`` checks the new :class:`kryten_rules.engine.state.MemoryStore`
against it on random operation sequences, and ``benchmarks/state_bench.py``
runs both in one engine run. Its counts walk the window from the newest
timestamp back (cost grows with the budget), and a full cache evicts the least
recently used entry, running or not. ``count_in`` and ``has_room`` adapt it to
today's protocol without changing what it does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable

from cachetools import TLRUCache

from kryten_rules.engine.state import MAX_ENTRIES, RULE_SCOPES, Key


class LegacyMemoryStore:
    def __init__(self, timer: Callable[[], float], maxsize: int = MAX_ENTRIES) -> None:
        def ttu(_key: Key, value: tuple[float, object], now: float) -> float:
            return value[0]

        self._cache: TLRUCache[Key, tuple[float, object]] = TLRUCache(maxsize, ttu, timer)

    def _get(self, key: Key) -> object | None:
        item = self._cache.get(key)
        return None if item is None else item[1]

    def cooldown(self, key: Key) -> tuple[float, float] | None:
        value = self._get(key)
        return value if isinstance(value, tuple) else None

    def start_cooldown(self, key: Key, fired_at: float, duration: float, expires: float) -> None:
        current = self.cooldown(key)
        if current is not None and current[0] + current[1] >= fired_at + duration:
            return
        self._cache[key] = (expires, (fired_at, duration))

    def count_since(self, key: Key, since: float) -> int:
        times = self._get(key)
        if not isinstance(times, deque):
            return 0
        n = 0
        for t in reversed(times):
            if t < since:
                break
            n += 1
        return n

    def count_in(self, key: Key, window: float, now: float) -> int:
        return self.count_since(key, now - window)

    def record(self, key: Key, at: float, expires: float, keep: int) -> None:
        times = self._get(key)
        if not isinstance(times, deque) or times.maxlen != keep:
            times = deque(times if isinstance(times, deque) else (), maxlen=max(1, keep))
        times.append(at)
        self._cache[key] = (expires, times)

    def has_room(self, keys: Collection[Key]) -> bool:
        return True  # it made room by evicting

    def drop_rules(self, rule_ids: Iterable[str]) -> int:
        ids = set(rule_ids)
        doomed = [k for k in list(self._cache.keys()) if k[0] in RULE_SCOPES and k[-1] in ids]
        for k in doomed:
            self._cache.pop(k, None)
        return len(doomed)

    def expire(self) -> None:
        self._cache.expire()

    def __len__(self) -> int:
        return len(self._cache)
