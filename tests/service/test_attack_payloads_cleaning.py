"""Issue #9, items 7 and 14: hostile text, as a table of attack payloads.

Each payload either reaches the bot as a model reply (item 7: cleaned within its cap)
or as a chat line (item 14: tags stripped in linear time), on real parts: a real
nats-server, the real local OpenAI-style HTTP server, the bot in-process. While the
bot works on each one, ``system.ping`` must be answered in under a second, the bound
the issue sets. Item 14 costs milliseconds, not seconds, per line, so a ping never
notices it; its regression test is the cost of a hostile line against a normal line
of the same length on the real engine, where it was 170x-390x.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kryten_rules import ChatEvent, VirtualClock, load_ruleset
from kryten_rules.emit.clean import js_length
from kryten_rules.engine.evaluate import Engine
from kryten_rules.ruleformat.patterns import normalise
from kryten_rules.service.bot import Bot
from tests.emit import baseline_cleaning as baseline
from tests.nats_fixtures import (
    BASE_RULES,
    BOT_NAME,
    MODEL,
    WAIT,
    RobotClient,
    events_received,
    read_jsonl,
)
from tests.openai_server import OpenAIServer

FALLBACK = "alice: the comms are down, try again later."  # BASE_RULES' mention rule


@dataclass(frozen=True)
class Payload:
    item: int
    via: str  # "reply": the model answers with it; "chat": a user says it
    text: str
    # "cut": sent, cut at the cap (so it ends with "…"); "fallback": it cleaned down
    # to nothing, so fallback_reply was sent (item 18); "handled": no rule fires on it
    expect: str


PAYLOADS = {
    # item 7: 100,000-character model replies
    "bold **a": Payload(7, "reply", "**a " * 25_000, "cut"),
    "own label": Payload(7, "reply", "Cynthia: " * 11_112, "fallback"),
    "bold label": Payload(7, "reply", "**Cynthia:** " * 7_693, "fallback"),
    "AI filler": Payload(7, "reply", "As an AI, " * 10_000, "fallback"),
    "AI filler, no commas": Payload(7, "reply", "As an AI " * 11_112, "cut"),  # "As…"
    "label and filler": Payload(7, "reply", "Cynthia: As an AI, " * 5_264, "fallback"),
    "blanks after a fence": Payload(7, "reply", "```" + " " * 100_000 + "x", "fallback"),
    "a megabyte of words": Payload(7, "reply", "word " * 200_000, "cut"),
    # item 14: chat lines (the engine reads the first 4,000 characters)
    "<" * 4: Payload(14, "chat", "<" * 4_000, "handled"),
    "<" * 4 + ">": Payload(14, "chat", "<" * 3_999 + ">", "handled"),
    "<& pairs": Payload(14, "chat", "<&" * 2_000, "handled"),
    "< then > runs": Payload(14, "chat", "<" * 2_000 + ">" * 2_000, "handled"),
    "100k of <": Payload(14, "chat", "<" * 100_000 + ">", "handled"),
}


# ------------------------------------------------------------------ fixtures


pytestmark = pytest.mark.usefixtures("litellm_loaded")


@pytest.fixture
def model_script() -> dict[str, str]:
    return {MODEL: "ok:hello"}


async def _ping_until(client: RobotClient, done: Callable[[], bool]) -> int:
    """Ping the bot back to back, at least once, until ``done()``; every ping must be
    answered in under a second (the issue's bound). Returns how many were answered."""
    answered = 0
    deadline = time.monotonic() + WAIT
    while not answered or not done():
        assert time.monotonic() < deadline, "the payload was not handled in time"
        t0 = time.monotonic()
        try:
            reply = await client.request("system.ping", timeout=1.0)
        except TimeoutError:
            pytest.fail("system.ping was not answered within a second")
        assert reply["success"] is True
        assert time.monotonic() - t0 < 1.0
        answered += 1
    return answered


# ------------------------------------------------------------------ the table


@pytest.mark.parametrize("name", list(PAYLOADS))
async def test_attack_payload_is_handled_while_ping_is_answered(
    name: str, bot: Bot, client: RobotClient, openai: OpenAIServer
) -> None:
    p = PAYLOADS[name]
    assert bot.config.log.responses is not None
    log = Path(bot.config.log.responses)
    if p.via == "reply":
        openai.set(MODEL, "ok:" + p.text)
        await client.chat("alice", "cynthia, say something")
        answered = await _ping_until(client, lambda: len(read_jsonl(log)) == 1)
        (line,) = read_jsonl(log)
        assert line["sent"] is True
        assert 1 <= len(line["parts"]) <= 2  # the mention rule's max_parts
        assert all(0 < js_length(part) <= 320 for part in line["parts"])
        if p.expect == "fallback":
            assert line["parts"] == [FALLBACK]
            assert "empty after cleaning" in line["error"]
        else:
            assert line["parts"][-1].endswith("…")
        sent = [(await client.next_command())["args"]["message"] for _ in line["parts"]]
        assert sent == line["parts"]
    else:
        before = events_received(bot)
        for _ in range(20):
            await client.chat("mallory", p.text)
        answered = await _ping_until(client, lambda: events_received(bot) >= before + 20)
        assert read_jsonl(log) == []  # no rule fires on these lines
    assert answered >= 1


# ------------------------------------------------------------------ item 14: the cost


def _engine(tmp_path: Path) -> Callable[[], Engine]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(BASE_RULES, encoding="utf-8")
    ruleset = load_ruleset([rules], bot_name=BOT_NAME)
    return lambda: Engine(ruleset, clock=VirtualClock(), seed=1)


def _evaluate_cost(new_engine: Callable[[], Engine], text: str, runs: int = 40) -> float:
    """Fastest of ``runs`` evaluations of one chat line, each on a fresh engine."""
    best = float("inf")
    for _ in range(runs):
        engine = new_engine()
        event = ChatEvent(kind="chatmsg", user="mallory", text=text, at=0.0)
        t0 = time.perf_counter()
        engine.evaluate(event)
        best = min(best, time.perf_counter() - t0)
    return best


@pytest.mark.parametrize("name", [n for n, p in PAYLOADS.items() if p.item == 14])
def test_a_hostile_chat_line_costs_about_what_a_normal_one_does(
    name: str, tmp_path: Path
) -> None:
    new_engine = _engine(tmp_path)
    hostile = PAYLOADS[name].text[:4_000]
    normal = ("hello there, how is everyone doing tonight? " * 100)[: len(hostile)]
    t_hostile = _evaluate_cost(new_engine, hostile)
    t_normal = _evaluate_cost(new_engine, normal)
    # Measured 3-4x at most after the fix, 170x-390x before; 10x is generous.
    assert t_hostile < 10 * t_normal, (
        f"{name}: {t_hostile * 1e6:.0f} µs vs {t_normal * 1e6:.0f} µs for a normal line"
    )


# ------------------------------------------------------------------ item 14: unchanged


_chat_pieces = st.sampled_from(
    [
        '<a href="https://example.com/x" target="_blank" rel="noopener noreferrer">',
        "</a>", "<b>", "</b>", "<img src=x>", "&lt;", "&gt;", "&amp;", "&#39;", "&quot;",
        "<", ">", " ", "  ", "\t", "hello", "cynthia", "😀", "<" * 30, "\u200b",
    ]
)
_chat_lines = st.lists(st.one_of(_chat_pieces, st.text(max_size=8)), max_size=30).map("".join)


def _no_lt_inside_a_tag(text: str) -> bool:
    """Text where every "<" that starts a tag is the last "<" before its ">": all that
    CyTube sends (it escapes "<" in what people type). Only there must results agree."""
    for segment in text.split(">")[:-1]:
        head = segment[max(0, len(segment) - 2001) :]
        if head.count("<") > 1:
            return False
    return True


@settings(max_examples=1_000, deadline=None)
@given(text=_chat_lines)
def test_chat_text_normalises_as_before_where_tags_hold_no_lt(text: str) -> None:
    if _no_lt_inside_a_tag(text):
        assert normalise(text) == baseline.normalise_chat(text)


def test_a_lt_inside_a_tag_now_starts_the_tag() -> None:
    """The one difference: a "<" inside "<...>" starts the tag (it stopped the scan)."""
    assert normalise("a <b <i>c") == "a <b c"
    assert baseline.normalise_chat("a <b <i>c") == "a c"
