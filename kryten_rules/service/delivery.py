"""What became of one chat message handed to kryten-robot.

kryten-robot 1.12.6 answers every ``kryten.robot.command`` on NATS
request-reply (``RobotCommandHandler``): ``{"success": true, "data":
{"success": true}}`` once it has passed the message to CyTube, and
``{"success": false, "error": ...}`` when it cannot (its
``commands.enabled`` defaults to false, and then every ``say`` is refused
with "Not connected or sender not available"). It does not answer at all
when the command's ``meta.domain`` differs from its own ``cytube.domain``
(exactly, port included) or the channel differs. A publish that ignores the
answer cannot tell "said in the channel" from "dropped": so the bot sends
each message as a request and only an answer with ``success`` counts as sent.

:func:`robot_delivery` turns the answer (or its absence) into a
:class:`Delivery` with a status code, the robot's error and a hint that
names the robot setting to check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

# statuses; only SENT means the robot confirmed
SENT: Final = "sent"
REFUSED: Final = "refused"  # the robot answered success: false
NO_ANSWER: Final = "no_answer"  # nothing came back within the timeout
NO_ROBOT: Final = "no_robot"  # the NATS server says nobody subscribes to the subject
BAD_ANSWER: Final = "bad_answer"  # an answer we cannot read
SEND_FAILED: Final = "send_failed"  # publishing raised (NATS down, ...)
TOO_OLD: Final = "too_old"  # the pacer held it past reply_max_age
QUEUE_FULL: Final = "queue_full"  # the pacer's queue had no room
SHUTDOWN: Final = "shutdown"  # the service stopped before it was sent
SKIPPED: Final = "skipped"  # an earlier part of the same reply was not sent
ROBOT_FAILURES: Final = frozenset({REFUSED, NO_ANSWER, NO_ROBOT, BAD_ANSWER, SEND_FAILED})

HINT_REFUSED: Final = (
    "kryten-robot refused to send: set `commands: {enabled: true}` in the robot's config "
    "(the default is false) and check that the robot is connected to CyTube"
)
HINT_NO_ANSWER: Final = (
    "kryten-robot did not answer: it ignores commands whose meta.domain/channel differ "
    "from its own; make this service's cytube.domain ({domain}) and cytube.channel "
    "({channel}) match the robot's `cytube.domain` and `cytube.channel` exactly "
    "(case and port count)"
)
HINT_NO_ROBOT: Final = (
    "nothing listens on kryten.robot.command: is kryten-robot running and connected "
    "to the same NATS server?"
)
MAX_ERROR: Final = 300


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one message: ``status`` is one of the codes above."""

    status: str
    error: str | None = None
    hint: str | None = None

    @property
    def sent(self) -> bool:
        return self.status == SENT


CONFIRMED: Final = Delivery(SENT)


def _short(text: object) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= MAX_ERROR else s[: MAX_ERROR - 3] + "..."


def robot_delivery(answer: bytes) -> Delivery:
    """The :class:`Delivery` that a kryten-robot answer stands for.

    Both levels of its answer count: the envelope's ``success`` (false when
    the handler raised, e.g. no sender) and ``data.success`` (false when the
    handler itself reports a failure).
    """
    try:
        doc: Any = json.loads(answer)
    except (ValueError, UnicodeDecodeError):
        return Delivery(BAD_ANSWER, f"not JSON: {_short(answer[:100])}", HINT_REFUSED)
    if not isinstance(doc, dict):
        return Delivery(BAD_ANSWER, f"not an object: {_short(doc)}", HINT_REFUSED)
    if doc.get("success") is not True:
        return Delivery(REFUSED, _short(doc.get("error") or "success: false"), HINT_REFUSED)
    data = doc.get("data")
    if isinstance(data, dict) and data.get("success") is False:
        return Delivery(REFUSED, _short(data.get("error") or "data.success: false"), HINT_REFUSED)
    return CONFIRMED


def no_answer(timeout: float, *, domain: str, channel: str) -> Delivery:
    return Delivery(
        NO_ANSWER,
        f"no answer from kryten-robot within {timeout:g}s",
        HINT_NO_ANSWER.format(domain=domain, channel=channel),
    )


def no_robot() -> Delivery:
    return Delivery(NO_ROBOT, "no responders on kryten.robot.command", HINT_NO_ROBOT)


def send_failed(exc: BaseException) -> Delivery:
    return Delivery(SEND_FAILED, _short(f"{type(exc).__name__}: {exc}".rstrip(": ")))


__all__ = [
    "BAD_ANSWER",
    "CONFIRMED",
    "NO_ANSWER",
    "NO_ROBOT",
    "QUEUE_FULL",
    "REFUSED",
    "ROBOT_FAILURES",
    "SEND_FAILED",
    "SENT",
    "SHUTDOWN",
    "SKIPPED",
    "TOO_OLD",
    "Delivery",
    "no_answer",
    "no_robot",
    "robot_delivery",
    "send_failed",
]
