"""Checks across the whole rule set (duplicate ids, the RE2 pattern budget,
shadowed rules) and of the service config; ``checks.py`` checks one rule at a time.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Iterator, Mapping

from kryten_rules.config import MAX_LEASE_TTL, MIN_LEASE_TTL
from kryten_rules.diagnostics import Diagnostic, Span, error
from kryten_rules.ruleformat.channelchecks import check_channels
from kryten_rules.ruleformat.checks import check_rule_file
from kryten_rules.ruleformat.groupcheck import check_groups
from kryten_rules.ruleformat.natscheck import check_nats
from kryten_rules.ruleformat.patterns import (
    SET_MAX_PROGRAM,
    program_size,
    word_pattern,
)
from kryten_rules.ruleformat.resolve import RuleFile, RuleSetSpec, resolve
from kryten_rules.ruleformat.shadowing import check_shadowed
from kryten_rules.ruleformat.shapes import check_shapes
from kryten_rules.ruleformat.yamlload import Node, seq
from kryten_rules.units import DurationRangeError, parse_duration


def _once_per_set(
    files: list[RuleFile], key: str, sub: str | None, code: str, what: str
) -> Iterator[Diagnostic]:
    first: Span | None = None
    for rf in files:
        node = rf.root.get(key)
        if node is not None and sub is not None:
            if not node.is_map:
                continue
            parent = node
            node = node.get(sub)
            span = parent.key_span(sub) if node is not None else None
        else:
            span = rf.root.key_span(key) if node is not None else None
        if span is None:
            continue
        if first is None:
            first = span
        else:
            yield error(
                code,
                f"{what} is already defined at {first}",
                span,
                "a rule set has one; keep it in one file",
            )


def check_duplicate_ids(files: list[RuleFile]) -> Iterator[Diagnostic]:
    seen: dict[str, Span] = {}
    for rf in files:
        for rule in rf.rules:
            rid = rule.get("id")
            if rid is None or not isinstance(rid.value, str):
                continue
            if rid.value in seen:
                yield error(
                    "duplicate-id",
                    f"rule id {rid.value!r} is already used at {seen[rid.value]}",
                    rid.span,
                    "ids key cooldown state, so each must be unique",
                )
            else:
                seen[rid.value] = rid.span


def _pattern_nodes(files: list[RuleFile]) -> Iterator[tuple[str, Node]]:
    """Every word and regex of a rule set, as the RE2 pattern it becomes."""
    for rf in files:
        matches = [r.get("match") for r in rf.rules]
        if rf.defaults is not None:
            matches.append(rf.defaults.get("match"))
        for match in matches:
            if match is None or not match.is_map:
                continue
            for key in ("any", "all", "none"):
                for w in seq(match.get(key)):
                    if isinstance(w.value, str):
                        yield word_pattern(w.value), w
            for r in seq(match.get("regex")):
                if isinstance(r.value, str):
                    yield r.value, r


def check_pattern_budget(files: list[RuleFile]) -> Iterator[Diagnostic]:
    """The rule set's patterns together stay small enough to compile in one go.

    Each pattern is within its own budget (``regex-too-large``), but the RE2
    set of all of them is compiled in one call that holds the GIL; past
    ``SET_MAX_PROGRAM`` instructions a reload would stall the service.
    """
    total = 0
    seen: set[str] = set()
    for pattern, node in _pattern_nodes(files):
        if pattern in seen:
            continue
        seen.add(pattern)
        size = program_size(pattern)
        if isinstance(size, str):
            continue  # reported as bad-regex or regex-too-large
        total += size
        if total > SET_MAX_PROGRAM:
            yield error(
                "regex-set-too-large",
                f"the rule set's words and regexes compile to over {SET_MAX_PROGRAM} RE2 "
                "instructions from here on",
                node.span,
                "fewer or simpler regexes (Unicode classes like \\pL and large repeats cost most)",
            )
            return


def check_rule_set(
    files: list[RuleFile], chains: Mapping[str, object] | None, spec: RuleSetSpec | None = None
) -> list[Diagnostic]:
    """All semantic checks of a rule set: per rule, per file, and across files.

    ``spec`` is the rule set resolved (``resolve.resolve(files)``), made here
    when not given.
    """
    spec = spec if spec is not None else resolve(files)
    by_node = {id(r.node): r for r in spec.rules}
    out: list[Diagnostic] = []
    for rf in files:
        rules = [by_node[id(n)] for n in rf.rules]
        out.extend(check_rule_file(rf, rules, chains, spec.numbers))
    for rule in spec.rules:
        out.extend(check_groups(rule))
    out.extend(check_duplicate_ids(files))
    out.extend(check_pattern_budget(files))
    out.extend(_once_per_set(files, "persona", None, "duplicate-persona", "the persona"))
    out.extend(_once_per_set(files, "ranks", None, "duplicate-ranks", "ranks"))
    out.extend(_once_per_set(files, "limits", "global", "duplicate-limits", "limits.global"))
    out.extend(_once_per_set(files, "limits", "user", "duplicate-limits", "limits.user"))
    out.extend(check_shadowed(spec))  # warnings last: errors matter more
    for rule in spec.rules:
        out.extend(check_shapes(rule))
    return out


MIN_HEARTBEAT = 0.1


def _config_numbers(root: Node) -> Iterator[Diagnostic]:
    """Durations the schema lets through that the service cannot use.

    A duration of 400 digits is a valid integer; at start it was a traceback
    and exit 1. (NaN and infinity never get this far: the loader reports them
    in every kind of file, see ``numbers.py``.)
    """
    durations = [(key, root.get(key)) for key in ("reply_max_age", "history_slack", "heartbeat")]
    state = root.get("state")
    if state is not None and state.is_map:
        durations.append(("state.lease_ttl", state.get("lease_ttl")))
    for section, key in (("chains", "deadline"), ("models", "timeout")):
        block = root.get(section)
        for name, item in block.items() if block is not None else ():
            durations.append((f"{section}.{name}.{key}", item.get(key)))
    for where, given in durations:
        if given is None or (isinstance(given.value, float) and not math.isfinite(given.value)):
            continue  # absent, or reported by the loader
        try:
            seconds = parse_duration(given.value)
        except DurationRangeError as exc:
            yield error("bad-duration", f"{where}: {exc}", given.span)
        except ValueError:
            pass  # the wrong form: the schema reports it
        else:
            if where == "heartbeat" and seconds < MIN_HEARTBEAT:
                # 0 would publish heartbeats in a busy loop
                yield error(
                    "bad-duration",
                    f"heartbeat: at least {MIN_HEARTBEAT:g}s (the ecosystem's is 30s)",
                    given.span,
                )
            if where == "state.lease_ttl" and seconds > MAX_LEASE_TTL:
                # a bucket's max_age is int64 nanoseconds; a day is already no failover
                yield error(
                    "bad-duration",
                    f"state.lease_ttl: at most {MAX_LEASE_TTL:g}s (the default is 3s)",
                    given.span,
                )
            if where == "state.lease_ttl" and seconds < MIN_LEASE_TTL:
                # renewals every ttl/3 of a few hundred ms lose the lease on any busy moment
                yield error(
                    "bad-duration",
                    f"state.lease_ttl: at least {MIN_LEASE_TTL:g}s (the default is 3s)",
                    given.span,
                )


def check_config(root: Node) -> Iterator[Diagnostic]:
    """Semantic checks of a service config: usable numbers, chains name defined models,
    one NATS authentication mode."""
    yield from _config_numbers(root)
    yield from check_nats(root)
    yield from check_channels(root)
    models = root.get("models")
    names = set(models.value) if models is not None and models.is_map else set()
    chains = root.get("chains")
    for cname, chain in chains.items() if chains is not None else ():
        for m in seq(chain.get("models")):
            if isinstance(m.value, str) and m.value not in names:
                close = difflib.get_close_matches(m.value, sorted(names), n=1)
                yield error(
                    "unknown-model",
                    f"chain {cname!r} uses model {m.value!r}, which is not defined under models:",
                    m.span,
                    f"did you mean {close[0]!r}?" if close else None,
                )


def rule_ids(files: Iterable[RuleFile]) -> set[str]:
    return {
        r.value["id"].value
        for rf in files
        for r in rf.rules
        if r.is_map and "id" in r.value and isinstance(r.value["id"].value, str)
    }
