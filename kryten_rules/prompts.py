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
from typing import Any

from .engine import Decision
from .ruleset import RuleSet
from .templates import TemplateProblem

log = logging.getLogger(__name__)

_TAG = re.compile(r"<\s*/?\s*chat\s*>", re.IGNORECASE)


def _defuse(value: str) -> str:
    return _TAG.sub(lambda m: m.group(0).replace("<", "‹").replace(">", "›"), value)


def safe_context(context: dict[str, Any]) -> dict[str, Any]:
    """The context with user-written text unable to fake the prompt's quoting."""
    ctx = dict(context)
    for key in ("message", "text", "match"):
        if isinstance(ctx.get(key), str):
            ctx[key] = _defuse(ctx[key])
    ctx["groups"] = [_defuse(g) for g in ctx.get("groups") or []]
    ctx["history"] = [
        {"user": _defuse(h.get("user", "")), "text": _defuse(h.get("text", ""))}
        for h in ctx.get("history") or []
    ]
    media = ctx.get("media")
    if isinstance(media, dict):  # titles are chosen by whoever queued the video
        ctx["media"] = {k: _defuse(v) if isinstance(v, str) else v for k, v in media.items()}
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


def _render_fallback(decision: Decision, ctx: dict[str, Any]) -> str | None:
    rule = decision.rule
    if rule is None or rule.fallback_reply is None:
        return None
    try:
        return rule.fallback_reply.render(ctx) or None
    except TemplateProblem as exc:
        log.error("rule %s: fallback_reply failed to render: %s", rule.id, exc.message)
        return None


def render(decision: Decision, ruleset: RuleSet) -> Rendered:
    """Render the fired rule's templates. Never raises: a broken template is
    logged with its rule id and the rule's ``fallback_reply`` is used instead."""
    rule = decision.rule
    if rule is None or decision.context is None:
        return Rendered(error="nothing fired")
    ctx = safe_context(decision.context)
    fallback = _render_fallback(decision, ctx)
    try:
        if rule.reply is not None:
            return Rendered(reply=rule.reply.render(ctx), fallback=fallback)
        assert rule.prompt is not None
        messages = []
        persona = ruleset.persona
        if persona is not None and persona.system_prompt is not None:
            messages.append({"role": "system", "content": persona.system_prompt.render(ctx)})
        messages.append({"role": "user", "content": rule.prompt.render(ctx)})
        return Rendered(messages=messages, fallback=fallback)
    except TemplateProblem as exc:
        log.error("rule %s: template failed to render: %s", rule.id, exc.message)
        return Rendered(reply=fallback, error=exc.message, fallback=fallback)
