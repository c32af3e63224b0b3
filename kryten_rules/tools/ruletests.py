"""``kryten-rules test``: rule-test transcripts run in virtual time.

Each case starts from empty state at time 0 with a fresh engine, a
:class:`VirtualClock` and the file's seed, so a case never sleeps and always
gives the same result. Prompts are rendered (``prompt_contains``) but no
model is ever called.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kryten_rules.clock import VirtualClock
from kryten_rules.compile.load import check_paths, load_config, load_ruleset
from kryten_rules.compile.ruleset import RuleSet
from kryten_rules.config import ServiceConfig
from kryten_rules.diagnostics import Diagnostic, RuleSetError
from kryten_rules.dispatch.prompts import render
from kryten_rules.engine.evaluate import Decision, Engine
from kryten_rules.events import ChatEvent, EventKind, Media
from kryten_rules.ruleformat.yamlload import Node
from kryten_rules.units import parse_duration, parse_rank

DEFAULT_BOT = "kryten"  # the bot's name in a test file with neither `bot` nor `config`


@dataclass(slots=True)
class EventResult:
    index: int
    event: dict[str, Any]
    expect: dict[str, Any]
    decision: Decision
    prompt: str | None
    reply: str | None
    failures: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "event": self.event,
            "expect": self.expect,
            "fired": self.decision.fired,
            "would_fire": self.decision.would_fire_ids,
            "blocked": self.decision.blocked,
            "ignored": self.decision.ignored,
            "trace": [t.as_dict() for t in self.decision.trace],
            "prompt": self.prompt,
            "reply": self.reply,
            "failures": self.failures,
        }


@dataclass(slots=True)
class CaseResult:
    file: str
    name: str
    events: list[EventResult] = field(default_factory=list)
    ruleset: RuleSet | None = field(default=None, repr=False, compare=False)  # for coverage
    seconds: float = 0.0  # wall time of the case (JUnit's time)

    @property
    def passed(self) -> bool:
        return all(not e.failures for e in self.events)


def _event(doc: dict[str, Any], at: float) -> ChatEvent:
    user = str(doc.get("user", ""))
    rank = parse_rank(doc["rank"]) if "rank" in doc else None
    if "media" in doc:
        m = doc["media"]
        media = Media(
            str(m["title"]),
            parse_duration(m.get("duration", 0)),
            str(m.get("type", "")),
            str(m.get("id", "")),
        )
        return ChatEvent(kind="changemedia", user=user, rank=rank, at=at, media=media)
    if "pm" in doc:
        return ChatEvent(kind="pm", user=user, rank=rank, text=str(doc["pm"]), at=at)
    if doc.get("join"):
        return ChatEvent(kind="adduser", user=user, rank=rank, at=at)
    return ChatEvent(kind="chatmsg", user=user, rank=rank, text=str(doc.get("say", "")), at=at)


TICK_NOT_WITH = frozenset({"say", "pm", "media", "join", "user", "rank"})


def _tick_decision(decisions: list[Decision], expect: dict[str, Any], at: float) -> Decision:
    """The one decision a tick's ``expect`` is checked against.

    Several timers can have their turn at one tick, each with its own decision:
    the one ``fires`` names if it fired, else the first that fired, else the
    first timer tried (its ``blocked`` reason). No timer due: an empty
    decision, which is ``silent``.
    """
    want = expect.get("fires")
    fired = [d for d in decisions if d.fired is not None]
    for d in fired:
        if d.fired == want:
            return d
    if fired:
        return fired[0]
    return decisions[0] if decisions else Decision(ChatEvent(kind=EventKind.TIMER, at=at))


def _check(expect: dict[str, Any], d: Decision, prompt: str | None, reply: str | None) -> list[str]:
    fails = []
    if "fires" in expect and d.fired != expect["fires"]:
        got = d.fired or f"nothing (blocked: {d.blocked or 'no rule matched'})"
        fails.append(f"expected {expect['fires']!r} to fire, got {got}")
    if "blocked" in expect:
        if d.fired is not None:
            fails.append(f"expected blocked by {expect['blocked']!r}, but {d.fired!r} fired")
        elif d.blocked != expect["blocked"]:
            got = d.blocked or "no match"
            fails.append(f"expected blocked by {expect['blocked']!r}, got {got}")
    if "detail_contains" in expect:
        want = expect["detail_contains"]
        entry = d.blocked_by
        if entry is None or want not in (entry.detail or ""):
            got = f"{entry.reason}: {entry.detail or 'no detail'}" if entry else "nothing blocked"
            fails.append(f"expected the block's detail to contain {want!r}, got {got}")
    if "would_fire" in expect:
        want = expect["would_fire"]
        wanted = [want] if isinstance(want, str) else list(want)
        got_ids = d.would_fire_ids
        for rid in wanted:
            if rid not in got_ids:
                got = ", ".join(got_ids) if got_ids else "no shadow rule"
                fails.append(f"expected shadow rule {rid!r} to would-fire, got {got}")
    if "ignored" in expect and d.ignored != expect["ignored"]:
        got = f"ignored as {d.ignored}" if d.ignored else "it reached the rules"
        fails.append(f"expected the event to be ignored as {expect['ignored']!r}, but {got}")
    if expect.get("silent") is True and d.fired is not None:
        fails.append(f"expected silence, but {d.fired!r} fired")
    if expect.get("silent") is False and d.fired is None:
        fails.append("expected a rule to fire, nothing did")
    if "prompt_contains" in expect:
        want = expect["prompt_contains"]
        if prompt is None:
            fails.append(f"expected a prompt containing {want!r}, but no prompt was rendered")
        elif want not in prompt:
            fails.append(f"the prompt does not contain {want!r}")
    if "reply_contains" in expect:
        want = expect["reply_contains"]
        if reply is None:
            fails.append(f"expected a reply containing {want!r}, but there was no fixed reply")
        elif want not in reply:
            fails.append(f"the reply {reply!r} does not contain {want!r}")
    return fails


def run_case(
    ruleset: RuleSet,
    case: dict[str, Any],
    *,
    file: str,
    seed: int,
    bot: str | None,
    channel: str = "",
    ignore: Iterable[str] = (),
) -> CaseResult:
    started = time.perf_counter()
    clock = VirtualClock()
    engine = Engine(
        ruleset, clock=clock, seed=seed, bot_name=bot, channel=channel, ignore_users=ignore
    )
    result = CaseResult(file, case["name"], ruleset=ruleset)
    for i, doc in enumerate(case["events"]):
        at = parse_duration(doc.get("at", clock.now()))
        clock.set(at)
        # v1.1: `draw:` pins this event's probability draw, whatever the seed
        engine.pinned_draw = float(doc["draw"]) if "draw" in doc else None
        expect = doc.get("expect") or {}
        if doc.get("tick"):  # v1.1: the timers whose turn has come, each once
            decision = _tick_decision(engine.tick(clock.now()), expect, clock.now())
        else:
            decision = engine.evaluate(_event(doc, clock.now()))
        engine.pinned_draw = None
        prompt = reply = None
        if decision.fired is not None:
            rendered = render(decision, ruleset)
            prompt, reply = rendered.prompt_text, rendered.reply
        failures = _check(expect, decision, prompt, reply)
        if doc.get("tick") and TICK_NOT_WITH.intersection(doc):
            failures.insert(0, "a tick is no chat line: give say, pm, media, join their own event")
        result.events.append(
            EventResult(
                i,
                {k: v for k, v in doc.items() if k != "expect"},
                expect,
                decision,
                prompt,
                reply,
                failures,
            )
        )
    result.seconds = time.perf_counter() - started
    return result


@dataclass(slots=True)
class Suite:
    cases: list[CaseResult] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # the diagnostics of the rule sets under test (also in ``diagnostics``): mistakes
    # in the rules, exit 1 as in ``validate``, where a broken test file is exit 2
    rule_diagnostics: list[Diagnostic] = field(default_factory=list)
    # every rule set a test file loaded, even when -k ran none of its cases (coverage)
    rulesets: list[RuleSet] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.cases)


def run_files(paths: Iterable[str | Path], *, keyword: str | None = None) -> Suite:
    """Run every rule-test file under ``paths``; bad input becomes diagnostics."""
    suite = Suite()
    checked = check_paths(paths, kinds=("test",))
    suite.diagnostics.extend(checked.diagnostics)
    if not checked.ok:
        return suite
    for path, root in checked.tests:
        suite.cases.extend(_run_file(path, root, keyword, suite))
    return suite


def _run_file(path: Path, root: Node, keyword: str | None, suite: Suite) -> list[CaseResult]:
    doc = root.plain()
    base = path.parent
    config: ServiceConfig | None = None
    try:
        if doc.get("config"):
            config = load_config(base / doc["config"])
    except RuleSetError as exc:
        suite.diagnostics.extend(exc.diagnostics)
        return []
    rules = doc["rules"] if isinstance(doc["rules"], list) else [doc["rules"]]
    bot = doc.get("bot") or (config.bot_name if config else DEFAULT_BOT)
    try:
        ruleset = load_ruleset([base / r for r in rules], config, bot_name=bot)
    except RuleSetError as exc:
        suite.diagnostics.extend(exc.diagnostics)
        suite.rule_diagnostics.extend(exc.diagnostics)
        return []
    suite.rulesets.append(ruleset)
    channel = config.cytube.channel if config else ""
    ignore = config.ignore_users if config else ()
    out = []
    for case in doc["cases"]:
        if keyword and keyword.lower() not in case["name"].lower():
            continue
        out.append(
            run_case(
                ruleset,
                case,
                file=str(path),
                seed=int(doc.get("seed", 0)),
                bot=bot,
                channel=channel,
                ignore=ignore,
            )
        )
    return out


def format_text(suite: Suite) -> str:
    lines: list[str] = []
    for case in suite.cases:
        if case.passed:
            continue
        lines.append(f"FAIL {case.file}: {case.name}")
        for ev in case.events:
            if not ev.failures:
                continue
            lines.append(f"  event {ev.index + 1}: {json.dumps(ev.event, ensure_ascii=False)}")
            lines.append(f"    expected: {json.dumps(ev.expect, ensure_ascii=False)}")
            for f in ev.failures:
                lines.append(f"    - {f}")
            lines.append("    trace:")
            for t in ev.decision.trace or ():  # would_fire: a shadow rule passed its gates
                detail = f" ({t.detail})" if t.detail else ""
                lines.append(f"      {t.rule:<24} {t.outcome:<8} {t.reason or ''}{detail}")
            if not ev.decision.trace:
                why = ev.decision.ignored or (
                    "no timer's turn had come"
                    if ev.decision.event.kind == EventKind.TIMER
                    else "no rule of this kind has its patterns in the text"
                )
                lines.append(f"      (no rule tried: {why})")
    passed = sum(1 for c in suite.cases if c.passed)
    failed = len(suite.cases) - passed
    lines.append(f"{passed} passed, {failed} failed")
    return "\n".join(lines)


def format_json(suite: Suite, **extra: Any) -> str:
    """The JSON report; ``extra`` keys (``coverage``) are added at the top level."""
    return json.dumps(
        {
            "passed": suite.passed,
            "cases": [
                {
                    "file": c.file,
                    "name": c.name,
                    "passed": c.passed,
                    "events": [e.as_dict() for e in c.events],
                }
                for c in suite.cases
            ],
            "diagnostics": [d.as_dict() for d in suite.diagnostics],
            **extra,
        },
        indent=2,
        default=str,
    )
