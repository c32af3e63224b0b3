"""Stage 2a, resolve: schema-checked rule files to one typed rule model.

The meaning of a rule is worked out here, once, and read by everyone after:
the semantic checks, the shadowed-rule analysis and compile. A rule's file
``defaults`` are merged in (a rule's own value wins; the mappings ``cooldown``,
``limit`` and ``when`` merge key by key, docs/rules.md "defaults"), its
priority, durations and ranks are parsed, and the evaluation order (priority,
then file order) is fixed. Every field keeps its :class:`Node`, so whoever
reports on it points at the file and line it came from.

Resolve runs where the schema failed too (the checks take any shape, so one
run reports everything): a value of the wrong shape resolves to "absent"
(``None``, or the field's default) and its own schema diagnostic says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from kryten_rules.diagnostics import Span
from kryten_rules.ruleformat.sources import Sources
from kryten_rules.ruleformat.yamlload import Node, seq
from kryten_rules.units import parse_duration, parse_rank

MERGED_MAPPINGS = ("cooldown", "limit", "when")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(slots=True)
class RuleFile:
    """A rule file whose document passed the schema (or was checked anyway)."""

    path: Path
    root: Node
    home: Path  # the rule set's directory tree: prompt files must stay inside it
    # the load's files: a prompt file is read once, and compile gets the bytes checked
    sources: Sources = field(default_factory=Sources)

    @property
    def rules(self) -> list[Node]:
        return [r for r in seq(self.root.get("rules")) if r.is_map]

    @property
    def defaults(self) -> Node | None:
        node = self.root.get("defaults")
        return node if node is not None and node.is_map else None


class Numbers:
    """Durations and ranks of one load, each node parsed once.

    Resolve parses every duration and rank it reads here, and the checks ask
    the same object for the same nodes (a ``defaults`` cooldown that 1,000
    rules inherit is still parsed once). A failure is kept as the
    ``ValueError`` the parse raised, for the checks to report.
    """

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        # id(node) -> (node, result): the node is kept so that its id stays its own
        self._seen: dict[int, tuple[Node, float | int | ValueError]] = {}

    def _parsed(self, node: Node, parse: Any) -> float | int | ValueError:
        hit = self._seen.get(id(node))
        if hit is not None and hit[0] is node:
            return hit[1]
        result: float | int | ValueError
        try:
            result = parse(node.value)
        except ValueError as exc:
            result = exc
        self._seen[id(node)] = (node, result)
        return result

    def duration(self, node: Node) -> float | ValueError:
        """Seconds, or why ``node`` is not a duration (``DurationRangeError``: too long)."""
        return self._parsed(node, parse_duration)

    def rank(self, node: Node) -> int | ValueError:
        result = self._parsed(node, parse_rank)
        assert not isinstance(result, float)
        return result


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One rule as it means: defaults merged, numbers parsed, its place fixed.

    ``fields`` holds the rule's effective value for every key it has or
    inherits, each a :class:`Node` with its span: a key the rule sets itself
    points into the rule, one from ``defaults`` into the defaults, and a
    merged mapping is a node whose entries point wherever each came from.
    """

    file: RuleFile
    node: Node  # the rule as written
    fields: Mapping[str, Node]
    id: str | None  # None when missing or not a string (the schema says so)
    index: int  # position in evaluation order
    priority: int
    on: str
    probability: float | None  # None: not a number
    cooldowns: Mapping[str, float]  # scope -> seconds, every scope whose duration parses
    limit: Mapping[str, int]  # window -> count, every window given as a whole number
    rank_min: int | None
    rank_max: int | None
    media_min: float | None
    media_max: float | None
    every: float | None = None  # v1.1 timers: seconds, when it parses
    chat_lines: int | None = None  # v1.1 when.chat.min_lines, when a whole number
    chat_within: float | None = None  # v1.1 when.chat.within: seconds, when it parses

    @property
    def span(self) -> Span:
        """Where the rule is named: its ``id`` value, else the rule itself."""
        rid = self.node.get("id")
        return rid.span if rid is not None else self.node.span

    def get(self, key: str) -> Node | None:
        return self.fields.get(key)

    def plain(self, key: str, default: Any = None) -> Any:
        node = self.fields.get(key)
        return node.plain() if node is not None else default


@dataclass(frozen=True, slots=True)
class RuleSetSpec:
    """Every rule of a rule set, in evaluation order, and the files they came from."""

    files: tuple[RuleFile, ...]
    rules: tuple[RuleSpec, ...]
    numbers: Numbers = field(default_factory=Numbers, compare=False, repr=False)

    def first(self, key: str) -> Node | None:
        """A rule-set-wide key (``persona``, ``ranks``, ``limits``), from the first file with it."""
        for rf in self.files:
            node = rf.root.get(key)
            if node is not None:
                return node
        return None

    def first_with(self, key: str, sub: str) -> tuple[RuleFile, Node] | None:
        """``key.sub`` of the first file whose ``key`` holds ``sub``, with that file."""
        for rf in self.files:
            node = rf.root.get(key)
            if node is not None and node.get(sub) is not None:
                return rf, node.value[sub]
        return None


def merge_fields(rule: Node, defaults: Node | None) -> dict[str, Node]:
    """A rule's effective keys: ``defaults`` under its own, mappings key by key."""
    own: dict[str, Node] = rule.value if isinstance(rule.value, dict) else {}
    if defaults is None or not isinstance(defaults.value, dict) or not defaults.value:
        return dict(own)
    out: dict[str, Node] = dict(defaults.value)
    for key, node in own.items():
        base = out.get(key)
        if key in MERGED_MAPPINGS and base is not None and base.is_map and node.is_map:
            out[key] = Node(
                {**base.value, **node.value},
                node.span,
                {**base.key_spans, **node.key_spans},
                node.block,
                node.end_line,
            )
        else:
            out[key] = node
    return out


def _int(node: Node | None, default: int) -> int:
    v = node.value if node is not None else None
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def _spec(
    rf: RuleFile, rule: Node, defaults: Node | None, staged: int, numbers: Numbers
) -> RuleSpec:
    def _duration(node: Node | None) -> float | None:
        seconds = numbers.duration(node) if node is not None else None
        return None if isinstance(seconds, ValueError) else seconds

    def _rank(node: Node | None) -> int | None:
        rank = numbers.rank(node) if node is not None else None
        return None if isinstance(rank, ValueError) else rank

    fields = merge_fields(rule, defaults)
    rid = fields.get("id")
    on = fields.get("on")
    prob = fields.get("probability")
    p = prob.value if prob is not None else 1.0
    cooldown = fields.get("cooldown")
    cooldowns: dict[str, float] = {}
    for scope, node in cooldown.items() if cooldown is not None else ():
        seconds = _duration(node)
        if seconds is not None:
            cooldowns[scope] = seconds
    limit = fields.get("limit")
    windows = {w: n.value for w, n in limit.items() if _int(n, -1) >= 0} if limit else {}
    when = fields.get("when")
    rank = when.get("rank") if when is not None else None
    media = when.get("media") if when is not None else None
    chat = when.get("chat") if when is not None and when.is_map else None
    chat = chat if chat is not None and chat.is_map else None
    lines = _int(chat.get("min_lines"), -1) if chat is not None else -1
    return RuleSpec(
        file=rf,
        node=rule,
        fields=MappingProxyType(fields),
        id=rid.value if rid is not None and isinstance(rid.value, str) else None,
        index=staged,  # replaced by the evaluation position once sorted
        priority=_int(fields.get("priority"), 0),
        on=on.value if on is not None and isinstance(on.value, str) else "chatmsg",
        probability=float(p) if isinstance(p, int | float) and not isinstance(p, bool) else None,
        cooldowns=MappingProxyType(cooldowns),
        limit=MappingProxyType(windows),
        rank_min=_rank(rank.get("min")) if rank is not None else None,
        rank_max=_rank(rank.get("max")) if rank is not None else None,
        media_min=_duration(media.get("min_duration")) if media is not None else None,
        media_max=_duration(media.get("max_duration")) if media is not None else None,
        every=_duration(fields.get("every")),
        chat_lines=lines if lines >= 0 else None,
        chat_within=_duration(chat.get("within")) if chat is not None else None,
    )


def resolve(files: list[RuleFile]) -> RuleSetSpec:
    """The rule model of a rule set: every rule, defaults merged, in evaluation order.

    Evaluation order is by priority, highest first; ties keep file order (the
    files in the order ``load.discover`` found them, the rules as written).
    """
    numbers = Numbers()
    staged: list[RuleSpec] = []
    for rf in files:
        defaults = rf.defaults
        for rule in rf.rules:
            staged.append(_spec(rf, rule, defaults, len(staged), numbers))
    staged.sort(key=lambda s: (-s.priority, s.index))
    rules = tuple(_at(s, i) for i, s in enumerate(staged))
    return RuleSetSpec(files=tuple(files), rules=rules, numbers=numbers)


def _at(spec: RuleSpec, index: int) -> RuleSpec:
    if spec.index == index:
        return spec
    return replace(spec, index=index)


__all__ = [
    "MERGED_MAPPINGS",
    "Numbers",
    "RuleFile",
    "RuleSetSpec",
    "RuleSpec",
    "merge_fields",
    "resolve",
]
