"""What a standby instance keeps while another holds the channel's lease.

Every instance receives every event. The lease holder decides them; a standby
keeps the last :data:`KEEP` seconds of them, so that when it takes over
(the holder died, or handed over on SIGTERM) it decides the events the holder
may not have: those that arrived after it last saw the holder alive (less a
margin), and that the holder did not claim an answer to (``lease.py``). An
event is answered by one instance or, if its holder died between claiming
and sending, by none; never by two.
"""

from __future__ import annotations

from collections import deque

from kryten_rules.events import ChatEvent

KEEP = 15.0  # seconds of events kept: a lease's ttl, its renewal gap, and room to spare
MARGIN = 0.5  # before the holder's last write: events it may not have decided yet
MAX_HELD = 20_000  # a flood while standing by costs memory, not the process


class Standby:
    def __init__(self, keep: float = KEEP) -> None:
        self.keep = keep
        self._held: deque[tuple[float, ChatEvent]] = deque(maxlen=MAX_HELD)

    def hold(self, event: ChatEvent, arrived: float) -> None:
        """Keep one admitted event (``arrived`` on the monotonic clock)."""
        held = self._held
        held.append((arrived, event))
        while held and held[0][0] < arrived - self.keep:
            held.popleft()

    def take_over(self, holder_seen: float, answered: frozenset[str]) -> list[ChatEvent]:
        """The held events this instance must decide now, in arrival order; the rest
        are dropped. ``holder_seen``: when the last holder was last seen writing."""
        since = holder_seen - MARGIN
        out = [
            event
            for arrived, event in self._held
            if arrived >= since and not (event.correlation_id and event.correlation_id in answered)
        ]
        self._held.clear()
        return out

    def __len__(self) -> int:
        return len(self._held)


__all__ = ["KEEP", "MARGIN", "Standby"]
