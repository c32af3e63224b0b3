"""BASELINE ONLY: the reply and chat cleaning as it was before issue #9 (items 7 and 14).

Copied verbatim from ``kryten_rules/output.py`` and ``kryten_rules/patterns.normalise``
at commit efa220e, so the property tests can check that the linear rewrite gives the
same result on ordinary text, and ``benchmarks/clean_bench.py`` can time old against
new in one run. Nothing in the service imports this module; never fix bugs here.
"""
# ruff: noqa
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# Replacement for a leading "/": U+2215 DIVISION SLASH. It is visible and reads as the
# slash the model wrote, CyTube's `msg.indexOf("/") === 0` test no longer matches, and it
# is one UTF-16 code unit like "/", so neutralising never changes a part's length.
SAFE_SLASH = "\u2215"

# Characters that render as nothing but are not Unicode whitespace: fold them to spaces.
_BLANKS = "\u115f\u1160\u3164\uffa0\u2800"
_ZWJ = "\u200d"
_WS_RE = re.compile(rf"[\s{_BLANKS}]+")
_ANSI_RE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks
    r"|\x1b[()][0-9A-Za-z]"  # character-set designation
    r"|\x1b[@-Z\\-_]"  # other two-character escapes
)
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_FENCE_RE = re.compile(r"```(?:[^\S\n]*[\w+#.\-]*[^\S\n]*\n)?(.*?)```", re.S)
_LEFTOVER_FENCE_RE = re.compile(r"```[^\S\n]*[\w+#.\-]*[^\S\n]*(?=\n)|```+")
_INLINE_CODE_RE = re.compile(r"(`{1,2})([^`\n]+?)\1")
_BOLD_RE = re.compile(r"(?<![\w*])\*\*(?=\S)(.+?)(?<=\S)\*\*(?![\w*])")

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
_FILLER_AS_RE = re.compile(
    _SENTENCE_START + r"as\s+an?\s+(?:" + _NOUN + r")(?!\w)" + _BY
    + r"(?:(?:\s+(?!(?:i|me|my|we)(?:\b|['’]))[^\s,.!?;:]+){0,6}?\s*,\s*"
    r"|\s*[.!…]+\s*|\s*$|\s+)" + _NEXT,
    re.I,
)
# "I'm just an AI, but I think ..." -> "I think ...": only when the clause ends there.
_FILLER_IM_RE = re.compile(
    _SENTENCE_START + r"(?:i['’]?m|i\s+am)\s+(?:(?:just|only|merely|simply)\s+)?an?\s+(?:"
    + _NOUN + r")(?!\w)" + _BY
    + r"(?:\s*[,;]\s*(?:(?:but|so|and)\s+)?|\s+(?:but|so|and)\s+|\s*[.!…]+\s*|\s*$)" + _NEXT,
    re.I,
)
_QUOTE_PAIRS = {
    '"': '"', "'": "'", "“": "”", "”": "”", "‘": "’", "«": "»", "»": "«", "„": "“",
    "「": "」", "『": "』",
}
_APOSTROPHE_RE = re.compile(r"(?<=\w)['’](?=\w)")
_SENTENCE_END_RE = re.compile(r"[.!?…][\"'”’»)\]]*$")


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
    return ch in _BLANKS or unicodedata.category(ch) in ("Cc", "Cf", "Cs")


def _fix_surrogates(text: str) -> str:
    """Join surrogate pairs left by bad decoding into real characters; drop lone halves."""
    if not _SURROGATE_RE.search(text):
        return text
    joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return _SURROGATE_RE.sub("", joined)


def _strip_invisible(text: str) -> str:
    """Drop control/format characters (zero-width, bidi overrides, ANSI leftovers).

    Whitespace controls (newline, tab ...) stay so they become spaces later, as CyTube
    itself does; a ZWJ stays only between pictographs so emoji such as 👩‍💻 survive.
    """
    out = []
    last = len(text) - 1
    for i, ch in enumerate(text):
        if ch.isspace() or ch in _BLANKS or not _is_invisible(ch) or (
            ch == _ZWJ and 0 < i < last
            and _is_pictographic(text[i - 1]) and _is_pictographic(text[i + 1])
        ):
            out.append(ch)
    return "".join(out)


def _collapse(text: str) -> str:
    """One line, single spaces: chat has no newlines and CyTube ignores runs of blanks."""
    return _WS_RE.sub(" ", text).strip()


def _normalise(text: str) -> str:
    """The character-level part of cleaning, safe to apply to any text more than once."""
    return _collapse(_strip_invisible(_fix_surrogates(text)))


def _strip_quotes(text: str) -> str:
    """Unwrap a reply the model put in quotes, unless the quotes are inner dialogue."""
    if len(text) < 2 or _QUOTE_PAIRS.get(text[0]) != text[-1]:
        return text
    inner = text[1:-1]
    bare = _APOSTROPHE_RE.sub("", inner)
    if text[0] in bare or text[-1] in bare:
        return text
    return inner.strip()


def _strip_labels(text: str, names: list[str]) -> str:
    """Remove one leading "Name:", "**Name:**", "[Name]:" or "<Name>" speaker label."""
    for name in names:
        pat = r"\s+".join(re.escape(word) for word in name.split())
        label = re.compile(
            rf"^(?:(?:\*{{1,2}}|_{{1,2}}|\[)?\s*{pat}\s*(?:\*{{1,2}}|_{{1,2}}|\])?\s*:|<{pat}>)\s*",
            re.I,
        )
        stripped = label.sub("", text, count=1)
        if stripped != text:
            return stripped
    return text


def _strip_filler(text: str) -> str:
    """Remove "As an AI ..." / "I'm just an AI, but ..." and capitalise what follows."""
    def keep_next(m: re.Match[str]) -> str:
        return (m.group("next") or "").upper()

    return _FILLER_IM_RE.sub(keep_next, _FILLER_AS_RE.sub(keep_next, text))


def clean_reply(text: str, persona_names: Iterable[str] = ()) -> str:
    """Clean raw model output for chat.

    Removes code fences, inline backticks, ``**bold**`` markers, quotes around the whole
    reply, AI-disclaimer filler and the persona's own speaker label; folds everything onto
    one line; drops control, invisible and bidi characters, ANSI escapes and lone
    surrogates. HTML-like text is left alone: CyTube escapes it itself.
    """
    if isinstance(persona_names, str):  # a lone name would otherwise iterate by letter
        persona_names = [persona_names]
    names = [n.strip() for n in persona_names if n and n.strip()]
    # One pass can uncover what another removes (a fence inside stray backticks):
    # repeat until nothing changes, so cleaning clean text changes nothing.
    out = _clean_once(text, names)
    for _ in range(4):
        again = _clean_once(out, names)
        if again == out:
            break
        out = again
    return out


def _clean_once(text: str, names: list[str]) -> str:
    out = _ANSI_RE.sub("", _fix_surrogates(text))
    out = _strip_invisible(out.replace("\r\n", "\n").replace("\r", "\n"))
    out = _LEFTOVER_FENCE_RE.sub("", _FENCE_RE.sub(r"\n\1\n", out))
    out = _BOLD_RE.sub(r"\1", _INLINE_CODE_RE.sub(r"\2", out))
    out = _collapse(out)
    while True:  # every change shortens the text, so this ends
        before = out
        out = _strip_filler(_strip_quotes(_strip_labels(out, names))).strip()
        if out == before:
            break
    return _normalise(out)


def _defuse(text: str) -> str:
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
    return _defuse(text[start:])


def _fit(text: str, budget: int) -> int:
    """Largest i such that text[:i] fits in budget code units (never halves a pair)."""
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > budget:
            return i
    return len(text)


def _cut(text: str, budget: int) -> tuple[str, str]:
    """Split text (single-spaced, stripped, too long) into a head that fits and the rest.

    Prefers the last sentence end if it uses at least half the room, else the last word
    boundary, else a hard cut inside an overlong word.
    """
    i = _fit(text, budget)
    word = text.rfind(" ", 0, i + 1)
    sentence = word
    while sentence > 0 and not _SENTENCE_END_RE.search(text, 0, sentence):
        sentence = text.rfind(" ", 0, sentence)
    if sentence > 0 and 2 * sentence >= i:
        return text[:sentence], text[sentence + 1 :]
    if word > 0:
        return text[:word], text[word + 1 :]
    return text[:i], text[i:]


def _validate(max_length: int, max_parts: int, mark: str) -> None:
    """Reject settings under which the guarantees of split_message cannot hold."""
    if not isinstance(mark, str) or mark != mark.strip():
        raise ValueError(f"mark must be a string without surrounding whitespace, not {mark!r}")
    if isinstance(max_length, bool) or not isinstance(max_length, int):
        raise ValueError(f"max_length must be an integer, not {max_length!r}")
    if max_length <= js_length(mark) + 1:
        raise ValueError(f"max_length {max_length} leaves no room beside the mark {mark!r}")
    if isinstance(max_parts, bool) or not isinstance(max_parts, int) or max_parts < 1:
        raise ValueError(f"max_parts must be an integer >= 1, not {max_parts!r}")


def split_message(
    text: str, max_length: int = 320, max_parts: int = 2, mark: str = "…"
) -> list[str]:
    """Split into at most max_parts parts of at most max_length (js_length) each.

    CyTube silently cuts longer lines, so we cut first, where it reads well: at sentence
    ends, then words, and inside a word only when it alone is too long. Parts that go on
    end with ``mark``, counted in the limit; text beyond max_parts is dropped, and the last
    part then ends with ``mark`` too. No part is blank, padded or starts with '/'.
    """
    _validate(max_length, max_parts, mark)
    rest = _normalise(text)
    budget = max_length - js_length(mark)
    parts: list[str] = []
    while rest:
        if js_length(rest) <= max_length:
            parts.append(_defuse(rest))
            break
        head, rest = _cut(rest, budget)
        parts.append(_defuse(head) + mark)
        if len(parts) == max_parts:
            break
    return parts


def prepare_reply(
    text: str, *, persona_names: Iterable[str] = (), max_length: int = 320, max_parts: int = 2
) -> list[str]:
    """clean -> neutralise -> split; returns [] when nothing is left to send."""
    _validate(max_length, max_parts, "…")
    cleaned = neutralise_command(clean_reply(text, persona_names))
    if not cleaned:
        return []
    return split_message(cleaned, max_length=max_length, max_parts=max_parts)


# --- kryten_rules.ruleformat.patterns.normalise, as it was -------------------------------------

import html as _html

_TAG = re.compile(r"<[^>]{0,2000}>")


def normalise_chat(text: str) -> str:
    """Chat text as people read it: CyTube HTML-escapes chat and wraps links in tags."""
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "&" in text:
        text = _html.unescape(text)
    if text.isprintable() and "  " not in text and text.strip(" ") == text:
        return text
    return " ".join(text.split())
