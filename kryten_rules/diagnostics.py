"""Diagnostics: frozen values that say what is wrong and exactly where.

Every stage before the engine (load, check, compile) *collects* diagnostics
instead of raising on the first problem, so a moderator sees every mistake of
every file in one run. They are raised once, at the library boundary, inside a
:class:`RuleSetError`.

Codes are the members of :class:`~kryten_rules.codes.Code`, the one registry:
stable kebab-case strings that CI filters and docs/diagnostics.md rely on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from kryten_rules.codes import Code
from kryten_rules.errors import KrytenRulesError


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """A position in a source file; ``line`` and ``column`` count from 1."""

    file: str
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    severity: Severity
    code: Code
    message: str
    span: Span
    hint: str | None = None
    # False for a file that must not be shown (it leads outside the rule set's
    # tree: /etc/passwd, /proc/self/environ): the text format quotes no line of it.
    quote: bool = True

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.span.file,
            "line": self.span.line,
            "column": self.span.column,
            "severity": str(self.severity),
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
        }


def error(code: Code | str, message: str, span: Span, hint: str | None = None) -> Diagnostic:
    """An error diagnostic; ``code`` must be registered in :class:`Code` (ValueError if not)."""
    return Diagnostic(Severity.ERROR, Code(code), message, span, hint)


def warning(code: Code | str, message: str, span: Span, hint: str | None = None) -> Diagnostic:
    """A warning diagnostic; ``code`` must be registered in :class:`Code` (ValueError if not)."""
    return Diagnostic(Severity.WARNING, Code(code), message, span, hint)


def sort_key(d: Diagnostic) -> tuple[str, int, int, str]:
    return (d.span.file, d.span.line, d.span.column, d.code)


class RuleSetError(KrytenRulesError):
    """Raised by :func:`kryten_rules.load_ruleset` when any error diagnostic exists.

    ``diagnostics`` holds all of them (warnings too), sorted by position.
    """

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        self.diagnostics: tuple[Diagnostic, ...] = tuple(sorted(diagnostics, key=sort_key))
        errors = [d for d in self.diagnostics if d.is_error]
        first = errors[0] if errors else (self.diagnostics[0] if self.diagnostics else None)
        summary = f"{len(errors)} error(s)"
        if first is not None:
            summary += f"; first: {first.span}: [{first.code}] {first.message}"
        super().__init__(summary)


# --- formatting -------------------------------------------------------------


def _source_line(file: str, line: int, cache: dict[str, list[str] | None]) -> str | None:
    if file not in cache:
        try:
            text = Path(file).read_bytes().decode("utf-8", errors="replace")
            cache[file] = text.splitlines()
        except OSError:
            cache[file] = None
    lines = cache[file]
    if lines is None or not 1 <= line <= len(lines):
        return None
    return lines[line - 1]


def format_text(diagnostics: Iterable[Diagnostic], *, color: bool = False) -> str:
    """rustc-style text: location, severity and code, the source line, a caret, the hint."""
    diags = sorted(diagnostics, key=sort_key)
    cache: dict[str, list[str] | None] = {}
    out: list[str] = []
    # a line one diagnostic must not show (it holds a secret) no other shows either
    hidden = {(d.span.file, d.span.line) for d in diags if not d.quote}
    for d in diags:
        sev = str(d.severity)
        if color:
            sev = f"\x1b[1;{31 if d.is_error else 33}m{sev}\x1b[0m"
        out.append(f"{d.span}: {sev}[{d.code}]: {d.message}")
        shown_ok = (d.span.file, d.span.line) not in hidden
        src = _source_line(d.span.file, d.span.line, cache) if shown_ok else None
        if src is not None:
            # Tabs would shift the caret; show them as single spaces.
            shown = src.replace("\t", " ")
            out.append(f"  {d.span.line:>4} | {shown}")
            out.append(f"       | {' ' * (d.span.column - 1)}^")
        if d.hint:
            out.append(f"       = hint: {d.hint}")
    n_err = sum(1 for d in diags if d.is_error)
    n_warn = len(diags) - n_err
    files = len({d.span.file for d in diags})
    if diags:
        out.append(f"{n_err} error(s), {n_warn} warning(s) in {files} file(s)")
    return "\n".join(out)


def format_json(diagnostics: Iterable[Diagnostic]) -> str:
    return json.dumps([d.as_dict() for d in sorted(diagnostics, key=sort_key)], indent=2)


def _gh_escape(value: str, *, prop: bool = False) -> str:
    # GitHub workflow-command escaping (see actions/toolkit command.ts).
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        value = value.replace(":", "%3A").replace(",", "%2C")
    return value


def format_github(diagnostics: Iterable[Diagnostic]) -> str:
    lines = []
    for d in sorted(diagnostics, key=sort_key):
        kind = "error" if d.is_error else "warning"
        msg = f"[{d.code}] {d.message}"
        if d.hint:
            msg += f" (hint: {d.hint})"
        lines.append(
            f"::{kind} file={_gh_escape(d.span.file, prop=True)},line={d.span.line},"
            f"col={d.span.column},title={_gh_escape(d.code, prop=True)}::{_gh_escape(msg)}"
        )
    return "\n".join(lines)


__all__ = [
    "Diagnostic",
    "RuleSetError",
    "Severity",
    "Span",
    "error",
    "format_github",
    "format_json",
    "format_text",
    "warning",
]
