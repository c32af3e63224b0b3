"""Warnings for rules whose shape cannot do what it says.

Each of these passes the schema and the other checks, and the rule loads and
runs, but part of it can never take effect: a mention on an event nobody
wrote, a rule that is never drawn, a PM to an event without a sender, a
template reading ``user`` where there is no user. They are warnings (the rule
set is usable); ``validate --strict`` fails on them.

What each event kind carries is ``events.EventKind`` (``has_text``, ``has_sender``),
the one place to add a kind. Timers have checks of their own (``timerchecks``).
"""

from __future__ import annotations

from collections.abc import Iterator

from kryten_rules.codes import Code
from kryten_rules.diagnostics import Diagnostic, warning
from kryten_rules.events import EventKind
from kryten_rules.ruleformat.groupcheck import rule_templates, template_reads
from kryten_rules.ruleformat.resolve import RuleSpec


def _text_of(kind: EventKind) -> str:
    """What ``match`` sees for a kind: ``"said"`` (what someone wrote: chat, PM),
    ``"title"`` (a media change: the engine matches the title, which nobody writes to
    the bot) or ``""`` (a join: nothing, so no match holds)."""
    if kind.has_text:
        return "said"
    return "title" if kind is EventKind.CHANGEMEDIA else ""


_POSITIVE_MATCH = ("any", "all", "regex")


def _match_warnings(spec: RuleSpec, name: str, text: str) -> Iterator[Diagnostic]:
    match = spec.get("match")
    if match is None or not match.is_map:
        return
    mention = match.get("mention")
    if mention is not None and mention.value is True and text != "said":
        what = (
            "a media change's title, which nobody writes to the bot"
            if text == "title"
            else "no text"
        )
        yield warning(
            Code.MENTION_WITHOUT_TEXT,
            f"rule {name!r} (on: {spec.on}) asks for a mention, but the event carries {what}",
            match.key_span("mention"),
            "use match.any for words of the title"
            if text == "title"
            else "drop match.mention, or put the rule on chatmsg or pm",
        )
    if text:
        return
    for key in _POSITIVE_MATCH:
        if match.get(key) is not None:
            yield warning(
                Code.MATCH_WITHOUT_TEXT,
                f"rule {name!r} (on: {spec.on}) has match.{key}, but the event carries no "
                "text: the rule never matches",
                match.key_span(key),
                f"drop match.{key}, or put the rule on chatmsg or pm",
            )


def check_shapes(spec: RuleSpec) -> Iterator[Diagnostic]:
    """The shape warnings of one resolved rule (defaults merged)."""
    name = spec.id or "?"
    prob = spec.get("probability")
    if spec.probability == 0 and prob is not None:
        yield warning(
            Code.PROBABILITY_ZERO,
            f"rule {name!r} has probability 0: it never fires",
            prob.span,
            "to switch a rule off say enabled: false; to try it on the side, mode: shadow",
        )
    try:
        kind = EventKind(spec.on)
    except ValueError:
        return  # an unknown `on`: the schema says so
    if kind is EventKind.TIMER:
        return  # timerchecks: timer-match, timer-respond-via, timer-user
    yield from _match_warnings(spec, name, _text_of(kind))
    if kind.has_sender:
        return
    via = spec.get("respond_via")
    if via is not None and via.value == "pm":
        yield warning(
            Code.PM_WITHOUT_SENDER,
            f"rule {name!r} (on: {spec.on}) answers by PM, but the event has no sender to "
            "send it to",
            via.span,
            "use respond_via: chat",
        )
    for what, source, span_of in rule_templates(spec):
        line = template_reads(source).user_line
        if line is not None:
            yield warning(
                Code.USER_WITHOUT_SENDER,
                f"{what} of rule {name!r} (on: {spec.on}) reads user, but the event has no "
                "sender: user.name is empty and user.rank 0",
                span_of(line, "user"),
                "leave user out of templates of events without a sender",
            )


__all__ = ["check_shapes"]
