"""What the templates see: the context of a decision (docs/rules.md "Template variables").

Built only when a template is rendered, from what the engine captured when it
decided (the rule set, the room, the rank and media of that moment), so the
hot path pays nothing for events no template reads.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from kryten_rules.compile.ruleset import Rule, RuleSet
from kryten_rules.engine.groups import NO_GROUPS, Groups
from kryten_rules.engine.room import MemoryRoom
from kryten_rules.events import ChatEvent, EventKind, Media
from kryten_rules.ruleformat.patterns import strip_mention
from kryten_rules.units import rank_name


def build_context(
    rule: Rule,
    event: ChatEvent,
    decided_with: tuple[RuleSet, int | None, MemoryRoom, str],
    text: str,
    present: Collection[int],
    rank: int,
    now: float,
    media: Media | None,
    history_count: int,
    next_media: Media | None = None,
    users: int = 0,
) -> dict[str, Any]:
    """What the templates see (docs/rules.md "Template variables"), as it was at the decision."""
    ruleset, mention_index, room, channel = decided_with
    matched, groups = _matched_text(ruleset, rule, text, present)
    persona = ruleset.persona
    mention = ruleset.regex(mention_index) if mention_index is not None else None
    return {
        # v1.1: a timer has no sender, so no `user` at all (not a guest with no name)
        "user": None
        if event.kind == EventKind.TIMER
        else {"name": event.user, "rank": rank, "rank_name": rank_name(rank)},
        "message": strip_mention(text, mention),
        "text": text,
        "match": matched,
        "groups": groups,
        "media": _media(media),
        "playlist": {"next": _media(next_media)},
        "room": {"users": users},
        "history": [{"user": u, "text": t} for u, t in room.history_before(history_count)],
        "persona": {
            "name": persona.name if persona else ruleset.bot_name,
            "aliases": list(persona.aliases) if persona else [],
        },
        "channel": channel,
        "rule": {"id": rule.id, "description": rule.description},
        "now": datetime.fromtimestamp(now, UTC),
    }


def _media(media: Media | None) -> dict[str, Any] | None:
    if media is None:
        return None
    return {"title": media.title, "duration": media.duration, "type": media.type, "id": media.id}


def _matched_text(
    ruleset: RuleSet, rule: Rule, text: str, present: Collection[int]
) -> tuple[str, Groups]:
    """The words that made the rule match, and a regex's capture groups.

    Groups the rule's other regexes have but the one that matched lacks read
    as ``""`` (validate accepts a group any of the rule's regexes has).
    """
    m = rule.matcher
    for idx in m.regex:
        if idx in present:
            rx = ruleset.regex(idx)
            found = rx.search(text)
            if found:
                width, names = _rule_groups(ruleset, rule)
                named = {k: v or "" for k, v in found.groupdict().items()}
                values = [g or "" for g in found.groups()]
                return found.group(0), Groups(values, named, width, names)
    for idx in m.any + m.all + ((m.mention,) if m.mention is not None else ()):
        if idx in present:
            found = ruleset.regex(idx).search(text)
            if found:
                return found.group(0).lstrip("@"), _no_match_groups(ruleset, rule)
    return "", _no_match_groups(ruleset, rule)


def _rule_groups(ruleset: RuleSet, rule: Rule) -> tuple[int, frozenset[str]]:
    """The most groups of the rule's regexes, and every group name among them."""
    width = 0
    names: set[str] = set()
    for idx in rule.matcher.regex:
        rx = ruleset.regex(idx)
        width = max(width, int(rx.groups))
        names.update(rx.groupindex)
    return width, frozenset(names)


def _no_match_groups(ruleset: RuleSet, rule: Rule) -> Groups:
    """``groups`` when no regex matched: empty, its known groups reading ``""``."""
    if not rule.matcher.regex:
        return NO_GROUPS
    width, names = _rule_groups(ruleset, rule)
    return Groups((), None, width, names)


__all__ = ["build_context"]
