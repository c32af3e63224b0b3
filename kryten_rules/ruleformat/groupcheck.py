"""The ``groups`` a rule's templates use, against the groups its regexes have.

Before v1.1 ``{{ groups.film }}`` passed validate and failed at render time,
when the rule had already fired (and the fallback, if any, went out instead).
Now a template that reads a group by name (``groups.film``, ``groups['film']``)
or by number (``groups[2]``) that none of the rule's regexes has is an error,
at the template's line and column, with the groups the rule does have.

A rule may have several regexes. A group is valid when *any* of them has it:
``groups.film`` of a rule with ``'^!film (?P<film>.+)'`` and ``'^!f (?P<film>.+)'``
is fine, and so is one that only the first has; when the regex that matched
lacks it, it reads as an empty string (``engine.groups``), as an unmatched
group always has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache, partial

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError

from kryten_rules.codes import Code
from kryten_rules.diagnostics import Diagnostic, Span, error
from kryten_rules.ruleformat.checks import resolve_template_file
from kryten_rules.ruleformat.patterns import compile_one, program_size
from kryten_rules.ruleformat.positions import file_span, template_span
from kryten_rules.ruleformat.resolve import RuleSpec
from kryten_rules.ruleformat.templates import environment
from kryten_rules.ruleformat.yamlload import seq

TEMPLATE_KEYS = ("prompt", "reply", "fallback_reply")


@dataclass(frozen=True, slots=True)
class RegexGroups:
    """What ``groups`` can hold for a rule: the most groups of its regexes, every name."""

    width: int = 0
    names: frozenset[str] = frozenset()
    regexes: int = 0

    def describe(self) -> str:
        if not self.regexes:
            return "the rule has no match.regex, so groups is always empty"
        if not self.width:
            return "none of the rule's regexes has a capture group"
        numbered = ", ".join(f"groups[{i}]" for i in range(min(self.width, 6)))
        if self.width > 6:
            numbered += f", ... groups[{self.width - 1}]"
        named = ", ".join(f"groups.{n}" for n in sorted(self.names))
        return "the rule's regexes have " + numbered + (f"; named: {named}" if named else "")


@lru_cache(maxsize=8192)
def _pattern_groups(pattern: str) -> tuple[int, frozenset[str]] | None:
    """One pattern's group count and names (None: RE2 rejects it, ``bad-regex`` says so).
    Cached: the next reload asks about the same patterns."""
    if isinstance(program_size(pattern), str):
        return None
    compiled = compile_one(pattern)
    return int(compiled.groups), frozenset(compiled.groupindex)


def regex_groups(patterns: list[str]) -> RegexGroups:
    """The groups of the patterns that compile."""
    width = 0
    names: set[str] = set()
    for pattern in patterns:
        found = _pattern_groups(pattern)
        if found is not None:
            width = max(width, found[0])
            names.update(found[1])
    return RegexGroups(width, frozenset(names), len(patterns))


@dataclass(frozen=True, slots=True)
class GroupRef:
    """One ``groups.x`` / ``groups['x']`` / ``groups[N]`` of a template."""

    line: int
    key: str | int
    needle: str  # the text to find its column by

    @property
    def shown(self) -> str:
        return f"groups[{self.key}]" if isinstance(self.key, int) else f"groups.{self.key}"


@dataclass(frozen=True, slots=True)
class TemplateReads:
    """What one template reads of ``groups`` and ``user`` (for ``shapes``)."""

    groups: tuple[GroupRef, ...] = ()
    user_line: int | None = None  # the first line that reads ``user``


@lru_cache(maxsize=4096)
def template_reads(source: str) -> TemplateReads:
    """The constant group references of a template and its first read of ``user``.

    Parsed only when the text names them at all, and cached: a ``defaults``
    template is the same source for every rule of its file. A template that
    does not parse reads nothing here (``template-syntax`` reports it), nor
    does one that assigns the name itself (``{% set groups = ... %}``).
    Computed keys (``groups[i]``) cannot be checked and are not.
    """
    if "groups" not in source and "user" not in source:
        return TemplateReads()
    try:
        ast = environment().parse(source)
    except TemplateSyntaxError:
        return TemplateReads()
    refs: list[GroupRef] = []
    own: set[str] = set()
    user_line: int | None = None
    for node in ast.find_all((nodes.Name, nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Name):
            if node.ctx != "load":
                own.add(node.name)
            elif node.name == "user" and (user_line is None or node.lineno < user_line):
                user_line = node.lineno
            continue
        if not isinstance(node, nodes.Getattr | nodes.Getitem):
            continue
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == "groups"):
            continue
        if isinstance(node, nodes.Getattr):
            if not node.attr.startswith("_"):  # template-unsafe says so
                refs.append(GroupRef(node.lineno, node.attr, f".{node.attr}"))
        elif isinstance(node.arg, nodes.Const):
            key = node.arg.value
            if isinstance(key, bool):
                continue
            if isinstance(key, int) and key >= 0:
                refs.append(GroupRef(node.lineno, key, f"groups[{key}]"))
            elif isinstance(key, str) and not key.startswith("_"):
                refs.append(GroupRef(node.lineno, key, key))
    return TemplateReads(
        () if "groups" in own else tuple(refs), None if "user" in own else user_line
    )


def _missing(ref: GroupRef, have: RegexGroups) -> bool:
    if isinstance(ref.key, int):
        return ref.key >= have.width
    return ref.key not in have.names


SpanOf = Callable[[int, str], Span]


def rule_templates(spec: RuleSpec) -> Iterator[tuple[str, str, SpanOf]]:
    """(what, source, where a line and needle of it stand) for every template of a
    rule, defaults merged."""
    for key in TEMPLATE_KEYS:
        node = spec.get(key)
        if node is not None and isinstance(node.value, str):
            yield key, node.value, partial(template_span, node)
    node = spec.get("prompt_file")
    if node is not None and isinstance(node.value, str):
        target, problem = resolve_template_file(spec.file, node)
        if target is not None and problem is None:
            try:
                source = spec.file.sources.read(target).text()
            except (OSError, UnicodeDecodeError):
                return  # prompt-file-unreadable says so
            yield "prompt_file", source, partial(file_span, target)


def check_groups(spec: RuleSpec) -> Iterator[Diagnostic]:
    """An error for each group a rule's templates read that none of its regexes has."""
    match = spec.get("match")
    patterns = [
        p.value
        for p in seq(match.get("regex") if match is not None and match.is_map else None)
        if isinstance(p.value, str)
    ]
    have: RegexGroups | None = None
    name = spec.id or "?"
    for what, source, span_of in rule_templates(spec):
        for ref in template_reads(source).groups:
            if have is None:
                have = regex_groups(patterns)
            if not _missing(ref, have):
                continue
            how = (
                "name a group with (?P<name>...)"
                if isinstance(ref.key, str)
                else "groups count from 0"
            )
            yield error(
                Code.TEMPLATE_UNKNOWN_GROUP,
                f"{what} of rule {name!r}: {ref.shown} is not a group of the rule's regexes",
                span_of(ref.line, ref.needle),
                f"{have.describe()}; {how}",
            )


__all__ = [
    "GroupRef",
    "RegexGroups",
    "TemplateReads",
    "check_groups",
    "regex_groups",
    "rule_templates",
    "template_reads",
]
