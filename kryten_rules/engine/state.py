"""Cooldown and rate-limit state, behind one small interface.

Keys are tuples that start with a scope and end with the rule id where the
state belongs to a rule (``("rule", "mention")``, ``("user_rule", "alice",
"mention")``), so state survives a reload of the rules and a removed rule's
state can be dropped by id. Every entry carries its own expiry: an idle user's
state disappears by itself, so 100,000 passing users cannot grow the store
without bound.

Two properties matter under pressure:

* A budget check costs O(1) amortised, however big the budget: the timestamps
  of a key are kept sorted, and each window keeps a cursor at its first
  timestamp inside the window, which only moves forward as time does.
  (Walking the window made ``per_day: 100000`` cost 7x a normal check.)
* A full store never forgets an entry that is still running: it refuses the
  new key instead (:class:`StateFull`), and the engine, which asks
  :meth:`StateStore.has_room` first, blocks that decision as ``state_full``.
  Evicting the least recently used entry let a flood of fake users reset a
  real user's hourly budget.

State beyond this process (issue #14: several instances sharing a channel
through a JetStream KV bucket) must not put an ``await`` on the engine's hot
path, which decides an event in microseconds. So the engine always evaluates
against the in-memory :class:`MemoryStore`, and what lies beyond it is a
:class:`StateBackend` with three async hooks the service calls around it:

* ``load(keys)`` before the first event (and, for a shared bucket, whenever
  it wants fresher values): entries go in with :meth:`MemoryStore.restore`;
* ``flush(changes)`` write-behind, from a task: :meth:`MemoryStore.changes`
  hands over every key written or dropped since the last call (a journal of
  spent state, kept only once :meth:`MemoryStore.track_changes` is called, so
  a store without a backend does no extra work), as plain :class:`Cooldown`
  and :class:`Counter` values or ``None`` for a dropped key;
* ``close()`` after the last flush at shutdown.

:class:`~.service.statesync.StateSync` runs that cycle (``service/bot.py``
wires it when a backend is given); ``service/statesync.py`` also has
:class:`~.service.statesync.MemoryBackend`, the reference backend tests use, and
``service/kvstate.py`` the JetStream KV one: a :data:`Key` becomes a KV key, a
value JSON whose expiry is its TTL. Values a backend hands back are merged
(:meth:`MemoryStore.value` and :meth:`MemoryStore.touch` serve that), so two
instances that spent the same key agree.

The room (ranks, the playing media, recent lines) is in ``room.py``.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from kryten_rules.errors import KrytenRulesError

Key = tuple[str, ...]
# Keys of these kinds belong to one rule, whose id is their last element.
RULE_SCOPES = frozenset({"rule", "user_rule", "count_rule"})
MAX_ENTRIES = 500_000  # a safety net far above any real channel; expiry is the real bound
_COMPACT_AT = 64  # dropped timestamps kept in a list before it is compacted


class StateFull(KrytenRulesError, RuntimeError):
    """A new key did not fit: every entry of the store is still running."""


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

    def count_in(self, key: Key, window: float, now: float) -> int:
        """``count_since(key, now - window)``; cheap when asked again as time moves on."""
        ...

    def record(self, key: Key, at: float, expires: float, keep: int) -> None:
        """Count one event; keep at most ``keep`` timestamps, until ``expires``."""
        ...

    def has_room(self, keys: Collection[Key]) -> bool:
        """Whether writing all ``keys`` now would succeed (none would raise StateFull)."""
        ...

    def drop_rules(self, rule_ids: Iterable[str]) -> int:
        """Forget every entry that belongs to these rules; returns how many went."""
        ...

    def __len__(self) -> int: ...


class _Times:
    """The timestamps of one counter, sorted, with a cursor per window.

    ``times[head:]`` are the kept timestamps; ``base`` is the absolute number
    of ``times[0]``, so a cursor (an absolute number) survives compaction.
    """

    __slots__ = ("base", "cursors", "head", "keep", "times")

    def __init__(self, keep: int) -> None:
        self.times: list[float] = []
        self.head = 0
        self.base = 0
        self.keep = keep
        self.cursors: dict[float, tuple[float, int]] = {}  # window -> (since, absolute index)

    def add(self, at: float, keep: int) -> None:
        times = self.times
        if times and at < times[-1]:
            insort(times, at, self.head)  # the clock stepped back: rare, keep the order
            self.cursors.clear()
        else:
            times.append(at)
        self.keep = keep
        excess = len(times) - self.head - keep
        if excess > 0:
            self.head += excess
            if self.head >= _COMPACT_AT and self.head * 2 >= len(times):
                del times[: self.head]
                self.base += self.head
                self.head = 0

    def count_since(self, since: float) -> int:
        times = self.times
        return len(times) - bisect_left(times, since, self.head)

    def count_in(self, window: float, now: float) -> int:
        since = now - window
        times = self.times
        cursor = self.cursors.get(window)
        if cursor is None or since < cursor[0]:
            i = bisect_left(times, since, self.head)
        else:
            i = max(cursor[1] - self.base, self.head)
            n = len(times)
            while i < n and times[i] < since:
                i += 1
        self.cursors[window] = (since, self.base + i)
        return len(times) - i


class _Entry:
    """One key's value and expiry; ``queued`` is its time in the expiry heap."""

    __slots__ = ("expires", "queued", "value")

    def __init__(self, expires: float, value: tuple[float, float] | _Times) -> None:
        self.expires = expires
        self.queued = expires
        self.value = value


class MemoryStore:
    """The in-process store; ``timer`` is the engine's clock.

    Entries live in a dict; a heap ordered by expiry finds the ones that are
    over (one heap item per key: an entry whose expiry moved later is put back
    with its new time when its old one comes up).
    """

    def __init__(self, timer: Callable[[], float], maxsize: int = MAX_ENTRIES) -> None:
        self._timer = timer
        self.maxsize = maxsize
        self._data: dict[Key, _Entry] = {}
        self._heap: list[tuple[float, Key]] = []
        self._dirty: set[Key] | None = None  # keys changed since changes(); None: not kept

    # --- reading -----------------------------------------------------------------

    def _live(self, key: Key) -> _Entry | None:
        entry = self._data.get(key)
        if entry is None or entry.expires <= self._timer():
            return None
        return entry

    def cooldown(self, key: Key) -> tuple[float, float] | None:
        entry = self._live(key)
        return entry.value if entry is not None and isinstance(entry.value, tuple) else None

    def count_since(self, key: Key, since: float) -> int:
        entry = self._live(key)
        if entry is None or not isinstance(entry.value, _Times):
            return 0
        return entry.value.count_since(since)

    def count_in(self, key: Key, window: float, now: float) -> int:
        entry = self._live(key)
        if entry is None or not isinstance(entry.value, _Times):
            return 0
        return entry.value.count_in(window, now)

    # --- writing -----------------------------------------------------------------

    def _put(self, key: Key, expires: float, value: tuple[float, float] | _Times) -> None:
        now = self._timer()
        if expires <= now:
            return  # over already: storing it would only take room
        self._expire(now)  # a look at the heap's top when nothing is over
        entry = self._data.get(key)
        if entry is None:
            if len(self._data) >= self.maxsize:
                raise StateFull(f"the state store is full ({self.maxsize} running entries)")
            self._data[key] = _Entry(expires, value)
            heapq.heappush(self._heap, (expires, key))
            if self._dirty is not None:
                self._dirty.add(key)
            return
        if self._dirty is not None:
            self._dirty.add(key)
        entry.value = value
        entry.expires = expires
        if expires < entry.queued:  # rare: the heap must see the earlier time
            entry.queued = expires
            heapq.heappush(self._heap, (expires, key))

    def start_cooldown(self, key: Key, fired_at: float, duration: float, expires: float) -> None:
        current = self.cooldown(key)
        if current is not None and current[0] + current[1] >= fired_at + duration:
            return
        self._put(key, expires, (fired_at, duration))

    def record(self, key: Key, at: float, expires: float, keep: int) -> None:
        entry = self._live(key)
        times = entry.value if entry is not None else None
        if not isinstance(times, _Times):
            times = _Times(max(1, keep))
        times.add(at, max(1, keep))
        self._put(key, expires, times)

    def has_room(self, keys: Collection[Key]) -> bool:
        if len(self._data) + len(keys) <= self.maxsize:
            return True
        self._expire(self._timer())
        missing = sum(1 for k in keys if k not in self._data)
        return len(self._data) + missing <= self.maxsize

    # --- forgetting --------------------------------------------------------------

    def _expire(self, now: float) -> None:
        heap, data = self._heap, self._data
        while heap and heap[0][0] <= now:
            queued, key = heapq.heappop(heap)
            entry = data.get(key)
            if entry is None or entry.queued != queued:
                continue  # a key dropped since, or a later heap item stands for it
            if entry.expires <= now:
                del data[key]
            else:
                entry.queued = entry.expires
                heapq.heappush(heap, (entry.expires, key))

    def drop_rules(self, rule_ids: Iterable[str]) -> int:
        ids = set(rule_ids)
        self._expire(self._timer())  # only running entries are counted as dropped
        doomed = [k for k in self._data if k[0] in RULE_SCOPES and k[-1] in ids]
        for k in doomed:
            del self._data[k]
        if self._dirty is not None:
            self._dirty.update(doomed)
        if doomed:
            self._heap = [(e.queued, k) for k, e in self._data.items()]
            heapq.heapify(self._heap)
        return len(doomed)

    def expire(self) -> None:
        """Drop expired entries now (they also go as new keys are stored)."""
        self._expire(self._timer())

    # --- beyond this process (see the module docstring) ---------------------------

    def track_changes(self) -> None:
        """Keep a journal of changed keys from now on, for :meth:`changes`."""
        if self._dirty is None:
            self._dirty = set()

    def changes(self) -> dict[Key, Value | None]:
        """Every key written or dropped since the last call, as it is now
        (``None``: gone); empties the journal. Expired keys need no flush:
        their values carry their expiry."""
        dirty = self._dirty
        if not dirty:
            return {}
        self._dirty = set()
        return {key: self._value(self._data.get(key)) for key in dirty}

    def touch(self, keys: Iterable[Key]) -> None:
        """Journal ``keys`` as changed (a merge left them newer than the backend's)."""
        if self._dirty is not None:
            self._dirty.update(k for k in keys if k in self._data)

    @staticmethod
    def _value(entry: _Entry | None) -> Value | None:
        if entry is None:
            return None
        if isinstance(entry.value, tuple):
            return Cooldown(entry.value[0], entry.value[1], entry.expires)
        t = entry.value
        return Counter(tuple(t.times[t.head :]), t.keep, entry.expires)

    def value(self, key: Key) -> Value | None:
        """The running entry of ``key`` as a backend stores it (None: none)."""
        return self._value(self._live(key))

    def snapshot(self) -> dict[Key, Value]:
        """Every running entry, as :meth:`restore` takes them (a copy for ``explain``)."""
        now = self._timer()
        return {
            k: v
            for k, e in self._data.items()
            if e.expires > now and (v := self._value(e)) is not None
        }

    def restore(self, values: Mapping[Key, Value]) -> int:
        """Install loaded entries (over what is here); the expired ones are left
        out. Not journalled: they came from the backend. Returns how many went in."""
        dirty, self._dirty = self._dirty, None
        n = 0
        try:
            for key, value in values.items():
                if value.expires <= self._timer():
                    continue
                if isinstance(value, Cooldown):
                    self._put(key, value.expires, (value.fired_at, value.duration))
                else:
                    times = _Times(max(1, value.keep))
                    for at in sorted(value.times):
                        times.add(at, times.keep)
                    self._put(key, value.expires, times)
                n += 1
        finally:
            self._dirty = dirty
        return n

    def __len__(self) -> int:
        return len(self._data)


# --- values as a backend stores them -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Cooldown:
    """A running cooldown: started ``fired_at`` for ``duration`` s, kept until ``expires``."""

    fired_at: float
    duration: float
    expires: float


@dataclass(frozen=True, slots=True)
class Counter:
    """A budget's kept timestamps (sorted, at most ``keep``), kept until ``expires``."""

    times: tuple[float, ...]
    keep: int
    expires: float


Value = Cooldown | Counter


class StateBackend(Protocol):
    """Where state lives beyond this process; see the module docstring."""

    async def load(self, keys: Collection[Key] | None = None) -> dict[Key, Value]:
        """The stored values of ``keys`` (None: all of this channel's)."""
        ...

    async def flush(self, changes: Mapping[Key, Value | None]) -> None:
        """Store changed values; ``None`` deletes the key."""
        ...

    async def close(self) -> None: ...





