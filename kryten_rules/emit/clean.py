"""Stage 6, emit: shape whatever a model wrote into chat lines CyTube can safely say.

Models add markdown, quotes, "As an AI..." filler and speaker labels; they can emit
control and invisible characters; and CyTube runs any line that starts with ``/`` as a
command (``/clear``, ``/mute``, ``/kick`` ... with the bot's rank). Lengths are measured
as JavaScript does (UTF-16 code units) because that is what CyTube's 320-character cut
counts. Everything here is pure string work: no I/O, no imports beyond the stdlib.

A model can answer with anything, including 100,000 characters built to make a
backtracking regex or a strip-one-thing-per-pass loop quadratic (issue #9 item 7:
``"**a " * 25000`` took 78 s). So every pass here is linear in the text: patterns use
possessive quantifiers where backtracking could revisit a run, bold markers are paired
by a scan rather than by a lazy ``.+?`` retried from every ``**``, and the speaker
labels, filler and quotes at the front are peeled in one walk along the text.
:func:`prepare_reply` also cuts the raw reply to :func:`reply_cap` before cleaning.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from collections.abc import Iterable
from functools import lru_cache

# Replacement for a leading "/": U+2215 DIVISION SLASH. It is visible and reads as the
# slash the model wrote, CyTube's `msg.indexOf("/") === 0` test no longer matches, and it
# is one UTF-16 code unit like "/", so neutralising never changes a part's length.
SAFE_SLASH = "\u2215"

# Characters that render as nothing but are not Unicode whitespace: fold them to spaces.
BLANKS = "\u115f\u1160\u3164\uffa0\u2800"
_ZWJ = "\u200d"
_WS_RE = re.compile(rf"[\s{BLANKS}]+")
_ANSI_RE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*+[ -/]*+[@-~]"  # CSI: colours, cursor moves
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks
    r"|\x1b[()][0-9A-Za-z]"  # character-set designation
    r"|\x1b[@-Z\\-_]"  # other two-character escapes
)
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
# The language tag after a fence is blanks, a word, blanks: three disjoint classes, so
# possessive runs match exactly what backtracking ones did, without trying every split
# of a long run of blanks (quadratic: "```" + " " * 10_000 took 0.7 s).
_FENCE_RE = re.compile(r"```(?:[^\S\n]*+[\w+#.\-]*+[^\S\n]*+\n)?(.*?)```", re.S)
_LEFTOVER_FENCE_RE = re.compile(r"```[^\S\n]*+[\w+#.\-]*+[^\S\n]*+(?=\n)|```+")
_INLINE_CODE_RE = re.compile(r"(`{1,2})([^`\n]+?)\1")
# **bold**: an opening "**" not glued to a word, a closing one not followed by one, the
# text between them on one line. Paired by _strip_bold, not by one regex with ".+?".
_BOLD_OPEN_RE = re.compile(r"(?<![\w*])\*\*(?=\S)")
_BOLD_CLOSE_RE = re.compile(r"(?<=\S)\*\*(?![\w*])")

_NOUN = (
    r"(?:ai|a\.i\.|artificial\s+intelligence)"
    r"(?:\s+(?:language\s+model|model|assistant|chatbot|system|bot))?"
    r"|(?:large\s+)?language\s+model|llm|chatbot|(?:virtual|digital)\s+assistant"
)
_BY = r"(?:\s+(?:developed|created|made|trained|built|designed|programmed)\s+by\s+[\w.\-]+)?"
_SENTENCE_START = r"(?:^|(?<=[.!?…]\s))"
_NEXT = r"(?P<next>[^\W\d_])?"
# "As an AI language model, I ..." -> "I ...": drop the clause up to its comma, but never
# words that carry the speaker's own content (I, me, my, we).
_FILLER_AS = (
    r"as\s+an?\s+(?:" + _NOUN + r")(?!\w)" + _BY
    + r"(?:(?:\s+(?!(?:i|me|my|we)(?:\b|['’]))[^\s,.!?;:]+){0,6}?\s*,\s*"
    r"|\s*[.!…]+\s*|\s*$|\s+)" + _NEXT
)
# "I'm just an AI, but I think ..." -> "I think ...": only when the clause ends there.
_FILLER_IM = (
    r"(?:i['’]?m|i\s+am)\s+(?:(?:just|only|merely|simply)\s+)?an?\s+(?:"
    + _NOUN + r")(?!\w)" + _BY
    + r"(?:\s*[,;]\s*(?:(?:but|so|and)\s+)?|\s+(?:but|so|and)\s+|\s*[.!…]+\s*|\s*$)" + _NEXT
)
# Matched at a position the caller knows is a sentence start.
_FILLER_BODIES = (re.compile(_FILLER_AS, re.I), re.compile(_FILLER_IM, re.I))
# Where a filler may begin: the start of the text or of a sentence, at "as" or "i".
_FILLER_START_RE = re.compile(_SENTENCE_START + r"(?=as\s|i)", re.I)
_QUOTE_PAIRS = {
    '"': '"', "'": "'", "“": "”", "”": "”", "‘": "’", "«": "»", "»": "«", "„": "“",
    "「": "」", "『": "』",
}
_APOSTROPHE_RE = re.compile(r"(?<=\w)['’](?=\w)")
SENTENCE_END = ".!?…"
CLOSERS = "\"'”’»)]"


def js_length(text: str) -> int:
    """Length as CyTube/JavaScript counts it: UTF-16 code units.

    An emoji outside the BMP counts 2, so Python's ``len`` would overrun CyTube's limit.
    """
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _is_pictographic(ch: str) -> bool:
    """Rough Extended_Pictographic test (plus VS16), enough to keep emoji ZWJ sequences."""
    cp = ord(ch)
    return (
        0x1F000 <= cp <= 0x1FAFF or 0x2190 <= cp <= 0x2BFF or cp == 0xFE0F
    )


def _is_invisible(ch: str) -> bool:
    """Controls, format characters and surrogates: nothing a chat line should carry."""
    return ch in BLANKS or unicodedata.category(ch) in ("Cc", "Cf", "Cs")


def _fix_surrogates(text: str) -> str:
    """Join surrogate pairs left by bad decoding into real characters; drop lone halves."""
    if not _SURROGATE_RE.search(text):
        return text
    joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return _SURROGATE_RE.sub("", joined)


@lru_cache(maxsize=1)
def invisible_re() -> re.Pattern[str]:
    """Every control and format character that is not whitespace, and every surrogate.

    Built from this Python's Unicode tables on first use (0.1 s, once), so that
    stripping them is one C-level scan rather than a Python loop over each character.
    """
    ranges: list[list[int]] = []
    for cp in range(0x110000):
        ch = chr(cp)
        if unicodedata.category(ch) in ("Cc", "Cf") and not ch.isspace():
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
    # As ranges (25 of them), not 218 single characters: a 5x faster scan.
    body = "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)
    return re.compile(f"[{body}\ud800-\udfff]")


def _strip_invisible(text: str) -> str:
    """Drop control/format characters (zero-width, bidi overrides, ANSI leftovers).

    Whitespace controls (newline, tab ...) stay so they become spaces later, as CyTube
    itself does; a ZWJ stays only between pictographs so emoji such as 👩‍💻 survive.
    """
    pattern = invisible_re()
    if pattern.search(text) is None:
        return text
    last = len(text) - 1

    def keep_zwj(m: re.Match[str]) -> str:
        i = m.start()
        if (
            m.group() == _ZWJ and 0 < i < last
            and _is_pictographic(text[i - 1]) and _is_pictographic(text[i + 1])
        ):
            return _ZWJ
        return ""

    return pattern.sub(keep_zwj, text)


def _collapse(text: str) -> str:
    """One line, single spaces: chat has no newlines and CyTube ignores runs of blanks."""
    return _WS_RE.sub(" ", text).strip()


def normalise_whitespace(text: str) -> str:
    """The character-level part of cleaning, safe to apply to any text more than once."""
    return _collapse(_strip_invisible(_fix_surrogates(text)))


def _quoted(text: str, start: int, end: int) -> bool:
    """Is text[start:end] a reply the model put in quotes (not inner dialogue)?

    Each unwrap takes a pair of quote characters that do not occur inside any more, so
    there are at most as many unwraps as quote kinds however long the text is.
    """
    if end - start < 2 or _QUOTE_PAIRS.get(text[start]) != text[end - 1]:
        return False
    bare = _APOSTROPHE_RE.sub("", text[start + 1 : end - 1])
    return text[start] not in bare and text[end - 1] not in bare


@lru_cache(maxsize=32)
def _label_pattern(names: tuple[str, ...]) -> re.Pattern[str] | None:
    """One pattern for a leading "Name:", "**Name:**", "[Name]:" or "<Name>" of any name.

    Names are tried in the order given, as separate patterns were; matched with
    ``.match(text, pos)``, so there is no ``^`` and no lookbehind.
    """
    forms = []
    for name in names:
        pat = r"\s+".join(re.escape(word) for word in name.split())
        forms.append(rf"(?:\*{{1,2}}|_{{1,2}}|\[)?\s*{pat}\s*(?:\*{{1,2}}|_{{1,2}}|\])?\s*:")
        forms.append(rf"<{pat}>")
    return re.compile("(?:" + "|".join(forms) + r")\s*", re.I) if forms else None


def _filler_at(text: str, pos: int, end: int) -> tuple[int, bool] | None:
    """Where the text goes on after every filler clause starting at ``pos`` (a sentence
    start), and whether the letter there is to be capitalised; None when there is none.

    Removing a clause leaves the next one at the same sentence start ("As an AI as an
    AI ..."), so clauses are taken one after another here, in one walk, rather than one
    per pass over the whole text. Patterns are case-insensitive, so the letter the
    previous removal capitalises matches as the lower-case original does.
    """
    found: tuple[int, bool] | None = None
    while True:
        m = _FILLER_BODIES[0].match(text, pos, end) or _FILLER_BODIES[1].match(text, pos, end)
        if m is None:
            return found
        if m.group("next"):
            pos, found = m.start("next"), (m.start("next"), True)
        else:
            pos, found = m.end(), (m.end(), False)


def _strip_front(text: str, label: re.Pattern[str] | None) -> str:
    """Peel speaker labels, wrapping quotes and filler off the front, in any mix.

    One walk with two indices, so "RelBot: " * 10_000 costs one pass, not 10,000.
    """
    start, end = 0, len(text)
    capital = False  # text[start] is a letter a removed filler clause capitalises
    while True:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        m = label.match(text, start, end) if label is not None else None
        if m is not None:
            start, capital = m.end(), False
        elif _quoted(text, start, end):
            start, end, capital = start + 1, end - 1, False
        elif (after := _filler_at(text, start, end)) is not None:
            start, capital = after
        else:
            break
    if capital:
        return text[start].upper() + text[start + 1 : end]
    return text[start:end]


def _strip_fillers(text: str) -> str:
    """Remove "As an AI ..." / "I'm just an AI, but ..." at every sentence start, and
    capitalise what follows; one scan of the text."""
    out: list[str] = []
    last = 0
    for m in _FILLER_START_RE.finditer(text):
        start = m.start()
        if start < last:  # inside what the previous removal took
            continue
        after = _filler_at(text, start, len(text))
        if after is None:
            continue
        pos, capital = after
        out.append(text[last:start])
        if capital:
            out.append(text[pos].upper())
            pos += 1
        last = pos
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


def _strip_bold(text: str) -> str:
    """``**bold**`` -> ``bold``: each opening pairs with the first closing after it on
    the same line, as ``re.sub`` with a lazy ``(.+?)`` did, but found by bisection in
    a list of all closings rather than by re-scanning the rest of the line from every
    opening (quadratic: ``"**a " * 25_000`` took 78 s)."""
    if "**" not in text:
        return text
    closes = [m.start() for m in _BOLD_CLOSE_RE.finditer(text)]
    if not closes:
        return text
    out: list[str] = []
    last = pos = ci = 0
    newline = -2  # the first "\n" at or after some earlier position; -1: none left
    while (m := _BOLD_OPEN_RE.search(text, pos)) is not None:
        start = m.start()
        ci = bisect_left(closes, start + 3, ci)  # the text between holds >= 1 character
        if ci == len(closes):
            break
        if newline != -1 and newline < start + 2:
            newline = text.find("\n", start + 2)
        close = closes[ci]
        if newline != -1 and newline < close:
            pos = start + 1
            continue
        out += (text[last:start], text[start + 2 : close])
        last = pos = close + 2
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


def clean_reply(text: str, persona_names: Iterable[str] = ()) -> str:
    """Clean raw model output for chat.

    Removes code fences, inline backticks, ``**bold**`` markers, quotes around the whole
    reply, AI-disclaimer filler and the persona's own speaker label; folds everything onto
    one line; drops control, invisible and bidi characters, ANSI escapes and lone
    surrogates. HTML-like text is left alone: CyTube escapes it itself. Linear in the
    length of ``text``; :func:`prepare_reply` also caps that length first.
    """
    if isinstance(persona_names, str):  # a lone name would otherwise iterate by letter
        persona_names = [persona_names]
    label = _label_pattern(tuple(n.strip() for n in persona_names if n and n.strip()))
    # One pass can uncover what another removes (a fence inside stray backticks):
    # repeat until nothing changes, so cleaning clean text changes nothing.
    out = _clean_once(text, label)
    for _ in range(4):
        again = _clean_once(out, label)
        if again == out:
            break
        out = again
    return out


def _clean_once(text: str, label: re.Pattern[str] | None) -> str:
    out = _ANSI_RE.sub("", _fix_surrogates(text))
    out = _strip_invisible(out.replace("\r\n", "\n").replace("\r", "\n"))
    out = _LEFTOVER_FENCE_RE.sub("", _FENCE_RE.sub(r"\n\1\n", out))
    out = _strip_bold(_INLINE_CODE_RE.sub(r"\2", out))
    out = _collapse(out)
    # The front and the sentence starts each go to their fixed point in one walk; a
    # removal inside can still expose quotes around the whole (each kind only once),
    # so this loop runs a handful of times at most, never once per label or clause.
    while True:
        before = out
        out = _strip_fillers(_strip_front(out, label)).strip()
        if out == before:
            break
    return normalise_whitespace(out)


def defuse(text: str) -> str:
    """Swap a leading run of '/' for look-alike slashes; length in code units is kept."""
    rest = text.lstrip("/")
    return SAFE_SLASH * (len(text) - len(rest)) + rest


def neutralise_command(text: str) -> str:
    """Make sure text never starts with '/'.

    CyTube runs '/clear', '/mute', '/kick' ... as commands when the bot is a moderator.
    Leading whitespace and invisible characters go first, since something in between may
    strip them and expose the slash. The slash becomes U+2215 (∕), not an invisible prefix:
    readers still see what was meant, and the length does not change.
    """
    start = 0
    while start < len(text) and (text[start].isspace() or _is_invisible(text[start])):
        start += 1
    return defuse(text[start:])


