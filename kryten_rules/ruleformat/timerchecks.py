"""Checks of v1.1 timers and ``when.chat``: what the schema cannot say about them.

A timer (``on: timer``) is an event without a sender and without text, due
every ``every``. So: ``every`` is required on a timer and meaningless
elsewhere; ``match`` can never match a timer (there is no text), and
conditions on the sender (``when.rank``, ``users``, ``not_users``) have no
sender to look at. These are errors or warnings here rather than silent
never-fires, since "my timer never says anything" is the hardest mistake to
see in a live channel.

``every`` has a floor of 1s (below it a timer would be a busy loop) and a
warning under a minute: in a channel a timer every few seconds is spam, but
tests and trials need short ones.
"""

from __future__ import annotations

from collections.abc import Iterator

from kryten_rules.codes import Code
from kryten_rules.diagnostics import Diagnostic, error, warning
from kryten_rules.ruleformat.resolve import RuleSpec
from kryten_rules.ruleformat.templatecheck import reads
from kryten_rules.ruleformat.yamlload import Node

EVERY_MIN = 1.0  # seconds: below this, `timer-every-too-short` (an error)
EVERY_WARN = 60.0  # seconds: below this, `timer-every-short` (a warning)
SENDER_CONDITIONS = ("rank", "users", "not_users")


def check_timer_rule(spec: RuleSpec, name: str) -> Iterator[Diagnostic]:
    """``every`` where it belongs, and nothing on a timer that needs text or a sender."""
    every = spec.get("every")
    on = spec.get("on")
    if spec.on != "timer":
        if every is not None:
            yield error(
                Code.EVERY_NOT_TIMER,
                f"rule {name!r} has `every` but is `on: {spec.on}`: only timers have turns",
                every.span,
                "add `on: timer`, or remove `every`",
            )
        return
    if every is None:
        yield error(
            Code.TIMER_EVERY_MISSING,
            f"timer rule {name!r} has no `every`: it would never have a turn",
            on.span if on is not None else spec.span,
            "say how often, e.g. `every: 30m`",
        )
    elif spec.every is not None and spec.every < EVERY_MIN:
        yield error(
            Code.TIMER_EVERY_TOO_SHORT,
            f"timer rule {name!r} has `every` under {EVERY_MIN:g}s",
            every.span,
            "a timer's turns are minutes apart, e.g. `every: 30m`",
        )
    elif spec.every is not None and spec.every < EVERY_WARN:
        yield warning(
            Code.TIMER_EVERY_SHORT,
            f"timer rule {name!r} has a turn every {spec.every:g}s: in a channel that is spam",
            every.span,
            "fine for a trial; in a channel use minutes, e.g. `every: 30m`",
        )
    yield from check_timer_match(spec, name)
    via = spec.get("respond_via")
    if via is not None and via.value == "pm":
        yield error(
            Code.TIMER_RESPOND_VIA,
            f"timer rule {name!r} answers by PM, but a timer has nobody to PM",
            via.span,
            "remove `respond_via` (a timer speaks in chat)",
        )
    for key in ("prompt", "reply", "fallback_reply"):
        node = spec.get(key)
        if node is not None and isinstance(node.value, str) and "user" in reads(node.value):
            yield warning(
                Code.TIMER_USER,
                f"the {key} of timer rule {name!r} reads `user`, but a timer has no sender "
                "(`user` is none there)",
                node.span,
                "use `channel`, `media` or `history` instead",
            )
    when = spec.get("when")
    for key in SENDER_CONDITIONS:
        node = when.get(key) if when is not None else None
        if node is not None:
            yield warning(
                Code.TIMER_SENDER_CONDITION,
                f"timer rule {name!r} has `when.{key}`, but a timer has no sender",
                node.span,
                "remove it; `when.chat` and `when.media` are what a timer can look at",
            )


def check_timer_match(spec: RuleSpec, name: str) -> Iterator[Diagnostic]:
    """``match`` on a timer: a timer has no text, so a match could never hold."""
    match = spec.get("match")
    if match is not None and match.is_map and match.value:
        yield error(
            Code.TIMER_MATCH,
            f"timer rule {name!r} has `match`, but a timer has no text to match",
            match.span,
            "remove `match`; use `when.chat` to speak only while people are talking",
        )


def check_chat_condition(spec: RuleSpec, name: str) -> Iterator[Diagnostic]:
    """``when.chat`` whose window is empty: no line could ever count."""
    when = spec.get("when")
    chat = when.get("chat") if when is not None else None
    within = chat.get("within") if chat is not None else None
    if within is not None and spec.chat_within is not None and spec.chat_within <= 0:
        yield error(
            Code.CHAT_WINDOW,
            f"rule {name!r}: when.chat.within is 0, so no line is ever recent enough",
            within.span,
            "give the window, e.g. `within: 15m`",
        )


def timer_durations(spec: RuleSpec) -> Iterator[Node]:
    """The duration nodes these keys add (``every``, ``when.chat.within``), for range checks."""
    every = spec.node.get("every")
    if every is not None:
        yield every
    when = spec.node.get("when")
    chat = when.get("chat") if when is not None else None
    within = chat.get("within") if chat is not None else None
    if within is not None:
        yield within


__all__ = [
    "EVERY_MIN",
    "EVERY_WARN",
    "check_chat_condition",
    "check_timer_match",
    "check_timer_rule",
    "timer_durations",
]
