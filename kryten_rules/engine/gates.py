"""The gates that need no state: does a rule's ``match`` hold, is the media right.

Pure functions of the rule and what the event brought, so they are easy to
test alone; the stateful gates (cooldowns, budgets) are the engine's.
"""

from __future__ import annotations

from collections.abc import Collection

from kryten_rules.compile.ruleset import Rule
from kryten_rules.events import Media
from kryten_rules.trace import Reason
from kryten_rules.units import format_duration


def match_miss(rule: Rule, present: Collection[int]) -> Reason | None:
    m = rule.matcher
    if m.mention is not None and m.mention not in present:
        return Reason.NO_MATCH
    one_of = m.one_of
    if one_of and not any(p in present for p in one_of):
        return Reason.NO_MATCH
    if m.all and not all(p in present for p in m.all):
        return Reason.NO_MATCH
    if m.none and any(p in present for p in m.none):
        return Reason.VETOED
    return None


def media_miss(rule: Rule, media: Media | None) -> str | None:
    cond = rule.media
    assert cond is not None
    if media is None:
        return "nothing is playing"
    if cond.min_duration is not None and media.duration < cond.min_duration:
        return f"{format_duration(media.duration)} < {format_duration(cond.min_duration)}"
    if cond.max_duration is not None and media.duration > cond.max_duration:
        return f"{format_duration(media.duration)} > {format_duration(cond.max_duration)}"
    if cond.title_any and not any(t in media.title.lower() for t in cond.title_any):
        return "title does not match"
    return None


__all__ = ["match_miss", "media_miss"]
