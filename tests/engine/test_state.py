"""The in-memory state store: per-entry expiry, a bound on size, dropping a rule's state."""

from __future__ import annotations

import textwrap
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kryten_rules import ChatEvent, VirtualClock, load_ruleset
from kryten_rules.engine.evaluate import Engine
from kryten_rules.engine.state import MemoryStore, StateFull
from kryten_rules.service.embedded import EmbeddedNats
from tests.engine.state_reference import LegacyMemoryStore
from tests.nats_fixtures import (
    KEY_ENV,
    KEY_VALUE,
    RobotClient,
    make_bot,
    metric,
    says,
    settle,
    write_config,
)


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


# ------------------------------------------------ issue #9 item 17: state under pressure

WINDOW_LENGTHS = (1.0, 5.0, 60.0, 3600.0, 86400.0)
KEYS = (("count_user", "alice"), ("count_global",), ("count_rule", "a"), ("rule", "a"))
op = st.one_of(
    st.tuples(st.just("advance"), st.floats(0, 4000, allow_nan=False)),
    st.tuples(st.just("record"), st.sampled_from(KEYS), st.sampled_from(WINDOW_LENGTHS),
              st.integers(0, 12)),
    st.tuples(st.just("count_in"), st.sampled_from(KEYS), st.sampled_from(WINDOW_LENGTHS)),
    st.tuples(st.just("count_since"), st.sampled_from(KEYS), st.floats(-10, 20000)),
    st.tuples(st.just("cooldown"), st.sampled_from(KEYS), st.floats(0.5, 100)),
    st.tuples(st.just("drop"), st.sampled_from(["a", "b"])),
)


@settings(max_examples=300)
@given(st.lists(op, max_size=120))
def test_counts_and_cooldowns_match_the_previous_store(ops: list[tuple[Any, ...]]) -> None:
    """Same answers as the walking store for any sequence the engine can make
    (time never runs backwards; every write expires in the future)."""
    clock = VirtualClock()
    new, old = MemoryStore(clock.now), LegacyMemoryStore(clock.now)
    for o in ops:
        now = clock.now()
        if o[0] == "advance":
            clock.advance(o[1])
        elif o[0] == "record":
            _, key, span, keep = o
            for s in (new, old):
                s.record(key, now, now + span + 1, keep)
        elif o[0] == "count_in":
            assert new.count_in(o[1], o[2], now) == old.count_in(o[1], o[2], now)
        elif o[0] == "count_since":
            assert new.count_since(o[1], o[2]) == old.count_since(o[1], o[2])
        elif o[0] == "cooldown":
            for s in (new, old):
                s.start_cooldown(o[1], now, o[2], now + o[2] * 2 + 1)
            assert new.cooldown(o[1]) == old.cooldown(o[1])
        else:
            assert new.drop_rules([o[1]]) == old.drop_rules([o[1]])
        for key in KEYS:
            assert new.cooldown(key) == old.cooldown(key)
            for w in WINDOW_LENGTHS:
                assert new.count_in(key, w, clock.now()) == old.count_in(key, w, clock.now())
    new.expire()
    old.expire()
    assert len(new) == len(old)


def test_a_clock_step_back_still_counts_every_timestamp_in_the_window() -> None:
    store = MemoryStore(lambda: 0.0)
    key = ("count_global",)
    for at in (10.0, 20.0, 30.0, 15.0):  # a record from before the last one
        store.record(key, at, 1000.0, 10)
    assert store.count_in(key, 100.0, 30.0) == 4
    assert store.count_in(key, 12.0, 30.0) == 2  # 20 and 30
    assert store.count_since(key, 15.0) == 3


def test_a_big_budget_keeps_at_most_keep_timestamps_in_memory() -> None:
    store = MemoryStore(lambda: 0.0)
    key = ("count_global",)
    tracemalloc.start()
    try:
        for i in range(10_000):
            store.record(key, float(i), 1e9, 100)
            assert store.count_in(key, 1e6, float(i)) == min(i + 1, 100)
            if i == 1_999:
                after_2k = tracemalloc.get_traced_memory()[0]
        grown = tracemalloc.get_traced_memory()[0] - after_2k
    finally:
        tracemalloc.stop()
    # 8,000 more timestamps kept would be ~256 KB; trimmed to `keep`, it stays flat
    assert grown < 64_000, grown


FLOOD_RULES = """\
kryten_rules: 1
limits:
  user: {per_hour: 1}
rules:
  - id: hello
    match: {any: [hello]}
    reply: "hi {{ user.name }}"
"""


def _flood_engine(tmp_path: Path, maxsize: int) -> tuple[Engine, VirtualClock, MemoryStore]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(FLOOD_RULES, encoding="utf-8")
    clock = VirtualClock(1000.0)
    store = MemoryStore(clock.now, maxsize=maxsize)
    engine = Engine(load_ruleset([rules], bot_name="kryten"), clock=clock, seed=1, state=store)
    return engine, clock, store


def _hello(engine: Engine, clock: VirtualClock, user: str, dt: float = 0.01) -> Any:
    clock.advance(dt)
    return engine.evaluate(ChatEvent(user=user, text="hello", at=clock.now()))


def test_a_flood_of_fake_users_does_not_reset_a_real_users_budget(tmp_path: Path) -> None:
    engine, clock, store = _flood_engine(tmp_path, maxsize=1_000)
    assert _hello(engine, clock, "alice").fired == "hello"
    assert _hello(engine, clock, "alice").blocked == "limit.user.per_hour"
    outcomes = [_hello(engine, clock, f"fake{i}") for i in range(3_000)]
    assert len(store) == 1_000
    assert sum(d.fired == "hello" for d in outcomes) == 999
    full = [d for d in outcomes if d.fired is None]
    assert len(full) == 2_001 and {d.blocked for d in full} == {"state_full"}
    assert full[0].trace[-1].reason == "state_full"
    # alice's hour is not over: she is still counted, and blocked by her budget
    assert _hello(engine, clock, "alice").blocked == "limit.user.per_hour"
    # once the hour (and the second of slack) is over, everyone is counted again
    clock.advance(3601 + 30)
    assert _hello(engine, clock, "newcomer").fired == "hello"
    assert _hello(engine, clock, "alice").fired == "hello"


def test_a_full_store_refuses_a_new_key_instead_of_evicting() -> None:
    clock = VirtualClock()
    store = MemoryStore(clock.now, maxsize=2)
    store.record(("count_user", "alice"), 0.0, 3601.0, 5)
    store.start_cooldown(("user", "alice"), 0.0, 60.0, 61.0)
    assert not store.has_room([("count_user", "mallory")])
    assert store.has_room([("count_user", "alice"), ("user", "alice")])
    with pytest.raises(StateFull):
        store.record(("count_user", "mallory"), 0.0, 3601.0, 5)
    assert store.count_since(("count_user", "alice"), 0.0) == 1
    clock.set(61.0)  # alice's cooldown is over: its room can be reused
    assert store.has_room([("count_user", "mallory")])
    store.record(("count_user", "mallory"), 61.0, 3662.0, 5)
    assert store.count_since(("count_user", "alice"), 0.0) == 1


async def test_state_full_is_counted_in_the_metrics(
    tmp_path: Path, nats_server: EmbeddedNats, client: RobotClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY_VALUE)
    cfg = write_config(tmp_path, nats_url=nats_server.url, api_base="http://127.0.0.1:9/v1",
                       rules=FLOOD_RULES)
    bot = make_bot(cfg)
    await bot.start()
    try:
        assert bot.engine is not None
        bot.engine.state = MemoryStore(bot.clock.now, maxsize=1)
        await client.chat("alice", "hello")
        await client.chat("mallory", "hello")
        await settle(bot, client, 2)
        said = says(client.drain())
    finally:
        await bot.stop(grace=1.0)
    assert said == ["hi alice"]
    labels = {"rule": "hello", "outcome": "blocked", "reason": "state_full"}
    assert metric(bot, "kryten_rules_decisions_total", labels) == 1
