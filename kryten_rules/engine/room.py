"""What the engine knows about the channel: ranks, who is there, the media and playlist, chat.

:class:`RoomState` is the interface; :class:`MemoryRoom` the in-process room
the engine reads directly on its hot path. Unlike cooldowns and budgets, the
room is rebuilt from the robot (user list, media) after a restart, so it
has no backend.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from kryten_rules.engine.playlist import Playlist
from kryten_rules.events import ChatEvent, Media
from kryten_rules.wire import UserList, UserUpdate, WireEvent
from kryten_rules.wire.playlist import PlaylistChange

HISTORY_LINES = 20  # lines a template sees


HISTORY_KEPT = 200  # lines kept, so a reply prepared late still sees its own 20


MAX_KNOWN_USERS = 50_000


class RoomState(Protocol):
    """What is known about the channel: ranks, the playing media, recent chat lines."""

    media: Media | None
    lines: int  # chat lines there ever were (a decision keeps this count)

    def rank_of(self, user: str) -> int: ...

    def set_rank(self, user: str, rank: int) -> None: ...

    def forget_user(self, user: str) -> None: ...

    def add_line(self, user: str, text: str, at: float = 0.0) -> None: ...

    def history_before(self, count: int) -> list[tuple[str, str]]: ...


RoomNow = tuple[Media | None, int, Media | None, int]


def room_now(room: MemoryRoom) -> RoomNow:
    """What a decision keeps of the room for its templates: the media, the line count,
    the next playlist item and how many users are there (attribute reads: a firing's cost)."""
    return room.media, room.lines, room.playlist.next, len(room.present)


@dataclass(slots=True)
class MemoryRoom:
    """The in-process :class:`RoomState`; the engine reads ``ranks`` and
    ``history`` directly on its hot path."""

    ranks: dict[str, int] = field(default_factory=dict)  # lower-cased name -> rank
    media: Media | None = None
    # Recent chat lines, and how many there ever were. A decision keeps only
    # that count (free to take on every firing) and reads its lines back when
    # its context is built; 200 lines are kept so that stays exact even when
    # many lines arrive before a reply is prepared.
    history: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=HISTORY_KEPT))
    lines: int = 0
    # v1.1: when each line of ``history`` was said (same order, same length), for
    # ``when.chat``: a timer counts the recent lines from people before it speaks
    times: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY_KEPT))
    # who is in the channel (lower-cased names), for `room.users`; unlike `ranks`,
    # which remembers users after they leave, it follows userlist/addUser/userLeave
    present: set[str] = field(default_factory=set)
    playlist: Playlist = field(default_factory=Playlist)

    def observe(self, event: WireEvent) -> None:
        """What a decoded event says about who is there and the playlist (any event,
        ignored or not: a replayed line is still a fact about the room)."""
        if isinstance(event, UserList):
            self.present = {name.lower() for name, _ in event.users[:MAX_KNOWN_USERS]}
        elif isinstance(event, UserUpdate):
            if event.left:
                self.present.discard(event.name.lower())
            elif event.joined and len(self.present) < MAX_KNOWN_USERS:
                self.present.add(event.name.lower())
        elif isinstance(event, PlaylistChange):
            self.playlist.apply(event)
        elif isinstance(event, ChatEvent) and event.media is not None:
            self.playlist.playing(event.media)

    def rank_of(self, user: str) -> int:
        return self.ranks.get(user.lower(), 0)

    def set_rank(self, user: str, rank: int) -> None:
        ranks = self.ranks
        key = user.lower()
        if ranks.get(key) == rank:
            return
        ranks.pop(key, None)
        ranks[key] = int(rank)
        if len(ranks) > MAX_KNOWN_USERS:  # forget whoever was updated longest ago
            del ranks[next(iter(ranks))]

    def forget_user(self, user: str) -> None:
        self.ranks.pop(user.lower(), None)

    def add_line(self, user: str, text: str, at: float = 0.0) -> None:
        self.history.append((user, text))
        self.times.append(at)
        self.lines += 1

    def lines_since(self, since: float, enough: int) -> int:
        """How many kept lines were said at ``since`` or later, counting up to ``enough``.

        Newest first, so a busy room answers after ``enough`` lines: the cost of
        a ``when.chat`` check is its ``min_lines``, never the history's length.
        Only people's lines are here: the bot's own, ignored senders, notices
        and replayed history never reach the room.
        """
        count = 0
        for t in reversed(self.times):
            if t < since or count >= enough:
                break
            count += 1
        return count

    def history_before(self, count: int) -> list[tuple[str, str]]:
        """The last ``HISTORY_LINES`` lines that came before line number ``count``."""
        kept = list(self.history)
        end = len(kept) - (self.lines - count)
        return kept[max(0, end - HISTORY_LINES) : end] if end > 0 else []
