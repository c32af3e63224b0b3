"""What one model call came to: the ``outcome`` of a model attempt.

The label of ``kryten_rules_llm_requests_total{outcome}``, the ``attempts`` of a
response-log line and what the chain decides on (which failures open a
circuit breaker). One list, so the metrics docs and the code cannot disagree.
"""

from __future__ import annotations

from enum import StrEnum


class LLMOutcome(StrEnum):
    OK = "ok"
    # failures of a call (CompletionError.outcome)
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    REFUSED = "refused"
    BAD_RESPONSE = "bad_response"
    # models the chain did not call
    SKIPPED_RATE_LIMITED = "skipped_rate_limited"
    SKIPPED_CIRCUIT_OPEN = "skipped_circuit_open"
    # the chain's deadline passed before this model's turn
    DEADLINE = "deadline"


FAILURES = frozenset(
    {
        LLMOutcome.TIMEOUT,
        LLMOutcome.RATE_LIMITED,
        LLMOutcome.SERVER_ERROR,
        LLMOutcome.REFUSED,
        LLMOutcome.BAD_RESPONSE,
    }
)
"""The outcomes a :class:`~.litellm_client.CompletionError` can have."""

__all__ = ["FAILURES", "LLMOutcome"]
