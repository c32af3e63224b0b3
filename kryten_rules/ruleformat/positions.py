"""Where a template's problem stands in the file that holds it.

Jinja reports lines of the template, not columns, and a template inside YAML
does not start at line 1 of the file: a block scalar starts on the line after
its key, a folded (``>``) or quoted scalar joins or escapes lines. These
functions find the offending name among the scalar's own lines instead, so a
moderator's editor jumps to the exact word.
"""

from __future__ import annotations

import linecache
import re
from pathlib import Path

from kryten_rules.diagnostics import Span
from kryten_rules.ruleformat.yamlload import Node


def _lines(file: str) -> list[str]:
    linecache.checkcache(file)  # the file may have changed since it was last read
    return linecache.getlines(file)


def _needle_re(needle: str) -> re.Pattern[str]:
    """The needle as a whole name: `name` must not match inside `user.name` or `names`.

    An attribute needle is given with its dot (``.nmae``); a private name
    (``__class__``, ``_x``) is found wherever it stands, after a dot or not.
    """
    before = "" if needle.startswith((".", "_")) else r"(?<![\w.])"
    return re.compile(before + re.escape(needle) + r"(?!\w)")


def _find_needle(
    source: str,
    template_line: int,
    needle: str,
    lines: list[str],
    first: int,
    last: int,
    first_col: int,
) -> tuple[int, int] | None:
    """Where the template's first use of ``needle`` on ``template_line`` is in the file.

    Counts the needle's earlier uses in the template and takes the same use
    among the scalar's lines in the file, so folded (``>``) and quoted scalars,
    whose lines do not map one to one, land on the right place too.
    """
    rx = _needle_re(needle)
    tlines = source.split("\n")
    if not 1 <= template_line <= len(tlines) or not rx.search(tlines[template_line - 1]):
        return None
    k = sum(len(rx.findall(t)) for t in tlines[: template_line - 1])
    seen = 0
    for n in range(first, min(last, len(lines)) + 1):
        text = lines[n - 1]
        start = first_col - 1 if n == first else 0
        for m in rx.finditer(text, start):
            if seen == k:
                return n, m.start() + 1
            seen += 1
    return None


def template_span(node: Node, template_line: int, needle: str = "") -> Span:
    """Where line ``template_line`` of an inline template stands in the YAML file.

    Jinja knows lines, not columns: the place is found by looking for the
    offending text in the scalar's lines of the file.
    """
    file = node.span.file
    lines = _lines(file)
    last = max(node.end_line, node.span.line)
    if needle and isinstance(node.value, str):
        found = _find_needle(
            node.value, template_line, needle, lines, node.span.line, last, node.span.column
        )
        if found:
            return Span(file, *found)
    offset = template_line - 1 + (1 if node.block else 0)
    line = min(node.span.line + offset, last) if last > node.span.line else node.span.line
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    column = node.span.column if line == node.span.line else len(text) - len(text.lstrip()) + 1
    return Span(file, line, column)


def file_span(path: Path, template_line: int, needle: str = "") -> Span:
    """A place in a prompt file: the template's own lines are the file's lines."""
    if needle:
        lines = _lines(str(path))
        found = _find_needle(
            "".join(lines).replace("\r\n", "\n"), template_line, needle, lines, 1, len(lines), 1
        )
        if found:
            return Span(str(path), *found)
    return Span(str(path), template_line, 1)
