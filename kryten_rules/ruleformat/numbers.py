"""Which numbers a rule file may hold: finite, and small enough to compute with.

YAML reads ``.inf`` and ``.nan`` as floats, ``1.0e999`` overflows to
infinity, and an integer may have thousands of digits. JSON Schema's
``minimum: 0`` lets infinity through, and an infinite multiplier or limit
only fails much later, when the engine turns it into an integer while a new
rule set is being installed. So every number is checked where it is read,
with the position of its text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from kryten_rules.diagnostics import Diagnostic, Span, error

if TYPE_CHECKING:
    from kryten_rules.ruleformat.yamlload import Node

# Larger than any count, rank, priority or number of seconds a rule file
# means, and still exact as a float (durations and multipliers are floats).
MAX_NUMBER = 2**53
# Python refuses to convert integer text of more digits (ValueError): such a
# literal is refused before conversion, in any file.
MAX_INT_TEXT = 4300
NUMBER_CODES = frozenset({"bad-number", "number-range"})
_NON_FINITE = re.compile(r"^[-+]?\.(?:inf|nan)$", re.IGNORECASE)


def int_text_problem(text: str, span: Span) -> Diagnostic | None:
    """A diagnostic when an integer literal is too long even to convert."""
    if len(text) <= MAX_INT_TEXT:
        return None
    return error(
        "number-range",
        f"the integer {text[:12]}... has {len(text)} characters, too many to convert",
        span,
    )


def number_problem(value: object, text: str, span: Span) -> Diagnostic | None:
    """A diagnostic when ``value`` (read from ``text``) is NaN, infinite or out of range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        if _NON_FINITE.match(text.strip()):
            return error(
                "bad-number",
                f"{text.strip()!r} is not a finite number: NaN and infinity cannot be used",
                span,
                "write a finite number; to mean 'no limit', leave the key out",
            )
        return error(
            "number-range",
            f"{text.strip()[:40]!r} is too large to be a number (it overflows)",
            span,
            f"numbers here are at most {MAX_NUMBER}",
        )
    return None


def out_of_range(value: object) -> bool:
    """A finite number past :data:`MAX_NUMBER` (booleans are not numbers here)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and abs(value) > MAX_NUMBER
    )


def check_ranges(root: Node) -> Iterator[Diagnostic]:
    """``number-range`` for each number of a rule (or rule-test) file past 2**53.

    Not in the loader: the service config reports its own (a 400-digit
    duration is ``bad-duration`` there).
    """
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node.value, dict):
            stack.extend(node.value.values())
        elif isinstance(node.value, list):
            stack.extend(node.value)
        elif out_of_range(node.value):
            shown = str(node.value)
            shown = shown if len(shown) <= 24 else f"{shown[:12]}... ({len(shown)} digits)"
            yield error(
                "number-range",
                f"{shown} is out of range: numbers here are at most {MAX_NUMBER}",
                node.span,
            )
