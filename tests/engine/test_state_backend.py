"""State beyond the process: the store's journal, restore, and the write-behind sync."""

from __future__ import annotations

import pytest

from kryten_rules import VirtualClock
from kryten_rules.engine.room import MemoryRoom
from kryten_rules.engine.state import Cooldown, Counter, Key, MemoryStore, Value
from kryten_rules.service.statesync import MemoryBackend, StateSync


def test_no_journal_unless_asked() -> None:
    store = MemoryStore(VirtualClock().now)
    store.start_cooldown(("rule", "a"), 0.0, 10.0, expires=11.0)
    assert store.changes() == {}


def test_changes_are_what_was_written_or_dropped_once() -> None:
    clock = VirtualClock()
    store = MemoryStore(clock.now)
    store.track_changes()
    store.start_cooldown(("rule", "a"), 0.0, 10.0, expires=11.0)
    store.record(("count_rule", "b"), 1.0, expires=100.0, keep=2)
    store.record(("count_rule", "b"), 2.0, expires=100.0, keep=2)
    store.record(("count_rule", "b"), 3.0, expires=100.0, keep=2)
    assert store.changes() == {
        ("rule", "a"): Cooldown(0.0, 10.0, 11.0),
        ("count_rule", "b"): Counter((2.0, 3.0), 2, 100.0),
    }
    assert store.changes() == {}
    store.drop_rules(["a"])
    assert store.changes() == {("rule", "a"): None}


def test_restore_keeps_running_entries_and_leaves_expired_ones_out() -> None:
    clock = VirtualClock()
    clock.set(50.0)
    store = MemoryStore(clock.now)
    store.track_changes()
    loaded = store.restore(
        {
            ("rule", "a"): Cooldown(45.0, 10.0, 56.0),
            ("rule", "gone"): Cooldown(0.0, 10.0, 11.0),
            ("count_rule", "b"): Counter((3.0, 1.0), 5, 100.0),
        }
    )
    assert loaded == 2 and len(store) == 2
    assert store.cooldown(("rule", "a")) == (45.0, 10.0)
    assert store.count_in(("count_rule", "b"), 60.0, 50.0) == 2
    assert store.changes() == {}  # restored entries came from the backend


class FailingOnce(MemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.fail = True

    async def flush(self, changes: dict[Key, Value | None]) -> None:  # type: ignore[override]
        if self.fail:
            self.fail = False
            raise ConnectionError("bucket unreachable")
        await super().flush(changes)


async def test_sync_round_trip_and_a_failed_flush_is_retried() -> None:
    clock = VirtualClock()
    backend = FailingOnce()
    store = MemoryStore(clock.now)
    sync = StateSync(store, backend)
    assert await sync.start() == 0
    store.start_cooldown(("rule", "a"), 0.0, 10.0, expires=11.0)
    with pytest.raises(ConnectionError):
        await sync.flush()
    store.record(("count_rule", "b"), 1.0, expires=100.0, keep=3)
    await sync.close()
    assert backend.closed
    assert set(backend.data) == {("rule", "a"), ("count_rule", "b")}

    again = MemoryStore(clock.now)  # a new process, the same bucket
    assert await StateSync(again, backend).start() == 2
    assert again.cooldown(("rule", "a")) == (0.0, 10.0)


def test_memory_room_keeps_a_bounded_rank_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kryten_rules.engine.room.MAX_KNOWN_USERS", 2)
    room = MemoryRoom()
    room.set_rank("Alice", 2)
    room.set_rank("bob", 1)
    room.set_rank("carol", 3)
    assert (room.rank_of("alice"), room.rank_of("BOB"), room.rank_of("carol")) == (0, 1, 3)
    room.forget_user("Bob")
    assert room.rank_of("bob") == 0
    room.add_line("alice", "hi")
    assert room.history_before(room.lines) == [("alice", "hi")]
