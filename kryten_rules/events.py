"""The engine's input: one chat event, already decoded from the wire.

The bus adapter (``kryten_rules.wire``) turns Kryten-Robot envelopes into
these; tests and ``explain`` build them directly. Text is kept *as CyTube
delivers it* (HTML-escaped); the engine normalises it before matching.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class EventKind(StrEnum):
    """What an event is: a rule's ``on``. The one list; the rules schema's ``on``
    enum is tested against it, and the properties below say what each kind carries
    (``validate`` warns about rules that need what their event never has)."""

    CHATMSG = "chatmsg"
    PM = "pm"
    CHANGEMEDIA = "changemedia"
    ADDUSER = "adduser"
    TIMER = "timer"  # v1.1: a timer rule's turn (engine/timers.py)

    @property
    def has_sender(self) -> bool:
        """A person caused it: ``user.*``, rank multipliers and ``respond_via: pm`` apply."""
        return self not in _NO_SENDER

    @property
    def has_text(self) -> bool:
        """It carries text someone wrote (a media change's title is matched, but
        nobody wrote it to the bot; a join carries nothing)."""
        return self in _WITH_TEXT


_NO_SENDER = frozenset({EventKind.CHANGEMEDIA, EventKind.TIMER})
_WITH_TEXT = frozenset({EventKind.CHATMSG, EventKind.PM})


@dataclass(frozen=True, slots=True)
class Media:
    """The item now playing. ``duration`` in seconds (0 for live streams)."""

    title: str
    duration: float = 0.0
    type: str = ""
    id: str = ""


@dataclass(frozen=True, slots=True)
class ChatEvent:
    """One event for the rules.

    ``rank`` is the sender's CyTube rank when the caller knows it; ``None``
    lets the engine use the rank it last saw for that user (chat events on
    the wire carry none), and a user never seen counts as a guest.
    ``at`` is the event time in seconds on the engine's clock.
    ``timer`` (v1.1, kind ``timer`` only): the id of the timer rule whose
    turn this is; empty asks every timer rule (``explain``). A timer has no
    sender and no text.
    ``correlation_id`` is the Kryten-Robot envelope's, carried so the reply
    event (``kryten.events.rules.reply``) can name the event that caused it;
    it takes no part in comparisons (two decodings of one line are equal).
    """

    # an EventKind value, kept a plain str: an enum member hashes in Python, on the hot path
    kind: str = EventKind.CHATMSG.value
    user: str = ""
    text: str = ""
    rank: int | None = None
    at: float = 0.0
    media: Media | None = None
    to: str | None = None
    timer: str = ""
    correlation_id: str = field(default="", compare=False)
