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

from .diagnostics import Diagnostic, Span, error

# Larger than any count, rank, priority or number of seconds a rule file
# means, and still exact as a float (durations and multipliers are floats).
MAX_NUMBER = 2**53
# An integer literal longer than this is out of range whatever it says; it is
# refused before conversion, which Python limits to 4,300 digits.
MAX_INT_TEXT = 40
NUMBER_CODES = frozenset({"bad-number", "number-range"})
_NON_FINITE = re.compile(r"^[-+]?\.(?:inf|nan)$", re.IGNORECASE)


def int_text_problem(text: str, span: Span) -> Diagnostic | None:
    """A diagnostic when an integer literal is too long even to convert."""
    if len(text) <= MAX_INT_TEXT:
        return None
    return error(
        "number-range",
        f"the integer {text[:12]}... has {len(text)} characters; numbers here are at most "
        f"{MAX_NUMBER}",
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
                f"{text.strip()!r} is not a number a rule file can use (NaN or infinity)",
                span,
                "write a finite number; to mean 'no limit', leave the key out",
            )
        return error(
            "number-range",
            f"{text.strip()[:40]!r} is too large to be a number (it overflows)",
            span,
            f"numbers here are at most {MAX_NUMBER}",
        )
    if abs(value) > MAX_NUMBER:
        return error(
            "number-range",
            f"{text.strip()[:40]!r} is out of range: numbers here are at most {MAX_NUMBER}",
            span,
        )
    return None
