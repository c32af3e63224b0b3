"""A fired decision becomes a reply plan: render, chain, clean, fallback.

:meth:`Responder.plan` renders the rule's templates in the render pool, runs
the model chain when the rule has a prompt (not in ``mode: shadow``), cleans
and splits the reply, and falls back to ``fallback_reply`` when the model
failed or its reply cleaned down to nothing. The result is a
:class:`ReplyPlan`: the message parts, where they go, and what the response
log needs. Nothing here knows NATS, the pacer or the robot; the reply task
(``replies.py``) hands the parts on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, replace

from kryten_rules.compile.ruleset import RuleSet
from kryten_rules.config import ChainConfig, ServiceConfig
from kryten_rules.dispatch.llm import ChainRunner, check_api_keys
from kryten_rules.dispatch.llm.chain import ChainResult
from kryten_rules.dispatch.prompts import render_isolated
from kryten_rules.dispatch.renderpool import RenderPool
from kryten_rules.emit.split import prepare_reply
from kryten_rules.engine.evaluate import Decision
from kryten_rules.errors import KrytenRulesError
from kryten_rules.events import ChatEvent
from kryten_rules.quietlog import QuietLog
from kryten_rules.service.metrics import ChannelMetrics
from kryten_rules.service.outcome import PartOutcomes

log = logging.getLogger("kryten_rules.service")


class NoUsableModel(KrytenRulesError, ValueError):
    """A chain has no model left once those without their API key are disabled."""


def usable_chains(config: ServiceConfig) -> dict[str, ChainConfig]:
    """Chains without the models whose API key is missing (named in the log)."""
    missing_models = set()
    for problem in check_api_keys(config.models):
        log.error("%s: those models are disabled", problem)
    for name, m in config.models.items():
        if m.api_key_env and not os.environ.get(m.api_key_env):
            missing_models.add(name)
    chains = {}
    for name, chain in config.chains.items():
        models = tuple(m for m in chain.models if m not in missing_models)
        if not models:
            raise NoUsableModel(
                f"chain {name!r} has no usable model: set the API key variables above, "
                "or add a model that needs none"
            )
        chains[name] = replace(chain, models=models)
    return chains


async def prepare_llm(chains: ChainRunner, config: ServiceConfig) -> None:
    """Import and warm up LiteLLM off the event loop (see LiteLLMCompletion.prepare)."""
    if not config.models:
        return
    t0 = time.perf_counter()
    try:
        await chains.prepare()
    except Exception as exc:  # the calls will fail and say why; the bot still starts
        log.error("preparing LiteLLM failed: %s: %s", type(exc).__name__, exc)
        return
    log.info("LiteLLM ready in %.1fs", time.perf_counter() - t0)


@dataclass(slots=True)
class ReplyPlan:
    """A reply made ready: what the response log needs, and its parts' outcomes."""

    prompt_hash: str | None
    result: ChainResult | None
    parts: list[str]
    via: str
    sends: PartOutcomes | None = None  # None: nothing handed to the pacer
    error: str | None = None
    outcome: str | None = None  # known without sending ("error")


def reply_via(respond_via: str, event: ChatEvent) -> str:
    """``chat`` or ``pm``: ``same`` answers a PM by PM, anything else in chat.

    An event without a sender (a timer, a media change) has nobody to PM: chat.
    """
    if not event.user:
        return "chat"
    if respond_via == "same":
        return "pm" if event.kind == "pm" else "chat"
    return respond_via


class Responder:
    def __init__(
        self,
        config: ServiceConfig,
        chains: ChainRunner,
        renderer: RenderPool,
        metrics: ChannelMetrics,
        quiet: QuietLog | None = None,
    ) -> None:
        self.config = config
        self.chains = chains
        self.renderer = renderer
        self.metrics = metrics
        self._quiet = quiet or QuietLog(log)

    async def plan(self, decision: Decision, ruleset: RuleSet) -> ReplyPlan:
        """The reply to a fired decision; a failure is a plan with ``outcome="error"``."""
        rule = decision.rule
        assert rule is not None
        result: ChainResult | None = None
        try:
            rendered = await render_isolated(decision, ruleset, self.renderer)
            text = rendered.reply
            if rendered.messages is not None and not decision.shadow:
                result = await self.chains.run(rule.chain, rendered.messages)
                self._count(result)
                text = result.text if result.ok else rendered.fallback
            names = [ruleset.persona.name] if ruleset.persona else []
            names += [self.config.bot_name] if self.config.bot_name else []
            parts = await self.clean(text, names, rule.max_parts)
            error = rendered.error
            if not parts and text is not None:
                # All markup, filler or labels: saying nothing would look like a dead
                # bot, so this is answered as a failed model call is.
                error = error or "the reply was empty after cleaning"
                if rendered.fallback is not None and rendered.fallback != text:
                    parts = await self.clean(rendered.fallback, names, rule.max_parts)
                    if parts:
                        error += "; used fallback_reply"
                if not parts:
                    self.metrics.replies_dropped.labels("empty").inc()
            via = reply_via(rule.respond_via, decision.event)
            return ReplyPlan(rendered.prompt_hash, result, parts, via, error=error)
        except Exception as exc:
            self._quiet.exception(
                f"prepare:{rule.id}", "rule %s: preparing the reply failed", rule.id
            )
            via = reply_via(rule.respond_via, decision.event)
            error = f"{type(exc).__name__}: {exc}"
            return ReplyPlan(None, result, [], via, error=error[:300], outcome="error")

    def _count(self, result: ChainResult) -> None:
        for a in result.attempts:
            self.metrics.llm_attempts.labels(a.model, a.outcome).inc()
            if a.called:
                self.metrics.llm_latency.labels(a.model).observe(a.latency)
            if a.cost:
                self.metrics.llm_cost.labels(a.model).inc(a.cost)

    async def clean(self, text: str | None, names: list[str], max_parts: int) -> list[str]:
        """Clean and split a reply in a worker thread: linear and capped, but a model
        can still send megabytes, and the loop must keep answering meanwhile."""
        if not text:
            return []
        return await asyncio.to_thread(
            prepare_reply,
            text,
            persona_names=names,
            max_length=self.config.cytube.max_message_length,
            max_parts=max_parts,
        )
