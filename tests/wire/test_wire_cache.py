"""``normalize_token`` is cached (decoding checks every event's subject with it):
the cached answers are the function's own, and the cache stays bounded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kryten_rules.wire import (
    MalformedEvent,
    decode_message,
    envelope,
    event_subject,
    normalize_token,
)


@given(st.text(max_size=150))
def test_cached_answer_is_the_uncached_one(token: str) -> None:
    assert normalize_token(token) == normalize_token.__wrapped__(token)
    assert normalize_token(token) == normalize_token.__wrapped__(token)  # from the cache


def test_cache_is_bounded_under_many_distinct_names() -> None:
    for i in range(5000):
        normalize_token(f"Channel.{i}")
    info = normalize_token.cache_info()
    assert info.maxsize is not None and info.currsize <= info.maxsize


def test_subject_check_still_rejects_a_mismatch_after_caching() -> None:
    data = envelope(
        "chatMsg",
        {"username": "a", "msg": "hi", "meta": {}, "time": 1},
        channel="Ch",
        domain="cytu.be",
    )
    good = event_subject("Ch", "chatMsg")
    assert decode_message(good, data) is not None
    assert decode_message(good, data) is not None  # second time through the cache
    bad = event_subject("Other", "chatMsg")
    with pytest.raises(MalformedEvent, match="subject does not match"):
        decode_message(bad, data)
