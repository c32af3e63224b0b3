"""LLM dispatch: fallback chains of LiteLLM models.

Importing this package does not import LiteLLM (about 2 s): that happens on
the first call, or in :meth:`ChainRunner.prepare` / :func:`load_litellm`.
"""

from kryten_rules.dispatch.llm.chain import (
    BREAKER_FAILURES,
    DEFAULT_RETRY_AFTER,
    OUTCOMES,
    Attempt,
    ChainResult,
    ChainRunner,
)
from kryten_rules.dispatch.llm.errors import classify_exception, parse_retry_after
from kryten_rules.dispatch.llm.litellm_client import (
    FAILURE_OUTCOMES,
    Completion,
    CompletionError,
    CompletionResult,
    LiteLLMCompletion,
    check_api_keys,
    load_litellm,
)

__all__ = [
    "BREAKER_FAILURES",
    "DEFAULT_RETRY_AFTER",
    "FAILURE_OUTCOMES",
    "OUTCOMES",
    "Attempt",
    "ChainResult",
    "ChainRunner",
    "Completion",
    "CompletionError",
    "CompletionResult",
    "LiteLLMCompletion",
    "check_api_keys",
    "classify_exception",
    "load_litellm",
    "parse_retry_after",
]
