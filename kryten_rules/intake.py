"""Intake: which decoded events are people talking now, and why the rest are not.

One place decides what reaches the rules, so the live service and ``replay``
can never disagree (docs/rules.md, "Ignored events"; the contract's "Ignored before any
rule"). :meth:`Intake.admit` turns a decoded envelope into the
:class:`~kryten_rules.events.ChatEvent` for the engine, or an :class:`Ignored`
with a reason code, or ``None`` for events that only feed the rank table.

What is not a person talking now, as a real CyTube channel showed:

* ``self``: the bot's own lines, echoed back by CyTube.
* ``notice``: CyTube's own notices. A moderator bot receives them as chat
  from ``[server]`` with ``meta.addClass: "server-whisper"`` ("alice joined
  (aliases: ...)": private alias lists). No CyTube user name can contain a
  square bracket, so a bracketed sender (``[server]``, ``[voteskip]``) is
  never a person, whatever the class.
* ``ignored_user``: names the operator listed in ``ignore_users``.
* ``muted``: shadow-muted senders (``meta.shadow``): only moderators and the
  bot see their lines.
* ``history``: CyTube replays its last 15 lines on every (re)join of the
  robot, with their original ``time``. A line is history when it was sent
  before the service started, when its CyTube ``time`` is more than a slack of
  a few seconds before it reached us, or when we have already seen it (same
  sender, ``time`` and text). CyTube also sends every joining socket a
  ``changeMedia`` for what is playing, at its position: one for the media we
  already know is playing, past its start, is the same replay.

Ignored events are not evaluated, so they never enter the room ``history``
that templates see. The sender checks (:func:`sender_ignored`) are also what
the engine applies to events built without an envelope (rule tests,
``explain``), so every path ignores the same senders.
"""

from __future__ import annotations

from collections.abc import Iterable

from kryten_rules.config import DEFAULT_HISTORY_SLACK
from kryten_rules.events import ChatEvent
from kryten_rules.senders import NOTICE_CLASS, Ignored, IgnoreReason, sender_ignored
from kryten_rules.wire import Decoded

__all__ = [
    "SEEN_LINES",
    "Intake",
    "LineMemory",
]

SEEN_LINES = 1024
"""Line identities remembered. CyTube replays 15; the rest is margin for PMs and
lines that arrive while a replay is going on."""


LineKey = tuple[str, str, float, int]


class LineMemory:
    """The identities of the last ``size`` chat lines admitted, oldest forgotten first.

    A line is ``(kind, sender in lower case, CyTube time, hash of the text)``:
    the hash keeps memory bounded whatever the lines' length (Python's string
    hash is keyed per process, so nobody can craft a collision).
    """

    __slots__ = ("_keys", "size")

    def __init__(self, size: int = SEEN_LINES) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._keys: dict[LineKey, None] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: LineKey) -> bool:
        """Remember ``key``; ``True`` if it was already remembered (a repeat)."""
        keys = self._keys
        if key in keys:
            return True
        keys[key] = None
        if len(keys) > self.size:
            del keys[next(iter(keys))]
        return False


class Intake:
    """Decides, for each decoded event, whether it reaches the rules.

    ``bot_name`` and ``ignore_users`` are compared case-insensitively, as
    CyTube compares names. ``started_at`` (seconds) drops lines sent before the
    service started; ``None`` (``replay``) has no start. ``slack`` is how many
    seconds a line's CyTube ``time`` may lie before its arrival
    (:data:`DEFAULT_HISTORY_SLACK`); ``memory`` how many lines are remembered.
    """

    def __init__(
        self,
        *,
        bot_name: str,
        ignore_users: Iterable[str] = (),
        started_at: float | None = None,
        slack: float = DEFAULT_HISTORY_SLACK,
        memory: int = SEEN_LINES,
    ) -> None:
        if not slack >= 0:  # also rejects NaN
            raise ValueError("slack must be a number of seconds >= 0")
        self.bot = bot_name.lower()
        self.ignore_users = frozenset(u.lower() for u in ignore_users)
        self.started_at = started_at
        self.slack = float(slack)
        self.seen = LineMemory(memory)
        self.playing: tuple[str, str] | None = None  # (type, id) of the last media admitted

    def admit(self, decoded: Decoded, received_at: float) -> ChatEvent | Ignored | None:
        """The event for the rules, why it is ignored, or ``None`` (nothing for the rules).

        ``received_at`` is when the event reached us, on the same clock as
        CyTube's ``time`` (Unix seconds): the service's clock on arrival, or the
        envelope's ``timestamp`` in a recording. Only admitted lines are
        remembered as seen, so a line ignored for any reason stays ignored for
        that reason when it comes again.
        """
        chat = decoded.chat
        if chat is None:
            return None
        if chat.media is not None:
            return self._media(chat, decoded.position)
        user = chat.user
        why = sender_ignored(user, user.lower(), self.bot, self.ignore_users)
        if why is not None:
            return Ignored(why)
        if decoded.add_class == NOTICE_CLASS:
            return Ignored(IgnoreReason.NOTICE, NOTICE_CLASS)
        if decoded.muted:
            return Ignored(IgnoreReason.MUTED)
        at = decoded.at
        if at is not None:
            if self.started_at is not None and at < self.started_at:
                return Ignored(IgnoreReason.HISTORY, "sent before the service started")
            lag = received_at - at
            if lag > self.slack:
                return Ignored(IgnoreReason.HISTORY, f"sent {lag:.0f}s before it arrived")
            if self.seen.add((chat.kind, user.lower(), at, hash(chat.text))):
                return Ignored(IgnoreReason.HISTORY, "already seen")
        return chat

    def _media(self, event: ChatEvent, position: float | None) -> ChatEvent | Ignored:
        """A media change, unless it re-announces the media already playing.

        A real change starts at CyTube's lead-in (``currentTime`` -3, or 0 under
        a leader); the ``changeMedia`` a joining socket gets, and the one after
        CyTube refreshes a link, carries the position reached.
        """
        media = event.media
        assert media is not None
        playing = (media.type, media.id)
        if media.id and playing == self.playing and position is not None and position > 0:
            return Ignored(IgnoreReason.HISTORY, "media already playing")
        self.playing = playing
        return event
