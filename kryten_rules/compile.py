"""Stage 3, compile: checked rule files to an immutable :class:`RuleSet`.

Only called on a rule set with no error diagnostics, so it may assume every
value has the shape the schema promises. It does no I/O: prompt files come
from the load's :class:`~kryten_rules.sources.Sources`, as the checks read them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from .checks import RuleFile
from .patterns import compile_set, mention_pattern, word_pattern
from .ruleset import (
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
from .templates import CompiledTemplate, compile_template
from .units import parse_duration, parse_rank
from .yamlload import Node

MERGED_MAPPINGS = ("cooldown", "limit", "when")


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


def _merged(rule: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(defaults)
    for key, value in rule.items():
        if key in MERGED_MAPPINGS and isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def _budget(doc: Mapping[str, Any] | None) -> Budget:
    if not doc:
        return Budget()
    return Budget(
        cooldown=parse_duration(doc.get("cooldown", 0)),
        windows={w: int(doc[w]) for w in WINDOWS if w in doc},
    )


def _rank(value: Any) -> int | None:
    return None if value is None else parse_rank(value)


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


def _persona(files: list[RuleFile]) -> Persona | None:
    for rf in files:
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


def _first(files: list[RuleFile], key: str) -> Any:
    for rf in files:
        node = rf.root.get(key)
        if node is not None:
            return node.plain()
    return None


def compile_rules(
    files: list[RuleFile], *, bot_name: str = "", digest: str = "", sources: tuple[str, ...] = ()
) -> RuleSet:
    persona = _persona(files)
    pats = _Patterns()
    names = [bot_name] if bot_name else []
    names += list(persona.aliases) if persona else []
    mp = mention_pattern(names)
    mention = pats.add(mp, "mention", " | ".join(names), tuple(names)) if mp else None

    staged: list[tuple[int, int, RuleFile, Node, dict[str, Any]]] = []
    for rf in files:
        defaults = rf.defaults.plain() if rf.defaults is not None else {}
        for node in rf.rules:
            doc = _merged(node.plain(), defaults)
            staged.append((-int(doc.get("priority", 0)), len(staged), rf, node, doc))
    staged.sort(key=lambda t: (t[0], t[1]))

    rules: list[Rule] = []
    for index, (_, _, rf, node, doc) in enumerate(staged):
        when = doc.get("when") or {}
        rank = when.get("rank") or {}
        media = when.get("media")
        prompt = _optional_template(doc, "prompt")
        if node.get("prompt_file") is not None:
            prompt = _template_file(rf, node.value["prompt_file"])
        matcher = _matcher(doc.get("match"), pats, mention)
        if doc.get("match", {}).get("mention") and mention is None:
            # No bot name and no alias: a mention rule can never match; make that explicit.
            matcher = Matcher(mention=-1)
        rules.append(
            Rule(
                id=doc["id"],
                index=index,
                span=node.value["id"].span,
                description=doc.get("description", ""),
                enabled=doc.get("enabled", True),
                mode=doc.get("mode", "live"),
                priority=int(doc.get("priority", 0)),
                on=doc.get("on", "chatmsg"),
                matcher=matcher,
                rank_min=_rank(rank.get("min")),
                rank_max=_rank(rank.get("max")),
                users=frozenset(u.lower() for u in when["users"]) if "users" in when else None,
                not_users=frozenset(u.lower() for u in when.get("not_users", [])),
                media=MediaCondition(
                    min_duration=_dur(media.get("min_duration")),
                    max_duration=_dur(media.get("max_duration")),
                    title_any=tuple(t.lower() for t in media.get("title_any", [])),
                )
                if media
                else None,
                probability=float(doc.get("probability", 1.0)),
                cooldowns={k: parse_duration(v) for k, v in (doc.get("cooldown") or {}).items()},
                limit={w: int(n) for w, n in (doc.get("limit") or {}).items()},
                prompt=prompt,
                reply=_optional_template(doc, "reply"),
                fallback_reply=_optional_template(doc, "fallback_reply"),
                chain=doc.get("chain", "default"),
                respond_via=doc.get("respond_via", "chat"),
                max_parts=int(doc.get("max_parts", 2)),
            )
        )

    candidates: dict[str, dict[int, list[int]]] = {}
    always: dict[str, list[int]] = {}
    for r in rules:
        if r.matcher.matches_everything:
            always.setdefault(r.on, []).append(r.index)
        for p in dict.fromkeys(r.matcher.positive):
            candidates.setdefault(r.on, {}).setdefault(p, []).append(r.index)

    ranks = _first(files, "ranks") or []
    return RuleSet(
        rules=tuple(rules),
        patterns=tuple(pats.items),
        persona=persona,
        ranks=tuple(
            RankMultiplier(
                _rank(e.get("min")),
                _rank(e.get("max")),
                float(e.get("cooldown", 1.0)),
                float(e.get("limit", 1.0)),
            )
            for e in ranks
        ),
        global_budget=_budget(_limits_part(files, "global")),
        user_budget=_budget(_limits_part(files, "user")),
        bot_name=bot_name,
        files=tuple(rf.path for rf in files),
        digest=digest,
        sources=sources,
        candidates={
            kind: {p: tuple(ix) for p, ix in by_pattern.items()}
            for kind, by_pattern in candidates.items()
        },
        always={k: tuple(v) for k, v in always.items()},
        _set=compile_set(p.regex for p in pats.items) if pats.items else None,
    )


def _limits_part(files: list[RuleFile], part: str) -> Any:
    for rf in files:
        node = rf.root.get("limits")
        if node is not None and node.get(part) is not None:
            return node.value[part].plain()
    return None


def _dur(value: Any) -> float | None:
    return None if value is None else parse_duration(value)


def digest_of(contents: Mapping[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(contents):
        h.update(name.encode())
        h.update(b"\0")
        h.update(contents[name])
        h.update(b"\0")
    return h.hexdigest()
