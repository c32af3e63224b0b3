"""Failed model calls sorted into outcomes, with texts safe to log.

LiteLLM wraps nearly every failure in its own exception classes, and the
class alone does not say what happened (a refused connection and a body that
is not JSON both arrive as ``InternalServerError``). These functions read the
whole exception chain: :func:`classify_exception` gives the outcome the
chain's circuit breakers act on, :func:`retry_after_of` the wait a 429 asked
for, :func:`describe_exception` a short text with secrets masked. Nothing
here imports LiteLLM or an HTTP client: classification goes by class names,
so it works for httpx and aiohttp errors alike and costs nothing at import.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from kryten_rules.dispatch.llm.outcomes import LLMOutcome

OUTCOME_TIMEOUT: Final = LLMOutcome.TIMEOUT
OUTCOME_RATE_LIMITED: Final = LLMOutcome.RATE_LIMITED
OUTCOME_SERVER_ERROR: Final = LLMOutcome.SERVER_ERROR
OUTCOME_REFUSED: Final = LLMOutcome.REFUSED
OUTCOME_BAD_RESPONSE: Final = LLMOutcome.BAD_RESPONSE
MAX_ERROR_CHARS: Final = 300


def _chain_of(exc: BaseException) -> list[BaseException]:
    """The exception and everything it was raised from or during, outermost first."""
    seen: set[int] = set()
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(out) < 20:
        seen.add(id(current))
        out.append(current)
        current = current.__cause__ or current.__context__
    return out


def _type_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


# Class names (matched anywhere in an exception's MRO) of the transport's
# connect-phase failures: httpx and aiohttp both sit under LiteLLM.
_CONNECT_NAMES: Final = frozenset(
    {"ConnectionRefusedError", "ConnectError", "ClientConnectorError", "gaierror"}
)
_TIMEOUT_NAMES: Final = frozenset(
    {
        "TimeoutError",
        "Timeout",
        "APITimeoutError",
        "TimeoutException",
        "ServerTimeoutError",
        "SocketTimeoutError",
    }
)
_REFUSED_TEXT: Final = ("connection refused", "connect call failed", "errno 111", "econnrefused")


def _status_code(exc: BaseException) -> int | None:
    for attr in ("status_code", "provider_status_code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    return None


def _headers_of(exc: BaseException) -> list[Mapping[str, Any]]:
    found: list[Mapping[str, Any]] = []
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers:
        found.append(headers)
    for attr in ("litellm_response_headers", "headers"):
        value = getattr(exc, attr, None)
        if value:
            found.append(value)
    return found


def parse_retry_after(value: object, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value: a number or an HTTP date."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def retry_after_of(exc: BaseException) -> float | None:
    """The wait a 429 asked for, from the response headers LiteLLM kept."""
    for err in _chain_of(exc):
        for headers in _headers_of(err):
            lowered = {str(k).lower(): v for k, v in dict(headers).items()}
            if "retry-after-ms" in lowered:
                ms = parse_retry_after(lowered["retry-after-ms"])
                if ms is not None:
                    return ms / 1000.0
            if "retry-after" in lowered:
                seconds = parse_retry_after(lowered["retry-after"])
                if seconds is not None:
                    return seconds
    return None


def classify_exception(exc: BaseException) -> str:
    """The outcome for an exception out of ``litellm.acompletion``.

    LiteLLM wraps nearly everything: a refused connection and a body that is
    not JSON both arrive as ``InternalServerError`` (status 500), so the
    exception chain (``__cause__``/``__context__``) is searched for the real
    cause: ``ConnectionRefusedError``/``ConnectError`` -> ``refused``,
    ``JSONDecodeError`` -> ``bad_response``. 503 and 502 arrive as
    ``ServiceUnavailableError``/``BadGatewayError``, which are *not*
    ``InternalServerError`` subclasses: any status >= 500 is ``server_error``.
    Other 4xx (bad request, auth, not found) are ``server_error`` too: the
    endpoint would not serve the call.
    """
    chain = _chain_of(exc)
    top_names = _type_names(exc)
    if "RateLimitError" in top_names or _status_code(exc) == 429:
        return OUTCOME_RATE_LIMITED
    for err in chain:
        names = _type_names(err)
        if names & _CONNECT_NAMES and "ConnectTimeout" not in names:
            return OUTCOME_REFUSED
    # Fallback on the wording, only for connection-level errors (not a 5xx
    # body that happens to mention a refused connection upstream).
    text = " ".join(
        str(err) for err in chain if _type_names(err) & {"APIConnectionError", "OSError"}
    ).lower()
    if any(marker in text for marker in _REFUSED_TEXT):
        return OUTCOME_REFUSED
    for err in chain:
        if _type_names(err) & _TIMEOUT_NAMES:
            return OUTCOME_TIMEOUT
    for err in chain:
        names = _type_names(err)
        if "JSONDecodeError" in names or "APIResponseValidationError" in names:
            return OUTCOME_BAD_RESPONSE
    return OUTCOME_SERVER_ERROR


def describe_exception(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """``TypeName (status): message``, the root cause added, secrets masked, cut short."""
    status = _status_code(exc)
    head = type(exc).__name__ + (f" ({status})" if status is not None else "")
    message = str(exc).strip()
    # LiteLLM repeats the class name: "litellm.InternalServerError: InternalServerError: ..."
    for prefix in (f"litellm.{type(exc).__name__}:", f"{type(exc).__name__}:"):
        if message.startswith(prefix):
            message = message[len(prefix) :].strip()
    # The deepest cause says what happened (ConnectionRefusedError,
    # JSONDecodeError, ReadTimeout); skip bookkeeping ones like StopIteration.
    causes = [
        err
        for err in _chain_of(exc)
        if not isinstance(err, StopIteration | StopAsyncIteration | asyncio.CancelledError)
    ]
    root = causes[-1] if causes else exc
    text = f"{head}: {message}" if message else head
    if root is not exc and type(root).__name__ != "HTTPStatusError":  # the status says it
        root_text = str(root).strip()
        text += f" [cause {type(root).__name__}" + (f": {root_text}]" if root_text else "]")
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 3] + "..."
    return text
