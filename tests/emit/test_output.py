"""Stage 6 text shaping: what the bot finally says in a CyTube channel."""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kryten_rules.emit.clean import SAFE_SLASH, clean_reply, js_length, neutralise_command
from kryten_rules.emit.split import prepare_reply, reply_cap, split_message
from tests.emit import baseline_cleaning as baseline

PERSONA = ["Cynthia"]

# (raw model output, the single chat line we expect; "" means nothing is sent)
QUIRKS = [
    ("```\nHello there!\n```", "Hello there!"),
    ("```python\nprint('hi')\n```", "print('hi')"),
    ("Here:```x = 1```done", "Here: x = 1 done"),
    ("```js\nconsole.log(1)", "console.log(1)"),  # fence never closed
    ("Use `ls -la` to list", "Use ls -la to list"),
    ('"Hey, welcome back!"', "Hey, welcome back!"),
    ("“Nice pick!”", "Nice pick!"),
    ("«Salut !»", "Salut !"),
    ("'I don't know'", "I don't know"),
    ('The robot said "hi" to me', 'The robot said "hi" to me'),
    ('"Hi," she said, "bye"', '"Hi," she said, "bye"'),  # inner dialogue stays quoted
    (
        "As an AI language model, I don't have feelings, but this song slaps.",
        "I don't have feelings, but this song slaps.",
    ),
    (
        "Great question! As an AI, I can't watch movies, but I've heard it's good.",
        "Great question! I can't watch movies, but I've heard it's good.",
    ),
    ("As an AI developed by OpenAI, I cannot do that. But sure!", "I cannot do that. But sure!"),
    ("I'm just an AI, but I think pizza is great.", "I think pizza is great."),
    ("I am an AI language model. Here's a poem: roses are red", "Here's a poem: roses are red"),
    ("Sure! As an AI, my favourite is jazz.", "Sure! My favourite is jazz."),
    ("I am an AI fan, and I love it", "I am an AI fan, and I love it"),  # not filler
    ("As an AI language model.", ""),
    ("Cynthia: hey there", "hey there"),
    ("**Cynthia:** hey there", "hey there"),
    ("**Cynthia**: hey", "hey"),
    ("Cynthia: Cynthia: cynthia: hi", "hi"),
    ("<Cynthia> yo", "yo"),
    ("[Cynthia]: yo", "yo"),
    ("Bob: hi", "Bob: hi"),  # someone else's name is content
    ("Cynthia: As an AI, i love this", "I love this"),
    ("Cynthia:", ""),
    ("This is **really** good", "This is really good"),
    ("2**3**4 and **bold**", "2**3**4 and bold"),
    ("line one\nline two\r\nline three\rfour", "line one line two line three four"),
    ("tab\tseparated \t  words\u2028end", "tab separated words end"),
    ("zero\u200bwidth\u200d joiner \u202eevil\u202c \u2066iso\u2069", "zerowidth joiner evil iso"),
    ("\ufeffBOM and soft\u00adhyphen", "BOM and softhyphen"),
    ("\x1b[31mred\x1b[0m alert \x1b]0;title\x07done", "red alert done"),
    ("Hello\x00 world\x07", "Hello world"),
    ("ok\ud800 then", "ok then"),  # lone surrogate
    ("\ud83d\ude00 hi", "😀 hi"),  # a pair split by bad decoding is joined
    ("x\u3164y", "x y"),  # Hangul filler renders blank
    ("/clear", "∕clear"),
    (" /mute bob", "∕mute bob"),
    ("\u200b/kick alice", "∕kick alice"),
    ("\n\t//me dances", "∕∕me dances"),
    ('"Cynthia: /clear"', "∕clear"),
    ("Nice 😂🔥", "Nice 😂🔥"),
    ("👩\u200d💻 coding time", "👩\u200d💻 coding time"),  # ZWJ inside an emoji stays
    ("<b>bold</b> & <script>x</script> &amp;", "<b>bold</b> & <script>x</script> &amp;"),
    ("", ""),
    ("   \n\t \u200b ", ""),
]


@pytest.mark.parametrize(("raw", "expected"), QUIRKS)
def test_llm_quirks(raw: str, expected: str) -> None:
    assert prepare_reply(raw, persona_names=PERSONA) == ([expected] if expected else [])


def test_clean_reply_keeps_slash_and_takes_a_lone_name() -> None:
    assert clean_reply("  /clear  ") == "/clear"  # neutralising is a separate step
    assert clean_reply("Cynthia: hi", "Cynthia") == "hi"  # not iterated letter by letter


def test_js_length_counts_utf16_code_units() -> None:
    assert js_length("") == 0
    assert js_length("abc") == 3
    assert js_length("é…") == 2
    assert js_length("😀") == 2
    assert js_length("👩\u200d💻") == 5


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("hello", "hello"),
        ("/clear", "∕clear"),
        ("  \u200b\u202e/mute bob", "∕mute bob"),
        ("///x", "∕∕∕x"),
        ("a /b", "a /b"),
        ("", ""),
    ],
)
def test_neutralise_command(raw: str, expected: str) -> None:
    assert neutralise_command(raw) == expected
    assert SAFE_SLASH == "∕" and js_length(SAFE_SLASH) == 1


@pytest.mark.parametrize(
    ("text", "max_length", "max_parts", "expected"),
    [
        (
            "Hello there. How are you today? I am fine.",
            20,
            3,
            ["Hello there.…", "How are you today?…", "I am fine."],
        ),
        (
            "Hello there. How are you today? I am fine.",
            35,
            3,
            ["Hello there. How are you today?…", "I am fine."],
        ),
        # a sentence end too early in the part loses to the last word boundary
        (
            "Short sentence. " + "word " * 20,
            40,
            2,
            ["Short sentence. word word word word…", "word word word word word word word word…"],
        ),
        ("one two three four five six", 10, 2, ["one two…", "three…"]),
        ("x" * 50, 20, 3, ["x" * 19 + "…", "x" * 19 + "…", "x" * 12]),
        ("x" * 50, 20, 2, ["x" * 19 + "…", "x" * 19 + "…"]),
        ("Try this: /clear the air", 15, 3, ["Try this:…", "∕clear the air"]),
        ("word /kick now please", 10, 3, ["word…", "∕kick now…", "please"]),
        ("abc😀def", 5, 3, ["abc…", "😀def"]),  # the pair is not split
        ("fits exactly", 12, 1, ["fits exactly"]),
        ("   ", 10, 2, []),
    ],
)
def test_split_message_exact(
    text: str, max_length: int, max_parts: int, expected: list[str]
) -> None:
    assert split_message(text, max_length=max_length, max_parts=max_parts) == expected


def test_split_counts_astral_emoji_as_two() -> None:
    assert split_message("😀" * 160) == ["😀" * 160]  # 320 code units: fits
    parts = split_message("😀" * 161)  # 322 code units: does not
    assert parts == ["😀" * 159 + "…", "😀" * 2]
    assert [js_length(p) for p in parts] == [319, 4]
    assert split_message("a" + "😀" * 160) == ["a" + "😀" * 159 + "…", "😀"]


def test_overlong_word_is_cut_not_dropped() -> None:
    url = "https://example.com/" + "a" * 60
    parts = split_message(f"see {url} ok", max_length=30, max_parts=5)
    assert parts == ["see…", url[:29] + "…", url[29:58] + "…", url[58:] + " ok"]


def test_max_parts_truncates_with_mark() -> None:
    parts = split_message(" ".join(["blah"] * 100), max_length=50, max_parts=2, mark="...")
    assert len(parts) == 2
    assert all(p.endswith("...") and js_length(p) <= 50 for p in parts)
    assert parts[1] == "blah " * 8 + "blah..."  # 9 words, 47 code units + "..."


@pytest.mark.parametrize(
    ("kwargs"),
    [
        {"max_length": 2},  # "…" + 1 leaves no room
        {"max_length": 0},
        {"max_length": 5, "mark": "....."},
        {"max_parts": 0},
        {"max_length": 10.5},
        {"max_parts": True},
        {"mark": " …"},
    ],
)
def test_split_message_validates(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        split_message("hello", **kwargs)  # type: ignore[arg-type]


def test_prepare_reply_validates_even_when_empty() -> None:
    with pytest.raises(ValueError):
        prepare_reply("", max_length=1)


# --- properties ----------------------------------------------------------------------

_any_char = st.characters(exclude_categories=())  # includes controls, astral, surrogates
_pieces = st.sampled_from(
    [
        "/", "//", " ", "  ", "\n", "\r\n", "\t", "/clear", "/mute bob", "Cynthia:", "**Cynthia:**",
        "😀", "👩\u200d💻", "\u200d", "\u200b", "\u202e", "\x1b[31m", "a.", "Hi!", "ok?", "…",
        "As an AI,", "I'm just an AI, but", '"', "“", "”", "'", "```", "`", "**", "<b>",
        "\ud83d", "\ude00", "\u3164",
    ]
)
_word = st.text(alphabet=st.sampled_from("abcxyz/.😀é"), min_size=1, max_size=40)
_texts = st.one_of(
    st.text(alphabet=_any_char, max_size=300),
    st.text(max_size=300),
    st.lists(st.one_of(_pieces, _word), max_size=80).map("".join),
    st.lists(st.one_of(_pieces, _word), max_size=80).map(" ".join),
)
_settings = settings(max_examples=300, deadline=None)


def _is_invisible(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs") and ch != "\u200d"


@_settings
@given(text=_texts, max_length=st.integers(8, 400), max_parts=st.integers(1, 5))
def test_prepare_reply_parts_are_always_safe(text: str, max_length: int, max_parts: int) -> None:
    parts = prepare_reply(text, persona_names=PERSONA, max_length=max_length, max_parts=max_parts)
    assert len(parts) <= max_parts
    for part in parts:
        assert part and part.strip() == part
        assert not part.startswith("/")
        assert js_length(part) <= max_length
        assert not any(_is_invisible(ch) for ch in part)
        assert "\n" not in part


@_settings
@given(text=_texts, max_length=st.integers(8, 400), max_parts=st.integers(1, 5))
def test_short_clean_text_is_sent_unchanged(text: str, max_length: int, max_parts: int) -> None:
    cleaned = neutralise_command(clean_reply(text, PERSONA))
    parts = prepare_reply(text, persona_names=PERSONA, max_length=max_length, max_parts=max_parts)
    if not cleaned:
        assert parts == []
    elif js_length(cleaned) <= max_length:
        assert parts == [cleaned]


@_settings
@given(text=_texts)
def test_clean_reply_is_idempotent(text: str) -> None:
    once = clean_reply(text, PERSONA)
    assert clean_reply(once, PERSONA) == once


@_settings
@given(text=_texts, max_length=st.integers(8, 400), max_parts=st.integers(1, 5))
def test_split_loses_nothing_unless_truncated(text: str, max_length: int, max_parts: int) -> None:
    cleaned = neutralise_command(clean_reply(text, PERSONA))
    parts = split_message(cleaned, max_length=max_length, max_parts=max_parts)
    if parts and not parts[-1].endswith("…"):

        def squash(s: str) -> str:
            return s.replace(" ", "").replace(SAFE_SLASH, "/")

        joined = "".join(p.removesuffix("…") if i < len(parts) - 1 else p
                         for i, p in enumerate(parts))
        assert squash(joined) == squash(cleaned)


# --- linear time and the cap (issue #9 item 7) ---------------------------------------
#
# A model can answer with 100,000 characters built to make a pass quadratic. Each
# payload below was quadratic before (bold: 78 s at 100k; one label per full pass: 41 s;
# blanks after a fence: 0.7 s at 10k). The check is the growth from 4,000 to 40,000
# characters: ~10x when linear, ~100x when quadratic; the bound (30x) is generous so a
# busy machine cannot fail it, and timing stops early once a run is plainly too slow.

HOSTILE_REPLIES: dict[str, Callable[[int], str]] = {
    "bold": lambda n: ("**a " * n)[:n],
    "bold glued": lambda n: ("**a" * n)[:n],
    "label": lambda n: ("Cynthia: " * n)[:n],
    "bold label": lambda n: ("**Cynthia:** " * n)[:n],
    "filler": lambda n: ("As an AI " * n)[:n],
    "label then filler": lambda n: ("Cynthia: As an AI, " * n)[:n],
    "filler mid-text": lambda n: "Hi. " + ("As an AI " * n)[:n],
    "just an AI": lambda n: ("I'm just an AI, but " * n)[:n],
    "blanks after a fence": lambda n: "```" + " " * n + "x",
    "blanks after fences": lambda n: ("``` " * n)[:n],
    "backticks": lambda n: ("``a`" * n)[:n],
    "ANSI": lambda n: ("\x1b[0" * n)[:n],
    "sentence ends": lambda n: ("a. " * n)[:n],
}


def _best_time(func: Callable[[], object], budget: float = 3.0, repeat: int = 5) -> float:
    """Fastest of ``repeat`` runs; stops early once ``budget`` seconds are spent."""
    best = float("inf")
    spent = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        took = time.perf_counter() - t0
        best, spent = min(best, took), spent + took
        if spent > budget:
            break
    return best


@pytest.mark.parametrize("name", list(HOSTILE_REPLIES))
def test_cleaning_time_grows_linearly_on_hostile_replies(name: str) -> None:
    make = HOSTILE_REPLIES[name]
    small, large = make(4_000), make(40_000)
    t_small = _best_time(lambda: clean_reply(small, PERSONA))
    t_large = _best_time(lambda: clean_reply(large, PERSONA))
    assert t_large / t_small < 30, f"{name}: 4k {t_small * 1e3:.1f} ms, 40k {t_large * 1e3:.1f} ms"


def test_split_time_grows_linearly_without_sentence_ends() -> None:
    # Every word boundary tried on the way back is not a sentence end.
    small, large = "word " * 400, "word " * 4_000
    t_small = _best_time(lambda: split_message(small, max_length=1_000, max_parts=1))
    t_large = _best_time(lambda: split_message(large, max_length=10_000, max_parts=1))
    assert t_large / t_small < 30, f"2k {t_small * 1e3:.2f} ms, 20k {t_large * 1e3:.2f} ms"


def test_labels_and_filler_are_peeled_in_any_mix() -> None:
    raw = "Cynthia: As an AI, **Cynthia:** as an AI language model, [Cynthia]: <Cynthia> hey"
    assert clean_reply(raw, PERSONA) == "hey"
    assert clean_reply("Cynthia: " * 5_000 + "hi", PERSONA) == "hi"
    assert clean_reply("Hi. " + "As an AI " * 3_000 + "ok", PERSONA) == "Hi. Ok"
    # the first opening pairs with the first closing that can close: the last one
    assert clean_reply("**a " * 10 + "**b**", PERSONA) == "a " + "**a " * 9 + "**b"


def test_reply_cap_is_derived_from_what_can_be_sent() -> None:
    assert reply_cap(320, 2) == 4 * 320 * 2 + 1_000
    assert reply_cap(10_000, 10) == 401_000  # the largest settings the schemas allow


def test_prepare_reply_cuts_the_raw_reply_at_the_cap_before_cleaning() -> None:
    cap = reply_cap(320, 2)
    # Cleaning folds the blanks away, so only the cap can explain the missing " more";
    # the cut goes back to a blank rather than leave half a word ("m").
    assert prepare_reply(" " * (cap - 13) + "hello world more") == ["hello world…"]
    assert prepare_reply(" " * (cap - 16) + "hello world more") == ["hello world more"]
    assert prepare_reply("x" * (cap + 1)) == ["x" * 319 + "…", "x" * 319 + "…"]  # no blank
    parts = prepare_reply("**a " * 1_000_000)  # 4 MB of it: only the first cap is read
    assert len(parts) == 2 and parts[-1].endswith("…")


def test_a_cut_reply_ends_with_the_mark_even_when_it_fits() -> None:
    assert split_message("hello", max_length=10, max_parts=2, more=True) == ["hello…"]
    assert split_message("fits exactly", max_length=12, max_parts=2, more=True) == [
        "fits…",
        "exactly…",
    ]


# --- same results as before the rewrite, on ordinary text ---------------------------

_ordinary_pieces = st.sampled_from(
    [
        " ", "  ", "\n", "\r\n", "\t", "Cynthia:", "**Cynthia:**", "<Cynthia>", "[Cynthia]:",
        "Cynthia: ", "As an AI,", "As an AI ", "as an AI language model", "I'm just an AI, but",
        "I am an AI.", "developed by OpenAI", '"', "“", "”", "'", "’", "«", "»", "```", "```py\n",
        "`", "``", "**", "*", "**a", "a**", "** ", ". ", "! ", "? ", "…", ",", "5", "I", "me",
        "😀", "\u200d", "\u200b", "\x1b[31m", "/", "x", "word", "ok",
    ]
)
_ordinary_word = st.text(alphabet=st.sampled_from("abcxyAI*`'\" .,!?:"), min_size=1, max_size=12)
_ordinary = st.one_of(
    st.lists(st.one_of(_ordinary_pieces, _ordinary_word), max_size=40).map("".join),
    st.lists(st.one_of(_ordinary_pieces, _ordinary_word), max_size=40).map(" ".join),
    st.text(alphabet=_any_char, max_size=200),
)


@settings(max_examples=1_500, deadline=None)
@given(text=_ordinary, max_length=st.integers(8, 400), max_parts=st.integers(1, 5))
def test_cleaning_gives_what_the_quadratic_version_gave(
    text: str, max_length: int, max_parts: int
) -> None:
    assert clean_reply(text, PERSONA) == baseline.clean_reply(text, PERSONA)
    new = prepare_reply(text, persona_names=PERSONA, max_length=max_length, max_parts=max_parts)
    old = baseline.prepare_reply(
        text, persona_names=PERSONA, max_length=max_length, max_parts=max_parts
    )
    assert new == old


def test_invisible_pattern_is_exactly_what_the_per_character_rule_drops() -> None:
    from kryten_rules.emit.clean import BLANKS, invisible_re

    pattern = invisible_re()
    for cp in range(0x110000):
        ch = chr(cp)
        dropped = unicodedata.category(ch) in ("Cc", "Cf", "Cs") and not (
            ch.isspace() or ch in BLANKS
        )
        assert (pattern.fullmatch(ch) is not None) == dropped, hex(cp)
