"""Words, phrases, mentions and regexes as RE2 patterns, and the text they run on.

All matching is RE2 (linear time: no catastrophic backtracking whatever a
moderator writes) and case-insensitive. Whole-word boundaries use RE2's
``\\b`` where the word begins or ends with an ASCII word character; RE2's
``\\b`` is ASCII-only and a Unicode class on every pattern makes large sets
fail to compile, so words that begin or end with another letter get an
explicit Unicode boundary on that side only.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import re2

from kryten_rules.errors import KrytenRulesError

_ASCII_WORD = re.compile(r"[A-Za-z0-9_]")
# A tag is "<", up to 2,000 characters that are not "<" or ">", ">". Stopping at a "<"
# keeps the scan linear: with "[^>]" every "<" of "<" * 4000 read up to 2,000
# characters ahead (90x a normal line; issue #9 item 14). CyTube escapes "<" in what
# people type (&lt;), so the tags it adds (links) never hold one.
_TAG = re.compile(r"<[^<>]{0,2000}>")
_SPACE = re.compile(r"\s+")
_UNI_BEFORE = r"(?:^|[^\pL\pN_])"
_UNI_AFTER = r"(?:$|[^\pL\pN_])"
SET_MAX_MEM = 256 << 20
# What one pattern may cost. google-re2 compiles with the GIL held, so while a
# reload compiles, the event loop (commands, shutdown) waits for each compile
# to return: `\pL{1000}` (1.2M instructions) held it for 0.4-1 s. Under this
# budget RE2 refuses such a pattern in ~10 ms, and the largest accepted
# (`\pL{55}`, 66k instructions) compiles in ~20 ms.
PATTERN_MAX_MEM = 1 << 20
# The instructions of every word and regex of a rule set together: the set is
# compiled in one call (GIL held throughout), ~0.4 us an instruction, and a set
# near SET_MAX_MEM took 9.5 s to fail. A real rule set of 5,000 words is ~100k.
SET_MAX_PROGRAM = 500_000
TOO_LARGE = "pattern too large"  # RE2's reason when a program is over max_mem


def options() -> Any:
    opts = re2.Options()
    opts.log_errors = False
    opts.case_sensitive = False
    opts.max_mem = SET_MAX_MEM
    return opts


def _check_options() -> Any:
    opts = options()
    opts.max_mem = PATTERN_MAX_MEM
    return opts


@lru_cache(maxsize=8192)
def program_size(pattern: str) -> int | str:
    """The RE2 program size of one pattern under the per-pattern budget, or RE2's reason.

    Compiled as the engine compiles patterns (same options, a smaller memory
    budget), so what passes here compiles there. Cached: the checks, the set
    budget and the next reload ask about the same patterns.
    """
    try:
        return int(re2.compile(pattern, _check_options()).programsize)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else str(exc)
        return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)


def normalise(text: str) -> str:
    """Chat text as people read it: CyTube HTML-escapes chat and wraps links in tags."""
    if "<" in text and ">" in text:
        text = _TAG.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    # Every character str.split() breaks on but the ASCII space is unprintable, so
    # a printable text with single inner spaces and none at the ends is already
    # what the split and join would give (and most chat lines are that).
    if text.isprintable() and "  " not in text and text.strip(" ") == text:
        return text
    return " ".join(text.split())


def word_pattern(word: str) -> str:
    """A whole-word, whitespace-tolerant pattern for a word or phrase."""
    parts = [re2.escape(p) for p in word.split()]
    body = r"\s+".join(parts) if parts else re2.escape(word)
    stripped = word.strip()
    before = (
        r"\b"
        if _ASCII_WORD.match(stripped[:1])
        else (_UNI_BEFORE if stripped[:1].isalnum() else "")
    )
    after = (
        r"\b"
        if _ASCII_WORD.match(stripped[-1:])
        else (_UNI_AFTER if stripped[-1:].isalnum() else "")
    )
    return f"{before}{body}{after}"


def word_verifier(word: str) -> re.Pattern[str]:
    """The same word or phrase with *Unicode* word boundaries, for Python's ``re``.

    RE2's ``\\b`` treats every non-ASCII letter as a boundary, so "mon" would be
    found in "pokémon". The RE2 set finds candidates fast; this checks them
    where the text is not pure ASCII, and extracts the exact matched words.
    It is built only from an escaped literal, so it cannot backtrack badly.
    """
    parts = [re.escape(p) for p in word.split()] or [re.escape(word)]
    stripped = word.strip()
    before = r"(?<!\w)" if stripped[:1].isalnum() or stripped[:1] == "_" else ""
    after = r"(?!\w)" if stripped[-1:].isalnum() or stripped[-1:] == "_" else ""
    return re.compile(before + r"\s+".join(parts) + after, re.IGNORECASE)


def mention_verifier(names: Iterable[str]) -> re.Pattern[str]:
    """The mention words as :func:`word_verifier` does them, each optionally after ``@``."""
    alts = sorted({n.strip() for n in names if n and n.strip()}, key=len, reverse=True)
    return re.compile("|".join(f"@?(?:{word_verifier(a).pattern})" for a in alts), re.IGNORECASE)


def mention_pattern(names: Iterable[str]) -> str | None:
    """The bot's name, ``@name`` or any alias, as whole words."""
    alts = sorted({n.strip() for n in names if n and n.strip()}, key=len, reverse=True)
    if not alts:
        return None
    return "(?:" + "|".join(f"@?{word_pattern(a)}" for a in alts) + ")"


def compile_one(pattern: str) -> Any:
    return re2.compile(pattern, options())


class PatternSetError(KrytenRulesError, ValueError):
    """RE2 could not build the set (the checks' budgets should have prevented it)."""


def compile_set(patterns: Iterable[str]) -> Any:
    """One RE2 set of every pattern; ``Match(text)`` returns the indices present.

    Raises :class:`PatternSetError` (not RE2's own error) when RE2 refuses.
    """
    s = re2.Set.SearchSet(options())
    for p in patterns:
        try:
            s.Add(p)
        except re2.error as exc:
            raise PatternSetError(f"RE2 refuses the pattern {p[:60]!r}: {exc}") from exc
    try:
        s.Compile()
    except re2.error as exc:
        raise PatternSetError(f"RE2 cannot compile the set of patterns: {exc}") from exc
    return s


def strip_mention(text: str, rx: re.Pattern[str] | None) -> str:
    """The message without the words that addressed the bot (``cynthia, ...`` -> ``...``)."""
    if rx is None:
        return text
    out = []
    pos = 0
    for m in rx.finditer(text):
        out.append(text[pos : m.start()])
        pos = m.end()
        while pos < len(text) and text[pos] in ",:;!?":
            pos += 1
    out.append(text[pos:])
    return _SPACE.sub(" ", "".join(out)).strip(" ,:;")
