"""Splitting a cleaned reply into CyTube chat messages, and the whole emit stage.

:func:`prepare_reply` is what the responder calls: cap the raw reply (so a
pathological one costs linear time), clean it (``clean.py``), neutralise
anything CyTube would run as a command, and cut it into at most ``max_parts``
messages of at most ``max_length`` JavaScript characters, at sentence ends
where it can.
"""

from __future__ import annotations

from collections.abc import Iterable

from kryten_rules.emit.clean import (
    CLOSERS,
    SENTENCE_END,
    clean_reply,
    defuse,
    js_length,
    neutralise_command,
    normalise_whitespace,
)


def _fit(text: str, budget: int) -> int:
    """Largest i such that text[:i] fits in budget code units (never halves a pair)."""
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > budget:
            return i
    return len(text)


def _ends_sentence(text: str, end: int) -> bool:
    """Does text[:end] end a sentence: ".!?…", then any closing quotes or brackets?

    Looks back from ``end`` over that word only (a regex search from 0 to ``end``, as
    before, re-read the whole head for every word boundary tried).
    """
    while end > 0 and text[end - 1] in CLOSERS:
        end -= 1
    return end > 0 and text[end - 1] in SENTENCE_END


def _cut(text: str, budget: int) -> tuple[str, str]:
    """Split text (single-spaced, stripped, too long) into a head that fits and the rest.

    Prefers the last sentence end if it uses at least half the room, else the last word
    boundary, else a hard cut inside an overlong word.
    """
    i = _fit(text, budget)
    word = text.rfind(" ", 0, i + 1)
    sentence = word
    while sentence > 0 and not _ends_sentence(text, sentence):
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
    text: str, max_length: int = 320, max_parts: int = 2, mark: str = "…", *, more: bool = False
) -> list[str]:
    """Split into at most max_parts parts of at most max_length (js_length) each.

    CyTube silently cuts longer lines, so we cut first, where it reads well: at sentence
    ends, then words, and inside a word only when it alone is too long. Parts that go on
    end with ``mark``, counted in the limit; text beyond max_parts is dropped, and the last
    part then ends with ``mark`` too. ``more`` says the text was already cut before it
    got here, so the last part ends with ``mark`` whatever fits. No part is blank,
    padded or starts with '/'.
    """
    _validate(max_length, max_parts, mark)
    rest = normalise_whitespace(text)
    budget = max_length - js_length(mark)
    parts: list[str] = []
    while rest:
        if js_length(rest) <= (budget if more else max_length):
            parts.append(defuse(rest) + (mark if more else ""))
            break
        head, rest = _cut(rest, budget)
        parts.append(defuse(head) + mark)
        if len(parts) == max_parts:
            break
    return parts


REPLY_CAP_FACTOR = 4


REPLY_CAP_MARGIN = 1_000


def reply_cap(max_length: int, max_parts: int) -> int:
    """How much of a raw reply is worth cleaning: ``4 * max_length * max_parts + 1000``.

    At most ``max_length * max_parts`` code units reach chat, and cleaning only removes
    (markup, labels, filler, runs of blanks, invisible characters), so text past the cap
    could be said only if cleaning threw away three quarters of what came before it.
    Cutting first bounds the work for a model that answers with megabytes: 3,560
    characters at CyTube's defaults (320 x 2), 401,000 at the largest settings.
    """
    return REPLY_CAP_FACTOR * max_length * max_parts + REPLY_CAP_MARGIN


def _head(text: str, cap: int) -> str:
    """``text[:cap]``, back to the last blank when there is one in its last quarter, so
    the cut leaves no half word (nor half a speaker label) to be said."""
    head = text[:cap]
    blank = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    return head[:blank] if 4 * blank >= 3 * cap else head


def prepare_reply(
    text: str, *, persona_names: Iterable[str] = (), max_length: int = 320, max_parts: int = 2
) -> list[str]:
    """cap -> clean -> neutralise -> split; returns [] when nothing is left to send.

    A reply longer than :func:`reply_cap` is cut there (at a blank, if one is near)
    before cleaning; its last part then ends with the "…" mark, as any reply that does
    not fit does.
    """
    _validate(max_length, max_parts, "…")
    cap = reply_cap(max_length, max_parts)
    more = len(text) > cap
    cleaned = neutralise_command(clean_reply(_head(text, cap) if more else text, persona_names))
    if not cleaned:
        return []
    return split_message(cleaned, max_length=max_length, max_parts=max_parts, more=more)
