"""Fallback chains: try a chain's models in order until one answers.

:class:`ChainRunner` owns what LiteLLM's own fallbacks and Router do badly for
a chat bot (docs/config.md, "How chains behave"): one attempt per model, a per-model timeout cut to
what is left of the chain's deadline, a circuit breaker per model, and a 429's
``Retry-After`` respected by letting that model sit out. Every attempt, and
every model skipped, is recorded in the :class:`ChainResult`; :meth:`run`
never raises (a cancelled task still sees ``CancelledError``).

All bookkeeping (deadline, latency, breaker cool-off, sit-out) uses the
injected ``clock``, so tests can drive it with a fake one; per-attempt timeouts
are real ``asyncio`` timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from kryten_rules.config import ChainConfig, ModelConfig
from kryten_rules.dispatch.llm.litellm_client import (
    OUTCOME_BAD_RESPONSE,
    OUTCOME_RATE_LIMITED,
    OUTCOME_SERVER_ERROR,
    OUTCOME_TIMEOUT,
    Completion,
    CompletionError,
    CompletionResult,
    LiteLLMCompletion,
)
from kryten_rules.dispatch.llm.outcomes import LLMOutcome

log = logging.getLogger(__name__)

OUTCOME_OK: Final = LLMOutcome.OK
OUTCOME_SKIPPED_RATE_LIMITED: Final = LLMOutcome.SKIPPED_RATE_LIMITED
OUTCOME_SKIPPED_CIRCUIT_OPEN: Final = LLMOutcome.SKIPPED_CIRCUIT_OPEN
OUTCOME_DEADLINE: Final = LLMOutcome.DEADLINE
OUTCOMES: Final = tuple(LLMOutcome)
# Outcomes that count towards a model's circuit breaker. A 429 does not: the
# model answered, and its sit-out already keeps it away.
BREAKER_FAILURES: Final = frozenset(
    {LLMOutcome.TIMEOUT, LLMOutcome.SERVER_ERROR, LLMOutcome.REFUSED, LLMOutcome.BAD_RESPONSE}
)
DEFAULT_RETRY_AFTER: Final = 30.0
MAX_RETRY_AFTER: Final = 3600.0


@dataclass(frozen=True, slots=True)
class Attempt:
    """One model's part in a chain run. ``latency`` is 0 for models not called."""

    model: str
    outcome: str
    latency: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None
    error: str | None = None

    @property
    def called(self) -> bool:
        return self.outcome not in (
            OUTCOME_SKIPPED_RATE_LIMITED,
            OUTCOME_SKIPPED_CIRCUIT_OPEN,
            OUTCOME_DEADLINE,
        )


@dataclass(frozen=True, slots=True)
class ChainResult:
    """The reply (``text`` None when every model failed) and how it came about."""

    text: str | None
    model: str | None
    attempts: tuple[Attempt, ...]
    latency: float

    @property
    def ok(self) -> bool:
        return self.text is not None

    @property
    def cost(self) -> float | None:
        """Sum of the known costs of all attempts, None if none is known."""
        costs = [a.cost for a in self.attempts if a.cost is not None]
        return sum(costs) if costs else None


@dataclass(slots=True)
class _ModelState:
    failures: int = 0  # consecutive breaker failures
    open_until: float | None = None  # circuit open until then
    half_open: bool = False  # cool-off over, a probe may go
    probing: bool = False  # the half-open probe is in flight
    sit_out_until: float | None = None  # after a 429


class ChainRunner:
    """Runs named chains of models. One instance per service: it keeps the
    circuit breakers and rate-limit sit-outs across runs."""

    def __init__(
        self,
        models: Mapping[str, ModelConfig],
        chains: Mapping[str, ChainConfig],
        *,
        completion: Completion | None = None,
        max_in_flight: int = 4,
        breaker_threshold: int = 3,
        breaker_cooloff: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if breaker_threshold < 1:
            raise ValueError("breaker_threshold must be at least 1")
        self.models = dict(models)
        self.chains = dict(chains)
        self._completion: Completion = (
            completion if completion is not None else LiteLLMCompletion(warm=models.values())
        )
        self._semaphore = asyncio.Semaphore(max_in_flight)
        self._breaker_threshold = breaker_threshold
        self._breaker_cooloff = breaker_cooloff
        self._clock = clock
        self._states: dict[str, _ModelState] = {}

    # ---------------------------------------------------------------- state
    def _state(self, model: str) -> _ModelState:
        state = self._states.get(model)
        if state is None:
            state = self._states[model] = _ModelState()
        return state

    def circuit_state(self, model: str) -> str:
        """``closed``, ``open`` or ``half_open`` (cool-off over, not yet probed)."""
        state = self._state(model)
        if state.open_until is None:
            return "closed"
        if state.half_open or self._clock() >= state.open_until:
            return "half_open"
        return "open"

    def sitting_out(self, model: str) -> float:
        """Seconds the model still sits out after a 429 (0 if it does not)."""
        until = self._state(model).sit_out_until
        return 0.0 if until is None else max(0.0, until - self._clock())

    async def prepare(self) -> None:
        """Load what the completion needs (LiteLLM's slow import) ahead of time."""
        prepare = getattr(self._completion, "prepare", None)
        if prepare is not None:
            await prepare()

    def _skip_reason(self, name: str, now: float) -> tuple[str, str] | None:
        state = self._state(name)
        if state.sit_out_until is not None:
            if now < state.sit_out_until:
                left = state.sit_out_until - now
                return OUTCOME_SKIPPED_RATE_LIMITED, f"rate limited for {left:.1f}s more"
            state.sit_out_until = None
        if state.open_until is not None:
            if state.probing:
                return OUTCOME_SKIPPED_CIRCUIT_OPEN, "circuit half-open, probe in flight"
            if now < state.open_until and not state.half_open:
                left = state.open_until - now
                return (
                    OUTCOME_SKIPPED_CIRCUIT_OPEN,
                    f"circuit open after {state.failures} failures, {left:.1f}s more",
                )
            state.half_open = True
        return None

    def _record(self, name: str, outcome: str, retry_after: float | None, now: float) -> None:
        state = self._state(name)
        state.probing = False
        if outcome == OUTCOME_OK:
            if state.open_until is not None:
                log.info("llm model=%s circuit closed", name)
            state.failures = 0
            state.open_until = None
            state.half_open = False
            return
        if outcome == OUTCOME_RATE_LIMITED:
            wait = DEFAULT_RETRY_AFTER if retry_after is None else retry_after
            wait = min(max(wait, 0.0), MAX_RETRY_AFTER)
            state.sit_out_until = now + wait
            log.info("llm model=%s sits out %.1fs after 429", name, wait)
            if state.half_open:  # the probe got an answer of sorts: wait for the sit-out
                state.half_open = False
                state.open_until = None
                state.failures = 0
            return
        if outcome not in BREAKER_FAILURES:
            return
        state.failures += 1
        if state.half_open or state.failures >= self._breaker_threshold:
            state.open_until = now + self._breaker_cooloff
            state.half_open = False
            log.warning(
                "llm model=%s circuit open for %.1fs after %d consecutive failures",
                name,
                self._breaker_cooloff,
                state.failures,
            )

    # ------------------------------------------------------------------ run
    async def run(self, chain: str, messages: list[dict[str, str]]) -> ChainResult:
        """Try the chain's models in order; the first usable reply wins."""
        try:
            await self.prepare()
        except Exception:  # the calls will fail and say why
            log.exception("llm preparing the completion failed")
        start = self._clock()
        attempts: list[Attempt] = []
        try:
            config = self.chains.get(chain)
            if config is None:
                log.error("llm unknown chain %r", chain)
                return ChainResult(None, None, (), 0.0)
            deadline = start + config.deadline
            for index, name in enumerate(config.models):
                if self._clock() >= deadline:
                    for rest in config.models[index:]:
                        attempts.append(Attempt(rest, OUTCOME_DEADLINE, error="chain deadline"))
                        log.info("llm chain=%s model=%s outcome=deadline", chain, rest)
                    break
                attempt, text = await self._try(chain, name, messages, deadline)
                attempts.append(attempt)
                if text is not None:
                    return ChainResult(text, name, tuple(attempts), self._clock() - start)
        except Exception as exc:  # a bug of ours: never let it out of run()
            log.exception("llm chain=%s failed unexpectedly", chain)
            attempts.append(Attempt("<runner>", OUTCOME_SERVER_ERROR, error=type(exc).__name__))
        latency = self._clock() - start
        log.info(
            "llm chain=%s failed: %s",
            chain,
            ", ".join(f"{a.model}={a.outcome}" for a in attempts) or "no models",
        )
        return ChainResult(None, None, tuple(attempts), latency)

    async def _try(
        self, chain: str, name: str, messages: list[dict[str, str]], deadline: float
    ) -> tuple[Attempt, str | None]:
        model = self.models.get(name)
        if model is None:
            log.error("llm chain=%s names unknown model %r", chain, name)
            return Attempt(name, OUTCOME_SERVER_ERROR, error=f"unknown model {name!r}"), None
        skip = self._skip_reason(name, self._clock())
        if skip is not None:
            log.debug("llm chain=%s model=%s outcome=%s (%s)", chain, name, *skip)
            return Attempt(name, skip[0], error=skip[1]), None
        state = self._state(name)
        if state.half_open:
            state.probing = True
        try:
            async with self._semaphore:
                began = self._clock()
                timeout = min(model.timeout, deadline - began)
                if timeout <= 0:
                    state.probing = False
                    return Attempt(name, OUTCOME_DEADLINE, error="chain deadline"), None
                result, outcome, error, retry_after = await self._call(model, messages, timeout)
                ended = self._clock()
        except BaseException:
            state.probing = False
            raise
        latency = ended - began
        self._record(name, outcome, retry_after, ended)
        if result is not None:
            attempt = Attempt(
                name,
                OUTCOME_OK,
                latency,
                result.prompt_tokens,
                result.completion_tokens,
                result.cost,
            )
            log.info(
                "llm chain=%s model=%s outcome=ok latency=%.3fs tokens=%s/%s",
                chain,
                name,
                latency,
                result.prompt_tokens,
                result.completion_tokens,
            )
            return attempt, result.text
        log.info(
            "llm chain=%s model=%s outcome=%s latency=%.3fs error=%s",
            chain,
            name,
            outcome,
            latency,
            error,
        )
        return Attempt(name, outcome, latency, error=error), None

    async def _call(
        self, model: ModelConfig, messages: list[dict[str, str]], timeout: float
    ) -> tuple[CompletionResult | None, str, str | None, float | None]:
        """(result, outcome, error, retry_after) of one call."""
        try:
            result = await asyncio.wait_for(self._completion(model, messages, timeout), timeout)
        except CompletionError as exc:
            return None, exc.outcome, exc.message, exc.retry_after
        except TimeoutError:
            return None, OUTCOME_TIMEOUT, f"no reply within {timeout:.2f}s", None
        except Exception as exc:
            return None, OUTCOME_SERVER_ERROR, type(exc).__name__, None
        text = getattr(result, "text", None)
        if not isinstance(text, str) or not text.strip():
            return None, OUTCOME_BAD_RESPONSE, "empty or blank reply", None
        return result, OUTCOME_OK, None, None


__all__ = [
    "BREAKER_FAILURES",
    "DEFAULT_RETRY_AFTER",
    "OUTCOMES",
    "Attempt",
    "ChainResult",
    "ChainRunner",
]
