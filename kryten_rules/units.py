"""Durations and CyTube ranks: the two small value languages of rule files."""

from __future__ import annotations

import math
import re

from kryten_rules.errors import KrytenRulesError

RANKS: dict[str, int] = {
    "guest": 0,
    "registered": 1,
    "moderator": 2,
    "admin": 3,
    "owner": 4,
    "founder": 5,
    "siteadmin": 255,
}
_RANK_NAMES = {v: k for k, v in RANKS.items()}

# `45s`, `5m`, `1h30m`, `2d`, optionally fractional parts (`1.5h`), or a bare number.
_NUM = r"\d+(?:\.\d+)?"
DURATION_PATTERN = rf"^\s*(?:{_NUM}|(?=\d)(?:{_NUM}d)?(?:{_NUM}h)?(?:{_NUM}m)?(?:{_NUM}s)?)\s*$"
_DURATION_RE = re.compile(DURATION_PATTERN)
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
MAX_SECONDS = float(2**53)  # what kryten_rules.ruleformat.numbers allows any number to be
_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


class DurationRangeError(KrytenRulesError, ValueError):
    """A duration of the right form whose value no float can hold (NaN, inf, 1e400)."""


def parse_duration(value: object) -> float:
    """Seconds from a duration; raises ``ValueError`` with a readable reason."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration {value!r} is negative")
        try:
            seconds = float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise DurationRangeError("duration is too large to be a number of seconds") from None
    elif not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration")
    else:
        text = value.strip()
        if not text or not _DURATION_RE.match(text):
            raise ValueError(f"{value!r} is not a duration (use e.g. 45s, 5m, 1h30m, 2d)")
        try:
            seconds = float(text)
        except ValueError:
            seconds = sum(float(n) * _UNIT[u] for n, u in _PART_RE.findall(text))
    if not math.isfinite(seconds):  # NaN, .inf, or digits past a float's range
        raise DurationRangeError(
            f"duration {str(value)[:40]!r} is not a finite number of seconds"
        )
    if seconds > MAX_SECONDS:  # finite, but past what any number in a rule file may be
        raise DurationRangeError(
            f"duration {str(value)[:40]!r} is too long (at most {int(MAX_SECONDS)} seconds)"
        )
    return seconds


def format_duration(seconds: float) -> str:
    """Short human form for traces: ``1m30s``, ``4.2s``."""
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds % 1 else f"{int(seconds)}s"
    out = []
    rest = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, rest = divmod(rest, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out)


def parse_rank(value: object) -> int:
    """A CyTube rank from a number or a name; raises ``ValueError``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a rank")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        key = value.strip().lower()
        if key in RANKS:
            return RANKS[key]
        try:
            return int(key)
        except ValueError:
            pass
    names = ", ".join(RANKS)
    hint = ""
    if isinstance(value, str):
        import difflib

        close = difflib.get_close_matches(value.strip().lower(), RANKS, n=1, cutoff=0.7)
        hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"{value!r} is not a rank (a number or one of {names}){hint}")


def rank_name(rank: int) -> str:
    """The CyTube name of a rank; between named ranks, the highest one reached."""
    if rank in _RANK_NAMES:
        return _RANK_NAMES[rank]
    reached = [v for v in _RANK_NAMES if v <= rank]
    return _RANK_NAMES[max(reached)] if reached else "guest"
