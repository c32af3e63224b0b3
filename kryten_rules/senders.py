"""Who a line is from, before any rule: people, the bot itself, CyTube's notices.

The vocabulary of :class:`IgnoreReason` and the sender checks live in the
foundation because two stages apply them: the intake (service and ``replay``)
and the engine (so ``test`` and ``explain``, which have no intake, ignore the
same senders).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["NOTICE_CLASS", "IgnoreReason", "Ignored", "is_notice_name", "sender_ignored"]

NOTICE_CLASS = "server-whisper"
"""``meta.addClass`` of CyTube's moderator-only notices from ``[server]``."""

class IgnoreReason(StrEnum):
    """Why an event never reached the rules: the ``why`` label of
    ``kryten_rules_events_ignored_total`` and ``Decision.ignored``."""

    SELF = "self"
    NOTICE = "notice"
    IGNORED_USER = "ignored_user"
    MUTED = "muted"
    HISTORY = "history"


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event left out before any rule; ``detail`` says which case, for logs."""

    reason: IgnoreReason
    detail: str = ""


def is_notice_name(name: str) -> bool:
    """A sender in square brackets: CyTube's own (``[server]``, ``[voteskip]``).

    CyTube user names are ``[\\w-]{1,20}``, so no person can have one.
    """
    return len(name) >= 2 and name[0] == "[" and name[-1] == "]"


def sender_ignored(
    user: str, key: str, bot: str, ignore_users: frozenset[str]
) -> IgnoreReason | None:
    """Why lines from this sender never reach the rules, or ``None`` for a person.

    ``key`` is ``user.lower()`` and ``bot`` the bot's name in lower case (the
    engine has both at hand on its hot path). Events without a sender (media
    changes) are never ignored.
    """
    if not user:
        return None
    if key == bot:
        return IgnoreReason.SELF
    if user[0] == "[" and is_notice_name(user):
        return IgnoreReason.NOTICE
    if key in ignore_users:
        return IgnoreReason.IGNORED_USER
    return None
