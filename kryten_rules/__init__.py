"""kryten-rules: declarative YAML rules for LLM chat bots in CyTube channels.

The public API (see README): load and check rule files, evaluate events.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .clock import SystemClock, VirtualClock
from .config import ServiceConfig
from .diagnostics import Diagnostic, RuleSetError, Severity, Span
from .engine import Decision, Engine, TraceEntry
from .events import ChatEvent, Media
from .load import check_paths, load_config, load_ruleset
from .ruleset import RuleSet

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
