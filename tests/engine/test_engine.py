"""Stage 4, evaluate: every gate, reason code and context variable of docs/rules.md "Evaluation".

Each test writes a small rule set into ``tmp_path`` and drives a fresh
:class:`Engine` on a :class:`VirtualClock` (``clock.set(t)`` and ``at=t``
together, so state expiry and the gates agree on the time).
"""

from __future__ import annotations

import random
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kryten_rules import ChatEvent, Media, VirtualClock, load_ruleset
from kryten_rules.compile.ruleset import RuleSet
from kryten_rules.dispatch.prompts import render
from kryten_rules.engine.evaluate import Decision, Engine
from kryten_rules.ruleformat.patterns import normalise

BOT = "kryten"
HERE = Path(__file__).resolve().parent  # tests/engine: the fixtures live beside the test
FIXTURES = HERE


def load(tmp_path: Path, *bodies: str, bot: str = BOT) -> RuleSet:
    """Write each body as one rule file (``00.yaml``, ``01.yaml`` ... in file order) and load."""
    d = tmp_path / "rules"
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, body in enumerate(bodies):
        p = d / f"{i:02d}.yaml"
        p.write_text("kryten_rules: 1\n" + textwrap.dedent(body), encoding="utf-8")
        paths.append(p)
    return load_ruleset(paths, bot_name=bot)


class Bot:
    """An engine on a virtual clock, with one-line event helpers."""

    def __init__(self, ruleset: RuleSet, seed: int = 7, **kw: object) -> None:
        self.clock = VirtualClock()
        self.engine = Engine(ruleset, clock=self.clock, seed=seed, **kw)  # type: ignore[arg-type]

    def event(self, t: float, full: bool = False, **kw: object) -> Decision:
        self.clock.set(t)
        return self.engine.evaluate(ChatEvent(at=t, **kw), full_trace=full)  # type: ignore[arg-type]

    def say(
        self, t: float, user: str, text: str, rank: int | None = None, full: bool = False
    ) -> Decision:
        return self.event(t, full, kind="chatmsg", user=user, text=text, rank=rank)

    def media(self, t: float, title: str, duration: float, full: bool = False) -> Decision:
        return self.event(t, full, kind="changemedia", media=Media(title, duration, "yt", "id1"))


def time_left(d: Decision) -> str | None:
    """The first trace entry's detail without where its cooldown was set."""
    detail = d.trace[0].detail
    return detail.split(", set by ")[0] if detail else detail


def reasons(d: Decision) -> list[tuple[str, str, str | None]]:
    return [(t.rule, t.outcome, t.reason) for t in d.trace]


# --------------------------------------------------------------------------- gates
# What fires and what blocks, gate by gate, is in the rule-test tables of
# tests/engine/gates/ (run by test_gates.py, with the traces' details).


def test_changemedia_rule_uses_the_new_media(tmp_path: Path) -> None:
    rs = load(
        tmp_path,
        """
        rules:
          - id: intro
            on: changemedia
            when: {media: {min_duration: 20m}}
            prompt: 'Introduce "{{ media.title }}".'
        """,
    )
    bot = Bot(rs)
    d = bot.media(0, "Trailer", 60)
    assert (d.fired, d.blocked) == (None, "condition.media")
    d = bot.media(10, "Yes, Madam!", 90 * 60)
    assert d.fired == "intro"
    assert d.context is not None and d.context["media"]["title"] == "Yes, Madam!"
    assert 'Introduce "Yes, Madam!".' in (render(d, rs).prompt_text or "")
    # chat does not trigger a changemedia rule
    assert bot.say(5000, "alice", "anything", full=True).trace == ()


# --------------------------------------------------------------------------- probability

PROB_RULES = """
rules:
  - id: maybe
    priority: 10
    match: {{any: [foo]}}
    probability: {p}
    cooldown: {{rule: 1h, user: 1h, global: 1h}}
    limit: {{per_hour: 1}}
    reply: "maybe"
  - id: always
    match: {{any: [foo, bar]}}
    reply: "always"
"""


def test_probability_follows_the_seeded_rng(tmp_path: Path) -> None:
    rs = load(
        tmp_path,
        """
        rules:
          - id: maybe
            match: {any: [foo]}
            probability: 0.5
            reply: "maybe"
        """,
    )
    for seed in (7, 8, 1234):
        rng = random.Random(seed)
        draws = [rng.random() for _ in range(40)]
        bot = Bot(rs, seed=seed)
        got = [bot.say(i, "alice", "foo") for i in range(40)]
        assert [d.fired == "maybe" for d in got] == [x < 0.5 for x in draws]
        for d, x in zip(got, draws, strict=True):
            if d.fired is None:
                assert d.blocked == "probability"
                assert d.trace[0].detail == f"drew {x:.2f}, needs < 0.5"
        again = Bot(rs, seed=seed)
        assert [again.say(i, "alice", "foo").fired for i in range(40)] == [d.fired for d in got]


def test_probability_zero_never_fires(tmp_path: Path) -> None:
    bot = Bot(load(tmp_path, PROB_RULES.format(p=0)))
    for i in range(200):
        d = bot.say(i, f"u{i}", "foo bar")
        assert d.fired == "always"  # the next rule gets its chance
        assert d.trace[0].reason == "probability"
        assert d.trace[0].outcome == "blocked"
    assert bot.say(300, "x", "foo", full=True).trace[0].reason == "probability"


def _seed_where(pattern: list[bool], p: float) -> int:
    """A seed whose first draws hit (True) or miss (False) probability ``p`` as given."""
    for seed in range(10_000):
        rng = random.Random(seed)
        if all((rng.random() < p) == want for want in pattern):
            return seed
    raise AssertionError("no seed found")


def test_probability_miss_spends_nothing(tmp_path: Path) -> None:
    rs = load(
        tmp_path,
        """
        rules:
          - id: maybe
            match: {any: [foo]}
            probability: 0.5
            cooldown: {rule: 1h, user: 1h, user_rule: 1h, global: 1h}
            limit: {per_hour: 1}
            reply: "maybe"
        """,
    )
    seed = _seed_where([False, True, True], 0.5)
    bot = Bot(rs, seed=seed)
    assert bot.say(0, "alice", "foo").blocked == "probability"
    assert bot.say(1, "alice", "foo").fired == "maybe"  # no cooldown, no budget spent
    # after a real firing, the gates before the draw stop it (and no draw is made)
    d = bot.say(2, "alice", "foo")
    assert d.blocked == "cooldown.global"


def test_probability_miss_lets_a_lower_rule_fire(tmp_path: Path) -> None:
    seed = _seed_where([False], 0.5)
    bot = Bot(load(tmp_path, PROB_RULES.format(p=0.5)), seed=seed)
    d = bot.say(0, "alice", "foo")
    assert reasons(d) == [("maybe", "blocked", "probability"), ("always", "fired", None)]


# --------------------------------------------------------------------------- order


def test_priority_order_highest_first(tmp_path: Path) -> None:
    rs = load(
        tmp_path,
        """
        rules:
          - id: low
            priority: -5
            match: {any: [foo]}
            reply: "low"
          - id: mid
            match: {any: [foo]}
            reply: "mid"
          - id: high
            priority: 50
            match: {any: [foo]}
            reply: "high"
          - id: higher
            priority: 60
            match: {any: [foo]}
            when: {users: [nobody]}
            reply: "higher"
        """,
    )
    d = Bot(rs).say(0, "alice", "foo", full=True)
    assert d.fired == "high"
    # rules after the one that fires are not tried
    assert reasons(d) == [("higher", "blocked", "condition.users"), ("high", "fired", None)]
    assert [r.id for r in rs.rules] == ["higher", "high", "mid", "low"]


def test_priority_ties_keep_file_order(tmp_path: Path) -> None:
    one = """
    rules:
      - id: zeta
        match: {any: [foo]}
        reply: "zeta"
      - id: alpha
        match: {any: [foo]}
        reply: "alpha"
    """
    two = """
    rules:
      - id: beta
        priority: 0
        match: {any: [foo]}
        reply: "beta"
      - id: first-in-second-file
        priority: 1
        match: {any: [foo]}
        reply: "x"
    """
    rs = load(tmp_path, one, two)
    assert [r.id for r in rs.rules] == ["first-in-second-file", "zeta", "alpha", "beta"]
    bot = Bot(rs)
    assert bot.say(0, "a", "foo").fired == "first-in-second-file"


def test_ties_across_files_keep_sorted_file_order(tmp_path: Path) -> None:
    d = tmp_path / "rules"
    d.mkdir()
    (d / "b.yaml").write_text(
        'kryten_rules: 1\nrules:\n  - {id: from-b, match: {any: [foo]}, reply: "b"}\n'
    )
    (d / "a.yaml").write_text(
        'kryten_rules: 1\nrules:\n  - {id: from-a, match: {any: [foo]}, reply: "a"}\n'
    )
    rs = load_ruleset([d], bot_name=BOT)
    assert Bot(rs).say(0, "x", "foo").fired == "from-a"


def test_first_passing_rule_wins(tmp_path: Path) -> None:
    rs = load(
        tmp_path,
        """
        rules:
          - id: high
            priority: 10
            match: {any: [foo]}
            cooldown: {rule: 1m}
            reply: "high"
          - id: low
            match: {any: [foo]}
            cooldown: {rule: 1m}
            reply: "low"
          - id: lowest
            priority: -1
            match: {any: [foo]}
            reply: "lowest"
        """,
    )
    bot = Bot(rs)
    d = bot.say(0, "alice", "foo", full=True)
    assert reasons(d) == [("high", "fired", None)]  # only one rule fires per event
    d = bot.say(10, "alice", "foo", full=True)
    assert d.fired == "low"
    assert reasons(d) == [("high", "blocked", "cooldown.rule"), ("low", "fired", None)]
    d = bot.say(20, "alice", "foo")
    assert reasons(d) == [
        ("high", "blocked", "cooldown.rule"),
        ("low", "blocked", "cooldown.rule"),
        ("lowest", "fired", None),
    ]
    assert bot.say(60, "alice", "foo").fired == "high"


def test_blocked_reports_the_first_rule_that_matched(tmp_path: Path) -> None:
    rs = load(
        tmp_path,
        """
        rules:
          - id: a
            priority: 10
            match: {any: [foo]}
            when: {rank: {min: moderator}}
            reply: "a"
          - id: b
            match: {any: [foo]}
            when: {users: [nobody]}
            reply: "b"
        """,
    )
    d = Bot(rs).say(0, "alice", "foo")
    assert d.fired is None
    assert d.blocked == "condition.rank"


def test_blocking_cooldown_says_where_it_was_set(tmp_path: Path, monkeypatch: Any) -> None:
    """v1.1: the detail names the file's limits, or the rule, that set the cooldown."""
    monkeypatch.chdir(tmp_path)
    rs = load(
        tmp_path,
        """
        limits:
          user: {cooldown: 20s}
        rules:
          - id: long
            match: {any: [foo]}
            cooldown: {global: 1m, user_rule: 5m}
            reply: "a"
          - id: short
            match: {any: [bar]}
            reply: "b"
        """,
    )
    bot = Bot(rs)
    assert bot.say(0, "alice", "bar").fired == "short"
    d = bot.say(1, "alice", "foo")
    assert d.trace[0].detail == "19s left, set by limits.user of rules/00.yaml"
    assert bot.say(1, "bob", "foo").fired == "long"  # starts a 1m global cooldown
    d = bot.say(30, "carol", "bar")
    assert (d.blocked, d.trace[0].detail) == (
        "cooldown.global",
        "31s left, set by cooldown.global of rule long",
    )
    d = bot.say(90, "bob", "foo")
    assert (d.blocked, d.trace[0].detail) == ("cooldown.user_rule", "3m31s left, set by rule long")


# --------------------------------------------------------------------------- shadow


def test_shadow_rule_is_tried_on_the_side(tmp_path: Path) -> None:
    """v1.1: a shadow rule that passes its gates would fire, and the live rule still fires;
    it spends only its own shadow state (v1: it fired, stopped the live rule, spent its state)."""
    rs = load(
        tmp_path,
        """
        limits:
          global: {cooldown: 30s}
        rules:
          - id: trial
            mode: shadow
            priority: 10
            match: {any: [foo]}
            cooldown: {rule: 1m}
            reply: "trial"
          - id: live
            match: {any: [foo]}
            reply: "live"
        """,
    )
    bot = Bot(rs)
    d = bot.say(0, "alice", "foo")
    assert d.fired == "live" and d.shadow is False
    assert d.would_fire_ids == ["trial"]
    assert reasons(d) == [("trial", "would_fire", None), ("live", "fired", None)]
    (sd,) = d.shadow_decisions()
    assert sd.shadow is True and sd.fired == "trial" and sd.context is not None
    d = bot.say(10, "alice", "foo")  # the shadow cooldown runs; the live global one too
    assert d.would_fire_ids == []
    assert d.trace[0].reason == "cooldown.global"  # the shadow global one (its limits)
    assert d.blocked == "cooldown.global"  # the live rule's own reason, not the shadow's
    d = bot.say(31, "alice", "foo")
    assert d.fired == "live" and d.would_fire_ids == []
    d = bot.say(61, "alice", "foo")
    assert d.would_fire_ids == ["trial"]


def test_shadow_rule_spends_no_live_state(tmp_path: Path) -> None:
    """The shadow rule's global cooldown is its own: the live rule does not wait for it."""
    rs = load(
        tmp_path,
        """
        rules:
          - id: trial
            mode: shadow
            priority: 10
            match: {any: [foo]}
            cooldown: {global: 1h, user: 1h}
            limit: {per_hour: 1}
            probability: 0.5
            reply: "trial"
          - id: live
            match: {any: [foo, bar]}
            cooldown: {user: 5s}
            reply: "live"
        """,
    )
    bot = Bot(rs)
    for t in range(0, 60, 6):
        assert bot.say(t, "alice", "foo").fired == "live"
    only_live = "rules:\n  - id: live\n    match: {any: [foo]}\n    reply: l\n"
    plain = Bot(load(tmp_path / "x", only_live))
    assert plain.engine.rng.random() == bot.engine.rng.random()  # no live draw was taken


# --------------------------------------------------------------------------- ignored


def test_ignores_the_bots_own_messages(tmp_path: Path) -> None:
    rs = load(
        tmp_path,
        """
        rules:
          - id: any
            reply: "x"
        """,
    )
    bot = Bot(rs)
    for name in ("kryten", "KRYTEN", "Kryten"):
        d = bot.say(0, name, "kryten says hi", full=True)
        assert d.ignored == "self"
        assert d.fired is None and d.trace == () and d.blocked is None
    assert bot.say(1, "alice", "hi").fired == "any"


def test_bot_name_from_engine_overrides_ruleset(tmp_path: Path) -> None:
    rs = load(tmp_path, 'rules:\n  - {id: m, match: {mention: true}, reply: "x"}\n')
    bot = Bot(rs, bot_name="OtherBot")
    assert bot.say(0, "otherbot", "kryten hi").ignored == "self"
    assert bot.say(1, "kryten", "kryten hi").fired == "m"


def test_ignores_ignore_users(tmp_path: Path) -> None:
    rs = load(tmp_path, 'rules:\n  - {id: any, reply: "x"}\n')
    bot = Bot(rs, ignore_users=["Spammer", "otherbot"])
    for name in ("spammer", "SPAMMER", "OtherBot"):
        assert bot.say(0, name, "hello").ignored == "ignored_user"
    assert bot.say(0, "alice", "hello").fired == "any"


def test_ignored_events_spend_nothing(tmp_path: Path) -> None:
    rs = load(tmp_path, 'rules:\n  - {id: any, cooldown: {global: 1h}, reply: "x"}\n')
    bot = Bot(rs, ignore_users=["spammer"])
    bot.say(0, "spammer", "hello")
    bot.say(0, "kryten", "hello")
    assert bot.say(1, "alice", "hello").fired == "any"


# --------------------------------------------------------------------------- mentions

MENTION_RULES = """
persona:
  name: Cynthia
  aliases: [cynthia, rothbot, zoë]
rules:
  - id: mention
    match: {mention: true}
    reply: "{{ match }}"
"""


@pytest.mark.parametrize(
    "text",
    [
        "kryten hi",
        "hi KRYTEN",
        "@kryten hi",
        "hey @Kryten, you there?",
        "cynthia",
        "Cynthia, what's up",
        "what's up, cynthia?",
        "(cynthia) hi",
        "CYNTHIA!!!",
        "rothbot: status",
        "hey zoë",
        "ZOË, hello",
        "hi zoë.",
        "@zoë hi",
        "cynthia-san",  # a hyphen ends a word
    ],
)
def test_mention_matches(tmp_path: Path, text: str) -> None:
    assert Bot(load(tmp_path, MENTION_RULES)).say(0, "alice", text).fired == "mention"


@pytest.mark.parametrize(
    "text",
    [
        "cynthias are great",
        "xcynthia",
        "krytenbot",
        "kryten2",
        "cyn thia",
        "zoës",
        "zoëy",
        "rothbots",
        "my_cynthia",
        "Cynthia_",
        "",
    ],
)
def test_mention_is_whole_words_only(tmp_path: Path, text: str) -> None:
    d = Bot(load(tmp_path, MENTION_RULES)).say(0, "alice", text, full=True)
    assert d.fired is None
    assert reasons(d) == [("mention", "skipped", "no_match")]


@pytest.mark.parametrize(("word", "text"), [("mon", "pokémon"), ("na", "naïve"), ("ve", "naïve")])
def test_whole_words_next_to_non_ascii_letters(tmp_path: Path, word: str, text: str) -> None:
    rs = load(tmp_path, f'rules:\n  - {{id: w, match: {{any: ["{word}"]}}, reply: "x"}}\n')
    assert Bot(rs).say(0, "alice", text).fired is None


@pytest.mark.parametrize(("text", "want"), [("hi zoë, how", "zoë"), ("hey ZOË!", "ZOË")])
def test_match_of_non_ascii_word_has_no_punctuation(tmp_path: Path, text: str, want: str) -> None:
    d = Bot(load(tmp_path, MENTION_RULES)).say(0, "alice", text)
    assert d.context is not None
    assert d.context["match"] == want


def test_no_bot_name_and_no_persona_means_no_mention(tmp_path: Path) -> None:
    rs = load(tmp_path, 'rules:\n  - {id: m, match: {mention: true}, reply: "x"}\n', bot="")
    bot = Bot(rs)
    assert bot.say(0, "alice", "kryten hi", full=True).fired is None
    assert bot.say(1, "alice", "", full=True).fired is None


# --------------------------------------------------------------------------- text normalisation

_SPACES = "".join(c for c in map(chr, range(0x3001)) if c.isspace())


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=60),
        st.lists(st.sampled_from([" ", "  ", "a", "é", "<b>", "&amp;", "&nbsp;", *_SPACES])).map(
            "".join
        ),
    )
)
def test_property_normalise_shortcut_is_the_split_and_join(text: str) -> None:
    """normalise returns a printable, single-spaced text as it is; that must equal the
    whitespace collapse it skips, for every kind of space and control character."""
    import html
    import re

    expected = text
    if "<" in expected:
        expected = re.sub(r"<[^>]{0,2000}>", " ", expected)
    if "&" in expected:
        expected = html.unescape(expected)
    assert normalise(text) == " ".join(expected.split())


WORD_RULES = """
rules:
  - id: words
    match:
      any: ["what's up", "rock & roll", link, "kung   fu", "<b>"]
    reply: "{{ match }}"
"""


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("so what&#39;s up", "what's up"),
        ("WHAT&#x27;S UP?", "WHAT'S UP"),
        ("I like rock &amp; roll", "rock & roll"),
        ('see <a href="https://example.com/x" target="_blank">link</a>', "link"),
        ("kung fu", "kung fu"),
        ("KUNG    FU fighting", "KUNG FU"),
        ("kung\tfu", "kung fu"),
        ("Kung Fu!", "Kung Fu"),
        ("I wrote &lt;b&gt; myself", "<b>"),
    ],
)
def test_html_unescape_tags_spaces_and_case(tmp_path: Path, text: str, match: str) -> None:
    d = Bot(load(tmp_path, WORD_RULES)).say(0, "alice", text)
    assert d.fired == "words"
    assert d.context is not None and d.context["match"] == match


@pytest.mark.parametrize(
    "text",
    [
        '<a href="https://example.com/kung-fu">https://example.com/</a>',  # inside a tag
        "<b>bold</b>",  # a tag CyTube produced is not the literal text "<b>"
        "kungfu",
        "linked",
        "whats up",
        "rock and roll",
    ],
)
def test_html_and_phrases_do_not_overmatch(tmp_path: Path, text: str) -> None:
    assert Bot(load(tmp_path, WORD_RULES)).say(0, "alice", text).fired is None


def test_href_is_not_matched(tmp_path: Path) -> None:
    rs = load(tmp_path, 'rules:\n  - {id: w, match: {any: [href, blank]}, reply: "x"}\n')
    text = '<a href="https://x.org" target="_blank">site</a>'
    assert Bot(rs).say(0, "alice", text).fired is None


def test_all_needs_every_word_and_any_with_regex_is_one_group(tmp_path: Path) -> None:
    rs = load(
        tmp_path,
        r"""
        rules:
          - id: both
            match:
              all: [jackie, chan]
            reply: "both"
          - id: either
            match:
              any: [karate]
              regex: ['\bbruce\s+lee\b']
            reply: "either"
          - id: mixed
            match:
              mention: true
              any: [film]
              all: [best]
            reply: "mixed"
        """,
    )
    bot = Bot(rs)
    assert bot.say(0, "a", "chan and jackie").fired == "both"
    assert bot.say(1, "a", "jackie alone").fired is None
    assert bot.say(2, "a", "karate").fired == "either"
    assert bot.say(3, "a", "Bruce   Lee").fired == "either"
    assert bot.say(4, "a", "bruce").fired is None
    assert bot.say(5, "a", "kryten best film?").fired == "mixed"
    assert bot.say(6, "a", "kryten best?").fired is None
    assert bot.say(7, "a", "best film?").fired is None


# --------------------------------------------------------------------------- context

CONTEXT_RULES = r"""
persona:
  name: Cynthia
  aliases: [cynthia]
rules:
  - id: versus
    priority: 20
    match: {regex: ['(\w+)\s+vs\.?\s+(\w+)(!)?']}
    prompt: "{{ groups[0] }} against {{ groups[1] }}"
  - id: mention
    priority: 10
    match: {mention: true}
    prompt: "{{ message }}"
  - id: topic
    match: {any: [karate, "fight scene"]}
    prompt: "{{ match }}"
  - id: join
    on: adduser
    reply: "welcome {{ user.name }}"
"""


def test_regex_groups_and_match_in_context(tmp_path: Path) -> None:
    rs = load(tmp_path, CONTEXT_RULES)
    d = Bot(rs).say(0, "alice", "who wins, Bruce VS. Chuck?")
    assert d.fired == "versus"
    assert d.context is not None
    assert d.context["match"] == "Bruce VS. Chuck"
    assert d.context["groups"] == ["Bruce", "Chuck", ""]  # an unmatched group is ""
    assert "Bruce against Chuck" in (render(d, rs).prompt_text or "")


def test_match_is_the_word_as_written(tmp_path: Path) -> None:
    rs = load(tmp_path, CONTEXT_RULES)
    bot = Bot(rs)
    d = bot.say(0, "alice", "that FIGHT  SCENE was great")
    assert d.context is not None
    assert (d.context["match"], d.context["groups"]) == ("FIGHT SCENE", [])
    d = bot.say(1, "alice", "I did karate")
    assert d.context is not None and d.context["match"] == "karate"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hey cynthia, best kick ever?", "hey best kick ever?"),
        ("Cynthia: what&#39;s up", "what's up"),
        ("@kryten what now", "what now"),
        ("what do you think, CYNTHIA?", "what do you think"),
        ("cynthia", ""),
        ("cynthia, cynthia, listen", "listen"),
    ],
)
def test_message_has_the_mention_removed(tmp_path: Path, text: str, message: str) -> None:
    rs = load(tmp_path, CONTEXT_RULES)
    d = Bot(rs).say(0, "alice", text)
    assert d.fired == "mention"
    assert d.context is not None
    assert d.context["message"] == message


def test_text_is_unescaped_but_keeps_the_mention(tmp_path: Path) -> None:
    rs = load(tmp_path, CONTEXT_RULES)
    d = Bot(rs).say(0, "alice", "cynthia, rock &amp; roll")
    assert d.context is not None
    assert d.context["text"] == "cynthia, rock & roll"
    assert d.context["message"] == "rock & roll"


def test_context_user_rule_persona_channel_now(tmp_path: Path) -> None:
    rs = load(tmp_path, CONTEXT_RULES)
    bot = Bot(rs, channel="420grindhouse")
    d = bot.say(90.0, "Alice", "cynthia hi", rank=2)
    ctx = d.context
    assert ctx is not None
    assert ctx["user"] == {"name": "Alice", "rank": 2, "rank_name": "moderator"}
    assert ctx["rule"] == {"id": "mention", "description": ""}
    assert ctx["persona"]["name"] == "Cynthia"
    assert ctx["channel"] == "420grindhouse"
    assert ctx["now"].timestamp() == 90.0
    assert ctx["media"] is None


def test_history_holds_recent_lines_at_most_20(tmp_path: Path) -> None:
    rs = load(tmp_path, CONTEXT_RULES)
    bot = Bot(rs)
    for i in range(30):
        bot.say(i, f"u{i % 3}", f"line {i} &amp; more")
    d = bot.say(40, "alice", "cynthia?")
    assert d.context is not None
    history = d.context["history"]
    assert len(history) == 20
    assert history[-1] == {"user": "u2", "text": "line 29 & more"}
    assert history[0] == {"user": "u1", "text": "line 10 & more"}
    # the line being answered is not part of its own history; it is there next time
    d = bot.say(41, "bob", "cynthia!!")
    assert d.context is not None
    assert d.context["history"][-1] == {"user": "alice", "text": "cynthia?"}
    assert len(d.context["history"]) == 20


def test_history_keeps_only_chat(tmp_path: Path) -> None:
    rs = load(tmp_path, CONTEXT_RULES)
    bot = Bot(rs)
    bot.say(0, "a", "one")
    bot.media(1, "Film", 100)
    bot.event(2, kind="pm", user="b", text="private")
    bot.say(3, "kryten", "my own line")  # ignored before any rule
    d = bot.say(4, "c", "cynthia?")
    assert d.context is not None
    assert d.context["history"] == [{"user": "a", "text": "one"}]


def test_media_in_context(tmp_path: Path) -> None:
    rs = load(tmp_path, CONTEXT_RULES)
    bot = Bot(rs)
    bot.media(0, "Lady Reporter", 95 * 60)
    d = bot.say(1, "alice", "cynthia, who did the stunts?")
    assert d.context is not None
    assert d.context["media"] == {
        "title": "Lady Reporter",
        "duration": 5700.0,
        "type": "yt",
        "id": "id1",
    }
    bot.media(2, "Next", 60)
    d = bot.say(3, "bob", "cynthia?")
    assert d.context is not None and d.context["media"]["title"] == "Next"


def test_rank_is_remembered_from_an_earlier_event(tmp_path: Path) -> None:
    rs = load(
        tmp_path,
        """
        rules:
          - id: mods
            match: {any: [status]}
            when: {rank: {min: moderator}}
            reply: "{{ user.rank_name }}"
          - id: join
            on: adduser
            reply: "hi"
        """,
    )
    bot = Bot(rs)
    assert bot.say(0, "alice", "status").blocked == "condition.rank"
    bot.event(1, kind="adduser", user="Alice", rank=2)
    d = bot.say(2, "alice", "status")  # chat carries no rank
    assert d.fired == "mods"
    assert d.context is not None and d.context["user"]["rank"] == 2
    assert render(d, rs).reply == "moderator"
    bot.engine.set_rank("alice", 0)
    assert bot.say(3, "ALICE", "status").blocked == "condition.rank"
    bot.engine.set_rank("alice", 3)
    bot.engine.forget_user("Alice")
    assert bot.say(4, "alice", "status").blocked == "condition.rank"


def test_adduser_and_pm_rules(tmp_path: Path) -> None:
    rs = load(
        tmp_path,
        """
        rules:
          - id: join
            on: adduser
            cooldown: {user_rule: 1h}
            reply: "welcome {{ user.name }}"
          - id: dm
            on: pm
            reply: "pm"
        """,
    )
    bot = Bot(rs)
    d = bot.event(0, kind="adduser", user="newbie", rank=1)
    assert d.fired == "join"
    assert render(d, rs).reply == "welcome newbie"
    assert bot.event(5, kind="adduser", user="newbie", rank=1).blocked == "cooldown.user_rule"
    assert bot.event(6, kind="pm", user="newbie", text="hello").fired == "dm"
    assert bot.say(7, "newbie", "hello").fired is None


# --------------------------------------------------------------------------- swap


def test_swap_keeps_state_of_rules_that_stay_and_drops_removed(tmp_path: Path) -> None:
    before = load(
        tmp_path / "v1",
        """
        rules:
          - id: keep
            match: {any: [foo]}
            cooldown: {rule: 1h, user_rule: 1h}
            limit: {per_day: 1}
            reply: "keep"
          - id: gone
            match: {any: [bar]}
            cooldown: {rule: 1h, user_rule: 1h}
            limit: {per_day: 1}
            reply: "gone"
        """,
    )
    after = load(
        tmp_path / "v2",
        """
        rules:
          - id: keep
            description: edited
            priority: 5
            match: {any: [foo, baz]}
            cooldown: {rule: 1h, user_rule: 1h}
            limit: {per_day: 1}
            reply: "keep v2"
          - id: new
            match: {any: [qux]}
            reply: "new"
        """,
    )
    bot = Bot(before)
    assert bot.say(0, "alice", "foo").fired == "keep"
    assert bot.say(1, "alice", "bar").fired == "gone"
    state = bot.engine.state
    assert state.cooldown(("rule", "gone")) is not None
    assert state.count_since(("count_rule", "gone"), 0) == 1

    bot.engine.swap(after)
    d = bot.say(10, "alice", "baz")
    assert (d.fired, d.blocked) == (None, "cooldown.rule")  # the edited rule keeps its state
    assert bot.say(11, "bob", "qux").fired == "new"
    assert state.cooldown(("rule", "gone")) is None
    assert state.cooldown(("user_rule", "alice", "gone")) is None
    assert state.count_since(("count_rule", "gone"), 0) == 0
    assert state.cooldown(("rule", "keep")) is not None

    bot.engine.swap(before)  # a rule that comes back starts fresh
    assert bot.say(20, "alice", "bar").fired == "gone"
    assert bot.say(21, "alice", "foo").blocked == "cooldown.rule"


# ------------------------------------------------------------------- candidates vs full trace

_VOCAB_TEXT = (
    "the a film movie tonight great lol haha what who is was kick fight scene kung fu "
    "karate bruce lee jackie chan spoiler spoilers cynthia rothbot @CynthiaRothbot "
    "cynthias grindhouse vhs drive-in b-movie shaw brothers yes madam !help !rules "
    "righting wrongs china o&#39;brien &amp; <a href='x'>link</a> michelle yeoh sammo"
)
_VOCAB = _VOCAB_TEXT.split()


def _lines(n: int, seed: int) -> list[tuple[float, str, int | None, str]]:
    rng = random.Random(seed)
    users = ["alice", "bob", "carol", "dave", "guest1", "mod"]
    ranks: list[int | None] = [None, None, None, 0, 1, 2]
    out, t = [], 0.0
    for _ in range(n):
        t += rng.choice([0.5, 1, 3, 7, 20, 60, 400])
        words = [rng.choice(_VOCAB) for _ in range(rng.randint(1, 9))]
        if rng.random() < 0.15:
            words.insert(0, "!help" if rng.random() < 0.5 else "!rules")
        out.append((t, rng.choice(users), rng.choice(ranks), " ".join(words)))
    return out


def test_candidate_evaluation_agrees_with_full_trace() -> None:
    repo = HERE.parents[1]
    rs = load_ruleset([repo / "rules"], repo / "kryten-rules.example.yaml")
    fast, full = Bot(rs, seed=3), Bot(rs, seed=3)
    fired = 0
    for t, user, rank, text in _lines(3000, seed=11):
        a = fast.say(t, user, text, rank=rank)
        b = full.say(t, user, text, rank=rank, full=True)
        assert (a.fired, a.blocked) == (b.fired, b.blocked), text
        assert a.context == b.context
        # the candidate trace is the full trace without the rules that did not match
        assert [e for e in b.trace if e.reason != "no_match"] == [
            e for e in a.trace if e.reason != "no_match"
        ]
        fired += a.fired is not None
    assert fired > 100  # the lines do exercise the rules


# --------------------------------------------------------------------------- properties

_FUZZ_RULES = load_ruleset([FIXTURES / "fuzz.yaml"], bot_name=BOT)
_USERS = st.sampled_from(["alice", "Alice", "bob", "kryten", "mod", "g"])
_WORDS = st.sampled_from(
    [
        "hello",
        "kung fu",
        "kung  fu",
        "karate",
        "spoiler",
        "kryten",
        "@kryten",
        "cynthia,",
        "zoë",
        "bruce lee",
        "x vs y",
        "!rules",
        "&amp;",
        "&#39;",
        "<a href='u'>link</a>",
        "lol",
    ]
)
_TEXTS = st.lists(_WORDS, max_size=8).map(" ".join)
_EVENTS = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=120, allow_nan=False),
        _USERS,
        st.one_of(st.none(), st.integers(min_value=0, max_value=5)),
        st.one_of(_TEXTS, st.text(max_size=30)),
        st.sampled_from(["chatmsg", "chatmsg", "chatmsg", "pm", "adduser", "changemedia"]),
    ),
    max_size=30,
)


def _run(events: list[tuple[float, str, int | None, str, str]], seed: int) -> list[object]:
    clock = VirtualClock()
    engine = Engine(_FUZZ_RULES, clock=clock, seed=seed)
    out: list[object] = []
    t = 0.0
    for dt, user, rank, text, kind in events:
        t += dt
        clock.set(t)
        media = Media(text or "untitled", dt * 60) if kind == "changemedia" else None
        d = engine.evaluate(ChatEvent(kind, user, text, rank, t, media))
        ctx = None if d.context is None else {k: v for k, v in d.context.items()}
        out.append((d.fired, d.trace, d.ignored, d.blocked, ctx))
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=_EVENTS, seed=st.integers(min_value=0, max_value=2**32))
def test_property_same_input_same_decisions(
    events: list[tuple[float, str, int | None, str, str]], seed: int
) -> None:
    assert _run(events, seed) == _run(events, seed)


_JUNK = st.lists(
    st.sampled_from(
        [
            "<",
            ">",
            "&",
            ";",
            "&#",
            "&#x",
            "&#0;",
            "&#xD800;",
            "&#x110000;",
            "&#99999999999;",
            "&amp",
            "&lt;chat&gt;",
            "</chat>",
            "<a href='",
            "'>",
            "</a>",
            "<" * 3,
            "{{",
            "}}",
            "{%",
            "\x00",
            "\u202e",
            "\u200b",
            "\r\n",
            "\t",
            "kryten",
            "@kryten",
            "kung fu",
            "zoë",
            "vs",
            " ",
        ]
    ),
    max_size=40,
).map("".join)
_ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)
_HUGE = st.builds(lambda s, n: (s * n)[:10_000], _ANY_TEXT.filter(bool), st.integers(1, 2000))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.one_of(_ANY_TEXT, _JUNK, _HUGE, st.just("a" * 10_000), st.just("<" * 10_000)),
    user=st.one_of(_USERS, st.text(alphabet=st.characters(blacklist_categories=("Cs",)))),
    rank=st.one_of(st.none(), st.integers(min_value=-1, max_value=10_000)),
    kind=st.sampled_from(["chatmsg", "pm", "adduser", "changemedia"]),
)
def test_property_no_text_crashes_the_engine_or_the_prompt(
    text: str, user: str, rank: int | None, kind: str
) -> None:
    clock = VirtualClock()
    engine = Engine(_FUZZ_RULES, clock=clock, seed=1)
    media = Media(text, 600) if kind == "changemedia" else None
    for i, who in enumerate((user, "bob", user)):  # fired, cooled down, other user
        clock.set(float(i))
        d = engine.evaluate(ChatEvent(kind, who, text, rank, float(i), media), full_trace=i == 1)
        d.as_dict()
        if d.fired is not None:
            rendered = render(d, _FUZZ_RULES)
            assert rendered.error is None, rendered.error
            assert (rendered.prompt_text is None) != (rendered.reply is None)


_MIXED_RULES = load_ruleset([FIXTURES / "mixed.yaml"], bot_name=BOT)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=_EVENTS, seed=st.integers(min_value=0, max_value=2**32))
def test_property_first_candidate_shortcut_agrees_with_full_trace(
    events: list[tuple[float, str, int | None, str, str]], seed: int
) -> None:
    """The hot path (first candidate fires outright, else walk the candidates) decides
    exactly as trying every rule does, with the same state spent and the same context."""
    engines = [Engine(_MIXED_RULES, clock=VirtualClock(), seed=seed) for _ in range(2)]
    t = 0.0
    for dt, user, rank, text, kind in events:
        t += dt
        media = Media(text or "untitled", dt * 60) if kind == "changemedia" else None
        ev = ChatEvent(kind, user, text, rank, t, media)
        fast, full = (e.evaluate(ev, full_trace=i == 1) for i, e in enumerate(engines))
        assert (fast.fired, fast.blocked, fast.ignored) == (full.fired, full.blocked, full.ignored)
        assert fast.context == full.context
        assert [e for e in fast.trace if e.reason != "no_match"] == [
            e for e in full.trace if e.reason not in ("no_match", "disabled")
        ]
    assert len(engines[0].state) == len(engines[1].state)


def test_engine_fast_path_covers_rules_with_nothing_to_check() -> None:
    """The mixed rule set does exercise both paths: plain rules fire with no gate run."""
    engine = Engine(_MIXED_RULES, clock=VirtualClock(), seed=1)
    sure = {r.id for r, s in zip(_MIXED_RULES.rules, _MIXED_RULES.tables.sure, strict=True) if s}
    assert sure == {"plain-a", "mention", "plain-b", "anything", "pm-hello", "join"}
    d = engine.evaluate(ChatEvent("chatmsg", "alice", "hello karate", 1, 1.0))
    assert d.fired == "cooled" and d.context is not None and d.context["match"] == "karate"
    d = engine.evaluate(ChatEvent("chatmsg", "alice", "karate again", 1, 2.0))
    assert d.fired == "plain-a" and [(e.rule, e.reason) for e in d.trace] == [
        ("cooled", "cooldown.rule"),
        ("plain-a", None),
    ]


def test_channel_named_after_construction_reaches_the_context() -> None:
    """replay learns the channel from the first envelope, after the engine exists."""
    engine = Engine(_MIXED_RULES, clock=VirtualClock(), seed=1)
    engine.channel_name = "kungfu"
    d = engine.evaluate(ChatEvent("chatmsg", "alice", "hello", 1, 1.0))
    assert d.context is not None and d.context["channel"] == "kungfu"
    engine.swap(_MIXED_RULES)  # a reload keeps it
    d = engine.evaluate(ChatEvent("chatmsg", "alice", "hello", 1, 2.0))
    assert d.context is not None and d.context["channel"] == "kungfu"


def test_media_events_are_not_counted_against_a_user(tmp_path: Path) -> None:
    rs = load(
        tmp_path,
        """
        limits:
          user: {cooldown: 45s, per_hour: 1}
        rules:
          - id: intro
            on: changemedia
            reply: "now playing {{ media.title }}"
        """,
    )
    bot = Bot(rs)
    assert bot.media(0, "Short one", 30).fired == "intro"
    d = bot.media(30, "Next one", 600)
    assert (d.fired, d.blocked) == ("intro", None)


def test_history_snapshot_is_the_lines_before_the_decision_even_when_read_late() -> None:
    from kryten_rules.engine.room import HISTORY_LINES
    from kryten_rules.engine.room import MemoryRoom as ChannelState

    room = ChannelState()

    def say(i: int) -> None:
        room.history.append(("u", f"line {i}"))
        room.lines += 1

    for i in range(30):
        say(i)
    snapshot = room.lines  # what a decision keeps
    for i in range(30, 130):  # a hundred more lines before the reply is prepared
        say(i)
    got = room.history_before(snapshot)
    assert [t for _, t in got] == [f"line {i}" for i in range(30 - HISTORY_LINES, 30)]
    assert ChannelState().history_before(0) == []


def test_context_read_after_a_reload_still_describes_its_own_rule_set(tmp_path: Path) -> None:
    """A reply is rendered after the decision; a reload in between must not change
    what `match` or `message` say (pattern indices belong to the old rule set)."""
    rule_k = '  - {id: k, match: {any: [karate]}, reply: "{{ match }}"}\n'
    old = load(tmp_path / "old", "rules:\n" + rule_k)
    new = load(
        tmp_path / "new",
        'rules:\n  - {id: z, match: {any: [zebra, yak, gnu]}, reply: "x"}\n' + rule_k,
    )
    bot = Bot(old)
    d = bot.say(0, "alice", "kryten, karate time")
    bot.engine.swap(new)
    assert d.context is not None
    assert d.context["match"] == "karate"
    assert d.context["message"] == "karate time"


def test_the_engine_tables_are_built_once_by_compile_and_shared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plans and candidate tables belong to the rule set: engines and explain build none."""
    from kryten_rules.compile import ruleset as ruleset_module
    from kryten_rules.tools.explain import explain_event

    built: list[RuleSet] = []
    build = ruleset_module.build_tables

    def counted(rs: RuleSet) -> ruleset_module.Tables:
        built.append(rs)
        return build(rs)

    monkeypatch.setattr(ruleset_module, "build_tables", counted)
    rs = load(
        tmp_path,
        """
        rules:
          - id: greet
            match: {any: [hello]}
            cooldown: {user: 10s}
            reply: "hi {{ user.name }}"
        """,
    )
    assert built == [rs]  # compile built them before handing the set over
    engines = [Engine(rs, clock=VirtualClock(), seed=i) for i in range(3)]
    for _ in range(3):
        assert explain_event(rs, "hello there")["fired"] == "greet"
    assert all(e.evaluate(ChatEvent("chatmsg", "ann", "hello", 1, 1.0)).fired for e in engines)
    engines[0].swap(rs)
    assert built == [rs]
