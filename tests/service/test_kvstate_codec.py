"""The JetStream state backend's keys and values, and merging and outages in StateSync.

No server here: the encodings are pure functions, and StateSync is driven
over the reference MemoryBackend (tests/test_kvstate.py has the real bucket).
"""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kryten_rules import VirtualClock
from kryten_rules.engine.evaluate import SHADOW
from kryten_rules.engine.state import Cooldown, Counter, Key, MemoryStore, Value
from kryten_rules.service.kvcodec import (
    channel_prefix,
    decode_key,
    decode_token,
    decode_value,
    encode_key,
    encode_token,
    encode_value,
    fit_value,
)
from kryten_rules.service.statesync import MemoryBackend, StateSync, merge_value
from tests.nats_fixtures import WAIT

# nats-py's own check of a KV key (nats/js/kv.py), and no empty token
KV_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")


def valid_kv_key(key: str) -> bool:
    return bool(KV_KEY.match(key)) and "" not in key.split(".")


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("alice", "alice"),
        ("count_rule", "count_rule"),
        ("al ice", "al=20ice"),
        ("a.b", "a=2Eb"),
        ("x=y", "x=3Dy"),
        ("ü", "=C3=BC"),
        (SHADOW, "=7Eshadow"),
        ("", "="),
    ],
)
def test_a_token_keeps_what_is_safe_and_escapes_the_rest(text: str, token: str) -> None:
    assert encode_token(text) == token
    assert decode_token(token) == text


def test_keys_are_namespaced_by_domain_and_channel() -> None:
    prefix = channel_prefix("cytu.be", "TestChannel")
    key = encode_key(prefix, ("user_rule", "Bob Smith", "mention"))
    assert key == "cytu=2Ebe.TestChannel.user_rule.Bob=20Smith.mention"
    assert decode_key(prefix, key) == ("user_rule", "Bob Smith", "mention")
    with pytest.raises(ValueError):
        decode_key(channel_prefix("cytu.be", "Other"), key)


@given(
    domain=st.text(min_size=1, max_size=20),
    channel=st.text(min_size=1, max_size=20),
    key=st.lists(st.text(max_size=30), min_size=1, max_size=4).map(tuple),
)
def test_any_key_round_trips_and_is_a_valid_kv_key(
    domain: str, channel: str, key: Key
) -> None:
    prefix = channel_prefix(domain, channel)
    encoded = encode_key(prefix, key)
    assert valid_kv_key(encoded), encoded
    assert decode_key(prefix, encoded) == key


@pytest.mark.parametrize("token", ["=", "a=4", "a=zz", "a b", "=FF", "é"])
def test_a_token_no_encoder_makes_is_refused(token: str) -> None:
    if token == "=":
        assert decode_token(token) == ""
        return
    with pytest.raises(ValueError):
        decode_token(token)


@pytest.mark.parametrize(
    "value", [Cooldown(100.5, 60.0, 161.5), Counter((1.25, 2.5, 3.0), 5, 1e10)]
)
def test_values_round_trip_as_compact_json(value: Value) -> None:
    data = encode_value(value, "w1")
    assert b" " not in data
    assert decode_value(data) == (value, "w1")


def test_a_budget_is_stored_to_the_millisecond_as_steps() -> None:
    value = Counter((1796690000.1234, 1796690000.5, 1796690061.0), 3, 1796700000.0)
    data = encode_value(value, "w")
    assert b'"n":[1796690000123,377,60500]' in data
    assert decode_value(data)[0] == Counter((1796690000.123, 1796690000.5, 1796690061.0), 3,
                                            1796700000.0)


def test_a_budget_of_a_hundred_thousand_firings_fits_one_nats_message() -> None:
    times = tuple(1796690000.0 + i * 0.8 for i in range(100_000))  # a day at one per 0.8 s
    data, cut = fit_value(Counter(times, 100_001, 1796800000.0), "w", (1 << 20) - 4096)
    assert cut == 0 and len(data) < 600_000


def test_a_budget_bigger_than_a_message_keeps_its_newest_timestamps() -> None:
    times = tuple(1796690000.0 + i * 0.8 for i in range(400_000))
    limit = (1 << 20) - 4096
    data, cut = fit_value(Counter(times, 400_001, 1796800000.0), "w", limit)
    assert len(data) <= limit and 0 < cut < 400_000
    kept = decode_value(data)[0]
    assert isinstance(kept, Counter) and len(kept.times) == 400_000 - cut
    assert kept.times[-1] == round(times[-1] * 1000) / 1000  # the newest are the ones kept


def test_a_firing_seen_here_and_read_back_rounded_counts_once() -> None:
    here = Counter((100.0001234, 200.5), 5, 900.0)
    back = decode_value(encode_value(here, "w"))[0]
    assert isinstance(back, Counter)
    merged = merge_value(here, back)
    assert isinstance(merged, Counter) and len(merged.times) == 2


@pytest.mark.parametrize(
    "data",
    [b"", b"nope", b"[]", b'{"exp": 1}', b'{"cd": [1], "exp": 2}', b'{"cd": [1, 2]}',
     b'{"n": [1], "keep": true, "exp": 2}', b'{"cd": [1, "x"], "exp": 2}',
     b'{"n": [5, -1], "keep": 2, "exp": 2}', b'{"n": [1.5], "keep": 2, "exp": 2}',
     b'{"cd": [1, 2], "exp": NaN}'],
)
def test_a_bad_stored_value_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_value(data)


# --- merging ----------------------------------------------------------------------------


def test_the_cooldown_that_ends_later_wins() -> None:
    early, late = Cooldown(0.0, 10.0, 11.0), Cooldown(5.0, 10.0, 16.0)
    assert merge_value(early, late) == merge_value(late, early) == late
    assert merge_value(None, early) == early


def test_a_budget_keeps_both_sides_timestamps_once() -> None:
    mine, theirs = Counter((1.0, 2.0), 3, 50.0), Counter((2.0, 3.0, 4.0), 3, 60.0)
    assert merge_value(mine, theirs) == Counter((2.0, 3.0, 4.0), 3, 60.0)
    assert merge_value(Counter((1.0,), 5, 9.0), Counter((2.0,), 5, 9.0)).times == (1.0, 2.0)


values = st.one_of(
    st.builds(Cooldown, st.integers(0, 50).map(float), st.integers(1, 20).map(float),
              st.integers(60, 90).map(float)),
    st.builds(
        Counter,
        st.lists(st.integers(0, 50).map(float), max_size=6, unique=True).map(
            lambda t: tuple(sorted(t))
        ),
        st.integers(1, 6),
        st.integers(60, 90).map(float),
    ),
)


@given(a=values, b=values)
def test_merging_is_idempotent_and_order_free_for_one_kind(a: Value, b: Value) -> None:
    if type(a) is not type(b):
        assert merge_value(a, b) == b
        return
    ab = merge_value(a, b)
    assert merge_value(ab, b) == ab and merge_value(ab, a) == ab
    if isinstance(a, Cooldown):
        assert ab == merge_value(b, a) or (
            a.fired_at + a.duration == b.fired_at + b.duration and a.fired_at == b.fired_at
        )
    else:
        assert ab == merge_value(b, a) or a.keep != b.keep


# --- outages ----------------------------------------------------------------------------


class Flaky(MemoryBackend):
    """The reference backend, unreachable while ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.recoveries = 0

    async def load(self, keys: object = None) -> dict[Key, Value]:  # type: ignore[override]
        if self.down:
            raise ConnectionError("bucket unreachable")
        return await super().load()

    async def flush(self, changes: dict[Key, Value | None]) -> None:  # type: ignore[override]
        if self.down:
            raise ConnectionError("bucket unreachable")
        await super().flush(changes)

    def recovered(self) -> None:
        self.recoveries += 1


async def test_a_backend_down_at_start_is_a_warning_then_loaded_and_merged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = VirtualClock(100.0)
    backend = Flaky()
    backend.data = {
        ("rule", "a"): Cooldown(95.0, 60.0, 156.0),
        ("count_rule", "b"): Counter((90.0, 91.0), 5, 500.0),
    }
    backend.down = True
    store = MemoryStore(clock.now)
    sync = StateSync(store, backend)
    with caplog.at_level(logging.WARNING, "kryten_rules.service"):
        assert await sync.start() == 0
    assert not sync.loaded and "state backend is unreachable" in caplog.text
    store.record(("count_rule", "b"), 99.0, expires=500.0, keep=5)  # spent meanwhile
    await sync.step()  # still down: kept
    assert not sync.loaded and backend.flushes == 0

    backend.down = False
    await sync.step()
    assert sync.loaded and sync.healthy and backend.recoveries == 1
    assert store.cooldown(("rule", "a")) == (95.0, 60.0)
    # the budget is both sides' firings, here and in the bucket
    assert backend.data[("count_rule", "b")] == Counter((90.0, 91.0, 99.0), 5, 500.0)
    assert store.count_in(("count_rule", "b"), 3600.0, 100.0) == 3


async def test_a_flush_that_fails_keeps_its_changes_until_the_backend_is_back() -> None:
    clock = VirtualClock(10.0)
    backend = Flaky()
    store = MemoryStore(clock.now)
    sync = StateSync(store, backend)
    await sync.start()
    backend.down = True
    store.start_cooldown(("user", "alice"), 10.0, 30.0, expires=41.0)
    await sync.step()
    assert not sync.healthy and backend.data == {}
    backend.down = False
    await sync.step()
    assert sync.healthy and backend.data == {("user", "alice"): Cooldown(10.0, 30.0, 41.0)}
    assert backend.recoveries == 2  # after the load, and after the outage


def test_a_merge_from_another_writer_journals_only_what_is_newer_here() -> None:
    clock = VirtualClock(10.0)
    store = MemoryStore(clock.now)
    sync = StateSync(store, MemoryBackend())
    store.track_changes()
    store.record(("count_global",), 9.0, expires=100.0, keep=3)
    store.changes()
    theirs: dict[Key, Value] = {
        ("count_global",): Counter((8.0,), 3, 100.0),
        ("rule", "x"): Cooldown(9.0, 5.0, 15.0),
    }
    assert sync.apply(theirs) == 2
    assert store.changes() == {("count_global",): Counter((8.0, 9.0), 3, 100.0)}


class Stubborn(MemoryBackend):
    """A backend whose watch swallows the first cancel, as Python 3.11's
    ``asyncio.wait_for`` (inside nats-py's KV watcher) sometimes does."""

    def __init__(self) -> None:
        super().__init__()
        self.watching = asyncio.Event()
        self.swallowed = 0

    async def watch(self, apply: object) -> None:
        self.watching.set()
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if self.swallowed:
                    raise
                self.swallowed += 1


async def test_stopping_the_sync_ends_a_watch_that_swallowed_a_cancel() -> None:
    """Before, the sync's task waited for ever on such a watch, and so did the bot's stop."""
    backend = Stubborn()
    sync = StateSync(MemoryStore(VirtualClock().now), backend, interval=3600.0)
    await sync.start()
    task = asyncio.create_task(sync.run())
    await asyncio.wait_for(backend.watching.wait(), WAIT)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=WAIT)
    assert task in done and task.cancelled() and backend.swallowed == 1
