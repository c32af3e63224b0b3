"""The compiled, immutable rule set that the engine evaluates.

Everything here is plain frozen data built once by ``compile``: durations in
seconds, ranks as numbers, defaults merged, templates compiled, and every word
and regex of every rule in a single RE2 set, so one scan of a chat line finds
every candidate rule however many rules there are.

What the engine's hot path reads besides the rules (:class:`Tables`: each
rule's :class:`Plan`, the first candidate per pattern and event kind) is
derived from them here too, once per rule set: ``compile`` builds it before
returning the set, and every engine (the service's, each ``explain``) shares it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

from kryten_rules.diagnostics import Span
from kryten_rules.ruleformat.templates import CompiledTemplate
from kryten_rules.trace import FIRED, WOULD_FIRE, TraceEntry

SCOPES = ("global", "rule", "user", "user_rule")
WINDOWS = {"per_minute": 60.0, "per_hour": 3600.0, "per_day": 86400.0}


@dataclass(frozen=True, slots=True)
class Budget:
    """A cooldown and rolling-window counts (``per_minute`` ... -> max count)."""

    cooldown: float = 0.0
    windows: Mapping[str, int] = field(default_factory=dict)
    source: str = ""  # where it was set, e.g. "limits.global of rules/persona.yaml"


@dataclass(frozen=True, slots=True)
class RankMultiplier:
    min: int | None
    max: int | None
    cooldown: float = 1.0
    limit: float = 1.0

    def applies(self, rank: int) -> bool:
        return (self.min is None or rank >= self.min) and (self.max is None or rank <= self.max)


@dataclass(frozen=True, slots=True)
class MediaCondition:
    min_duration: float | None = None
    max_duration: float | None = None
    title_any: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Persona:
    name: str
    aliases: tuple[str, ...] = ()
    system_prompt: CompiledTemplate | None = None


@dataclass(frozen=True, slots=True)
class Matcher:
    """A rule's ``match`` as indices into the rule set's pattern table.

    Every part given must hold: the mention is present, one of ``any`` or
    ``regex`` is present, every ``all`` word is present, no ``none`` word is.
    """

    mention: int | None = None
    any: tuple[int, ...] = ()
    all: tuple[int, ...] = ()
    regex: tuple[int, ...] = ()
    none: tuple[int, ...] = ()

    # ``any`` words and ``regex`` patterns together: one of them must be present.
    one_of: tuple[int, ...] = ()

    @property
    def single_group(self) -> bool:
        """True when any one positive pattern present is enough for the match.

        Then a rule found through one of its patterns needs no further check.
        """
        return not self.all and not self.none and (self.mention is None or not self.one_of)

    @property
    def positive(self) -> tuple[int, ...]:
        """Patterns of which at least one must be present for the rule to match."""
        first = (self.mention,) if self.mention is not None else ()
        return first + self.any + self.all + self.regex

    @property
    def matches_everything(self) -> bool:
        return not self.positive


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    index: int  # position in evaluation order (priority, then file order)
    span: Span
    description: str = ""
    enabled: bool = True
    mode: str = "live"
    priority: int = 0
    on: str = "chatmsg"
    matcher: Matcher = field(default_factory=Matcher)
    rank_min: int | None = None
    rank_max: int | None = None
    users: frozenset[str] | None = None
    not_users: frozenset[str] = frozenset()
    media: MediaCondition | None = None
    probability: float = 1.0
    cooldowns: Mapping[str, float] = field(default_factory=dict)
    limit: Mapping[str, int] = field(default_factory=dict)
    prompt: CompiledTemplate | None = None
    reply: CompiledTemplate | None = None
    fallback_reply: CompiledTemplate | None = None
    chain: str = "default"
    respond_via: str = "chat"
    max_parts: int = 2
    shared_limits: bool = True  # v1.1: false keeps it out of the shared budgets and cooldowns
    every: float = 0.0  # v1.1, `on: timer`: seconds between its turns (engine/timers.py)
    chat_lines: int = 0  # v1.1 when.chat: at least this many lines from people ...
    chat_within: float = 0.0  # ... in the last this many seconds (0 lines: no condition)

    @property
    def needs_llm(self) -> bool:
        return self.reply is None


@dataclass(frozen=True, slots=True)
class Pattern:
    """One entry of the RE2 set: the source, and how it was produced."""

    regex: str
    kind: str  # "word" | "regex" | "mention"
    source: str  # the word, phrase or regex as the rule file wrote it
    names: tuple[str, ...] = ()  # for the mention pattern: the names it stands for


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    patterns: tuple[Pattern, ...]
    persona: Persona | None = None
    ranks: tuple[RankMultiplier, ...] = ()
    global_budget: Budget = field(default_factory=Budget)
    user_budget: Budget = field(default_factory=Budget)
    bot_name: str = ""
    files: tuple[Path, ...] = ()
    digest: str = ""
    # every file the rule set was built from (rule files and prompt templates)
    sources: tuple[str, ...] = ()
    # event kind -> pattern index -> indices of that kind's rules for which it is positive
    candidates: Mapping[str, Mapping[int, tuple[int, ...]]] = field(default_factory=dict)
    always: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    _set: Any = field(default=None, repr=False, compare=False)

    @cached_property
    def tables(self) -> Tables:
        """The plans and candidate tables, built on first use (``compile`` does it)."""
        return build_tables(self)

    @cached_property
    def by_id(self) -> dict[str, Rule]:
        return {r.id: r for r in self.rules}

    @cached_property
    def match_bytes(self) -> Callable[[bytes], list[int] | None] | None:
        """The RE2 set's own match on UTF-8 bytes (None when there are no patterns).

        The binding under google-re2's Python wrapper: the wrapper only encodes
        the text and turns [] into None, which costs a third of a scan. The
        engine's hot path calls this directly; everyone else uses :meth:`scan`.
        """
        if self._set is None:
            return None
        inner = getattr(self._set, "_set", None)
        match: Callable[[bytes], list[int] | None] = (
            inner.Match if inner is not None else self._set.Match
        )
        return match

    def scan(self, text: str) -> list[int]:
        """Indices of every pattern present in ``text`` (one RE2 set pass), each once.

        A list, not a set: it holds a handful of indices, and membership in a
        short list costs no more than building a set for every event.
        """
        match = self.match_bytes
        if match is None or not text:
            return []
        return match(text.encode("utf-8")) or []

    @cached_property
    def _regexes(self) -> dict[int, Any]:
        return {}

    def regex(self, index: int) -> Any:
        """A compiled regex for one pattern, to find the matched text and groups.

        User regexes compile under RE2 as written; words and mentions get their
        Unicode-boundary twin (``patterns.word_verifier``), compiled on first use.
        """
        cache = self._regexes
        rx = cache.get(index)
        if rx is None:
            from kryten_rules.ruleformat.patterns import (
                compile_one,
                mention_verifier,
                word_verifier,
            )

            p = self.patterns[index]
            if p.kind == "word":
                rx = word_verifier(p.source)
            elif p.kind == "mention":
                rx = mention_verifier(p.names)
            else:
                rx = compile_one(p.regex)
            cache[index] = rx
        return rx


class Plan(NamedTuple):
    """What can block one rule and what its firing spends, worked out at compile."""

    trivial: bool  # nothing can stop it once found: fires without any further check
    conditions: bool  # has `when` conditions to check
    single_group: bool  # found through a pattern means matched (Matcher.single_group)
    fired: TraceEntry  # the (immutable) trace entry of a firing, made once
    cooldowns: tuple[str, ...]  # cooldown scopes to check
    budgets: tuple[tuple[str, str, tuple[tuple[str, int], ...]], ...]  # (scope, kind, windows)
    spend_cooldowns: tuple[tuple[str, float], ...]  # (scope, base seconds) to start
    spend_budgets: tuple[tuple[str, float, int], ...]  # (kind, longest window, entries kept)
    shadow: bool = False  # a shadow rule: its own state namespace, and it never stops the walk


@dataclass(frozen=True, slots=True)
class Tables:
    """The engine's hot-path tables of one rule set.

    ``by_kind``: per event kind, for each pattern the first rule (in evaluation
    order) it makes a candidate, and the first rule that needs no pattern;
    ``len(rules)`` (past the last rule) means "none". ``sure``: per rule, the
    rule and its one-entry trace when nothing can stop it once it is a
    candidate, else None.
    """

    plans: tuple[Plan, ...]
    by_kind: Mapping[str, tuple[tuple[int, ...], int]]
    sure: tuple[tuple[Rule, tuple[TraceEntry, ...]] | None, ...]
    word_kinds: frozenset[int]  # patterns with a Unicode-boundary twin (words, the mention)
    mention: int | None  # the mention pattern's index
    max_cooldown_mult: float
    max_limit_mult: float
    shadow_ids: frozenset[str] = frozenset()  # ids of the shadow rules


def plan_rule(
    rs: RuleSet, rule: Rule, shared: Mapping[str, float], max_limit_mult: float
) -> Plan:
    """One rule's plan: the cooldown keys and budgets that can ever block it.

    ``shared``: the longest global and user cooldown any rule can start; those
    scopes are checked by every rule when some rule can start them, the rule
    and user_rule ones only by the rule itself.
    """
    cd = rule.cooldowns
    if rule.shared_limits:
        own = {
            "global": max(cd.get("global", 0.0), rs.global_budget.cooldown),
            "rule": cd.get("rule", 0.0),
            "user": max(cd.get("user", 0.0), rs.user_budget.cooldown),
            "user_rule": cd.get("user_rule", 0.0),
        }
        checks = tuple(
            scope for scope in SCOPES if (shared[scope] if scope in shared else own[scope]) > 0
        )
    else:
        # shared_limits: false: no shared scope is waited for or spent; the rule's own
        # global/user cooldowns hold for it alone, which is its rule/user_rule scope
        own = {
            "global": 0.0,
            "rule": max(cd.get("rule", 0.0), cd.get("global", 0.0)),
            "user": 0.0,
            "user_rule": max(cd.get("user_rule", 0.0), cd.get("user", 0.0)),
        }
        checks = tuple(scope for scope in SCOPES if own[scope] > 0)
    shares = rule.shared_limits
    budgets = tuple(
        (scope, kind, tuple(windows.items()))
        for scope, kind, windows in (
            ("rule", "count_rule", dict(rule.limit)),
            ("user", "count_user", dict(rs.user_budget.windows) if shares else {}),
            ("global", "count_global", dict(rs.global_budget.windows) if shares else {}),
        )
        if windows
    )
    spend_budgets = tuple(
        (
            kind,
            max(WINDOWS[w] for w, _ in windows),
            int(max(n for _, n in windows) * max_limit_mult) + 1,
        )
        for _, kind, windows in budgets
    )
    conditions = (
        rule.rank_min is not None
        or rule.rank_max is not None
        or rule.users is not None
        or bool(rule.not_users)
        or rule.media is not None
        or rule.chat_lines > 0
    )
    spend_cooldowns = tuple((s, d) for s, d in own.items() if d > 0)
    single = rule.matcher.single_group
    shadow = rule.mode == "shadow"
    trivial = (
        rule.enabled
        and not shadow  # a shadow rule always spends (shadow) state and is walked past
        and single
        and not conditions
        and not checks
        and not budgets
        and rule.probability >= 1.0
    )
    return Plan(
        trivial,
        conditions,
        single,
        TraceEntry(rule.id, WOULD_FIRE if shadow else FIRED),
        checks,
        budgets,
        spend_cooldowns,
        spend_budgets,
        shadow,
    )


def build_tables(rs: RuleSet) -> Tables:
    """Everything the engine's hot path reads, derived from the rule set once."""
    max_limit_mult = max([m.limit for m in rs.ranks] + [1.0])
    sharing = [r for r in rs.rules if r.shared_limits]
    shared = {
        "global": max(
            [r.cooldowns.get("global", 0.0) for r in sharing] + [rs.global_budget.cooldown]
        ),
        "user": max([r.cooldowns.get("user", 0.0) for r in sharing] + [rs.user_budget.cooldown]),
    }
    plans = tuple(plan_rule(rs, r, shared, max_limit_mult) for r in rs.rules)
    none = len(rs.rules)
    by_kind: dict[str, tuple[tuple[int, ...], int]] = {}
    for kind in {r.on for r in rs.rules}:
        heads = [none] * len(rs.patterns)
        for pattern, rule_indices in rs.candidates.get(kind, {}).items():
            if pattern >= 0:  # -1: the mention of a bot with no name, never present
                heads[pattern] = rule_indices[0]
        always = rs.always.get(kind, ())
        by_kind[kind] = (tuple(heads), always[0] if always else none)
    return Tables(
        plans=plans,
        by_kind=by_kind,
        sure=tuple(
            (rule, (plan.fired,)) if plan.trivial else None
            for rule, plan in zip(rs.rules, plans, strict=True)
        ),
        word_kinds=frozenset(
            i for i, p in enumerate(rs.patterns) if p.kind in ("word", "mention")
        ),
        mention=next((i for i, p in enumerate(rs.patterns) if p.kind == "mention"), None),
        max_cooldown_mult=max([m.cooldown for m in rs.ranks] + [1.0]),
        max_limit_mult=max_limit_mult,
        shadow_ids=frozenset(r.id for r in rs.rules if r.mode == "shadow"),
    )
