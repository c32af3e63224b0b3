"""Unit tests for the Kryten-Robot wire protocol (``kryten_rules.wire``).

The conformance tests against the real kryten-robot package live in
``test_conformance_robot.py``; these pin our own behaviour, above all that
hostile input yields :class:`MalformedEvent` with a short reason and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kryten_rules.events import ChatEvent, Media
from kryten_rules.wire import (
    COMMAND_SUBJECT,
    MAX_MESSAGE_BYTES,
    USERLIST_KEY,
    Decoded,
    MalformedEvent,
    UserList,
    UserUpdate,
    decode_message,
    envelope,
    event_subject,
    normalize_token,
    parse_userlist_kv,
    pm_command,
    say_command,
    subscribe_subject,
    userlist_bucket,
)

CHANNEL = "420Grindhouse"
DOMAIN = "cytu.be"


def env(event_name: str, payload: Any, **overrides: Any) -> tuple[str, bytes]:
    """A (subject, data) pair exactly as Kryten-Robot would publish it."""
    body = {
        "event_name": event_name,
        "payload": payload,
        "channel": CHANNEL,
        "domain": DOMAIN,
        "timestamp": "2024-01-15T10:30:00.123456+00:00",
        "correlation_id": "550e8400-e29b-41d4-a716-446655440000",
    }
    body.update(overrides)
    return event_subject(CHANNEL, event_name), json.dumps(body).encode()


def chat(**payload: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"username": "alice", "msg": "hi", "meta": {}, "time": 1_700_000_000_000}
    base.update(payload)
    return base


def malformed(subject: str, data: Any) -> str:
    with pytest.raises(MalformedEvent) as info:
        decode_message(subject, data)
    reason = info.value.reason
    assert reason == str(info.value)
    assert 0 < len(reason) <= 40, reason
    return reason


# --------------------------------------------------------------------------- subjects


def test_subjects() -> None:
    assert event_subject("420Grindhouse", "chatMsg") == "kryten.events.cytube.420grindhouse.chatmsg"
    assert subscribe_subject("420Grindhouse") == "kryten.events.cytube.420grindhouse.>"
    assert subscribe_subject("my.Chan nel!") == "kryten.events.cytube.mychan-nel.>"
    assert COMMAND_SUBJECT == "kryten.robot.command"


def test_normalize_token_matches_kryten_rules() -> None:
    assert normalize_token("Cytu.be") == "cytube"
    assert normalize_token("My Channel!") == "my-channel"
    assert normalize_token("a*b>c/d") == "abcd"
    assert normalize_token("x" * 150) == "x" * 100


@pytest.mark.parametrize("channel", ["", "...", "!?*>"])
def test_empty_channel_is_an_error(channel: str) -> None:
    with pytest.raises(ValueError):
        subscribe_subject(channel)
    with pytest.raises(ValueError):
        event_subject(channel, "chatMsg")


def test_userlist_bucket_keeps_case() -> None:
    assert userlist_bucket("420Grindhouse") == "kryten_420Grindhouse_userlist"
    assert USERLIST_KEY == "users"
    with pytest.raises(ValueError):
        userlist_bucket("")


# --------------------------------------------------------------------------- decoding: good


def test_chatmsg() -> None:
    d = decode_message(*env("chatMsg", chat(msg="it&#39;s <b>x</b>", meta={"shadow": False})))
    assert d == Decoded(
        event_name="chatMsg",
        event=ChatEvent(kind="chatmsg", user="alice", text="it&#39;s <b>x</b>", at=1_700_000_000.0),
        at=1_700_000_000.0,
        muted=False,
        channel=CHANNEL,
        domain=DOMAIN,
        correlation_id="550e8400-e29b-41d4-a716-446655440000",
    )
    assert d.chat is d.event


def test_chatmsg_shadow_and_optional_fields() -> None:
    d = decode_message(*env("chatMsg", chat(meta={"shadow": True, "addClass": None})))
    assert d is not None and d.muted
    p = chat()
    del p["meta"], p["time"]
    d = decode_message(*env("chatMsg", p))
    assert d is not None and d.at is None and d.event == ChatEvent(user="alice", text="hi")
    d = decode_message(*env("chatMsg", chat(meta=None, time=1_700_000_000_500.0)))
    assert d is not None and d.at == pytest.approx(1_700_000_000.5)


def test_pm() -> None:
    d = decode_message(*env("pm", chat(to="Bot")))
    assert d is not None
    assert d.event == ChatEvent(kind="pm", user="alice", text="hi", at=1_700_000_000.0, to="Bot")


def test_user_updates() -> None:
    d = decode_message(*env("addUser", {"name": "bob", "rank": 2, "profile": {}, "meta": {}}))
    assert d is not None and d.event == UserUpdate("bob", 2, joined=True)
    assert d.chat == ChatEvent(kind="adduser", user="bob", rank=2)
    d = decode_message(*env("setUserRank", {"name": "bob", "rank": 3.0}))
    assert d is not None and d.event == UserUpdate("bob", 3) and d.chat is None
    d = decode_message(*env("userLeave", {"name": "bob"}))
    assert d is not None and d.event == UserUpdate("bob", None, left=True) and d.chat is None


def test_userlist_skips_bad_entries() -> None:
    users = [
        {"name": "a", "rank": 0, "meta": {"afk": False}},
        {"name": "b", "rank": 255},
        {"name": "c"},
        {"name": "", "rank": 1},
        {"name": "d", "rank": True},
        "junk",
        None,
    ]
    d = decode_message(*env("userlist", users))
    assert d is not None and d.event == UserList((("a", 0), ("b", 255)))
    assert d.chat is None


def test_changemedia() -> None:
    payload = {
        "id": "dQw4w9WgXcQ",
        "title": "Never &amp; Gonna",
        "seconds": 212,
        "duration": "03:32",
        "type": "yt",
        "meta": {},
        "currentTime": -3,
        "paused": False,
    }
    d = decode_message(*env("changeMedia", payload))
    assert d is not None
    assert d.event == ChatEvent(
        kind="changemedia",
        media=Media(title="Never &amp; Gonna", duration=212.0, type="yt", id="dQw4w9WgXcQ"),
    )
    d = decode_message(*env("changeMedia", {"title": "live", "id": 42}))
    assert d is not None and d.event.media == Media(title="live", duration=0.0, id="42")  # type: ignore[union-attr]


def test_unknown_events_are_ignored() -> None:
    assert decode_message(*env("mediaUpdate", {"currentTime": 1})) is None
    assert decode_message(*env("usercount", 7)) is None
    assert decode_message(*env("setMotd", "hello")) is None


def test_event_name_case_follows_kryten_py() -> None:
    d = decode_message(*env("CHATMSG", chat()))
    assert d is not None and d.event_name == "CHATMSG" and d.event.kind == "chatmsg"  # type: ignore[union-attr]


def test_bytes_like_inputs() -> None:
    subject, data = env("chatMsg", chat())
    assert decode_message(subject, bytearray(data)) == decode_message(subject, memoryview(data))


# --------------------------------------------------------------------------- decoding: odd Unicode


def test_lone_surrogates_in_text_become_replacement_char() -> None:
    subject = event_subject(CHANNEL, "chatMsg")
    data = (
        b'{"event_name": "chatMsg", "channel": "420Grindhouse", "domain": "cytu.be", '
        b'"payload": {"username": "alice", "msg": "a\\ud800b\\udfffc\\ud83d\\ude00", "time": 1}}'
    )
    d = decode_message(subject, data)
    assert d is not None and d.event.text == "a\ufffdb\ufffdc\U0001f600"  # type: ignore[union-attr]


def test_nul_removed_from_text() -> None:
    d = decode_message(*env("chatMsg", chat(msg="a\x00b\u0000c")))
    assert d is not None and d.event.text == "abc"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "name", ["al\x00ice", "al\ud800ice", "a b", "", "x" * 65, "a\u200bb", "a\nb"]
)
def test_odd_user_names_rejected(name: str) -> None:
    subject, data = env("chatMsg", chat(username=name))
    assert malformed(subject, data) == "bad payload.username"


# --------------------------------------------------------------------------- decoding: malformed


def test_too_large_rejected_before_parsing() -> None:
    subject = event_subject(CHANNEL, "chatMsg")
    assert malformed(subject, b"x" * (MAX_MESSAGE_BYTES + 1)) == "too large"
    # Just under the limit but valid: accepted.
    pad = MAX_MESSAGE_BYTES - len(env("chatMsg", chat(msg=""))[1])
    d = decode_message(*env("chatMsg", chat(msg="y" * pad)))
    assert d is not None and len(d.event.text) == pad  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe", "invalid UTF-8"),
        (b'{"a": "\xe2\x82"}', "invalid UTF-8"),
        (b'"\xed\xa0\x80"', "invalid UTF-8"),  # surrogate encoded as UTF-8
        (b"", "bad JSON"),
        (b"{", "bad JSON"),
        (b"{'a': 1}", "bad JSON"),
        (b"\xef\xbb\xbf{}", "bad JSON"),  # BOM
        (b'{"x": NaN}', "bad JSON"),
        (b'{"x": -Infinity}', "bad JSON"),
        (b"1" * 5000, "bad JSON"),  # over Python's int digit limit
        (b"[" * 200_000 + b"]" * 200_000, "too deeply nested"),
        (b"[]", "not an object"),
        (b'"chatMsg"', "not an object"),
        (b"null", "not an object"),
        (b"3", "not an object"),
        (b'{"payload": {}, "channel": "c", "domain": "d"}', "missing event_name"),
        (b'{"event_name": 1, "payload": {}, "channel": "c", "domain": "d"}', "bad event_name"),
        (b'{"event_name": "chatMsg", "payload": {}, "domain": "d"}', "missing channel"),
        (
            b'{"event_name": "chatMsg", "payload": {}, "channel": null, "domain": "d"}',
            "bad channel",
        ),
        (b'{"event_name": "chatMsg", "payload": {}, "channel": "c"}', "missing domain"),
        (b'{"event_name": "chatMsg", "channel": "c", "domain": "d"}', "missing payload"),
        (
            b'{"event_name": "chatMsg", "payload": {}, "channel": "c", "domain": "d", '
            b'"timestamp": 1}',
            "bad timestamp",
        ),
    ],
)
def test_malformed_envelopes(data: bytes, reason: str) -> None:
    assert malformed(event_subject(CHANNEL, "chatMsg"), data) == reason


def test_not_bytes() -> None:
    assert malformed("kryten.events.cytube.c.chatmsg", "{}") == "not bytes"
    assert malformed("kryten.events.cytube.c.chatmsg", None) == "not bytes"
    assert malformed(None, b"{}") == "bad subject"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "subject",
    [
        "kryten.events.cytube.420grindhouse.pm",
        "kryten.events.cytube.otherchannel.chatmsg",
        "kryten.events.cytube.420Grindhouse.chatMsg",
        "",
        "chatmsg",
    ],
)
def test_subject_must_match_envelope(subject: str) -> None:
    _, data = env("chatMsg", chat())
    assert malformed(subject, data) == "subject does not match envelope"


@pytest.mark.parametrize(
    ("event_name", "payload", "reason"),
    [
        ("chatMsg", [], "bad payload"),
        ("chatMsg", None, "bad payload"),
        ("chatMsg", {"msg": "hi"}, "missing payload.username"),
        ("chatMsg", chat(username=5), "bad payload.username"),
        ("chatMsg", {"username": "a"}, "missing payload.msg"),
        ("chatMsg", chat(msg=None), "bad payload.msg"),
        ("chatMsg", chat(msg=["x"]), "bad payload.msg"),
        ("chatMsg", chat(meta="shadow"), "bad payload.meta"),
        ("chatMsg", chat(time="1700000000000"), "bad payload.time"),
        ("chatMsg", chat(time=True), "bad payload.time"),
        ("chatMsg", chat(time=-1), "bad payload.time"),
        ("chatMsg", chat(time=1e308 * 10), "bad JSON"),  # json.dumps writes Infinity
        ("chatMsg", chat(time=10**400), "bad payload.time"),  # float() overflows
        ("changeMedia", {"title": "t", "seconds": -(10**400)}, "bad payload.seconds"),
        ("pm", chat(), "missing payload.to"),
        ("pm", chat(to=""), "bad payload.to"),
        ("addUser", {"name": "bob"}, "missing payload.rank"),
        ("addUser", {"name": "bob", "rank": "2"}, "bad payload.rank"),
        ("addUser", {"name": "bob", "rank": True}, "bad payload.rank"),
        ("addUser", {"name": "bob", "rank": 1.5}, "bad payload.rank"),
        ("addUser", {"name": "bob", "rank": 10**30}, "bad payload.rank"),
        ("addUser", {"rank": 1}, "missing payload.name"),
        ("addUser", "bob", "bad payload"),
        ("setUserRank", {"name": "bob", "rank": None}, "bad payload.rank"),
        ("userLeave", {}, "missing payload.name"),
        ("userLeave", {"name": 7}, "bad payload.name"),
        ("userlist", {"name": "bob", "rank": 1}, "bad payload"),
        ("changeMedia", {"id": "x"}, "missing payload.title"),
        ("changeMedia", {"title": "t", "seconds": "212"}, "bad payload.seconds"),
        ("changeMedia", {"title": "t", "type": 1}, "bad payload.type"),
        ("changeMedia", {"title": "t", "id": ["x"]}, "bad payload.id"),
        ("changeMedia", [], "bad payload"),
    ],
)
def test_malformed_payloads(event_name: str, payload: Any, reason: str) -> None:
    assert malformed(*env(event_name, payload)) == reason


def test_huge_time_literal() -> None:
    subject = event_subject(CHANNEL, "chatMsg")
    data = (
        b'{"event_name": "chatMsg", "channel": "420Grindhouse", "domain": "cytu.be", '
        b'"payload": {"username": "a", "msg": "m", "time": 1e400}}'
    )
    assert malformed(subject, data) == "bad payload.time"


def test_malformed_event_is_a_value_error() -> None:
    exc = MalformedEvent("bad JSON")
    assert isinstance(exc, ValueError) and exc.reason == "bad JSON"


# --------------------------------------------------------------------------- KV userlist


def test_parse_userlist_kv() -> None:
    value = json.dumps(
        [
            {"name": "a", "rank": 1, "profile": {"image": "", "text": ""}, "meta": {"afk": False}},
            {"name": "b", "rank": 3},
            {"name": "c", "rank": None},
            {"rank": 2},
            7,
        ]
    ).encode()
    assert parse_userlist_kv(value) == [("a", 1), ("b", 3)]
    assert parse_userlist_kv(b"[]") == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{}", "not an array"),
        (b"\xff", "invalid UTF-8"),
        (b"[", "bad JSON"),
        (b"x" * (MAX_MESSAGE_BYTES + 1), "too large"),
    ],
)
def test_parse_userlist_kv_malformed(value: bytes, reason: str) -> None:
    with pytest.raises(MalformedEvent, match=reason):
        parse_userlist_kv(value)


# --------------------------------------------------------------------------- envelope


def test_envelope_shape() -> None:
    data = envelope(
        "chatMsg", {"msg": "é"}, channel=CHANNEL, domain=DOMAIN, timestamp="T", correlation_id="C"
    )
    assert data == (
        b'{"event_name": "chatMsg", "payload": {"msg": "\\u00e9"}, "channel": "420Grindhouse", '
        b'"domain": "cytu.be", "timestamp": "T", "correlation_id": "C"}'
    )
    body = json.loads(envelope("pm", {}, channel=CHANNEL, domain=DOMAIN))
    assert uuid.UUID(body["correlation_id"]).version == 4
    assert datetime.fromisoformat(body["timestamp"]).utcoffset() is not None


def test_envelope_round_trip() -> None:
    payload = chat(to="bot")
    d = decode_message(
        event_subject(CHANNEL, "pm"), envelope("pm", payload, channel=CHANNEL, domain=DOMAIN)
    )
    assert d is not None and d.event == ChatEvent(
        kind="pm", user="alice", text="hi", at=1_700_000_000.0, to="bot"
    )


# --------------------------------------------------------------------------- commands


def _check_meta(meta: dict[str, Any]) -> None:
    assert set(meta) == {"source", "timestamp", "domain", "channel", "request_id"}
    assert meta["source"] == "rules" and meta["domain"] == DOMAIN and meta["channel"] == CHANNEL
    assert uuid.UUID(meta["request_id"]).version == 4
    ts = datetime.fromisoformat(meta["timestamp"])
    assert ts.utcoffset() is not None and ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert abs((datetime.now(UTC) - ts).total_seconds()) < 60


def test_say_command() -> None:
    body = json.loads(say_command("héllo 👋", domain=DOMAIN, channel=CHANNEL))
    assert set(body) == {"command", "args", "meta"}
    assert body["command"] == "say" and body["args"] == {"message": "héllo 👋"}
    _check_meta(body["meta"])
    assert "héllo".encode() in say_command(
        "héllo", domain=DOMAIN, channel=CHANNEL
    )  # UTF-8, not escaped


def test_pm_command() -> None:
    body = json.loads(pm_command("alice", "psst", domain=DOMAIN, channel=CHANNEL, request_id="r1"))
    assert body["command"] == "pm" and body["args"] == {"to": "alice", "msg": "psst"}
    assert body["meta"]["request_id"] == "r1"
    body = json.loads(pm_command("alice", "psst", domain=DOMAIN, channel=CHANNEL, source="x"))
    _check_meta({**body["meta"], "source": "rules"})
    assert body["meta"]["source"] == "x"


@pytest.mark.parametrize("message", ["", "/clear", "  /kick bob", "a\ud800"])
def test_commands_refuse_bad_text(message: str) -> None:
    with pytest.raises(ValueError):
        say_command(message, domain=DOMAIN, channel=CHANNEL)
    with pytest.raises(ValueError):
        pm_command("alice", message, domain=DOMAIN, channel=CHANNEL)


def test_commands_require_routing() -> None:
    with pytest.raises(ValueError):
        say_command("hi", domain="", channel=CHANNEL)
    with pytest.raises(ValueError):
        say_command("hi", domain=DOMAIN, channel="")
    with pytest.raises(ValueError):
        pm_command("", "hi", domain=DOMAIN, channel=CHANNEL)


# --------------------------------------------------------------------------- properties

_odd_chars = st.sampled_from(["\ud800", "\udfff", "\x00", "\u202e", "\ufeff", '"', "\\"])
_text = st.text(alphabet=st.characters() | _odd_chars, max_size=30)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**400, -(10**400), 2**63, -1, 0])
    | st.floats(allow_nan=False)
    | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)
_field_names = [
    "username",
    "msg",
    "meta",
    "time",
    "to",
    "name",
    "rank",
    "title",
    "seconds",
    "type",
    "id",
]
_payload = st.one_of(
    _json,
    st.fixed_dictionaries({}, optional={k: _json for k in _field_names}),
    st.lists(st.fixed_dictionaries({}, optional={"name": _json, "rank": _json}), max_size=4),
)
_event_name = st.sampled_from(
    ["chatMsg", "pm", "addUser", "setUserRank", "userLeave", "userlist", "changeMedia", "other"]
)


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedEvent):
        decode_message("kryten.events.cytube.c.chatmsg", data)
    with contextlib.suppress(MalformedEvent):
        parse_userlist_kv(data)


@settings(max_examples=500)
@given(_event_name, _payload, st.one_of(_text, _json))
def test_arbitrary_envelopes_only_raise_malformed(name: str, payload: Any, channel: Any) -> None:
    body = {"event_name": name, "payload": payload, "channel": channel, "domain": DOMAIN}
    data = json.dumps(body).encode()  # ASCII-escaped, so lone surrogates survive as \ud800
    subject = (
        event_subject(channel, name)
        if isinstance(channel, str) and normalize_token(channel)
        else "x"
    )
    try:
        d = decode_message(subject, data)
    except MalformedEvent as exc:
        assert 0 < len(exc.reason) <= 40
        return
    if d is not None:
        # Whatever we accept must be safe to re-encode as UTF-8 further down.
        repr(d).encode("utf-8")
        if d.chat is not None:
            assert "\x00" not in d.chat.text
            d.chat.text.encode("utf-8")


@settings(max_examples=200)
@given(st.text(min_size=1).filter(lambda s: not s.lstrip().startswith("/")))
def test_say_command_round_trips_any_text(message: str) -> None:
    body = json.loads(say_command(message, domain=DOMAIN, channel=CHANNEL))
    assert body["args"]["message"] == message
