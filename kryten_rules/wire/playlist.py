"""CyTube's playlist as Kryten-Robot relays it: events and the ``kryten_{channel}_playlist`` KV.

Kryten-Robot 1.12.6 publishes every CyTube event, the playlist ones included
(``playlist``, ``queue``, ``delete``, ``moveVideo``, ``setCurrent``), and its
``state_manager`` keeps two keys in the JetStream KV bucket
``kryten_{channel}_playlist`` (the channel as configured, case kept):

* ``current``: the last ``changeMedia`` payload (``id``, ``title``,
  ``seconds``, ``duration``, ``type``, ``meta``, ...) with the playlist
  ``uid`` of the item stamped on it when known;
* ``items``: the playlist as a JSON array of CyTube items,
  ``{"uid", "media": {"id", "title", "seconds", "type", ...}, "temp", "queueby"}``
  (the robot also copes with flat items, ``{"uid", "id", "title", ...}``, so we do).

Parsing is lenient where the robot is: an item that is not a usable record is
skipped (a partial playlist beats none), a payload that is not the right kind
of JSON value is a :class:`~kryten_rules.wire.decode.MalformedEvent`. Uids are
integers in CyTube; they are kept as strings, as the robot compares them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from kryten_rules.events import Media

PLAYLIST_EVENTS = frozenset({"playlist", "queue", "delete", "movevideo", "setcurrent"})
"""The CyTube events (lowercased) that change the playlist or its current item."""

CURRENT_KEY = "current"
ITEMS_KEY = "items"
_TITLE_MAX = 500  # CyTube cuts titles at 100 characters; bound what we keep anyway


@dataclass(frozen=True, slots=True)
class PlaylistItem:
    uid: str
    media: Media


@dataclass(frozen=True, slots=True)
class PlaylistChange:
    """One playlist event. ``kind`` is the lowercased CyTube event name.

    ``playlist``: ``items`` is the whole new list. ``queue``: ``items`` holds
    the one item added, after ``after`` (a uid; ``None``: at the end).
    ``delete``: ``uid`` is removed. ``movevideo``: ``uid`` moves after
    ``after`` (a uid, ``"prepend"`` or ``"append"``). ``setcurrent``: ``uid``
    is the item now playing.
    """

    kind: str
    items: tuple[PlaylistItem, ...] = ()
    uid: str | None = None
    after: str | None = None


def playlist_bucket(channel: str) -> str:
    """``kryten_{channel}_playlist``, the channel as configured (like the user list's)."""
    if not channel:
        raise ValueError("channel is empty")
    return f"kryten_{channel}_playlist"


def _uid(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and 0 < len(value) <= 64:
        return value
    return None


def media_of(obj: Any) -> Media | None:
    """A :class:`Media` from a CyTube media record (``title``, ``seconds``, ``type``, ``id``)."""
    if not isinstance(obj, dict):
        return None
    title = obj.get("title")
    if not isinstance(title, str):
        return None
    seconds = obj.get("seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        seconds = 0
    seconds = float(seconds) if math.isfinite(seconds) and seconds >= 0 else 0.0
    kind = obj.get("type", "")
    ident = obj.get("id", "")
    if isinstance(ident, int) and not isinstance(ident, bool):
        ident = str(ident)
    return Media(
        title=title.replace("\x00", "")[:_TITLE_MAX],
        duration=seconds,
        type=kind if isinstance(kind, str) else "",
        id=ident if isinstance(ident, str) else "",
    )


def item_of(obj: Any) -> PlaylistItem | None:
    """A playlist item, nested (``{uid, media: {...}}``) or flat (``{uid, title, ...}``)."""
    if not isinstance(obj, dict):
        return None
    uid = _uid(obj.get("uid"))
    inner = obj.get("media") if isinstance(obj.get("media"), dict) else obj
    media = media_of(inner)
    if uid is None or media is None:
        return None
    return PlaylistItem(uid, media)


def _items(values: list[Any]) -> tuple[PlaylistItem, ...]:
    return tuple(i for i in map(item_of, values) if i is not None)


def decode_playlist(kind: str, payload: Any) -> PlaylistChange | None:
    """A playlist event's change; ``None`` when it says nothing usable (an unknown uid shape).

    Raises ``ValueError`` with a short reason for a payload of the wrong JSON
    type (the caller turns it into a malformed event).
    """
    if kind == "playlist":
        if not isinstance(payload, list):
            raise ValueError("bad payload")
        return PlaylistChange(kind, _items(payload))
    if kind == "setcurrent":
        uid = _uid(payload)
        return PlaylistChange(kind, uid=uid) if uid is not None else None
    if not isinstance(payload, dict):
        raise ValueError("bad payload")
    if kind == "queue":
        item = item_of(payload.get("item"))
        if item is None:
            return None
        return PlaylistChange(kind, (item,), after=_uid(payload.get("after")))
    if kind == "delete":
        uid = _uid(payload.get("uid"))
        return PlaylistChange(kind, uid=uid) if uid is not None else None
    if kind == "movevideo":
        uid, after = _uid(payload.get("from")), _uid(payload.get("after"))
        return PlaylistChange(kind, uid=uid, after=after) if uid and after else None
    return None


def _json(value: bytes | bytearray | memoryview) -> Any:
    try:
        return json.loads(bytes(value).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError("bad JSON") from None


def parse_current_kv(value: bytes | bytearray | memoryview) -> tuple[Media, str | None] | None:
    """The ``current`` key: the media playing and its playlist uid; ``None`` for nothing usable
    (the robot writes ``null`` before the first media). ``ValueError`` for bytes that are not JSON.
    """
    doc = _json(value)
    media = media_of(doc)
    if media is None:
        return None
    return media, _uid(doc.get("uid"))


def parse_items_kv(value: bytes | bytearray | memoryview) -> tuple[PlaylistItem, ...]:
    """The ``items`` key: the playlist in order; ``ValueError`` for anything but a JSON array."""
    doc = _json(value)
    if not isinstance(doc, list):
        raise ValueError("not an array")
    return _items(doc)


__all__ = [
    "CURRENT_KEY",
    "ITEMS_KEY",
    "PLAYLIST_EVENTS",
    "PlaylistChange",
    "PlaylistItem",
    "decode_playlist",
    "item_of",
    "media_of",
    "parse_current_kv",
    "parse_items_kv",
    "playlist_bucket",
]
