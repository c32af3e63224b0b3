"""Commands to Kryten-Robot (``say``, ``pm``) on :data:`~.subjects.COMMAND_SUBJECT`.

The last line of defence before the bridge: a message that CyTube would run
as a command (``/clear``, ``/kick``) is refused here whatever the emit stage did.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

# --------------------------------------------------------------------------- commands


def _command(
    command: str,
    args: dict[str, str],
    *,
    domain: str,
    channel: str,
    source: str,
    request_id: str | None,
) -> bytes:
    if not domain or not channel:
        # Kryten-Robot applies its domain/channel guard only when *both* are
        # present; an empty one would make any robot on the bus execute it.
        raise ValueError("domain and channel are required")
    body = {
        "command": command,
        "args": args,
        "meta": {
            "source": source,
            "timestamp": datetime.now(UTC).isoformat(),
            "domain": domain,
            "channel": channel,
            "request_id": request_id if request_id is not None else str(uuid.uuid4()),
        },
    }
    try:
        return json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text contains lone surrogates") from None


def _check_message(message: str) -> None:
    if not isinstance(message, str) or not message:
        raise ValueError("message must be a non-empty string")  # robot: "Missing message"
    if message.lstrip().startswith("/"):
        # CyTube runs chat text starting with "/" as a command (/clear, /kick
        # with a moderator bot). The emit stage must never produce it; this is
        # the last line of defence before the bridge.
        raise ValueError("message must not start with '/'")


def say_command(
    message: str,
    *,
    domain: str,
    channel: str,
    source: str = "rules",
    request_id: str | None = None,
) -> bytes:
    """A ``say`` command for :data:`COMMAND_SUBJECT`; Kryten-Robot emits CyTube ``chatMsg``.

    ``domain`` must equal the robot's configured ``cytube.domain`` *exactly*
    (case-sensitive, dots kept: ``"cytu.be"``) and ``channel`` its channel up
    to case, or the robot silently drops the command (no error reply).
    Raises ``ValueError`` for an empty message, one starting with ``/``, lone
    surrogates, or a missing domain/channel.
    """
    _check_message(message)
    return _command(
        "say",
        {"message": message},
        domain=domain,
        channel=channel,
        source=source,
        request_id=request_id,
    )


def pm_command(
    to: str,
    message: str,
    *,
    domain: str,
    channel: str,
    source: str = "rules",
    request_id: str | None = None,
) -> bytes:
    """A ``pm`` command (args ``to``, ``msg``); Kryten-Robot emits CyTube ``pm``.

    Same domain/channel rules and ``ValueError`` cases as :func:`say_command`.
    """
    if not isinstance(to, str) or not to:
        raise ValueError("to must be a non-empty string")  # robot: "Missing username or message"
    _check_message(message)
    return _command(
        "pm",
        {"to": to, "msg": message},
        domain=domain,
        channel=channel,
        source=source,
        request_id=request_id,
    )
