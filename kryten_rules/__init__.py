"""kryten-rules: declarative YAML rules for LLM chat bots in CyTube channels.

The public API (see README): load and check rule files, evaluate events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kryten_rules.version import __version__

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
    "Decision": "engine.evaluate",
    "Engine": "engine.evaluate",
    "TraceEntry": "engine.evaluate",
    "ChatEvent": "events",
    "Media": "events",
    "check_paths": "compile.load",
    "load_config": "compile.load",
    "load_ruleset": "compile.load",
    "RuleSet": "compile.ruleset",
}

if TYPE_CHECKING:
    from kryten_rules.clock import SystemClock, VirtualClock
    from kryten_rules.compile.load import check_paths, load_config, load_ruleset
    from kryten_rules.compile.ruleset import RuleSet
    from kryten_rules.config import ServiceConfig
    from kryten_rules.diagnostics import Diagnostic, RuleSetError, Severity, Span
    from kryten_rules.engine.evaluate import Decision, Engine, TraceEntry
    from kryten_rules.events import ChatEvent, Media


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
