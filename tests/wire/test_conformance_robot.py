"""Conformance with the real Kryten-Robot: what it publishes we decode, what we send it accepts.

kryten-robot installs a top-level ``kryten`` package that clashes with
kryten-py, so it runs in a virtualenv of its own (``.cache/robot-venv`` at the
repo root, made and cached by ``tests/conformance/venvs.py``)
behind ``tests/conformance/robot_probe.py``, a line-oriented JSON subprocess.

The test skips only when pip cannot install the package (offline); with the
``CI`` environment variable set that is a failure instead, so CI never passes
without having actually checked the bridge.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kryten_rules.engine.room import MemoryRoom
from kryten_rules.events import ChatEvent, Media
from kryten_rules.intake import Intake
from kryten_rules.senders import Ignored, IgnoreReason
from kryten_rules.wire import (
    USERLIST_KEY,
    Decoded,
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
from kryten_rules.wire.playlist import (
    CURRENT_KEY,
    ITEMS_KEY,
    parse_current_kv,
    parse_items_kv,
    playlist_bucket,
)
from tests.conformance.venvs import pinned_python

ROBOT_VERSION = "1.12.6"
VENV_NAME = "robot-venv"  # .cache/robot-venv at the repo root, shared with test_conformance_kryten
PROBE = Path(__file__).resolve().parents[1] / "conformance" / "robot_probe.py"
CHANNEL = "420Grindhouse"
DOMAIN = "cytu.be"


def _robot_python() -> Path:
    """The cached venv's python (tests/conformance/venvs.py), built first if needed."""
    return pinned_python(VENV_NAME, "kryten-robot", ROBOT_VERSION)


class Probe:
    """One long-lived robot_probe.py process; one JSON line out, one back."""

    def __init__(self, python: Path) -> None:
        self.proc = subprocess.Popen(
            [str(python), str(PROBE)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            cwd=str(PROBE.parent),  # keep the repo off sys.path; only the venv's kryten
        )

    def ask(self, **request: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "robot probe exited"
        response: dict[str, Any] = json.loads(line)
        assert "error" not in response, response["error"]
        return response

    def event(self, event_name: str, payload: Any, **extra: Any) -> tuple[str, bytes]:
        r = self.ask(
            op="event",
            event_name=event_name,
            payload=payload,
            channel=CHANNEL,
            domain=DOMAIN,
            **extra,
        )
        return r["subject"], base64.b64decode(r["data_b64"])

    def command(
        self, data: bytes, *, domain: str = DOMAIN, channel: str = CHANNEL
    ) -> dict[str, Any]:
        return self.ask(
            op="command", data_b64=base64.b64encode(data).decode(), domain=domain, channel=channel
        )

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def robot() -> Iterator[Probe]:
    probe = Probe(_robot_python())
    try:
        yield probe
    finally:
        probe.close()


SAY_OK = {"service": "robot", "command": "say", "success": True, "data": {"success": True}}
PM_OK = {"service": "robot", "command": "pm", "success": True, "data": {"success": True}}

TEXTS = [
    "hello",
    'it\'s <b>bold</b> & "quoted" \\ back\\slash',
    "héllo wörld — ünïcode ✓ 日本語 العربية עברית",
    "emoji 👋🏽👨‍👩‍👧 and flags 🇩🇪",
    "combining e\u0301 and zero\u200bwidth and rtl \u202eoverride",
    "line one\nline two\ttab",
    "x" * 320,
    "long " * 2000,
    "a/slash later",
]


def test_pinned_version(robot: Probe) -> None:
    assert robot.ask(op="version") == {"version": ROBOT_VERSION}


# --------------------------------------------------------------------------- subjects


@pytest.mark.parametrize(
    "channel",
    ["420Grindhouse", "lounge", "My Channel!", "a.b.c", "Ünïcödé", "we*ird>chan/nel", "x" * 150],
)
def test_subjects_match_subject_builder(robot: Probe, channel: str) -> None:
    assert normalize_token(channel) == robot.ask(op="normalize", token=channel)["token"]
    r = robot.ask(op="event", event_name="chatMsg", payload={}, channel=channel, domain=DOMAIN)
    assert r["subject"] == event_subject(channel, "chatMsg")
    assert r["subject"].startswith(subscribe_subject(channel)[:-1])


# --------------------------------------------------------------------------- events


def _decode(robot: Probe, event_name: str, payload: Any) -> Decoded | None:
    ts, cid = "2024-01-15T10:30:00.123456+00:00", "550e8400-e29b-41d4-a716-446655440000"
    subject, data = robot.event(event_name, payload, timestamp=ts, correlation_id=cid)
    assert subject == event_subject(CHANNEL, event_name)
    # Our envelope() is byte-identical to RawEvent.to_bytes().
    assert data == envelope(
        event_name, payload, channel=CHANNEL, domain=DOMAIN, timestamp=ts, correlation_id=cid
    )
    decoded = decode_message(subject, data)
    if decoded is not None:
        assert (decoded.channel, decoded.domain, decoded.correlation_id) == (CHANNEL, DOMAIN, cid)
        assert decoded.event_name == event_name
    return decoded


def test_envelope_defaults_match_raw_event(robot: Probe) -> None:
    _, data = robot.event("chatMsg", {"username": "a", "msg": "b"})
    theirs, ours = (
        json.loads(data),
        json.loads(envelope("chatMsg", {}, channel=CHANNEL, domain=DOMAIN)),
    )
    assert list(theirs) == list(ours)
    assert theirs["timestamp"][-6:] == ours["timestamp"][-6:] == "+00:00"
    assert len(theirs["correlation_id"]) == len(ours["correlation_id"]) == 36


@pytest.mark.parametrize("text", TEXTS)
def test_chatmsg(robot: Probe, text: str) -> None:
    payload = {"username": "alice", "msg": text, "meta": {}, "time": 1_700_000_000_123}
    d = _decode(robot, "chatMsg", payload)
    assert d is not None
    assert d.event == ChatEvent(kind="chatmsg", user="alice", text=text, at=1_700_000_000.123)
    assert d.at == 1_700_000_000.123 and not d.muted


def test_chatmsg_shadow_and_odd_unicode(robot: Probe) -> None:
    payload = {"username": "troll", "msg": "a\ud800b\x00c", "meta": {"shadow": True}, "time": 5}
    d = _decode(robot, "chatMsg", payload)
    assert d is not None and d.muted
    assert d.event == ChatEvent(kind="chatmsg", user="troll", text="a\ufffdbc", at=0.005)


@pytest.mark.parametrize(
    ("user", "meta"),
    [("[server]", {"addClass": "server-whisper"}), ("[voteskip]", {})],
)
def test_cytube_notice_through_the_robot_is_ignored(
    robot: Probe, user: str, meta: dict[str, Any]
) -> None:
    # as measured on CyTube 3.86: a moderator bot gets these as chatMsg
    text = "alice joined (aliases: RulesBot, alice)"
    d = _decode(robot, "chatMsg", {"username": user, "msg": text, "meta": meta, "time": 5})
    assert d is not None and d.add_class == meta.get("addClass", "")
    result = Intake(bot_name="RulesBot").admit(d, 0.005)
    assert isinstance(result, Ignored) and result.reason == IgnoreReason.NOTICE


def test_pm(robot: Probe) -> None:
    payload = {"username": "alice", "msg": "psst", "meta": {}, "time": 1_000, "to": "RulesBot"}
    d = _decode(robot, "pm", payload)
    assert d is not None
    assert d.event == ChatEvent(kind="pm", user="alice", text="psst", at=1.0, to="RulesBot")


def test_user_events(robot: Probe) -> None:
    user = {"name": "bob", "rank": 2, "profile": {"image": "", "text": ""}, "meta": {"afk": False}}
    d = _decode(robot, "addUser", user)
    assert d is not None and d.event == UserUpdate("bob", 2, joined=True)
    assert d.chat == ChatEvent(kind="adduser", user="bob", rank=2)
    d = _decode(robot, "setUserRank", {"name": "bob", "rank": 3})
    assert d is not None and d.event == UserUpdate("bob", 3)
    d = _decode(robot, "userLeave", {"name": "bob"})
    assert d is not None and d.event == UserUpdate("bob", None, left=True)


def test_userlist(robot: Probe) -> None:
    users = [
        {"name": "alice", "rank": 0, "profile": {}, "meta": {"afk": False, "muted": False}},
        {"name": "Owner", "rank": 5, "profile": {}, "meta": {}},
    ]
    d = _decode(robot, "userlist", users)
    assert d is not None and d.event == UserList((("alice", 0), ("Owner", 5)))


def test_changemedia(robot: Probe) -> None:
    payload = {
        "id": "dQw4w9WgXcQ",
        "title": "Rick &amp; Roll",
        "seconds": 212,
        "duration": "03:32",
        "type": "yt",
        "meta": {},
        "currentTime": -3,
        "paused": False,
    }
    d = _decode(robot, "changeMedia", payload)
    assert d is not None
    media = Media(title="Rick &amp; Roll", duration=212.0, type="yt", id="dQw4w9WgXcQ")
    assert d.event == ChatEvent(kind="changemedia", media=media)


def test_unused_events_ignored(robot: Probe) -> None:
    assert _decode(robot, "mediaUpdate", {"currentTime": 12.5, "paused": False}) is None
    assert _decode(robot, "usercount", 12) is None


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_any_chat_text_survives_the_robot(robot: Probe, text: str) -> None:
    d = _decode(robot, "chatMsg", {"username": "u", "msg": text, "time": 1})
    assert d is not None and d.event.text == text.replace("\x00", "")  # type: ignore[union-attr]


# --------------------------------------------------------------------------- commands


@pytest.mark.parametrize("text", TEXTS)
def test_say_accepted(robot: Probe, text: str) -> None:
    r = robot.command(say_command(text, domain=DOMAIN, channel=CHANNEL))
    assert r == {"emitted": [["chatMsg", {"msg": text}]], "reply": SAY_OK}


@pytest.mark.parametrize("text", TEXTS)
def test_pm_accepted(robot: Probe, text: str) -> None:
    r = robot.command(pm_command("alice", text, domain=DOMAIN, channel=CHANNEL))
    assert r == {"emitted": [["pm", {"to": "alice", "msg": text}]], "reply": PM_OK}


def test_channel_match_ignores_case(robot: Probe) -> None:
    r = robot.command(say_command("hi", domain=DOMAIN, channel="420GRINDHOUSE"))
    assert r["emitted"] == [["chatMsg", {"msg": "hi"}]]


@pytest.mark.parametrize(
    ("domain", "channel"),
    [
        ("Cytu.be", CHANNEL),
        ("cytube", CHANNEL),
        ("cytu.be", "lounge"),
        ("cytu.be", "420grind.house"),
    ],
)
def test_routing_mismatch_is_dropped_silently(robot: Probe, domain: str, channel: str) -> None:
    """The robot neither executes nor answers a command for another domain/channel:
    the domain must match its config exactly (case and dots), the channel up to case."""
    r = robot.command(say_command("hi", domain=domain, channel=channel))
    assert r == {"emitted": [], "reply": None}


def test_what_we_refuse_the_robot_would_refuse(robot: Probe) -> None:
    empty = json.dumps({"command": "say", "args": {"message": ""}, "meta": {}}).encode()
    assert robot.command(empty) == {
        "emitted": [],
        "reply": {"service": "robot", "success": False, "error": "Missing message"},
    }
    with pytest.raises(ValueError):
        say_command("", domain=DOMAIN, channel=CHANNEL)


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=400).filter(lambda s: not s.lstrip().startswith("/")))
def test_any_say_text_reaches_cytube_verbatim(robot: Probe, text: str) -> None:
    r = robot.command(say_command(text, domain=DOMAIN, channel=CHANNEL))
    assert r == {"emitted": [["chatMsg", {"msg": text}]], "reply": SAY_OK}


# --------------------------------------------------------------------------- KV userlist


def test_userlist_kv(robot: Probe) -> None:
    events = [
        ["userlist", [{"name": "alice", "rank": 1, "profile": {}, "meta": {"afk": False}}]],
        ["addUser", {"name": "bob", "rank": 0, "profile": {}, "meta": {}}],
        ["setUserRank", {"name": "bob", "rank": 2}],
        ["addUser", {"name": "carol", "rank": 3, "profile": {}, "meta": {}}],
        ["userLeave", {"name": "carol"}],
    ]
    r = robot.ask(op="kv", channel=CHANNEL, events=events)
    assert userlist_bucket(CHANNEL) in r["buckets"]
    puts = [
        (key, base64.b64decode(v))
        for bucket, key, v in r["puts"]
        if bucket == userlist_bucket(CHANNEL)
    ]
    assert puts and {key for key, _ in puts} == {USERLIST_KEY}
    snapshots = [parse_userlist_kv(value) for _, value in puts]
    assert snapshots[0] == [("alice", 1)]
    assert snapshots[2] == [("alice", 1), ("bob", 2)]  # setUserRank leaves {"name", "rank"}
    assert snapshots[-1] == [("alice", 1), ("bob", 2)]


# --- the playlist: the robot's KV and our room agree ---------------------------------------


def _item(uid: int, title: str, seconds: int = 60) -> dict[str, Any]:
    media = {"id": title.lower(), "title": title, "seconds": seconds, "type": "yt", "meta": {}}
    return {"uid": uid, "media": media, "temp": False, "queueby": "bob"}


def _playing(title: str, seconds: int = 60) -> dict[str, Any]:
    return {
        "id": title.lower(),
        "title": title,
        "seconds": seconds,
        "duration": "01:00",
        "type": "yt",
        "meta": {},
        "currentTime": -3,
        "paused": False,
    }


PLAYLIST_STORY = [
    ["playlist", [_item(1, "A"), _item(2, "B"), _item(3, "C")]],
    ["setCurrent", 1],
    ["changeMedia", _playing("A")],
    ["queue", {"item": _item(4, "D"), "after": 1}],
    ["queue", {"item": _item(5, "E"), "after": 99}],  # an unknown uid: appended
    ["moveVideo", {"from": 5, "after": "prepend"}],
    ["moveVideo", {"from": 3, "after": 4}],
    ["delete", {"uid": 2}],
    ["setCurrent", 4],
    ["changeMedia", _playing("D")],
]


def test_the_playlist_we_keep_is_the_one_the_robot_writes(robot: Probe) -> None:
    r = robot.ask(op="kv", channel=CHANNEL, events=PLAYLIST_STORY)
    bucket = playlist_bucket(CHANNEL)
    assert bucket in r["buckets"]
    last = {key: base64.b64decode(v) for b, key, v in r["puts"] if b == bucket}
    robot_items = parse_items_kv(last[ITEMS_KEY])
    robot_current = parse_current_kv(last[CURRENT_KEY])
    room = MemoryRoom()
    for name, payload in PLAYLIST_STORY:
        decoded = _decode(robot, name, payload)
        assert decoded is not None, name
        room.observe(decoded.event)
    assert room.playlist.items == list(robot_items)
    assert [i.media.title for i in robot_items] == ["E", "A", "D", "C"]
    assert robot_current == (Media("D", 60.0, "yt", "d"), "4")
    assert room.playlist.current == "4" and room.playlist.next == Media("C", 60.0, "yt", "c")
