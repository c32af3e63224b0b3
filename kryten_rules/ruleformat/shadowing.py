"""The ``shadowed`` warning: rules that can never fire because an earlier one always does.

A rule is shadowed when a rule tried before it (higher priority, or earlier in
the files) answers the same kind of event, has no gate of its own that lets
later rules through (no ``when``, probability 1, no rule cooldown or limit),
and matches every text the later rule matches. Timers (v1.1) never shadow each
other: each has turns of its own and is tried alone. Proving that in general is
hard; this covers the cases moderators actually write (no match at all, the
same match, a mention, word lists that contain the later rule's words) and
stays quiet otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from kryten_rules.diagnostics import Diagnostic, warning
from kryten_rules.ruleformat.resolve import RuleSetSpec, RuleSpec
from kryten_rules.ruleformat.yamlload import Node


def _match_terms(match: Node | None) -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    if match is None or not match.is_map:
        return out
    for key, node in match.items():
        if key == "mention":
            if node.value is True:
                out[key] = frozenset({"@"})
        elif node.is_seq:
            out[key] = frozenset(str(n.value).lower() for n in node.value)
    return out


def _blocks_itself(rule: RuleSpec) -> bool:
    """Whether a rule has a gate of its own that lets later rules through sometimes.

    Reads the resolved rule, defaults merged as compile merges them: a rule's
    own ``cooldown: {user: 9s}`` keeps the defaults' ``{rule: 1m}`` beside it.
    """
    if rule.get("when") is not None:
        return True
    prob = rule.get("probability")
    if prob is not None and prob.value != 1:
        return True
    enabled = rule.get("enabled")
    if enabled is not None and enabled.value is False:
        return True
    if rule.get("limit") is not None:
        return True
    cd = rule.get("cooldown")
    return cd is not None and cd.is_map and any(k in cd.value for k in ("rule", "user_rule"))


@dataclass(slots=True)
class _Shadowers:
    """Earlier rules that always fire when they match, indexed by what they match.

    Lets :func:`check_shadowed` find, for each rule, the earlier rules that
    could shadow it without comparing every pair (1,000 rules would be half a
    million comparisons).
    """

    everything: dict[str, tuple[int, str]] = field(default_factory=dict)
    exact: dict[tuple[str, frozenset[tuple[str, frozenset[str]]]], tuple[int, str]] = field(
        default_factory=dict
    )
    mention_only: dict[str, tuple[int, str]] = field(default_factory=dict)
    by_any_word: dict[tuple[str, str], list[tuple[int, str, frozenset[str]]]] = field(
        default_factory=dict
    )

    def add(self, pos: int, rid: str, on: str, terms: dict[str, frozenset[str]]) -> None:
        first = (pos, rid)
        if not terms:
            self.everything.setdefault(on, first)
        self.exact.setdefault((on, frozenset(terms.items())), first)
        if set(terms) == {"mention"}:
            self.mention_only.setdefault(on, first)
        if set(terms) == {"any"}:
            for w in terms["any"]:
                self.by_any_word.setdefault((on, w), []).append((pos, rid, terms["any"]))

    def find(self, on: str, b: dict[str, frozenset[str]]) -> str | None:
        """The earliest rule that matches every text that ``b``'s match accepts."""
        found: list[tuple[int, str]] = []
        for hit in (self.everything.get(on), self.exact.get((on, frozenset(b.items())))):
            if hit:
                found.append(hit)
        if "mention" in b and on in self.mention_only:
            found.append(self.mention_only[on])
        if b.get("any") and not ({"mention", "regex"} & set(b)):
            # b matches through one of its words alone: a must have all of them
            word = min(b["any"])
            found += [
                (p, r) for p, r, words in self.by_any_word.get((on, word), ()) if b["any"] <= words
            ]
        for word in b.get("all", ()):
            found += [(p, r) for p, r, _ in self.by_any_word.get((on, word), ())[:1]]
        return min(found)[1] if found else None


def check_shadowed(spec: RuleSetSpec) -> Iterator[Diagnostic]:
    """A warning for every rule an earlier one always answers first."""
    shadowers = _Shadowers()
    for rule in spec.rules:  # evaluation order
        rid = rule.id
        if rid is None or rule.on == "timer":  # v1.1: each timer is tried alone, on its turn
            continue
        terms = _match_terms(rule.get("match"))  # merged, as compile reads it
        by = shadowers.find(rule.on, terms)
        if by is not None:
            yield warning(
                "shadowed",
                f"rule {rid!r} can never fire: shadowed by {by!r}",
                rule.span,
                f"{by!r} is tried first (higher priority or earlier in the files) and "
                "always matches; lower its priority or narrow its match",
            )
        if not _blocks_itself(rule):
            shadowers.add(rule.index, rid, rule.on, terms)
