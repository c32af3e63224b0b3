"""kryten-rules: declarative YAML rules for LLM chat bots in CyTube channels.

The public API (see README): load and check rule files, evaluate events.
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

# Public names resolve on first use: `validate` imports only what it needs,
# never the engine or the runtime (PEP 562).
_EXPORTS = {
    "SystemClock": "clock",
    "VirtualClock": "clock",
    "ServiceConfig": "config",
    "Diagnostic": "diagnostics",
    "RuleSetError": "diagnostics",
    "Severity": "diagnostics",
    "Span": "diagnostics",
    "Decision": "engine",
    "Engine": "engine",
    "TraceEntry": "engine",
    "ChatEvent": "events",
    "Media": "events",
    "check_paths": "load",
    "load_config": "load",
    "load_ruleset": "load",
    "RuleSet": "ruleset",
}

if TYPE_CHECKING:
    from .clock import SystemClock, VirtualClock
    from .config import ServiceConfig
    from .diagnostics import Diagnostic, RuleSetError, Severity, Span
    from .engine import Decision, Engine, TraceEntry
    from .events import ChatEvent, Media
    from .load import check_paths, load_config, load_ruleset
    from .ruleset import RuleSet


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kryten_rules' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "ChatEvent",
    "Decision",
    "Diagnostic",
    "Engine",
    "Media",
    "RuleSet",
    "RuleSetError",
    "ServiceConfig",
    "Severity",
    "Span",
    "SystemClock",
    "TraceEntry",
    "VirtualClock",
    "__version__",
    "check_paths",
    "load_config",
    "load_ruleset",
]
