"""The compiled, immutable rule set that the engine evaluates.

Everything here is plain frozen data built once by ``compile``: durations in
seconds, ranks as numbers, defaults merged, templates compiled, and every word
and regex of every rule in a single RE2 set, so one scan of a chat line finds
every candidate rule however many rules there are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from .diagnostics import Span
from .templates import CompiledTemplate

SCOPES = ("global", "rule", "user", "user_rule")
WINDOWS = {"per_minute": 60.0, "per_hour": 3600.0, "per_day": 86400.0}


@dataclass(frozen=True, slots=True)
class Budget:
    """A cooldown and rolling-window counts (``per_minute`` ... -> max count)."""

    cooldown: float = 0.0
    windows: Mapping[str, int] = field(default_factory=dict)


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
            from .patterns import compile_one, mention_verifier, word_verifier

            p = self.patterns[index]
            if p.kind == "word":
                rx = word_verifier(p.source)
            elif p.kind == "mention":
                rx = mention_verifier(p.names)
            else:
                rx = compile_one(p.regex)
            cache[index] = rx
        return rx
