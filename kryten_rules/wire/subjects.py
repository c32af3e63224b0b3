"""Kryten-Robot's subjects and envelopes, exactly as kryten-robot 1.12.6 builds them.

A subscription that differs from the robot's subject by one character
silently receives nothing, so the normalisation is copied, not approximated
(``kryten.subject_builder``); :func:`envelope` makes the robot's bytes for the
terminal chat client and the tests.
"""

from __future__ import annotations

import functools
import json
import uuid
from datetime import UTC, datetime
from typing import Any

COMMAND_SUBJECT = "kryten.robot.command"
"""Where Kryten-Robot's ``RobotCommandHandler`` listens (request-reply capable)."""

EVENT_PREFIX = "kryten.events.cytube"
"""Kryten-Robot publishes every CyTube event under this prefix; the domain is not in it."""

USERLIST_KEY = "users"
"""Key of the whole user list in the ``kryten_{channel}_userlist`` KV bucket."""

_MAX_TOKEN_LENGTH = 100  # kryten.subject_builder.MAX_TOKEN_LENGTH
_MAX_SUBJECT_LENGTH = 255  # kryten.subject_builder.build_subject's final check
_SUBJECT_DROP_CHARS = "!@#$%^&*()+=[]{|}\\:;\"'<>,?/"  # kryten.subject_builder


# --------------------------------------------------------------------------- subjects


@functools.lru_cache(maxsize=1024)
def normalize_token(token: str) -> str:
    """Normalize a channel or event name exactly as ``kryten.subject_builder`` does.

    Lowercase, dots removed, spaces to hyphens, NATS wildcards and the
    characters ``!@#$%^&*()+=[]{|}\\:;"'<>,?/`` removed, cut to 100 characters.
    Copied rather than approximated because a subscription that differs by
    one character silently receives nothing.

    Cached: every event's subject check normalizes its channel and event name
    (a few distinct values), and the 30-odd replaces were 40 % of decoding an
    event. Bounded, so names nobody subscribes to cannot grow it.
    """
    token = token.lower().replace(".", "").replace(" ", "-")
    token = token.replace("*", "").replace(">", "")
    for char in _SUBJECT_DROP_CHARS:
        token = token.replace(char, "")
    return token[:_MAX_TOKEN_LENGTH]


def _channel_token(channel: str) -> str:
    token = normalize_token(channel)
    if not token:
        raise ValueError("channel is empty after normalization")
    return token


def event_subject(channel: str, event_name: str) -> str:
    """The subject Kryten-Robot publishes ``event_name`` on for ``channel``.

    ``event_subject("420Grindhouse", "chatMsg") ==
    "kryten.events.cytube.420grindhouse.chatmsg"``. Raises ``ValueError``
    (as kryten-robot does) for names that normalize to nothing or a subject
    over 255 characters.
    """
    event = normalize_token(event_name)
    if not event:
        raise ValueError("event name is empty after normalization")
    subject = f"{EVENT_PREFIX}.{_channel_token(channel)}.{event}"
    if len(subject) > _MAX_SUBJECT_LENGTH:
        raise ValueError("subject exceeds 255 characters")
    return subject


def subscribe_subject(channel: str) -> str:
    """Wildcard subject for every event of one channel: ``kryten.events.cytube.{ch}.>``."""
    return f"{EVENT_PREFIX}.{_channel_token(channel)}.>"


def userlist_bucket(channel: str) -> str:
    """JetStream KV bucket where Kryten-Robot keeps the user list (key :data:`USERLIST_KEY`).

    The channel is used *as configured* in kryten-robot (case kept, not
    normalized): ``kryten_420Grindhouse_userlist``. Note the asymmetry with
    the event subjects, which are lowercased.
    """
    if not channel:
        raise ValueError("channel is empty")
    return f"kryten_{channel}_userlist"


# --------------------------------------------------------------------------- envelopes


def envelope(
    event_name: str,
    payload: Any,
    *,
    channel: str,
    domain: str,
    timestamp: str | None = None,
    correlation_id: str | None = None,
) -> bytes:
    """Bytes identical to ``kryten.raw_event.RawEvent(...).to_bytes()``.

    Used to *act as* Kryten-Robot (terminal chat client, tests). Key order,
    ``json.dumps`` defaults (ASCII-escaped, ``", "``/``": "`` separators) and
    the timestamp format (``datetime.now(UTC).isoformat()``, i.e.
    ``...+00:00``) all match, so the conformance test compares bytes.
    ``channel`` and ``domain`` go in unnormalized, as the robot's config has them.
    """
    return json.dumps(
        {
            "event_name": event_name,
            "payload": payload,
            "channel": channel,
            "domain": domain,
            "timestamp": timestamp if timestamp is not None else datetime.now(UTC).isoformat(),
            "correlation_id": correlation_id if correlation_id is not None else str(uuid.uuid4()),
        }
    ).encode("utf-8")


