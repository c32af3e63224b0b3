"""Stage 4, evaluate: one event against the compiled rules -> a :class:`Decision`.

Semantics are RULES.md "Evaluation": rules whose ``on`` fits are tried by
priority; the first that passes every gate fires and nothing else does. The
gates, in order, and their reason codes: ``disabled``, ``no_match``/``vetoed``,
``condition.*``, ``cooldown.<scope>``, ``limit.<scope>.<window>``,
``probability``.

One RE2 set scan per event finds every pattern present; only rules with a
pattern present (plus rules that match everything) are candidates, so the cost
of an event grows with the rules it could fire, not with the size of the rule
set. Time comes from a clock and chance from a seeded RNG, so the same events
and seed always give the same decisions.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cachetools import LRUCache

from .clock import Clock, SystemClock
from .events import ChatEvent, Media
from .patterns import normalise, strip_mention
from .ruleset import WINDOWS, Budget, Rule, RuleSet
from .state import MemoryStore, StateStore
from .units import format_duration, rank_name

HISTORY_LINES = 20
MAX_TEXT = 4_000  # CyTube cuts chat at a few hundred characters; anything longer is junk
MAX_KNOWN_USERS = 50_000
DAY = 86400.0

FIRED, BLOCKED, SKIPPED = "fired", "blocked", "skipped"


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One rule tried: ``outcome`` is fired/blocked/skipped, ``reason`` a code."""

    rule: str
    outcome: str
    reason: str | None = None
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "outcome": self.outcome,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """What the engine decided for one event, and why."""

    event: ChatEvent
    fired: str | None = None
    rule: Rule | None = None
    trace: tuple[TraceEntry, ...] = ()
    context: dict[str, Any] | None = None
    ignored: str | None = None  # why the event never reached the rules (self, ignored user)

    @property
    def shadow(self) -> bool:
        return self.rule is not None and self.rule.mode == "shadow"

    @property
    def blocked(self) -> str | None:
        """The reason that stopped the first rule that matched, when nothing fired.

        A vetoed rule counts as matched: its words were there, a veto stopped it.
        """
        if self.fired is not None:
            return None
        for t in self.trace:
            if t.reason not in (None, "no_match", "disabled"):
                return t.reason
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "fired": self.fired,
            "trace": [t.as_dict() for t in self.trace],
            "ignored": self.ignored,
        }


@dataclass(slots=True)
class _Scan:
    text: str
    present: frozenset[int]


@dataclass(slots=True)
class ChannelState:
    """What the engine remembers about the room: ranks, the media, recent lines."""

    ranks: LRUCache[str, int] = field(default_factory=lambda: LRUCache(MAX_KNOWN_USERS))
    media: Media | None = None
    history: deque[dict[str, str]] = field(default_factory=lambda: deque(maxlen=HISTORY_LINES))


class Engine:
    """Evaluates events against a :class:`RuleSet`.

    ``swap`` replaces the rule set between two events (hot reload); state is
    keyed by rule id, so cooldowns and budgets carry over.
    """

    def __init__(
        self,
        ruleset: RuleSet,
        *,
        clock: Clock | None = None,
        seed: int | None = None,
        state: StateStore | None = None,
        channel: str = "",
        bot_name: str | None = None,
        ignore_users: Iterable[str] = (),
    ) -> None:
        self.clock = clock or SystemClock()
        self.rng = random.Random(seed)
        self.state: StateStore = state or MemoryStore(self.clock.now)
        self.channel_name = channel
        self.room = ChannelState()
        self.ignore_users = frozenset(u.lower() for u in ignore_users)
        self._bot_name = bot_name
        self.ruleset = ruleset
        self._mention_rx: Any = None
        self._install(ruleset)

    # --- rule set ------------------------------------------------------------

    def _install(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        mention = next((i for i, p in enumerate(ruleset.patterns) if p.kind == "mention"), None)
        self._mention_rx = ruleset.regex(mention) if mention is not None else None
        self._bot = (self._bot_name if self._bot_name is not None else ruleset.bot_name).lower()
        mults = [m.cooldown for m in ruleset.ranks] + [1.0]
        self._max_cooldown_mult = max(mults)
        self._max_limit_mult = max([m.limit for m in ruleset.ranks] + [1.0])

    def swap(self, ruleset: RuleSet) -> None:
        """Install a new rule set; state of rules that are gone is dropped."""
        gone = {r.id for r in self.ruleset.rules} - {r.id for r in ruleset.rules}
        if gone:
            self.state.drop_rules(gone)
        self._install(ruleset)

    # --- room state ------------------------------------------------------------

    def set_rank(self, user: str, rank: int) -> None:
        self.room.ranks[user.lower()] = int(rank)

    def forget_user(self, user: str) -> None:
        self.room.ranks.pop(user.lower(), None)

    def rank_of(self, user: str) -> int:
        return self.room.ranks.get(user.lower(), 0)

    def set_media(self, media: Media | None) -> None:
        self.room.media = media

    # --- evaluation ------------------------------------------------------------

    def evaluate(self, event: ChatEvent, *, full_trace: bool = False) -> Decision:
        """Decide one event. ``full_trace`` lists every rule of the event's kind
        (for ``explain``); otherwise rules whose patterns are absent are left out."""
        now = event.at if event.at else self.clock.now()
        if event.rank is not None and event.user:
            self.set_rank(event.user, event.rank)
        if event.kind == "changemedia" and event.media is not None:
            self.set_media(event.media)
        if event.user and event.user.lower() == self._bot:
            return Decision(event, ignored="self")
        if event.user and event.user.lower() in self.ignore_users:
            return Decision(event, ignored="ignored_user")

        text = self._event_text(event)
        scan = _Scan(text, self.ruleset.scan(text))
        rank = self.rank_of(event.user) if event.user else 0
        trace: list[TraceEntry] = []
        fired: Rule | None = None
        for rule in self._candidates(event.kind, scan, full_trace):
            entry = self._try(rule, event, scan, rank, now)
            trace.append(entry)
            if entry.outcome == FIRED:
                fired = rule
                break
        context = None
        if fired is not None:
            self._spend(fired, event.user, rank, now)
            context = self._context(fired, event, scan, rank, now)
        if event.kind == "chatmsg" and text:
            self.room.history.append({"user": event.user, "text": text})
        return Decision(event, fired.id if fired else None, fired, tuple(trace), context)

    def _event_text(self, event: ChatEvent) -> str:
        if event.kind == "changemedia":
            return event.media.title if event.media else ""
        return normalise(event.text[:MAX_TEXT]) if event.text else ""

    def _candidates(self, kind: str, scan: _Scan, full: bool) -> list[Rule]:
        rules = self.ruleset.rules
        if full:
            return [r for r in rules if r.on == kind]
        idx: set[int] = set(self.ruleset.always.get(kind, ()))
        cand = self.ruleset.candidates
        for p in scan.present:
            idx.update(cand.get(p, ()))
        return [r for r in (rules[i] for i in sorted(idx)) if r.on == kind]

    def _try(self, rule: Rule, event: ChatEvent, scan: _Scan, rank: int, now: float) -> TraceEntry:
        if not rule.enabled:
            return TraceEntry(rule.id, SKIPPED, "disabled")
        miss = self._match(rule, scan)
        if miss:
            return TraceEntry(rule.id, BLOCKED if miss == "vetoed" else SKIPPED, miss)
        cond = self._condition(rule, event, rank)
        if cond:
            return TraceEntry(rule.id, BLOCKED, cond[0], cond[1])
        mult_cd, mult_lim = self._multipliers(rank)
        left = self._cooldown(rule, event.user, now, mult_cd)
        if left:
            return TraceEntry(rule.id, BLOCKED, left[0], f"{format_duration(left[1])} left")
        spent = self._limits(rule, event.user, now, mult_lim)
        if spent:
            return TraceEntry(rule.id, BLOCKED, spent[0], spent[1])
        if rule.probability < 1.0:
            draw = self.rng.random()
            if draw >= rule.probability:
                return TraceEntry(
                    rule.id,
                    BLOCKED,
                    "probability",
                    f"drew {draw:.2f}, needs < {rule.probability:g}",
                )
        return TraceEntry(rule.id, FIRED)

    def _match(self, rule: Rule, scan: _Scan) -> str | None:
        m = rule.matcher
        present = scan.present
        if m.mention is not None and m.mention not in present:
            return "no_match"
        if m.one_of and not any(p in present for p in m.one_of):
            return "no_match"
        if m.all and not all(p in present for p in m.all):
            return "no_match"
        if m.none and any(p in present for p in m.none):
            return "vetoed"
        return None

    def _condition(self, rule: Rule, event: ChatEvent, rank: int) -> tuple[str, str] | None:
        if rule.rank_min is not None and rank < rule.rank_min:
            return "condition.rank", f"rank {rank} < {rule.rank_min}"
        if rule.rank_max is not None and rank > rule.rank_max:
            return "condition.rank", f"rank {rank} > {rule.rank_max}"
        user = event.user.lower()
        if rule.users is not None and user not in rule.users:
            return "condition.users", f"{event.user} is not listed"
        if user in rule.not_users:
            return "condition.not_users", f"{event.user} is excluded"
        if rule.media is not None:
            why = self._media_miss(rule, self.room.media)
            if why:
                return "condition.media", why
        return None

    @staticmethod
    def _media_miss(rule: Rule, media: Media | None) -> str | None:
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

    def _multipliers(self, rank: int) -> tuple[float, float]:
        for m in self.ruleset.ranks:
            if m.applies(rank):
                return m.cooldown, m.limit
        return 1.0, 1.0

    def _cooldown_keys(self, rule: Rule, user: str) -> list[tuple[str, tuple[str, ...]]]:
        u = user.lower()
        return [
            ("global", ("global",)),
            ("rule", ("rule", rule.id)),
            ("user", ("user", u)),
            ("user_rule", ("user_rule", u, rule.id)),
        ]

    def _cooldown(self, rule: Rule, user: str, now: float, mult: float) -> tuple[str, float] | None:
        for scope, key in self._cooldown_keys(rule, user):
            running = self.state.cooldown(key)
            if running is not None:
                left = running[0] + running[1] * mult - now
                if left > 1e-9:
                    return f"cooldown.{scope}", left
        return None

    def _budgets(self, rule: Rule, user: str) -> list[tuple[str, tuple[str, ...], dict]]:
        rs = self.ruleset
        return [
            ("rule", ("count_rule", rule.id), dict(rule.limit)),
            ("user", ("count_user", user.lower()), dict(rs.user_budget.windows)),
            ("global", ("count_global",), dict(rs.global_budget.windows)),
        ]

    def _limits(self, rule: Rule, user: str, now: float, mult: float) -> tuple[str, str] | None:
        for scope, key, windows in self._budgets(rule, user):
            for window, limit in windows.items():
                allowed = limit * mult
                used = self.state.count_since(key, now - WINDOWS[window])
                if used >= allowed:
                    return f"limit.{scope}.{window}", f"{used} of {allowed:g} used"
        return None

    def _spend(self, rule: Rule, user: str, rank: int, now: float) -> None:
        """Count a firing rule in every scope and budget it touches."""
        rs = self.ruleset
        base = {
            "global": max(rule.cooldowns.get("global", 0.0), rs.global_budget.cooldown),
            "rule": rule.cooldowns.get("rule", 0.0),
            "user": max(rule.cooldowns.get("user", 0.0), rs.user_budget.cooldown),
            "user_rule": rule.cooldowns.get("user_rule", 0.0),
        }
        for scope, key in self._cooldown_keys(rule, user):
            d = base[scope]
            if d > 0:
                self.state.start_cooldown(key, now, d, now + d * self._max_cooldown_mult + 1)
        for _, key, windows in self._budgets(rule, user):
            if windows:
                span = max(WINDOWS[w] for w in windows)
                keep = int(max(windows.values()) * self._max_limit_mult) + 1
                self.state.record(key, now, now + span + 1, keep)

    # --- template context ---------------------------------------------------------

    def _context(
        self, rule: Rule, event: ChatEvent, scan: _Scan, rank: int, now: float
    ) -> dict[str, Any]:
        matched, groups = self._matched_text(rule, scan)
        persona = self.ruleset.persona
        media = self.room.media
        return {
            "user": {"name": event.user, "rank": rank, "rank_name": rank_name(rank)},
            "message": strip_mention(scan.text, self._mention_rx),
            "text": scan.text,
            "match": matched,
            "groups": groups,
            "media": None
            if media is None
            else {
                "title": media.title,
                "duration": media.duration,
                "type": media.type,
                "id": media.id,
            },
            "history": [dict(h) for h in self.room.history],
            "persona": {
                "name": persona.name if persona else self.ruleset.bot_name,
                "aliases": list(persona.aliases) if persona else [],
            },
            "channel": self.channel_name,
            "rule": {"id": rule.id, "description": rule.description},
            "now": datetime.fromtimestamp(now, UTC),
        }

    def _matched_text(self, rule: Rule, scan: _Scan) -> tuple[str, list[str]]:
        m = rule.matcher
        for idx in m.regex:
            if idx in scan.present:
                found = self.ruleset.regex(idx).search(scan.text)
                if found:
                    return found.group(0), [g or "" for g in found.groups()]
        for idx in m.any + m.all + ((m.mention,) if m.mention is not None else ()):
            if idx in scan.present:
                found = self.ruleset.regex(idx).search(scan.text)
                if found:
                    return found.group(0).strip(), []
        return "", []


__all__ = ["Budget", "Decision", "Engine", "TraceEntry"]
