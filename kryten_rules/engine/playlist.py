"""The channel's playlist, kept as Kryten-Robot keeps it, for ``playlist.next``.

The robot's ``state_manager`` (1.12.6) applies CyTube's playlist events to
its list in a fixed way (``queue`` after a uid or at the end, ``delete`` by
uid, ``moveVideo`` after a uid, ``"prepend"`` or ``"append"``; an unknown
uid appends) and writes it to KV; :class:`Playlist` applies the same events
the same way, so what a template sees agrees with what other services read
from the robot's bucket. The item after the one playing is worked out on
each change, not on each decision: a decision reads one attribute.
"""

from __future__ import annotations

from kryten_rules.events import Media
from kryten_rules.wire.playlist import PlaylistChange, PlaylistItem

MAX_ITEMS = 10_000  # CyTube's own default limit is 4,000 items; a bound against floods


class Playlist:
    """The items in play order, the uid of the one playing, and :attr:`next`."""

    __slots__ = ("current", "items", "next")

    def __init__(self) -> None:
        self.items: list[PlaylistItem] = []
        self.current: str | None = None  # uid of the item playing, when known
        self.next: Media | None = None

    def __len__(self) -> int:
        return len(self.items)

    def reset(
        self, items: tuple[PlaylistItem, ...] | list[PlaylistItem], current: str | None
    ) -> None:
        """The whole playlist at once (the robot's KV at start, a ``playlist`` event)."""
        self.items = list(items[:MAX_ITEMS])
        if current is not None:
            self.current = current
        self._update()

    def playing(self, media: Media) -> None:
        """A ``changeMedia``: when no ``setCurrent`` named its uid, find the item by its id."""
        if media.id and not self._matches(self.current, media):
            uid = next(
                (
                    i.uid
                    for i in self.items
                    if i.media.id == media.id and i.media.type == media.type
                ),
                None,
            )
            if uid is not None:
                self.current = uid
        self._update()

    def _matches(self, uid: str | None, media: Media) -> bool:
        index = self._index(uid)
        return index is not None and self.items[index].media.id == media.id

    def apply(self, change: PlaylistChange) -> None:
        kind, items = change.kind, self.items
        if kind == "playlist":
            self.reset(change.items, None)
            return
        if kind == "setcurrent":
            self.current = change.uid
        elif kind == "queue" and change.items and len(items) < MAX_ITEMS:
            self._insert(change.items[0], change.after)
        elif kind == "delete":
            index = self._index(change.uid)
            if index is not None:
                del items[index]
        elif kind == "movevideo":
            index = self._index(change.uid)
            if index is not None:
                item = items.pop(index)
                if change.after == "prepend":
                    items.insert(0, item)
                else:
                    self._insert(item, None if change.after == "append" else change.after)
        self._update()

    def _insert(self, item: PlaylistItem, after: str | None) -> None:
        index = self._index(after) if after is not None else None
        if index is None:
            self.items.append(item)
        else:
            self.items.insert(index + 1, item)

    def _index(self, uid: str | None) -> int | None:
        if uid is None:
            return None
        for i, item in enumerate(self.items):
            if item.uid == uid:
                return i
        return None

    def _update(self) -> None:
        index = self._index(self.current)
        after = index + 1 if index is not None else None
        self.next = (
            self.items[after].media if after is not None and after < len(self.items) else None
        )


__all__ = ["MAX_ITEMS", "Playlist"]
