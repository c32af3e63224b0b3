"""``explain``: one event, every rule tried, the outcome and the rendered prompt.

A timer (v1.1, ``kind="timer"``) is explained as if its turn had come now:
``text`` names the timer rule (empty: every timer rule, in evaluation order,
the first that passes fires), and ``chat_times`` are the times of the recent
lines from people its ``when.chat`` counts (the command line makes
``--chat-lines`` of them "just now"; the service passes its room's own).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kryten_rules.clock import VirtualClock
from kryten_rules.compile.ruleset import RuleSet
from kryten_rules.dispatch.prompts import Rendered, render, render_isolated
from kryten_rules.engine.evaluate import Decision, Engine
from kryten_rules.events import ChatEvent, Media

if TYPE_CHECKING:
    from kryten_rules.dispatch.renderpool import RenderPool


def _decide(
    ruleset: RuleSet,
    text: str,
    *,
    user: str = "someone",
    rank: int = 1,
    kind: str = "chatmsg",
    media_title: str | None = None,
    media_duration: float = 0.0,
    channel: str = "",
    engine: Engine | None = None,
    chat_times: Iterable[float] = (),
    now: float = 1.0,
    seed: int = 0,
    draw: float | None = None,
) -> Decision:
    eng = engine or Engine(ruleset, clock=VirtualClock(now), seed=seed, channel=channel)
    # v1.1: a pinned draw, so a rule under its probability can be seen to fire
    eng.pinned_draw = draw
    try:
        return _evaluate(eng, text, user, rank, kind, media_title, media_duration, chat_times, now)
    finally:
        eng.pinned_draw = None


def _evaluate(
    eng: Engine,
    text: str,
    user: str,
    rank: int,
    kind: str,
    media_title: str | None,
    media_duration: float,
    chat_times: Iterable[float],
    now: float,
) -> Decision:
    media = Media(media_title, media_duration) if media_title else None
    if media is not None:
        eng.set_media(media)
    for at in chat_times:
        eng.room.add_line("someone", "", at)
    if kind == "timer":
        return eng.evaluate(ChatEvent(kind="timer", at=now, timer=text), full_trace=True)
    event = ChatEvent(
        kind=kind,
        user=user,
        rank=rank,
        at=now,
        text=text if kind != "changemedia" else "",
        media=media if kind == "changemedia" else None,
    )
    return eng.evaluate(event, full_trace=True)


def check_timer_name(ruleset: RuleSet, name: str) -> None:
    """``ValueError`` unless ``name`` is empty (every timer) or a timer rule's id."""
    timers = [r.id for r in ruleset.rules if r.on == "timer"]
    if name and name not in timers:
        known = ", ".join(timers) if timers else "the rule set has none"
        raise ValueError(f"{name!r} is not a timer rule (timer rules: {known})")


def _explanation(
    decision: Decision,
    rendered: Rendered | None,
    ruleset: RuleSet,
    seed: int = 0,
    draw: float | None = None,
) -> dict[str, Any]:
    rule = decision.rule
    by_id = ruleset.by_id
    return {
        "fired": decision.fired,
        "would_fire": decision.would_fire_ids,
        "trace": [t.as_dict() for t in decision.trace],
        # live or shadow, for each rule in the trace: a shadow rule's would_fire stops nothing
        "modes": {t.rule: by_id[t.rule].mode for t in decision.trace if t.rule in by_id},
        "seed": seed,
        "draw": draw,
        "prompt": rendered.prompt_text if rendered else None,
        "reply": rendered.reply if rendered else None,
        "error": rendered.error if rendered else None,
        "ignored": decision.ignored,
        "description": rule.description if rule else None,
        "chain": rule.chain if rule and rule.needs_llm else None,
    }


def explain_event(
    ruleset: RuleSet,
    text: str,
    *,
    user: str = "someone",
    rank: int = 1,
    kind: str = "chatmsg",
    media_title: str | None = None,
    media_duration: float = 0.0,
    channel: str = "",
    engine: Engine | None = None,
    chat_times: Iterable[float] = (),
    now: float = 1.0,
    seed: int = 0,
    draw: float | None = None,
) -> dict[str, Any]:
    """The JSON that ``explain`` prints and ``rules.explain`` answers.

    The event meets a fresh engine (no cooldowns running, a fixed seed) unless
    one is given: the question answered is "would this rule set answer this
    line?", and asking it never spends the cooldowns or budgets of a live bot.
    That engine is only fresh state around the rule set: its plans and
    candidate tables are the rule set's own, built once by compile.
    The templates render in this process: for the command line.

    ``seed`` seeds the engine's draws; ``draw`` (0 <= draw < 1) pins this
    event's probability draw instead, as ``draw:`` does in a rule test.
    """
    decision = _decide(
        ruleset,
        text,
        user=user,
        rank=rank,
        kind=kind,
        media_title=media_title,
        media_duration=media_duration,
        channel=channel,
        engine=engine,
        chat_times=chat_times,
        now=now,
        seed=seed,
        draw=draw,
    )
    rendered = render(decision, ruleset) if decision.fired else None
    return _explanation(decision, rendered, ruleset, seed, draw)


async def explain_event_isolated(
    ruleset: RuleSet, text: str, pool: RenderPool, **event: Any
) -> dict[str, Any]:
    """:func:`explain_event` (same keywords) for the service: the templates
    render in ``pool``'s workers, under their budget, so explaining a hostile
    rule cannot stall the event loop."""
    decision = _decide(ruleset, text, **event)
    rendered = await render_isolated(decision, ruleset, pool) if decision.fired else None
    return _explanation(decision, rendered, ruleset, event.get("seed", 0), event.get("draw"))


def format_explanation(result: dict[str, Any]) -> str:
    lines = []
    if "config" in result:  # the command line says which service config it read
        lines.append(f"config: {result['config'] or 'none'}")
    draw = result.get("draw")
    pinned = f"{draw} (pinned)" if draw is not None else "from the seed"
    lines.append(f"seed: {result.get('seed', 0)}, draw: {pinned}")
    if result.get("ignored"):
        lines.append(f"ignored before any rule: {result['ignored']}")
    for t in result["trace"]:
        mark = {"fired": "=>", "would_fire": "~>", "blocked": " x", "skipped": " -"}.get(
            t["outcome"], "  "
        )
        detail = f" ({t['detail']})" if t.get("detail") else ""
        mode = result.get("modes", {}).get(t["rule"], "live")
        lines.append(
            f"{mark} {t['rule']:<24} {mode:<6} {t['outcome']:<8} {t['reason'] or ''}{detail}"
        )
    if not result["trace"] and not result.get("ignored"):
        lines.append("no rule answers this kind of event")
    lines.append("")
    if result["fired"]:
        lines.append(
            f"fires: {result['fired']}"
            + (f" - {result['description']}" if result.get("description") else "")
        )
        if result.get("error"):
            lines += ["", f"template failed: {result['error']}"]
        if result.get("reply") is not None:
            lines += ["", "reply:", result["reply"]]
        if result.get("prompt") is not None:
            lines += ["", f"prompt (chain {result.get('chain')}):", result["prompt"]]
    else:
        lines.append("fires: nothing")
    for rid in result.get("would_fire") or ():
        lines.append(f"would fire (shadow): {rid}")
    return "\n".join(lines)
