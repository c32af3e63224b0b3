"""The Kryten-Robot wire protocol: subjects, event envelopes, commands, KV values.

Pure functions, no I/O, so the bus adapter, the terminal chat client and the
tests share one definition of the protocol. Every fact here was checked
against kryten-robot 1.12.6 (``kryten.subject_builder``, ``kryten.raw_event``,
``kryten.robot_command_handler``, ``kryten.state_manager``) and is exercised
against that package by ``tests/wire/test_conformance_robot.py``.

Decoding is the trust boundary: anything on NATS may be published by anyone,
so :func:`decode_message` turns *any* input into a :class:`Decoded`, ``None``
(an event we do not use) or :class:`MalformedEvent` with a short reason, and
never raises anything else. The service logs the reason and moves on.

Text fields are kept as CyTube sends them (HTML-escaped) except that lone
UTF-16 surrogates (``"\\ud800"`` escapes, which CyTube can relay from browser
JavaScript) become U+FFFD and NUL characters are removed: both would break
UTF-8 encoding or C-string consumers further down the pipeline, and dropping
the whole message for them would punish the user for a client bug.
"""

from kryten_rules.wire.commands import pm_command, say_command
from kryten_rules.wire.decode import (
    MAX_MESSAGE_BYTES,
    Decoded,
    MalformedEvent,
    UserList,
    UserUpdate,
    WireEvent,
    decode_message,
    parse_userlist_kv,
    rank_changes,
)
from kryten_rules.wire.subjects import (
    COMMAND_SUBJECT,
    USERLIST_KEY,
    envelope,
    event_subject,
    normalize_token,
    subscribe_subject,
    userlist_bucket,
)

__all__ = [
    "COMMAND_SUBJECT",
    "MAX_MESSAGE_BYTES",
    "USERLIST_KEY",
    "Decoded",
    "MalformedEvent",
    "UserList",
    "UserUpdate",
    "WireEvent",
    "decode_message",
    "envelope",
    "event_subject",
    "normalize_token",
    "parse_userlist_kv",
    "pm_command",
    "rank_changes",
    "say_command",
    "subscribe_subject",
    "userlist_bucket",
]
