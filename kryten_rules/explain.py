"""``explain``: one event, every rule tried, the outcome and the rendered prompt."""

from __future__ import annotations

from typing import Any

from .clock import VirtualClock
from .engine import Engine
from .events import ChatEvent, Media
from .prompts import render
from .ruleset import RuleSet


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
) -> dict[str, Any]:
    """The JSON that ``explain`` prints and ``rules.explain`` answers.

    The event meets a fresh engine (no cooldowns running, a fixed seed) unless
    one is given: the question answered is "would this rule set answer this
    line?", and asking it never spends the cooldowns or budgets of a live bot.
    """
    eng = engine or Engine(ruleset, clock=VirtualClock(1.0), seed=0, channel=channel)
    media = Media(media_title, media_duration) if media_title else None
    if media is not None:
        eng.set_media(media)
    event = ChatEvent(
        kind=kind,
        user=user,
        rank=rank,
        at=1.0,
        text=text if kind != "changemedia" else "",
        media=media if kind == "changemedia" else None,
    )
    decision = eng.evaluate(event, full_trace=True)
    prompt = reply = None
    if decision.fired is not None:
        rendered = render(decision, ruleset)
        prompt, reply = rendered.prompt_text, rendered.reply
    rule = decision.rule
    return {
        "fired": decision.fired,
        "trace": [t.as_dict() for t in decision.trace],
        "prompt": prompt,
        "reply": reply,
        "ignored": decision.ignored,
        "description": rule.description if rule else None,
        "chain": rule.chain if rule and rule.needs_llm else None,
    }


def format_explanation(result: dict[str, Any]) -> str:
    lines = []
    if result.get("ignored"):
        lines.append(f"ignored before any rule: {result['ignored']}")
    for t in result["trace"]:
        mark = {"fired": "=>", "blocked": " x", "skipped": " -"}.get(t["outcome"], "  ")
        detail = f" ({t['detail']})" if t.get("detail") else ""
        lines.append(f"{mark} {t['rule']:<24} {t['outcome']:<8} {t['reason'] or ''}{detail}")
    if not result["trace"] and not result.get("ignored"):
        lines.append("no rule answers this kind of event")
    lines.append("")
    if result["fired"]:
        lines.append(
            f"fires: {result['fired']}"
            + (f" - {result['description']}" if result.get("description") else "")
        )
        if result.get("reply") is not None:
            lines += ["", "reply:", result["reply"]]
        if result.get("prompt") is not None:
            lines += ["", f"prompt (chain {result.get('chain')}):", result["prompt"]]
    else:
        lines.append("fires: nothing")
    return "\n".join(lines)
