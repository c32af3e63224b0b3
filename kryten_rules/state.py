"""Cooldown and rate-limit state, behind one small interface.

Keys are tuples that start with a scope and end with the rule id where the
state belongs to a rule (``("rule", "mention")``, ``("user_rule", "alice",
"mention")``), so state survives a reload of the rules and a removed rule's
state can be dropped by id. Every entry carries its own expiry: an idle user's
state disappears by itself, so 100,000 passing users cannot grow the store
without bound (cachetools' ``TLRUCache`` does the per-item expiry).

The in-memory store serves one process. A JetStream KV store would implement
the same protocol for several instances sharing a channel.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol

from cachetools import TLRUCache

Key = tuple[str, ...]
# Keys of these kinds belong to one rule, whose id is their last element.
RULE_SCOPES = frozenset({"rule", "user_rule", "count_rule"})
MAX_ENTRIES = 500_000  # a safety net far above any real channel; expiry is the real bound


class StateStore(Protocol):
    def cooldown(self, key: Key) -> tuple[float, float] | None:
        """``(fired_at, base_duration)`` of the running cooldown, if any."""
        ...

    def start_cooldown(self, key: Key, fired_at: float, duration: float, expires: float) -> None:
        """Start a cooldown, unless one that ends later is already running."""
        ...

    def count_since(self, key: Key, since: float) -> int:
        """How many events were recorded under ``key`` at or after ``since``."""
        ...

    def record(self, key: Key, at: float, expires: float, keep: int) -> None:
        """Count one event; keep at most ``keep`` timestamps, until ``expires``."""
        ...

    def drop_rules(self, rule_ids: Iterable[str]) -> int:
        """Forget every entry that belongs to these rules; returns how many went."""
        ...

    def __len__(self) -> int: ...


class MemoryStore:
    """The in-process store; ``timer`` is the engine's clock."""

    def __init__(self, timer: Callable[[], float], maxsize: int = MAX_ENTRIES) -> None:
        def ttu(_key: Key, value: tuple[float, object], now: float) -> float:
            return value[0]

        # value = (expires_at, payload)
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

    def record(self, key: Key, at: float, expires: float, keep: int) -> None:
        times = self._get(key)
        if not isinstance(times, deque) or times.maxlen != keep:
            times = deque(times if isinstance(times, deque) else (), maxlen=max(1, keep))
        times.append(at)
        self._cache[key] = (expires, times)

    def drop_rules(self, rule_ids: Iterable[str]) -> int:
        ids = set(rule_ids)
        doomed = [k for k in list(self._cache.keys()) if k[0] in RULE_SCOPES and k[-1] in ids]
        for k in doomed:
            self._cache.pop(k, None)
        return len(doomed)

    def expire(self) -> None:
        """Drop expired entries now (they also go lazily as the store is used)."""
        self._cache.expire()

    def __len__(self) -> int:
        return len(self._cache)
