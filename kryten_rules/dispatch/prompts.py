"""Stage 5a: turn a decision into what is sent, the chat messages for the model
or the fixed reply.

Users' chat text reaches the model only inside the rule's template, and the
persona's system prompt tells the model that text between ``<chat>`` tags is
quoted material. To keep that boundary, any ``<chat>``/``</chat>`` a user types
is defused before rendering, so a user cannot close the quote and speak as the
operator.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kryten_rules.compile.ruleset import RuleSet
from kryten_rules.engine.evaluate import Decision
from kryten_rules.engine.groups import map_groups
from kryten_rules.quietlog import QuietLog
from kryten_rules.ruleformat.templates import CompiledTemplate, TemplateProblem

if TYPE_CHECKING:
    from kryten_rules.dispatch.renderpool import RenderPool

log = logging.getLogger(__name__)
_quiet = QuietLog(log)

_TAG = re.compile(r"<\s*/?\s*chat\s*>", re.IGNORECASE)


def _defuse(value: str) -> str:
    return _TAG.sub(lambda m: m.group(0).replace("<", "‹").replace(">", "›"), value)


def safe_context(context: dict[str, Any]) -> dict[str, Any]:
    """The context with user-written text unable to fake the prompt's quoting."""
    ctx = dict(context)
    for key in ("message", "text", "match"):
        if isinstance(ctx.get(key), str):
            ctx[key] = _defuse(ctx[key])
    ctx["groups"] = map_groups(ctx.get("groups") or (), _defuse)
    ctx["history"] = [
        {"user": _defuse(h.get("user", "")), "text": _defuse(h.get("text", ""))}
        for h in ctx.get("history") or []
    ]
    media = ctx.get("media")
    if isinstance(media, dict):  # titles are chosen by whoever queued the video
        ctx["media"] = {k: _defuse(v) if isinstance(v, str) else v for k, v in media.items()}
    playlist = ctx.get("playlist")
    if isinstance(playlist, dict) and isinstance(playlist.get("next"), dict):
        upcoming = playlist["next"]
        ctx["playlist"] = {
            "next": {k: _defuse(v) if isinstance(v, str) else v for k, v in upcoming.items()}
        }
    user = dict(ctx.get("user") or {})
    if isinstance(user.get("name"), str):
        user["name"] = _defuse(user["name"])
    ctx["user"] = user
    return ctx


@dataclass(frozen=True, slots=True)
class Rendered:
    """The outcome of stage 5a for one decision.

    Exactly one of ``messages`` (call the chain), ``reply`` (send as is) is
    set, or neither when rendering failed and there is no fallback; ``error``
    then says why.
    """

    messages: list[dict[str, str]] | None = None
    reply: str | None = None
    error: str | None = None
    fallback: str | None = None  # the rendered fallback_reply, for when the chain fails

    @property
    def prompt_text(self) -> str | None:
        if self.messages is None:
            return None
        return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in self.messages)

    @property
    def prompt_hash(self) -> str | None:
        text = self.prompt_text
        return hashlib.sha256(text.encode()).hexdigest()[:16] if text is not None else None


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one decision renders: the context and the templates, in render order
    (``fallback_reply`` first, so a main template that runs out of its budget
    does not take the fallback with it)."""

    rule_id: str
    context: dict[str, Any]
    fallback: CompiledTemplate | None
    system: CompiledTemplate | None
    main: CompiledTemplate
    is_reply: bool

    @property
    def templates(self) -> list[CompiledTemplate]:
        return [t for t in (self.fallback, self.system, self.main) if t is not None]


def _plan(decision: Decision, ruleset: RuleSet) -> _Plan | Rendered:
    rule = decision.rule
    if rule is None or decision.context is None:
        return Rendered(error="nothing fired")
    persona = ruleset.persona
    main = rule.reply if rule.reply is not None else rule.prompt
    assert main is not None
    return _Plan(
        rule_id=rule.id,
        context=safe_context(decision.context),
        fallback=rule.fallback_reply,
        system=persona.system_prompt if rule.reply is None and persona is not None else None,
        main=main,
        is_reply=rule.reply is not None,
    )


def _assemble(plan: _Plan, outcomes: list[str | TemplateProblem]) -> Rendered:
    """The :class:`Rendered` for ``plan`` from one outcome per template; each
    failure is logged with the rule's id."""
    it = iter(outcomes)
    fallback: str | None = None
    if plan.fallback is not None:
        first = next(it)
        if isinstance(first, TemplateProblem):
            _quiet.error(
                f"fallback:{plan.rule_id}:{first.message[:80]}",
                "rule %s: fallback_reply failed to render: %s",
                plan.rule_id,
                first.message,
            )
        else:
            fallback = first or None
    system = next(it) if plan.system is not None else None
    main = next(it)
    for outcome in (system, main):
        if isinstance(outcome, TemplateProblem):
            # once a minute per rule and problem: a failure can follow from what users type
            _quiet.error(
                f"template:{plan.rule_id}:{outcome.message[:80]}",
                "rule %s: template failed to render: %s",
                plan.rule_id,
                outcome.message,
            )
            return Rendered(reply=fallback, error=outcome.message, fallback=fallback)
    assert isinstance(main, str)
    if plan.is_reply:
        return Rendered(reply=main, fallback=fallback)
    messages = [{"role": "system", "content": system}] if isinstance(system, str) else []
    messages.append({"role": "user", "content": main})
    return Rendered(messages=messages, fallback=fallback)


def _render_here(template: CompiledTemplate, context: dict[str, Any]) -> str | TemplateProblem:
    try:
        return template.render(context)
    except TemplateProblem as exc:
        return exc


def render(decision: Decision, ruleset: RuleSet) -> Rendered:
    """Render the fired rule's templates in this process. Never raises: a broken
    template is logged with its rule id and the rule's ``fallback_reply`` is used
    instead.

    For tools that render one decision at a time (``test``, ``explain``); the
    service uses :func:`render_isolated`, which a template cannot hang.
    """
    plan = _plan(decision, ruleset)
    if isinstance(plan, Rendered):
        return plan
    return _assemble(plan, [_render_here(t, plan.context) for t in plan.templates])


async def render_isolated(decision: Decision, ruleset: RuleSet, pool: RenderPool) -> Rendered:
    """:func:`render` in ``pool``'s worker processes, under their time and memory
    budget, without blocking the event loop. A render that runs out is a failed
    render like any other: logged with the rule id, ``error`` set, the fallback
    used when it rendered."""
    plan = _plan(decision, ruleset)
    if isinstance(plan, Rendered):
        return plan
    outcomes = await pool.render([t.source for t in plan.templates], plan.context)
    return _assemble(plan, outcomes)
