"""Stage 6 text shaping: what the bot finally says in a CyTube channel."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kryten_rules.output import (
    SAFE_SLASH,
    clean_reply,
    js_length,
    neutralise_command,
    prepare_reply,
    split_message,
)

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
