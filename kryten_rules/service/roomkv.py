"""The room as Kryten-Robot last saw it, read from its KV bucket at start.

Without this, ``media`` is empty until the next ``changeMedia`` (a film of
two hours: two hours of "nothing is playing"), and ``playlist.next`` until
the next ``playlist`` event. The robot keeps both in
``kryten_{channel}_playlist`` (``wire/playlist.py`` has the shapes). A
bucket or key that is not there is normal (a robot that never ran, or no
media yet) and logged at INFO; a value we cannot read is logged and skipped.
Either way the service starts, and the events fill the room in.
"""

from __future__ import annotations

import logging

from kryten_rules.engine.room import MemoryRoom
from kryten_rules.intake import Intake
from kryten_rules.service.bus import Bus
from kryten_rules.wire.playlist import (
    CURRENT_KEY,
    ITEMS_KEY,
    parse_current_kv,
    parse_items_kv,
    playlist_bucket,
)

log = logging.getLogger("kryten_rules.service")


async def _get(bus: Bus, bucket: str, key: str) -> bytes | None:
    try:
        return await bus.kv_get(bucket, key)
    except Exception as exc:  # no bucket, no key, no JetStream: the events will tell
        log.info("no %s in KV %s yet (%s)", key, bucket, type(exc).__name__)
        return None


async def load_playlist(bus: Bus, room: MemoryRoom, intake: Intake, channel: str) -> None:
    """The media playing and the playlist from the robot's KV, into ``room``.

    The intake is told what is playing too, so the ``changeMedia`` CyTube
    sends when the robot (re)joins mid-play is known as a replay, not news.
    """
    bucket = playlist_bucket(channel)
    uid: str | None = None
    raw = await _get(bus, bucket, CURRENT_KEY)
    if raw:
        try:
            current = parse_current_kv(raw)
        except ValueError as exc:
            log.warning("KV %s %s: %s; media comes from the next change", bucket, CURRENT_KEY, exc)
            current = None
        if current is not None:
            media, uid = current
            room.media = media
            intake.playing = (media.type, media.id)
            log.info("playing (from KV): %s", media.title[:80])
    raw = await _get(bus, bucket, ITEMS_KEY)
    if raw:
        try:
            items = parse_items_kv(raw)
        except ValueError as exc:
            log.warning("KV %s %s: %s; the playlist comes from its events", bucket, ITEMS_KEY, exc)
            return
        room.playlist.reset(items, uid)
        if room.media is not None:
            room.playlist.playing(room.media)  # no uid stamped: find the item by its id
        log.info("loaded %d playlist items from KV", len(items))


__all__ = ["load_playlist"]
