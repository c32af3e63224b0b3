"""The engine's input: one chat event, already decoded from the wire.

The bus adapter (``kryten_rules.wire``) turns Kryten-Robot envelopes into
these; tests and ``explain`` build them directly. Text is kept *as CyTube
delivers it* (HTML-escaped); the engine normalises it before matching.
"""

from __future__ import annotations

from dataclasses import dataclass


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
    """

    kind: str = "chatmsg"  # chatmsg | pm | changemedia | adduser
    user: str = ""
    text: str = ""
    rank: int | None = None
    at: float = 0.0
    media: Media | None = None
    to: str | None = None
