"""Reading command requests as the Kryten ecosystem writes them, and the ``system.*`` answers.

Requests on ``kryten.rules.command`` come in two shapes, and both are ours:

* nested, as kryten-py's ``send_command`` writes it:
  ``{"command": "rules.explain", "args": {"text": ...}, "meta": {...}}``;
* flat, as kryten-shell and several services write it (and kryten-py's
  ``nats_request`` passes through): ``{"service": "rules", "command": ...,
  "text": ...}``: every field but ``command``, ``service``, ``args`` and
  ``meta`` is an argument.

``service`` may be ours (``rules``), ``system`` (kryten-shell's ping of any
service) or absent. Another service's name is answered with an error rather
than silence: the request reached our subject by mistake, and a timeout would
hide that.

``system.stats`` reads the service's Prometheus registry (one source of truth
for counts); ``system.config`` is the running config as plain data with every
secret value replaced (names of environment variables stay: they are how an
operator finds the secret, not the secret).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kryten_rules.errors import KrytenRulesError
from kryten_rules.redact import mask_credentials
from kryten_rules.service.lifecycle import SERVICE
from kryten_rules.version import __version__

if TYPE_CHECKING:
    from kryten_rules.service.bot import Bot

OUR_SERVICES = (SERVICE, "system")
ENVELOPE_FIELDS = frozenset({"command", "service", "args", "meta"})
REDACTED = "***REDACTED***"
# keys whose values are secrets, wherever they appear in the config; `*_env`
# (a variable's name) and `*_file` (a path) are not secrets and are shown
_SECRET_WORDS = ("password", "passwd", "secret", "token", "api_key", "apikey", "nkey", "seed")


class BadRequest(KrytenRulesError, ValueError):
    """A request we cannot read; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class Request:
    command: str
    args: dict[str, Any]


def parse_request(data: bytes) -> Request:
    """The command and its arguments, from the nested or the flat form."""
    try:
        req = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request is not JSON: {exc}") from None
    if not isinstance(req, dict):
        raise BadRequest("the request must be a JSON object")
    command = req.get("command")
    if not isinstance(command, str) or not command:
        raise BadRequest('"command" (a string, e.g. "system.ping") is required')
    service = req.get("service")
    if service is not None and service not in OUR_SERVICES:
        raise BadRequest(
            f"this is the {SERVICE!r} service (kryten.{SERVICE}.command); "
            f"the request names service {service!r}"
        )
    nested = req.get("args")
    if nested is not None and not isinstance(nested, dict):
        raise BadRequest('"args" must be an object')
    flat = {k: v for k, v in req.items() if k not in ENVELOPE_FIELDS}
    return Request(command, flat | (nested or {}))


def ping(bot: Bot) -> dict[str, Any]:
    """What kryten-shell's ``services`` shows: name, version, uptime, metrics URL."""
    return {
        "pong": True,
        "service": SERVICE,
        "version": __version__,
        "uptime_seconds": round(bot.clock.now() - bot.started_at, 3),
        "timestamp": datetime.now(UTC).isoformat(),
        "metrics_endpoint": bot.lifecycle.metrics_endpoint(),
    }


def _total(bot: Bot, name: str, by: str | None = None) -> Any:
    """A counter's total over its labels, or ``{label value: total}`` by one label."""
    total = 0.0
    split: dict[str, float] = {}
    for family in bot.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
                if by is not None:
                    key = sample.labels.get(by, "")
                    split[key] = split.get(key, 0.0) + sample.value
    if by is not None:
        return {k: int(v) for k, v in sorted(split.items())}
    return int(total)


def stats(bot: Bot) -> dict[str, Any]:
    """Counts since start, from the same counters ``/metrics`` serves."""
    return {
        "uptime_seconds": round(bot.clock.now() - bot.started_at, 3),
        "rules": sum(len(ch.rules.ruleset.rules) for ch in bot.channels if ch.engine),
        "channels": [ch.name for ch in bot.channels],
        "events": {
            "seen": _total(bot, "kryten_rules_events_total"),
            "by_event": _total(bot, "kryten_rules_events_total", "event"),
            "by_channel": _total(bot, "kryten_rules_events_total", "channel"),
            "malformed": _total(bot, "kryten_rules_events_malformed_total"),
            "ignored": _total(bot, "kryten_rules_events_ignored_total"),
        },
        "decisions": _total(bot, "kryten_rules_decision_seconds_count"),
        "rule_outcomes": _total(bot, "kryten_rules_decisions_total", "outcome"),
        "replies": {
            "sent": _total(bot, "kryten_rules_replies_total"),
            "dropped": _total(bot, "kryten_rules_replies_dropped_total"),
            "outcomes": _total(bot, "kryten_rules_reply_outcomes_total", "outcome"),
            "in_progress": sum(ch.replies.pending for ch in bot.channels),
        },
        "failures": {
            "send": _total(bot, "kryten_rules_send_failures_total"),
            "by_reason": _total(bot, "kryten_rules_send_failures_total", "reason"),
            "response_log": _total(bot, "kryten_rules_response_log_errors_total"),
        },
        "llm_attempts": _total(bot, "kryten_rules_llm_attempts_total", "outcome"),
        "reloads": _total(bot, "kryten_rules_reloads_total", "outcome"),
        "nats_connected": bool(bot.bus is not None and bot.bus.connected),
        "dry_run": bot.dry_run,
    }


def _secret_key(key: str) -> bool:
    k = key.lower()
    if k.endswith(("_env", "_file")):
        return False
    return any(word in k for word in _SECRET_WORDS)


def redacted(value: Any, key: str = "") -> Any:
    """``value`` as JSON-able data, secrets replaced, URLs' passwords masked."""
    if key and _secret_key(key) and value not in (None, ""):
        return REDACTED
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): redacted(v, str(k)) for k, v in value.items()}
    if isinstance(value, frozenset | set):
        return sorted(redacted(v) for v in value)
    if isinstance(value, list | tuple):
        return [redacted(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return mask_credentials(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return mask_credentials(str(value))


def config(bot: Bot) -> dict[str, Any]:
    """The running service config, as kryten-robot's ``system.config`` shows its own."""
    data: dict[str, Any] = redacted(bot.config)
    data["nats_url"] = bot.safe_url
    data["metrics_endpoint"] = bot.lifecycle.metrics_endpoint()
    data["heartbeat_seconds"] = bot.heartbeat_interval
    return data
