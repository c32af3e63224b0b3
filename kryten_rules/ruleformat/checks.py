"""Stage 2b, semantic checks: what a schema cannot say.

Each check walks the already-loaded nodes, so every diagnostic points at the
exact key or value it is about. Checks never stop at the first problem and
never raise; they return diagnostics. Nothing here imports the runtime (engine,
LLM, NATS): ``validate`` and ``run`` share this code and can never disagree.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from kryten_rules.diagnostics import Diagnostic, error
from kryten_rules.ruleformat.numbers import out_of_range
from kryten_rules.ruleformat.patterns import (
    PATTERN_MAX_MEM,
    TOO_LARGE,
    program_size,
)
from kryten_rules.ruleformat.positions import file_span, template_span
from kryten_rules.ruleformat.resolve import Numbers, RuleFile, RuleSpec
from kryten_rules.ruleformat.templatecheck import check_template
from kryten_rules.ruleformat.timerchecks import (
    check_chat_condition,
    check_timer_rule,
    timer_durations,
)
from kryten_rules.ruleformat.yamlload import Node, seq
from kryten_rules.units import DurationRangeError

PROMPT_KEYS = ("prompt", "prompt_file", "reply")
TEMPLATE_SUFFIXES = (".j2", ".jinja", ".jinja2", ".txt", ".md")


def regex_problem(pattern: str) -> str | None:
    """RE2's reason for rejecting a pattern, or None when it compiles.

    Compiled as the engine will compile it, under the per-pattern budget
    (``patterns.program_size``), so validate and the running bot can never
    disagree about a regex and no regex is costly to compile.
    """
    size = program_size(pattern)
    return size if isinstance(size, str) else None


def check_template_node(node: Node, what: str) -> Iterator[Diagnostic]:
    if not isinstance(node.value, str):
        return
    for p in check_template(node.value):
        yield error(p.code, f"{what}: {p.message}", template_span(node, p.line, p.needle), p.hint)


def resolve_template_file(rf: RuleFile, node: Node) -> tuple[Path | None, Diagnostic | None]:
    """The path a ``prompt_file``/``system_prompt_file`` names, if it is allowed and exists."""
    raw = node.value
    target = (rf.path.parent / raw).resolve()
    home = rf.home.resolve()
    if not target.is_relative_to(home):
        return None, error(
            "prompt-file-outside",
            f"{raw!r} is outside the rule set's directory {str(home)!r}",
            node.span,
            "keep prompt templates beside the rules, e.g. in prompts/",
        )
    if target.suffix.lower() not in TEMPLATE_SUFFIXES or target.name.startswith("."):
        return None, error(
            "prompt-file-type",
            f"{raw!r} is not a template file ({', '.join(TEMPLATE_SUFFIXES)})",
            node.span,
        )
    if not target.is_file():
        return None, error(
            "prompt-file-missing",
            f"prompt file {raw!r} does not exist",
            node.span,
            _missing_file_hint(rf, raw, target, home),
        )
    return target, None


def as_written(text: str) -> str:
    """A pattern quoted as it reads in YAML, backslashes single (``repr`` doubles them)."""
    return f"'{text}'" if "'" not in text else f'"{text}"'


def _missing_file_hint(rf: RuleFile, raw: str, target: Path, home: Path) -> str:
    """Where the path led, and a file of that name elsewhere in the rule set, if any."""
    import os

    hint = f"the path is relative to the rule file's directory: it names {str(target)!r}"
    name = Path(raw).name
    found: list[Path] = []
    # a few levels of the rule set's tree, not hidden directories or virtualenvs
    for top, dirs, files in os.walk(home):
        depth = Path(top).relative_to(home).parts
        dirs[:] = [
            d
            for d in dirs
            if len(depth) < 3 and not d.startswith(".") and d not in ("node_modules", "venv")
        ]
        if name in files:
            found.append(Path(top) / name)
    if found:
        best = min(found, key=lambda f: len(f.parts))
        rel = Path(os.path.relpath(best, rf.path.parent.resolve())).as_posix()
        return f"did you mean {rel!r}? ({hint})"
    return hint


def check_template_file(rf: RuleFile, node: Node, what: str) -> Iterator[Diagnostic]:
    target, problem = resolve_template_file(rf, node)
    if problem is not None:
        yield problem
        return
    assert target is not None
    try:
        source = rf.sources.read(target).text()
    except (OSError, UnicodeDecodeError) as exc:
        yield error("prompt-file-unreadable", f"cannot read {node.value!r}: {exc}", node.span)
        return
    for p in check_template(source):
        yield error(p.code, f"{what}: {p.message}", file_span(target, p.line, p.needle), p.hint)


def _rank_pair(node: Node | None, numbers: Numbers) -> tuple[int | None, int | None]:
    if node is None or not node.is_map:
        return None, None
    lo = node.get("min")
    hi = node.get("max")
    lo_rank = numbers.rank(lo) if lo is not None else None
    hi_rank = numbers.rank(hi) if hi is not None else None
    if isinstance(lo_rank, ValueError) or isinstance(hi_rank, ValueError):
        return None, None
    return lo_rank, hi_rank


def check_rank_range(
    node: Node | None, what: str, numbers: Numbers | None = None
) -> Iterator[Diagnostic]:
    lo, hi = _rank_pair(node, numbers or Numbers())
    if node is not None and lo is not None and hi is not None and lo > hi:
        yield error(
            "rank-range",
            f"{what}: min rank {lo} is above max rank {hi}, so nothing is in range",
            node.key_span("min"),
        )


def _duration(node: Node | None, numbers: Numbers) -> float | None:
    seconds = numbers.duration(node) if node is not None else None
    return None if isinstance(seconds, ValueError) else seconds


def check_media_range(when: Node | None, numbers: Numbers | None = None) -> Iterator[Diagnostic]:
    media = when.get("media") if when is not None else None
    if media is None or not media.is_map:
        return
    numbers = numbers or Numbers()
    lo = _duration(media.get("min_duration"), numbers)
    hi = _duration(media.get("max_duration"), numbers)
    if lo is not None and hi is not None and lo > hi:
        yield error(
            "duration-range",
            "when.media: min_duration is above max_duration, so no media matches",
            media.key_span("min_duration"),
        )


def _duration_nodes(rule: Node) -> Iterator[Node]:
    """Every duration of a rule (or ``defaults``): its cooldowns and media bounds."""
    cooldown = rule.get("cooldown")
    if cooldown is not None and cooldown.is_map:
        yield from (n for _, n in cooldown.items())
    when = rule.get("when")
    media = when.get("media") if when is not None else None
    for key in ("min_duration", "max_duration"):
        node = media.get(key) if media is not None else None
        if node is not None:
            yield node


def check_durations(nodes: Iterable[Node], numbers: Numbers | None = None) -> Iterator[Diagnostic]:
    """A duration the schema accepts in form but too long to compute with.

    ``numbers``: the load's parsed durations (``resolve.Numbers``), so a node
    resolve already parsed is not parsed again.
    """
    numbers = numbers or Numbers()
    for node in nodes:
        if out_of_range(node.value):
            continue  # number-range says so (numbers.check_ranges)
        seconds = numbers.duration(node)
        if isinstance(seconds, DurationRangeError):
            yield error("bad-duration", str(seconds), node.span, "a cooldown of days is plenty")
        # any other ValueError: not a duration at all, the schema says so


def check_rule(
    spec: RuleSpec, chains: Mapping[str, object] | None, numbers: Numbers | None = None
) -> Iterator[Diagnostic]:
    rf, rule = spec.file, spec.node
    numbers = numbers or Numbers()
    rid = rule.get("id")
    name = rid.value if rid is not None else "?"
    present = [k for k in PROMPT_KEYS if k in rule.value]
    if len(present) != 1:
        span = rule.key_span(present[1]) if len(present) > 1 else rule.span
        msg = (
            f"rule {name!r} has {' and '.join(present)}: give exactly one"
            if present
            else f"rule {name!r} says nothing: give one of prompt, prompt_file or reply"
        )
        yield error("prompt-choice", msg, span)
    for key in ("prompt", "reply", "fallback_reply"):
        node = rule.get(key)
        if node is not None:
            yield from check_template_node(node, f"{key} of rule {name!r}")
    node = rule.get("prompt_file")
    if node is not None and isinstance(node.value, str):
        yield from check_template_file(rf, node, f"prompt_file of rule {name!r}")
    match = rule.get("match")
    if match is not None:
        for pat in seq(match.get("regex")):
            if isinstance(pat.value, str):
                reason = regex_problem(pat.value)
                if reason and TOO_LARGE in reason:
                    yield error(
                        "regex-too-large",
                        f"{as_written(pat.value[:80])} compiles to a program over RE2's budget "
                        f"({PATTERN_MAX_MEM >> 20} MiB): it would stall every reload",
                        pat.span,
                        "use smaller repeat counts (x{1000} is a thousand copies of x); "
                        "\\pL and other Unicode classes are large",
                    )
                elif reason:
                    hint = (
                        "RE2 has no look-around or back-references; match more text instead"
                        if any(s in pat.value for s in ("(?=", "(?!", "(?<", "\\1", "\\2"))
                        else None
                    )
                    yield error(
                        "bad-regex",
                        f"RE2 rejects {as_written(pat.value)}: {reason}",
                        pat.span,
                        hint,
                    )
    yield from check_durations(_duration_nodes(rule), numbers)
    yield from check_durations(timer_durations(spec), numbers)  # v1.1: every, when.chat.within
    yield from check_timer_rule(spec, name)
    yield from check_chat_condition(spec, name)
    when = rule.get("when")
    if when is not None and when.is_map:
        yield from check_rank_range(when.get("rank"), f"when.rank of rule {name!r}", numbers)
        yield from check_media_range(when, numbers)
    if chains is not None and "reply" not in rule.value:
        chain = spec.get("chain")
        chain_name = chain.value if chain is not None else "default"
        if isinstance(chain_name, str) and chain_name not in chains:
            known = sorted(chains)
            close = difflib.get_close_matches(chain_name, known, n=1)
            yield error(
                "unknown-chain",
                f"rule {name!r} uses chain {chain_name!r}, which the service config does not "
                "define" + ("" if chain is not None else " (implied default)"),
                chain.span if chain is not None else rule.span,
                f"did you mean {close[0]!r}?"
                if close
                else f"defined chains: {', '.join(known)}"
                if known
                else "define it under chains: in the service config",
            )


def check_rule_file(
    rf: RuleFile,
    rules: Iterable[RuleSpec],
    chains: Mapping[str, object] | None,
    numbers: Numbers | None = None,
) -> Iterator[Diagnostic]:
    """The checks of one file; ``rules`` are its resolved rules, in file order."""
    numbers = numbers or Numbers()
    persona = rf.root.get("persona")
    if persona is not None and persona.is_map:
        sp = persona.get("system_prompt")
        spf = persona.get("system_prompt_file")
        if sp is not None and spf is not None:
            yield error(
                "prompt-choice",
                "persona has system_prompt and system_prompt_file: give at most one",
                persona.key_span("system_prompt_file"),
            )
        if sp is not None:
            yield from check_template_node(sp, "persona system_prompt")
        if spf is not None and isinstance(spf.value, str):
            yield from check_template_file(rf, spf, "persona system_prompt_file")
    for i, entry in enumerate(seq(rf.root.get("ranks"))):
        yield from check_rank_range(entry, f"ranks[{i}]", numbers)
    defaults = rf.defaults
    if defaults is not None:
        fb = defaults.get("fallback_reply")
        if fb is not None:
            yield from check_template_node(fb, "defaults.fallback_reply")
        yield from check_durations(_duration_nodes(defaults), numbers)
        when = defaults.get("when")
        if when is not None and when.is_map:
            yield from check_rank_range(when.get("rank"), "defaults.when.rank", numbers)
    limits = rf.root.get("limits")
    for part in ("global", "user"):
        budget = limits.get(part) if limits is not None else None
        cooldown = budget.get("cooldown") if budget is not None else None
        if cooldown is not None:
            yield from check_durations([cooldown], numbers)
    for spec in rules:
        yield from check_rule(spec, chains, numbers)
