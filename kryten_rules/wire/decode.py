"""Decoding Kryten-Robot's events: the trust boundary.

Anything on NATS may be published by anyone, so :func:`decode_message` turns
*any* input into a :class:`Decoded`, ``None`` (an event we do not use) or
:class:`MalformedEvent` with a short reason, and never raises anything else.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from kryten_rules.errors import KrytenRulesError
from kryten_rules.events import ChatEvent, Media
from kryten_rules.wire.playlist import PLAYLIST_EVENTS, PlaylistChange, decode_playlist
from kryten_rules.wire.subjects import EVENT_PREFIX, normalize_token

MAX_MESSAGE_BYTES = 1024 * 1024
"""Largest message we parse. NATS' default max payload; checked before decoding
so a hostile publisher cannot make us spend time or memory on ``json.loads``."""

_NAME_MAX = 64  # CyTube names are at most 20 chars; leave room, but bound it.
_SURROGATES = re.compile("[\ud800-\udfff]")


class MalformedEvent(KrytenRulesError, ValueError):
    """A NATS message that does not follow the Kryten-Robot protocol.

    ``reason`` is short and safe to log (it never echoes the payload), e.g.
    ``"too large"``, ``"bad JSON"``, ``"bad payload.msg"``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class UserUpdate:
    """What an ``addUser``, ``setUserRank`` or ``userLeave`` event says about one user.

    The engine keeps a name -> rank table because chat events carry no rank.
    ``rank`` is ``None`` for ``userLeave`` (which only names the user).
    ``joined`` is set for ``addUser`` so the service can also feed the engine
    an ``adduser`` :class:`ChatEvent` (see :attr:`Decoded.chat`).
    """

    name: str
    rank: int | None
    left: bool = False
    joined: bool = False


@dataclass(frozen=True, slots=True)
class UserList:
    """The full ``userlist`` CyTube sends on join: ``(name, rank)`` pairs.

    Replaces the rank table wholesale. Entries that are not valid user records
    are skipped (partial knowledge beats none; unknown users count as guests).
    """

    users: tuple[tuple[str, int], ...]


WireEvent = ChatEvent | UserUpdate | UserList | PlaylistChange
"""Everything :func:`decode_message` can produce."""


def rank_changes(event: WireEvent) -> list[tuple[str, int | None]]:
    """What an event says about users' ranks: ``(name, rank)``, rank ``None`` for a leave."""
    if isinstance(event, UserList):
        return list(event.users)
    if isinstance(event, UserUpdate):
        if event.left:
            return [(event.name, None)]
        if event.rank is not None:
            return [(event.name, event.rank)]
    return []


@dataclass(frozen=True, slots=True)
class Decoded:
    """One decoded Kryten-Robot event plus the envelope facts filters need.

    ``event_name`` is CyTube's own name as published (``"chatMsg"``).
    ``at`` is CyTube's ``time`` field (ms on the wire) in Unix seconds, or
    ``None`` when the payload has none (only ``chatMsg``/``pm`` carry it): the
    service compares it with its start time to drop the ~15 messages of chat
    history CyTube replays on join. The same value (or ``0.0``) is in
    ``ChatEvent.at``; the service may restamp it with its own clock.
    ``muted`` is ``payload.meta.shadow``: the sender is shadow-muted, only
    moderators (and the bot) see the message, and it must be ignored.
    ``add_class`` is ``payload.meta.addClass`` (``""`` when absent or not a
    string): CyTube's CSS class for the line, ``"server-whisper"`` on its own
    moderator-only notices. ``position`` is a ``changeMedia``'s ``currentTime``
    (seconds into the media; negative at a fresh start): CyTube also sends
    ``changeMedia`` to every socket that joins, mid-play. What to ignore is
    decided in :mod:`kryten_rules.intake`, not here: decoding only reports.
    """

    event_name: str
    event: WireEvent
    at: float | None = None
    muted: bool = False
    add_class: str = ""
    position: float | None = None
    channel: str = ""
    domain: str = ""
    correlation_id: str = ""

    @property
    def chat(self) -> ChatEvent | None:
        """The event to hand the rule engine, if any.

        Chat, PM and media events are already :class:`ChatEvent`; an
        ``addUser`` becomes ``ChatEvent(kind="adduser")`` so rules can greet
        people; rank updates, leaves and user lists feed only the rank table.
        """
        ev = self.event
        if isinstance(ev, ChatEvent):
            return ev
        if isinstance(ev, UserUpdate) and ev.joined:
            return ChatEvent(
                kind="adduser",
                user=ev.name,
                rank=ev.rank,
                at=self.at or 0.0,
                correlation_id=self.correlation_id,
            )
        return None


# --------------------------------------------------------------------------- decoding


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN/Infinity by default; they are not JSON and would
    # poison every comparison they reach.
    raise ValueError(f"non-standard JSON constant {name}")


def _load_json(data: bytes | bytearray | memoryview) -> Any:
    """Size check, strict UTF-8, strict JSON; only :class:`MalformedEvent` escapes."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedEvent("not bytes")
    if len(data) > MAX_MESSAGE_BYTES:
        raise MalformedEvent("too large")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedEvent("invalid UTF-8") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise MalformedEvent("too deeply nested") from None
    except ValueError:  # JSONDecodeError, non-finite constants, >4300-digit ints
        raise MalformedEvent("bad JSON") from None


def _clean_text(value: str) -> str:
    """Lone surrogates -> U+FFFD, NUL removed; everything else as CyTube sent it."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    return _SURROGATES.sub("\ufffd", value)


def _text(obj: dict[str, Any], key: str, where: str, *, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise MalformedEvent(f"{'missing' if key not in obj else 'bad'} {where}.{key}")
    return _clean_text(value)


def _valid_name(value: Any) -> bool:
    # isprintable() is False for control, format, surrogate and unassigned
    # code points; CyTube names are short ASCII words, so this only rejects junk.
    return (
        isinstance(value, str)
        and 0 < len(value) <= _NAME_MAX
        and value.isprintable()
        and " " not in value
    )


def _name(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not _valid_name(value):
        raise MalformedEvent(f"{'missing' if key not in obj else 'bad'} {where}.{key}")
    assert isinstance(value, str)  # _valid_name checked it
    return value


def _as_rank(value: Any) -> int | None:
    """CyTube ranks are small integers (0 guest .. 255 founder/admin); ``None`` if not."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -1 <= value <= 10_000 else None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return _as_rank(int(value))
    return None


def _rank(obj: dict[str, Any], key: str, where: str) -> int:
    rank = _as_rank(obj.get(key))
    if rank is None:
        raise MalformedEvent(f"{'missing' if key not in obj else 'bad'} {where}.{key}")
    return rank


def _number(obj: dict[str, Any], key: str, where: str) -> float | None:
    if key not in obj or obj[key] is None:
        return None
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedEvent(f"bad {where}.{key}")
    try:
        value = float(value)
    except OverflowError:  # an integer literal with hundreds of digits
        raise MalformedEvent(f"bad {where}.{key}") from None
    if not math.isfinite(value) or value < 0:
        raise MalformedEvent(f"bad {where}.{key}")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedEvent(f"bad {where}")
    return value


def _user_pairs(entries: list[Any]) -> tuple[tuple[str, int], ...]:
    """``(name, rank)`` for each valid user record; invalid records are skipped."""
    pairs: list[tuple[str, int]] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        name, rank = entry.get("name"), _as_rank(entry.get("rank"))
        if isinstance(name, str) and _valid_name(name) and rank is not None:
            pairs.append((name, rank))
    return tuple(pairs)


class _Facts(NamedTuple):
    """What a payload says beyond its event: CyTube's time, a line's flags, a media's position."""

    at: float | None = None
    muted: bool = False
    add_class: str = ""
    position: float | None = None


_NO_FACTS = _Facts()


def _decode_chat(kind: str, payload: dict[str, Any]) -> tuple[ChatEvent, _Facts]:
    user = _name(payload, "username", "payload")
    text = _text(payload, "msg", "payload")
    meta = payload.get("meta", {})
    if meta is None:
        meta = {}
    meta = _object(meta, "payload.meta")
    muted = bool(meta.get("shadow", False))
    add_class = meta.get("addClass")
    add_class = _clean_text(add_class)[:_NAME_MAX] if isinstance(add_class, str) else ""
    time_ms = _number(payload, "time", "payload")
    at = time_ms / 1000.0 if time_ms is not None else None
    to = _name(payload, "to", "payload") if kind == "pm" else None
    event = ChatEvent(kind=kind, user=user, text=text, at=at or 0.0, to=to)
    return event, _Facts(at, muted, add_class)


def _position(payload: dict[str, Any]) -> float | None:
    """``currentTime`` in seconds (``-3`` at a fresh start: CyTube's lead-in), if a finite number.

    Informational only, so an odd value is ``None``, not a malformed event.
    """
    value = payload.get("currentTime")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def _decode_media(payload: dict[str, Any]) -> ChatEvent:
    title = _text(payload, "title", "payload")
    seconds = _number(payload, "seconds", "payload") or 0.0
    media_type = _text(payload, "type", "payload", default="")
    media_id = payload.get("id", "")
    if isinstance(media_id, int) and not isinstance(media_id, bool):
        media_id = str(media_id)
    if not isinstance(media_id, str):
        raise MalformedEvent("bad payload.id")
    media = Media(title=title, duration=seconds, type=media_type, id=_clean_text(media_id))
    return ChatEvent(kind="changemedia", media=media)


def _decode_payload(name: str, payload: Any) -> tuple[WireEvent, _Facts] | None:
    """Dispatch on the lowercased event name, as kryten-py does."""
    key = name.lower()
    if key in ("chatmsg", "pm"):
        return _decode_chat(key, _object(payload, "payload"))
    if key in ("adduser", "setuserrank", "userleave"):
        p = _object(payload, "payload")
        user = _name(p, "name", "payload")
        if key == "userleave":
            return UserUpdate(user, None, left=True), _NO_FACTS
        return UserUpdate(user, _rank(p, "rank", "payload"), joined=key == "adduser"), _NO_FACTS
    if key == "userlist":
        if not isinstance(payload, list):
            raise MalformedEvent("bad payload")
        return UserList(_user_pairs(payload)), _NO_FACTS
    if key == "changemedia":
        payload = _object(payload, "payload")
        return _decode_media(payload), _Facts(position=_position(payload))
    if key in PLAYLIST_EVENTS:  # the room's playlist (``playlist.next``), nothing for the rules
        try:
            change = decode_playlist(key, payload)
        except ValueError as exc:
            raise MalformedEvent(str(exc)) from None
        return (change, _NO_FACTS) if change is not None else None
    return None


def decode_message(subject: str, data: bytes | bytearray | memoryview) -> Decoded | None:
    """Decode one Kryten-Robot event message.

    Returns ``None`` for events the rules do not use (``mediaUpdate``,
    ``usercount``, ...). Raises :class:`MalformedEvent` and nothing else for
    any input that is not a well-formed envelope of a known event, including
    a ``subject`` whose channel or event token disagrees with the envelope
    (kryten-robot derives the subject from the envelope, so a mismatch means
    someone else published it, or misrouted it).
    """
    if not isinstance(subject, str):
        raise MalformedEvent("bad subject")
    env = _load_json(data)
    if not isinstance(env, dict):
        raise MalformedEvent("not an object")
    for field in ("event_name", "channel", "domain"):
        if field not in env:
            raise MalformedEvent(f"missing {field}")
        if not isinstance(env[field], str):
            raise MalformedEvent(f"bad {field}")
    if "payload" not in env:
        raise MalformedEvent("missing payload")
    for field in ("timestamp", "correlation_id"):
        if not isinstance(env.get(field, ""), str):
            raise MalformedEvent(f"bad {field}")
    name: str = env["event_name"]
    channel: str = env["channel"]
    expected = f"{EVENT_PREFIX}.{normalize_token(channel)}.{normalize_token(name)}"
    if subject != expected:
        raise MalformedEvent("subject does not match envelope")
    decoded = _decode_payload(name, env["payload"])
    if decoded is None:
        return None
    event, facts = decoded
    cid = _clean_text(env.get("correlation_id", ""))
    if cid and isinstance(event, ChatEvent):  # the reply event names what caused it
        event = replace(event, correlation_id=cid)
    return Decoded(
        event_name=name,
        event=event,
        at=facts.at,
        muted=facts.muted,
        add_class=facts.add_class,
        position=facts.position,
        channel=_clean_text(channel),
        domain=_clean_text(env["domain"]),
        correlation_id=cid,
    )


def parse_userlist_kv(value: bytes | bytearray | memoryview) -> list[tuple[str, int]]:
    """``(name, rank)`` pairs from the ``users`` key of ``kryten_{channel}_userlist``.

    Kryten-Robot stores a JSON array of CyTube user objects (``name``,
    ``rank``, ``profile``, ``meta``...); after a ``setUserRank`` it rewrites
    that user's entry as just ``{"name", "rank"}``. Records without a valid
    name and integer rank are skipped; anything but a JSON array raises
    :class:`MalformedEvent`.
    """
    users = _load_json(value)
    if not isinstance(users, list):
        raise MalformedEvent("not an array")
    return list(_user_pairs(users))


