"""The playlist and who is there: decoding the robot's events and KV values, keeping them.

The robot's own ``state_manager`` logic (kryten-robot 1.12.6) is the reference
for how the events change the list: ``queue`` after a uid (an unknown one
appends), ``delete`` by uid, ``moveVideo`` after a uid or to either end.
"""

from __future__ import annotations

import json

import pytest

from kryten_rules.engine.playlist import Playlist
from kryten_rules.engine.room import MemoryRoom
from kryten_rules.events import Media
from kryten_rules.wire import MalformedEvent, UserList, UserUpdate, decode_message, envelope
from kryten_rules.wire import event_subject as subject_of
from kryten_rules.wire.playlist import (
    PlaylistChange,
    PlaylistItem,
    decode_playlist,
    item_of,
    parse_current_kv,
    parse_items_kv,
    playlist_bucket,
)


def item(uid: int, title: str) -> dict[str, object]:
    return {"uid": uid, "media": {"id": title.lower(), "title": title, "seconds": 60, "type": "yt"}}


def decode(name: str, payload: object) -> object:
    data = envelope(name, payload, channel="Chan", domain="cytu.be")
    decoded = decode_message(subject_of("Chan", name), data)
    return decoded.event if decoded is not None else None


def titles(p: Playlist) -> list[str]:
    return [i.media.title for i in p.items]


def test_the_playlist_events_decode_as_the_robot_reads_them() -> None:
    assert decode("playlist", [item(1, "A"), {"junk": True}, item(2, "B")]) == PlaylistChange(
        "playlist",
        (
            PlaylistItem("1", Media("A", 60.0, "yt", "a")),
            PlaylistItem("2", Media("B", 60.0, "yt", "b")),
        ),
    )
    queued = decode("queue", {"item": item(3, "C"), "after": 1})
    assert queued == PlaylistChange(
        "queue", (PlaylistItem("3", Media("C", 60.0, "yt", "c")),), after="1"
    )
    assert decode("delete", {"uid": 2}) == PlaylistChange("delete", uid="2")
    assert decode("moveVideo", {"from": 3, "after": "prepend"}) == PlaylistChange(
        "movevideo", uid="3", after="prepend"
    )
    assert decode("setCurrent", 3) == PlaylistChange("setcurrent", uid="3")
    assert decode("delete", {}) is None  # nothing usable: not an error either


@pytest.mark.parametrize(("name", "payload"), [("playlist", {}), ("queue", []), ("delete", 5)])
def test_a_playlist_event_of_the_wrong_shape_is_malformed(name: str, payload: object) -> None:
    with pytest.raises(MalformedEvent, match="bad payload"):
        decode(name, payload)
    with pytest.raises(ValueError):
        decode_playlist(name.lower(), payload)


def test_flat_items_and_odd_fields_are_read_leniently() -> None:
    flat = item_of({"uid": "9", "title": "Flat", "seconds": "x", "type": 5, "id": 12})
    assert flat == PlaylistItem("9", Media("Flat", 0.0, "", "12"))
    assert item_of({"uid": True, "title": "x"}) is None
    assert item_of({"uid": 1, "media": {"title": None}}) is None


def test_the_kv_values_the_robot_writes() -> None:
    current = {"id": "abc", "title": "Film", "seconds": 90, "type": "yt", "uid": 7, "meta": {}}
    assert parse_current_kv(json.dumps(current).encode()) == (Media("Film", 90.0, "yt", "abc"), "7")
    assert parse_current_kv(b"null") is None
    assert parse_items_kv(json.dumps([item(1, "A")]).encode())[0].uid == "1"
    with pytest.raises(ValueError):
        parse_items_kv(b"{}")
    with pytest.raises(ValueError):
        parse_current_kv(b"\xff")
    assert playlist_bucket("420Grindhouse") == "kryten_420Grindhouse_playlist"


def test_the_playlist_follows_its_events_and_knows_what_comes_next() -> None:
    p = Playlist()
    p.apply(decode_playlist("playlist", [item(1, "A"), item(2, "B"), item(3, "C")]))
    assert p.next is None  # nothing known to be playing
    p.apply(PlaylistChange("setcurrent", uid="1"))
    assert p.next is not None and p.next.title == "B"
    p.apply(decode_playlist("queue", {"item": item(4, "D"), "after": 1}))
    assert titles(p) == ["A", "D", "B", "C"] and p.next.title == "D"
    p.apply(decode_playlist("queue", {"item": item(5, "E"), "after": 99}))  # unknown: appended
    assert titles(p)[-1] == "E"
    p.apply(decode_playlist("movevideo", {"from": 5, "after": "prepend"}))
    assert titles(p) == ["E", "A", "D", "B", "C"]
    p.apply(decode_playlist("movevideo", {"from": 4, "after": "append"}))
    assert titles(p) == ["E", "A", "B", "C", "D"] and p.next.title == "B"
    p.apply(decode_playlist("delete", {"uid": 2}))
    assert p.next.title == "C"
    p.apply(PlaylistChange("setcurrent", uid="4"))  # the last one
    assert p.next is None


def test_a_media_change_without_set_current_finds_its_item_by_id() -> None:
    p = Playlist()
    p.reset([PlaylistItem("1", Media("A", id="a")), PlaylistItem("2", Media("B", id="b"))], None)
    p.playing(Media("A", id="a"))
    assert p.current == "1" and p.next == Media("B", id="b")


def test_the_room_counts_who_is_there_from_user_events() -> None:
    room = MemoryRoom()
    room.observe(UserList((("alice", 1), ("Bob", 2))))
    room.observe(UserUpdate("carol", 0, joined=True))
    room.observe(UserUpdate("bob", None, left=True))
    room.observe(UserUpdate("alice", 3))  # a rank change is not a join
    assert room.present == {"alice", "carol"}
    room.observe(UserList((("dave", 0),)))  # a new userlist replaces, as on a rejoin
    assert room.present == {"dave"}
