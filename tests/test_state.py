"""The in-memory state store: per-entry expiry, a bound on size, dropping a rule's state."""

from __future__ import annotations

import textwrap
from pathlib import Path

from kryten_rules import ChatEvent, VirtualClock, load_ruleset
from kryten_rules.engine import Engine
from kryten_rules.state import MemoryStore


def test_cooldown_entry_vanishes_after_its_expiry() -> None:
    clock = VirtualClock()
    store = MemoryStore(clock.now)
    store.start_cooldown(("rule", "a"), 0.0, 10.0, expires=11.0)
    assert store.cooldown(("rule", "a")) == (0.0, 10.0)
    assert len(store) == 1
    clock.set(10.999)
    assert store.cooldown(("rule", "a")) == (0.0, 10.0)
    clock.set(11.0)
    assert store.cooldown(("rule", "a")) is None
    store.expire()
    assert len(store) == 0


def test_counts_vanish_after_their_expiry() -> None:
    clock = VirtualClock()
    store = MemoryStore(clock.now)
    key = ("count_rule", "a")
    for t in (0.0, 10.0, 20.0):
        clock.set(t)
        store.record(key, t, expires=t + 61, keep=10)
    assert store.count_since(key, 0.0) == 3
    assert store.count_since(key, 10.0) == 2  # "at or after"
    assert store.count_since(key, 20.5) == 0
    clock.set(80.0)  # the last record extended the entry to 81
    assert store.count_since(key, 0.0) == 3
    clock.set(81.0)
    assert store.count_since(key, 0.0) == 0
    store.expire()
    assert len(store) == 0


def test_record_keeps_at_most_keep_timestamps() -> None:
    clock = VirtualClock()
    store = MemoryStore(clock.now)
    key = ("count_user", "alice")
    for t in range(10):
        store.record(key, float(t), expires=1000.0, keep=3)
    assert store.count_since(key, 0.0) == 3
    assert store.count_since(key, 8.0) == 2
    # a larger keep (e.g. a rule edited to allow more) keeps what is there and grows
    for t in range(10, 15):
        store.record(key, float(t), expires=1000.0, keep=6)
    assert store.count_since(key, 0.0) == 6


def test_a_running_longer_cooldown_is_not_shortened() -> None:
    clock = VirtualClock()
    store = MemoryStore(clock.now)
    store.start_cooldown(("global",), 0.0, 60.0, expires=61.0)
    store.start_cooldown(("global",), 10.0, 5.0, expires=16.0)
    assert store.cooldown(("global",)) == (0.0, 60.0)
    clock.set(20.0)
    assert store.cooldown(("global",)) == (0.0, 60.0)  # the short one's expiry did not apply
    store.start_cooldown(("global",), 20.0, 60.0, expires=81.0)
    assert store.cooldown(("global",)) == (20.0, 60.0)


def test_an_entry_that_is_already_expired_is_not_stored() -> None:
    clock = VirtualClock(100.0)
    store = MemoryStore(clock.now)
    store.start_cooldown(("rule", "a"), 0.0, 10.0, expires=11.0)
    assert store.cooldown(("rule", "a")) is None
    assert len(store) == 0


def test_kinds_of_values_do_not_mix() -> None:
    clock = VirtualClock()
    store = MemoryStore(clock.now)
    store.record(("rule", "a"), 0.0, 100.0, 5)
    assert store.cooldown(("rule", "a")) is None
    store.start_cooldown(("count_rule", "a"), 0.0, 10.0, 11.0)
    assert store.count_since(("count_rule", "a"), 0.0) == 0
    assert store.cooldown(("nothing",)) is None
    assert store.count_since(("nothing",), 0.0) == 0


def test_store_stays_bounded_with_100k_passing_users(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        textwrap.dedent(
            """\
            kryten_rules: 1
            limits:
              user: {per_hour: 5}
            rules:
              - id: hello
                match: {any: [hello]}
                cooldown: {user: 30s, user_rule: 30s}
                reply: "hi {{ user.name }}"
            """
        )
    )
    clock = VirtualClock()
    engine = Engine(load_ruleset([rules], bot_name="kryten"), clock=clock, seed=1)
    n = 100_000
    for i in range(n):
        t = i / 100  # 100 users a second, for 1,000 s
        clock.set(t)
        assert engine.evaluate(ChatEvent(user=f"user{i}", text="hello", at=t)).fired == "hello"
    # while they pass, cooldowns (30 s + 1) of earlier users are already gone; the
    # per-hour counts of all of them (1,000 s < 1 h) are still needed
    assert len(engine.state) <= n + 2 * 3_200
    t = n / 100 + 2 * 3600
    for j in range(5):
        clock.set(t + j)
        engine.evaluate(ChatEvent(user=f"late{j}", text="hello", at=t + j))
    assert len(engine.state) < 1000
    assert len(engine.state) <= 5 * 3


def test_drop_rules_removes_only_that_rules_keys() -> None:
    clock = VirtualClock()
    store = MemoryStore(clock.now)
    theirs = [("rule", "a"), ("user_rule", "alice", "a"), ("user_rule", "bob", "a")]
    mine_counts = [("count_rule", "a")]
    others = [
        ("rule", "b"),
        ("user_rule", "alice", "b"),
        ("user_rule", "a", "b"),  # a user named "a", rule b
        ("user", "a"),  # a user named "a"
        ("global",),
    ]
    other_counts = [("count_rule", "b"), ("count_user", "a"), ("count_global",)]
    for k in theirs + others:
        store.start_cooldown(k, 0.0, 60.0, 61.0)
    for k in mine_counts + other_counts:
        store.record(k, 0.0, 100.0, 5)
    assert len(store) == 12
    assert store.drop_rules(["a"]) == 4
    assert len(store) == 8
    for k in theirs:
        assert store.cooldown(k) is None
    assert store.count_since(("count_rule", "a"), 0.0) == 0
    for k in others:
        assert store.cooldown(k) == (0.0, 60.0)
    for k in other_counts:
        assert store.count_since(k, 0.0) == 1
    assert store.drop_rules(["zzz"]) == 0
    assert store.drop_rules([]) == 0
    assert len(store) == 8
