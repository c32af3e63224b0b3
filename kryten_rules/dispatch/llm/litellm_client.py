"""One model call through LiteLLM, with its failures sorted into outcomes.

LiteLLM is imported lazily (its import takes about 2 s and, unless told
otherwise, fetches a price map from the network): nothing here imports it
until the first call or :func:`load_litellm`. Before that import we set
``LITELLM_LOCAL_MODEL_COST_MAP`` and ``LITELLM_OFFLINE_MODE``; after it we keep
LiteLLM's loggers to themselves and switch off its debug prints.

A :class:`Completion` turns ``(model, messages, timeout)`` into a
:class:`CompletionResult` or raises :class:`CompletionError` with one of the
outcomes ``timeout``, ``rate_limited``, ``server_error``, ``refused`` or
``bad_response``. :class:`kryten_rules.dispatch.llm.chain.ChainRunner` owns the chain
(order, deadline, circuit breakers, Retry-After); this module owns one call,
and :mod:`kryten_rules.dispatch.llm.errors` sorts its failures.

API keys are read from the environment variable a model names, at call time,
and never logged: error texts have the key's value masked.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final, Protocol, runtime_checkable

from kryten_rules.config import ModelConfig
from kryten_rules.dispatch.llm.errors import (
    classify_exception,
    describe_exception,
    retry_after_of,
)
from kryten_rules.dispatch.llm.outcomes import FAILURES, LLMOutcome
from kryten_rules.errors import KrytenRulesError

log = logging.getLogger(__name__)

OUTCOME_TIMEOUT: Final = LLMOutcome.TIMEOUT
OUTCOME_RATE_LIMITED: Final = LLMOutcome.RATE_LIMITED
OUTCOME_SERVER_ERROR: Final = LLMOutcome.SERVER_ERROR
OUTCOME_REFUSED: Final = LLMOutcome.REFUSED
OUTCOME_BAD_RESPONSE: Final = LLMOutcome.BAD_RESPONSE
FAILURE_OUTCOMES: Final = FAILURES

LITELLM_LOGGERS: Final = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm")
# Modules litellm 1.110 imports only when the first real response comes back
# (its service logger and spend tracking): imported during the warm-up instead.
FIRST_RESPONSE_MODULES: Final = ("litellm._service_logger", "litellm.proxy.spend_tracking.savings")

_litellm: ModuleType | None = None
_import_lock = threading.Lock()


# --------------------------------------------------------------------------
# lazy import


def _quiet_litellm_loggers() -> None:
    for name in LITELLM_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


def litellm_loaded() -> bool:
    """True once :func:`load_litellm` has imported LiteLLM."""
    return _litellm is not None


def load_litellm() -> ModuleType:
    """Import LiteLLM once, offline and quiet; return the module.

    Blocking (about 2 s the first time): from async code prefer
    ``await LiteLLMCompletion().prepare()``, which runs it in a thread.
    """
    global _litellm
    if _litellm is not None:
        return _litellm
    with _import_lock:
        if _litellm is None:
            # Set before the import: otherwise it fetches a price map from the
            # network and may download tokenizers.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
            _quiet_litellm_loggers()
            import litellm

            litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" prints
            litellm.set_verbose = False  # type: ignore[attr-defined]
            litellm.telemetry = False  # older releases; the SDK sends none in 1.110
            _quiet_litellm_loggers()  # its import configures them again
            _litellm = litellm
    return _litellm


def warm_up(models: Iterable[ModelConfig]) -> list[str]:
    """Do, ahead of time, the work LiteLLM does lazily on a provider's first call.

    Blocking (run it in a thread). After the import, a first call still
    imports dozens of provider and logging modules (measured: 150-200 ms
    instead of 8 ms against a local server). One ``mock_response`` call per
    provider (no HTTP, no key used) takes that path; the modules only a real
    response needs are imported by name. Returns the providers warmed.
    Failures are logged at debug level: the real call will report them.
    """
    litellm = load_litellm()
    warmed: list[str] = []
    for model in models:
        provider = model.model.split("/", 1)[0]
        if provider in warmed:
            continue
        warmed.append(provider)
        try:
            litellm.completion(
                model=model.model,
                messages=[{"role": "user", "content": "warm-up"}],
                mock_response="ok",
                api_base=model.api_base,
                api_key="warm-up",
                num_retries=0,
            )
        except Exception as exc:
            log.debug("llm warm-up of %s: %s", provider, type(exc).__name__)
    for name in FIRST_RESPONSE_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # another litellm release: nothing to warm there
            log.debug("llm warm-up: %s: %s", name, type(exc).__name__)
    return warmed


# --------------------------------------------------------------------------
# the protocol


@dataclass(frozen=True, slots=True)
class CompletionResult:
    """A usable reply: non-blank text and what it cost, where known."""

    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost: float | None = None


class CompletionError(KrytenRulesError):
    """A failed call, sorted into one of :data:`FAILURE_OUTCOMES`.

    ``retry_after`` (seconds) is set for ``rate_limited`` when the endpoint
    said how long to wait. ``message`` never contains an API key.
    """

    def __init__(self, outcome: str, message: str, *, retry_after: float | None = None) -> None:
        if outcome not in FAILURE_OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        super().__init__(message)
        self.outcome = outcome
        self.message = message
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"CompletionError({self.outcome!r}, {self.message!r}, retry_after={self.retry_after!r})"
        )


@runtime_checkable
class Completion(Protocol):
    """Calls one model once. Raises :class:`CompletionError` on failure."""

    async def __call__(
        self, model: ModelConfig, messages: list[dict[str, str]], timeout: float
    ) -> CompletionResult: ...


# --------------------------------------------------------------------------
# API keys


def check_api_keys(models: Mapping[str, ModelConfig] | Iterable[ModelConfig]) -> list[str]:
    """One error per missing (or empty) API-key environment variable.

    Each names the variable and the models that need it; values are never read
    into the message. An empty list means every key is present.
    """
    configs = models.values() if isinstance(models, Mapping) else models
    needed: dict[str, list[str]] = {}
    for model in configs:
        if model.api_key_env:
            needed.setdefault(model.api_key_env, []).append(model.name)
    errors = []
    for var, names in needed.items():
        if not os.environ.get(var):
            which = ", ".join(names)
            noun = "model" if len(names) == 1 else "models"
            errors.append(
                f"environment variable {var} is not set or empty "
                f"(it holds the API key for {noun} {which})"
            )
    return errors


def completion_error_from(exc: BaseException, secrets: Iterable[str] = ()) -> CompletionError:
    """Wrap any exception of a call as a :class:`CompletionError`."""
    if isinstance(exc, CompletionError):
        return exc
    outcome = classify_exception(exc)
    retry_after = retry_after_of(exc) if outcome == OUTCOME_RATE_LIMITED else None
    return CompletionError(outcome, describe_exception(exc, secrets), retry_after=retry_after)


# --------------------------------------------------------------------------
# reading a response


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def configured_cost(
    model: ModelConfig, prompt_tokens: int | None, completion_tokens: int | None
) -> float | None:
    """Cost from the model's own per-token prices, or None if it has none."""
    if model.input_cost_per_token is None and model.output_cost_per_token is None:
        return None
    if prompt_tokens is None and completion_tokens is None:
        return None
    return (prompt_tokens or 0) * (model.input_cost_per_token or 0.0) + (completion_tokens or 0) * (
        model.output_cost_per_token or 0.0
    )


def _litellm_cost(response: Any) -> float | None:
    hidden = getattr(response, "_hidden_params", None) or {}
    cost = hidden.get("response_cost") if isinstance(hidden, Mapping) else None
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        return float(cost)
    try:
        cost = load_litellm().completion_cost(completion_response=response)
    except Exception:  # unmapped model, offline price map without it, ...
        return None
    return float(cost) if isinstance(cost, int | float) else None


def result_from_response(model: ModelConfig, response: Any) -> CompletionResult:
    """Text, tokens and cost out of a chat-completions response (object or dict).

    Raises ``CompletionError('bad_response')`` when there are no choices or the
    content is missing, not text, or blank.
    """
    choices = _field(response, "choices")
    if not choices:
        raise CompletionError(OUTCOME_BAD_RESPONSE, "response has no choices")
    message = _field(choices[0], "message")
    content = _field(message, "content") if message is not None else None
    if not isinstance(content, str):
        raise CompletionError(
            OUTCOME_BAD_RESPONSE, f"response content is {type(content).__name__}, not text"
        )
    if not content.strip():
        raise CompletionError(OUTCOME_BAD_RESPONSE, "response content is empty or blank")
    usage = _field(response, "usage")
    prompt_tokens = _int_or_none(_field(usage, "prompt_tokens")) if usage is not None else None
    completion_tokens = (
        _int_or_none(_field(usage, "completion_tokens")) if usage is not None else None
    )
    cost = configured_cost(model, prompt_tokens, completion_tokens)
    if cost is None and model.input_cost_per_token is None and model.output_cost_per_token is None:
        cost = _litellm_cost(response)
    return CompletionResult(
        text=content,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost=cost,
    )


# --------------------------------------------------------------------------
# the LiteLLM implementation


class LiteLLMCompletion:
    """:class:`Completion` through ``litellm.acompletion``, one try, no retries.

    ``extra`` is passed to every call as is (e.g. ``{"drop_params": True}``).
    ``warm`` are the models :meth:`prepare` warms up (see :func:`warm_up`).
    """

    def __init__(
        self, extra: Mapping[str, Any] | None = None, warm: Iterable[ModelConfig] = ()
    ) -> None:
        self._extra = dict(extra or {})
        self._warm = list(warm)
        self._prepared = False
        self._preparing: asyncio.Future[list[str]] | None = None

    async def prepare(self) -> None:
        """Import LiteLLM and warm it up in a worker thread, once, off the event loop.

        The service awaits this at start, before it reports ready: otherwise
        the first reply pays the import (2-4 s) and the lazy first-call work,
        outside the chain's deadline. Concurrent callers share one run.
        """
        if self._prepared:
            return
        if self._preparing is None:
            self._preparing = asyncio.ensure_future(asyncio.to_thread(warm_up, self._warm))
        try:
            await asyncio.shield(self._preparing)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._preparing = None  # the next call tries again
            raise
        self._prepared = True

    def request_kwargs(
        self, model: ModelConfig, messages: list[dict[str, str]], timeout: float
    ) -> dict[str, Any]:
        """The keyword arguments for ``acompletion`` (the key included: do not log)."""
        kwargs: dict[str, Any] = {
            "model": model.model,
            "messages": messages,
            "timeout": timeout,
            "num_retries": 0,
            **self._extra,
        }
        if model.api_base:
            kwargs["api_base"] = model.api_base
        if model.api_key_env:
            key = os.environ.get(model.api_key_env)
            if key:
                kwargs["api_key"] = key
            elif model.mock_response is None:
                raise CompletionError(
                    OUTCOME_SERVER_ERROR,
                    f"environment variable {model.api_key_env} is not set "
                    f"(API key for model {model.name})",
                )
        if model.max_tokens is not None:
            kwargs["max_tokens"] = model.max_tokens
        if model.temperature is not None:
            kwargs["temperature"] = model.temperature
        if model.mock_response is not None:
            kwargs["mock_response"] = model.mock_response
        if model.input_cost_per_token is not None or model.output_cost_per_token is not None:
            # LiteLLM prices every response whatever we do; given the prices it
            # skips its price-map search (fuzzy name matching for a model it does
            # not know): measured 10-15 % of a call's CPU. Same figure as ours.
            kwargs["input_cost_per_token"] = model.input_cost_per_token or 0.0
            kwargs["output_cost_per_token"] = model.output_cost_per_token or 0.0
        return kwargs

    async def __call__(
        self, model: ModelConfig, messages: list[dict[str, str]], timeout: float
    ) -> CompletionResult:
        kwargs = self.request_kwargs(model, messages, timeout)
        secrets = [kwargs["api_key"]] if "api_key" in kwargs else []
        if not litellm_loaded():
            await self.prepare()
        litellm = load_litellm()
        try:
            response = await litellm.acompletion(**kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise completion_error_from(exc, secrets) from exc
        try:
            return result_from_response(model, response)
        except CompletionError:
            raise
        except (json.JSONDecodeError, AttributeError, IndexError, KeyError, TypeError) as exc:
            raise CompletionError(OUTCOME_BAD_RESPONSE, describe_exception(exc, secrets)) from exc
