"""Stage 3, compile: the resolved rule model to an immutable :class:`RuleSet`.

Only called on a rule set with no error diagnostics, so it may assume every
value has the shape the schema promises. It reads the rule model
(``resolve``): defaults merged, durations and ranks parsed, the order fixed,
exactly as the checks and the shadowed-rule analysis read them. It does no
I/O: prompt files come from the load's :class:`~kryten_rules.ruleformat.sources.Sources`,
as the checks read them. Everything the engine needs is built here, once: the
per-rule plans and candidate tables are forced before the set is returned
(``RuleSet.tables``), so an engine only evaluates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from kryten_rules.compile.ruleset import (
    WINDOWS,
    Budget,
    Matcher,
    MediaCondition,
    Pattern,
    Persona,
    RankMultiplier,
    Rule,
    RuleSet,
)
from kryten_rules.ruleformat.patterns import compile_set, mention_pattern, word_pattern
from kryten_rules.ruleformat.resolve import MERGED_MAPPINGS, Numbers, RuleFile, RuleSetSpec, resolve
from kryten_rules.ruleformat.templates import CompiledTemplate, compile_template
from kryten_rules.ruleformat.yamlload import Node

__all__ = ["MERGED_MAPPINGS", "compile_rules", "digest_of"]


class _Patterns:
    """Interns patterns so a word used by many rules is scanned once."""

    def __init__(self) -> None:
        self.items: list[Pattern] = []
        self._index: dict[str, int] = {}

    def add(self, regex: str, kind: str, source: str, names: tuple[str, ...] = ()) -> int:
        key = f"{kind}\0{regex}"
        i = self._index.get(key)
        if i is None:
            i = self._index[key] = len(self.items)
            self.items.append(Pattern(regex, kind, source, names))
        return i


def _budget(node: Node | None, numbers: Numbers) -> Budget:
    if node is None or not node.value:
        return Budget()
    doc = node.plain()
    cooldown = node.get("cooldown")
    return Budget(
        cooldown=_parsed(numbers.duration(cooldown)) if cooldown is not None else 0.0,
        windows={w: int(doc[w]) for w in WINDOWS if w in doc},
    )


def _parsed(value: float | ValueError) -> float:
    if isinstance(value, ValueError):  # the checks reported it; compile never sees one
        raise value
    return value


def _rank(node: Node | None, numbers: Numbers) -> int | None:
    if node is None:
        return None
    rank = numbers.rank(node)
    if isinstance(rank, ValueError):
        raise rank
    return rank


def _template_file(rf: RuleFile, node: Node) -> CompiledTemplate:
    # The path as the checks resolved it, and the bytes they read in this load:
    # never a second, unchecked reading (a file that changed since is not here).
    target = (rf.path.parent / str(node.value)).resolve()
    return compile_template(rf.sources.loaded(target).text())


def _optional_template(doc: Mapping[str, Any], key: str) -> CompiledTemplate | None:
    src = doc.get(key)
    return compile_template(src) if isinstance(src, str) else None


def _matcher(match: Mapping[str, Any] | None, pats: _Patterns, mention: int | None) -> Matcher:
    if not match:
        return Matcher()

    def words(key: str) -> tuple[int, ...]:
        ids = (pats.add(word_pattern(w), "word", w) for w in match.get(key, []))
        return tuple(dict.fromkeys(ids))

    any_ = words("any")
    regex = tuple(dict.fromkeys(pats.add(r, "regex", r) for r in match.get("regex", [])))
    return Matcher(
        mention=mention if match.get("mention") else None,
        any=any_,
        all=words("all"),
        regex=regex,
        none=words("none"),
        one_of=tuple(dict.fromkeys(any_ + regex)),
    )


def _persona(spec: RuleSetSpec) -> Persona | None:
    for rf in spec.files:
        node = rf.root.get("persona")
        if node is None:
            continue
        doc = node.plain()
        system = _optional_template(doc, "system_prompt")
        spf = node.get("system_prompt_file")
        if spf is not None:
            system = _template_file(rf, spf)
        return Persona(doc["name"], tuple(doc.get("aliases", [])), system)
    return None


def compile_rules(
    spec: RuleSetSpec | list[RuleFile],
    *,
    bot_name: str = "",
    digest: str = "",
    sources: tuple[str, ...] = (),
) -> RuleSet:
    if not isinstance(spec, RuleSetSpec):
        spec = resolve(spec)
    persona = _persona(spec)
    pats = _Patterns()
    names = [bot_name] if bot_name else []
    names += list(persona.aliases) if persona else []
    mp = mention_pattern(names)
    mention = pats.add(mp, "mention", " | ".join(names), tuple(names)) if mp else None

    rules: list[Rule] = []
    for rs in spec.rules:
        doc = {k: n.plain() for k, n in rs.fields.items()}
        when = doc.get("when") or {}
        media = when.get("media")
        prompt = _optional_template(doc, "prompt")
        prompt_file = rs.get("prompt_file")
        if prompt_file is not None:
            prompt = _template_file(rs.file, prompt_file)
        matcher = _matcher(doc.get("match"), pats, mention)
        if doc.get("match", {}).get("mention") and mention is None:
            # No bot name and no alias: a mention rule can never match; make that explicit.
            matcher = Matcher(mention=-1)
        assert rs.id is not None and rs.probability is not None  # the schema holds
        rules.append(
            Rule(
                id=rs.id,
                index=rs.index,
                span=rs.span,
                description=doc.get("description", ""),
                enabled=doc.get("enabled", True),
                mode=doc.get("mode", "live"),
                priority=rs.priority,
                on=rs.on,
                matcher=matcher,
                rank_min=rs.rank_min,
                rank_max=rs.rank_max,
                users=frozenset(u.lower() for u in when["users"]) if "users" in when else None,
                not_users=frozenset(u.lower() for u in when.get("not_users", [])),
                media=MediaCondition(
                    min_duration=rs.media_min,
                    max_duration=rs.media_max,
                    title_any=tuple(t.lower() for t in media.get("title_any", [])),
                )
                if media
                else None,
                probability=rs.probability,
                cooldowns=dict(rs.cooldowns),
                limit=dict(rs.limit),
                prompt=prompt,
                reply=_optional_template(doc, "reply"),
                fallback_reply=_optional_template(doc, "fallback_reply"),
                chain=doc.get("chain", "default"),
                respond_via=doc.get("respond_via", "chat"),
                max_parts=int(doc.get("max_parts", 2)),
                shared_limits=bool(doc.get("shared_limits", True)),
                every=rs.every or 0.0,
                chat_lines=rs.chat_lines or 0,
                chat_within=rs.chat_within or 0.0,
            )
        )

    candidates: dict[str, dict[int, list[int]]] = {}
    always: dict[str, list[int]] = {}
    for r in rules:
        if r.matcher.matches_everything:
            always.setdefault(r.on, []).append(r.index)
        for p in dict.fromkeys(r.matcher.positive):
            candidates.setdefault(r.on, {}).setdefault(p, []).append(r.index)

    ranks_node = spec.first("ranks")
    numbers = spec.numbers
    ruleset = RuleSet(
        rules=tuple(rules),
        patterns=tuple(pats.items),
        persona=persona,
        ranks=tuple(
            RankMultiplier(
                _rank(e.get("min"), numbers),
                _rank(e.get("max"), numbers),
                float(e.plain().get("cooldown", 1.0)),
                float(e.plain().get("limit", 1.0)),
            )
            for e in (ranks_node.value if ranks_node is not None else [])
        ),
        global_budget=_limits_budget(spec, "global", numbers),
        user_budget=_limits_budget(spec, "user", numbers),
        bot_name=bot_name,
        files=tuple(rf.path for rf in spec.files),
        digest=digest,
        sources=sources,
        candidates={
            kind: {p: tuple(ix) for p, ix in by_pattern.items()}
            for kind, by_pattern in candidates.items()
        },
        always={k: tuple(v) for k, v in always.items()},
        _set=compile_set(p.regex for p in pats.items) if pats.items else None,
    )
    ruleset.tables  # noqa: B018 - the plans and candidate tables, built now and once
    return ruleset


def _limits_part(spec: RuleSetSpec, part: str) -> Node | None:
    found = spec.first_with("limits", part)
    return found[1] if found is not None else None


def _limits_budget(spec: RuleSetSpec, part: str, numbers: Numbers) -> Budget:
    """``limits.<part>`` of the first file that has it, saying which file that was."""
    found = spec.first_with("limits", part)
    if found is None:
        return Budget()
    budget = _budget(found[1], numbers)
    return replace(budget, source=f"limits.{part} of {_shown(found[0].path)}")


def _shown(path: Path) -> str:
    """A file as a moderator would name it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def digest_of(contents: Mapping[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(contents):
        h.update(name.encode())
        h.update(b"\0")
        h.update(contents[name])
        h.update(b"\0")
    return h.hexdigest()
