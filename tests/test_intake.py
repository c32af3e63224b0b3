"""Intake: what reaches the rules, in every path (service, ``test``, ``explain``, ``replay``).

Unit tests of :class:`kryten_rules.intake.Intake` on envelopes decoded by the
real decoder, the engine's sender checks (rule tests and ``explain`` build
events without an envelope), and the CLI paths end to end. The live service
on a real nats-server is in ``tests/service/test_service_intake.py``.
"""

from __future__ import annotations

import json
import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from kryten_rules import ChatEvent, VirtualClock, load_ruleset
from kryten_rules.cli import main
from kryten_rules.compile.load import load_config
from kryten_rules.config import DEFAULT_HISTORY_SLACK
from kryten_rules.dispatch.prompts import render
from kryten_rules.engine.evaluate import Engine
from kryten_rules.intake import Intake, LineMemory
from kryten_rules.senders import Ignored, IgnoreReason, is_notice_name
from kryten_rules.tools.explain import explain_event
from kryten_rules.wire import Decoded, decode_message, envelope, event_subject

REPO = Path(__file__).parent.parent
CHANNEL, DOMAIN, BOT = "420Grindhouse", "cytu.be", "KrytenBot"
NOW = 1_700_000_000.0  # Unix seconds: "when it reached us" in these tests
NOTICE_META = {"addClass": "server-whisper"}
CONFIG = f"""\
kryten_rules_config: 1
cytube: {{channel: {CHANNEL}, username: {BOT}}}
models: {{m: {{model: openai/m}}}}
chains: {{default: {{models: [m]}}}}
"""


def decoded(
    user: str,
    msg: str,
    *,
    at: float = NOW,
    meta: dict[str, Any] | None = None,
    event_name: str = "chatMsg",
) -> Decoded:
    """One chat line as the real decoder sees it on the wire."""
    payload: dict[str, Any] = {
        "username": user,
        "msg": msg,
        "meta": meta or {},
        "time": round(at * 1000),
    }
    if event_name == "pm":
        payload["to"] = BOT
    data = envelope(event_name, payload, channel=CHANNEL, domain=DOMAIN)
    d = decode_message(event_subject(CHANNEL, event_name), data)
    assert d is not None
    return d


def intake(**kw: Any) -> Intake:
    kw.setdefault("bot_name", BOT)
    return Intake(**kw)


def reason(result: ChatEvent | Ignored | None) -> str | None:
    assert result is not None
    return result.reason if isinstance(result, Ignored) else None


# --------------------------------------------------------------------------- notices


@pytest.mark.parametrize(
    ("user", "msg", "meta"),
    [
        ("[server]", "KrytenBot cleared chat.", NOTICE_META),
        ("[server]", "alice joined (aliases: KrytenBot, alice)", NOTICE_META),
        ("[server]", "KrytenBot cleared chat.", {}),  # bracketed: never a user, whatever the class
        ("[voteskip]", "KrytenBot, 3 of 5 votes", {}),
        ("[Server]", "x", {}),
        ("mallory", "KrytenBot hi", NOTICE_META),  # the class alone says it is CyTube's
    ],
)
def test_cytube_notices_are_ignored(user: str, msg: str, meta: dict[str, Any]) -> None:
    assert reason(intake().admit(decoded(user, msg, meta=meta), NOW)) == "notice"


def test_the_decoder_reports_the_line_class() -> None:
    assert decoded("[server]", "x", meta=NOTICE_META).add_class == "server-whisper"
    assert decoded("alice", "x", meta={"addClass": "action"}).add_class == "action"
    assert decoded("alice", "x").add_class == ""
    assert decoded("alice", "x", meta={"addClass": 5}).add_class == ""  # junk: no class


@pytest.mark.parametrize("name", ["server", "[server", "server]", "[", "a[b]", "alice"])
def test_only_names_in_brackets_are_notices(name: str) -> None:
    assert not is_notice_name(name)


def test_people_with_other_line_classes_are_admitted() -> None:
    # "/me waves" arrives with addClass "action"; "shout" is an admin's /sh: both people
    for cls in ("action", "shout", "greentext"):
        event = intake().admit(decoded("alice", "KrytenBot waves", meta={"addClass": cls}), NOW)
        assert isinstance(event, ChatEvent) and event.user == "alice"


def test_a_notice_pm_is_ignored_too() -> None:
    assert reason(intake().admit(decoded("[server]", "x", event_name="pm"), NOW)) == "notice"


# --------------------------------------------------------------------------- other senders


def test_self_ignored_user_and_muted() -> None:
    it = intake(ignore_users=["OtherBot"])
    assert reason(it.admit(decoded("krytenbot", "KrytenBot here"), NOW)) == "self"
    assert reason(it.admit(decoded("otherbot", "hi"), NOW)) == "ignored_user"
    assert reason(it.admit(decoded("troll", "hi", meta={"shadow": True}), NOW)) == "muted"
    admitted = it.admit(decoded("alice", "hi KrytenBot"), NOW)
    assert admitted == ChatEvent(kind="chatmsg", user="alice", text="hi KrytenBot", at=NOW)


def test_rank_only_events_give_nothing_to_the_rules() -> None:
    data = envelope("setUserRank", {"name": "bob", "rank": 2}, channel=CHANNEL, domain=DOMAIN)
    d = decode_message(event_subject(CHANNEL, "setUserRank"), data)
    assert d is not None and intake().admit(d, NOW) is None


def test_reasons_are_the_documented_vocabulary() -> None:
    assert [r.value for r in IgnoreReason] == ["self", "notice", "ignored_user", "muted", "history"]
    reference = (REPO / "docs" / "rules.md").read_text("utf-8")
    for r in IgnoreReason:  # a row of the "Ignored events" table
        assert f"\n| `{r.value}` |" in reference, (
            f"docs/rules.md does not explain the ignore reason {r.value}"
        )


# --------------------------------------------------------------------------- history


def test_a_line_sent_long_before_it_arrived_is_history() -> None:
    it = intake(started_at=NOW - 3600)  # up for an hour: the start rule does not apply
    result = it.admit(decoded("alice", "KrytenBot, you there?", at=NOW - 127), NOW)
    assert result == Ignored(IgnoreReason.HISTORY, "sent 127s before it arrived")


def test_a_line_within_the_slack_is_live() -> None:
    it = intake()
    late = decoded("alice", "KrytenBot?", at=NOW - DEFAULT_HISTORY_SLACK + 0.5)
    assert isinstance(it.admit(late, NOW), ChatEvent)
    early = decoded("bob", "KrytenBot?", at=NOW + 3)  # CyTube's clock a little ahead
    assert isinstance(it.admit(early, NOW), ChatEvent)


def test_the_slack_is_configurable() -> None:
    line = decoded("alice", "hi", at=NOW - 20)
    assert reason(intake(slack=30).admit(line, NOW)) is None
    assert reason(intake(slack=10).admit(line, NOW)) == "history"
    with pytest.raises(ValueError):
        intake(slack=float("nan"))
    with pytest.raises(ValueError):
        intake(slack=-1)


def test_the_config_sets_the_slack(tmp_path: Path) -> None:
    cfg = tmp_path / "kryten-rules.yaml"
    cfg.write_text(CONFIG + "history_slack: 20s\n", encoding="utf-8")
    assert load_config(cfg).history_slack == 20.0
    cfg.write_text(CONFIG, encoding="utf-8")
    assert load_config(cfg).history_slack == DEFAULT_HISTORY_SLACK


def test_lines_sent_before_the_start_are_history() -> None:
    it = intake(started_at=NOW)
    result = it.admit(decoded("alice", "hi", at=NOW - 1), NOW)
    assert result == Ignored(IgnoreReason.HISTORY, "sent before the service started")


def test_a_rejoin_replay_of_lines_already_seen_is_history() -> None:
    """CyTube replays its last 15 lines on every robot rejoin, with their original time."""
    it = intake(started_at=NOW - 60)
    lines = [decoded(f"user{i % 4}", f"line {i}", at=NOW - 4 + i / 4) for i in range(14)]
    lines.append(decoded("alice", "KrytenBot, best kick ever?", at=NOW - 0.5))
    first = [it.admit(d, NOW) for d in lines]
    assert all(isinstance(e, ChatEvent) for e in first)
    # the robot rejoins at once: the same 15 lines, all within the slack of their time
    again = [it.admit(d, NOW + 0.5) for d in lines]
    assert again == [Ignored(IgnoreReason.HISTORY, "already seen")] * 15
    # a new line from the same user, even with the same text, is live
    assert isinstance(it.admit(decoded("alice", "line 3", at=NOW + 2), NOW + 2), ChatEvent)


def test_the_same_text_at_another_time_or_by_another_user_is_a_new_line() -> None:
    it = intake()
    assert isinstance(it.admit(decoded("alice", "lol", at=NOW), NOW), ChatEvent)
    assert isinstance(it.admit(decoded("alice", "lol", at=NOW + 0.001), NOW), ChatEvent)
    assert isinstance(it.admit(decoded("bob", "lol", at=NOW), NOW), ChatEvent)
    assert isinstance(it.admit(decoded("alice", "lol", at=NOW, event_name="pm"), NOW), ChatEvent)
    assert reason(it.admit(decoded("ALICE", "lol", at=NOW), NOW)) == "history"


def test_ignored_lines_are_not_remembered() -> None:
    it = intake()
    it.admit(decoded("[server]", "x", at=NOW), NOW)
    it.admit(decoded("troll", "x", at=NOW, meta={"shadow": True}), NOW)
    it.admit(decoded("alice", "old", at=NOW - 600), NOW)
    assert len(it.seen) == 0


def test_the_memory_of_lines_is_bounded() -> None:
    memory = LineMemory(3)
    keys = [("chatmsg", "alice", float(i), hash("x")) for i in range(5)]
    assert [memory.add(k) for k in keys] == [False] * 5
    assert len(memory) == 3
    assert memory.add(keys[4]) and memory.add(keys[2])  # the last three are remembered
    assert not memory.add(keys[0])  # the oldest were forgotten
    it = intake(memory=16)
    for i in range(10_000):
        it.admit(decoded("alice", "x" * 1000, at=NOW + i / 1000), NOW)
    assert len(it.seen) == 16
    with pytest.raises(ValueError):
        LineMemory(0)


def test_lines_without_a_time_are_never_history() -> None:
    data = envelope(
        "chatMsg", {"username": "alice", "msg": "hi", "meta": {}}, channel=CHANNEL, domain=DOMAIN
    )
    d = decode_message(event_subject(CHANNEL, "chatMsg"), data)
    assert d is not None and d.at is None
    it = intake(started_at=NOW)
    assert isinstance(it.admit(d, NOW), ChatEvent)
    assert isinstance(it.admit(d, NOW), ChatEvent)  # nothing to tell a repeat by


def media(media_id: str, position: Any, title: str = "Yes, Madam!") -> Decoded:
    payload = {
        "id": media_id,
        "title": title,
        "seconds": 5580,
        "duration": "01:33:00",
        "type": "yt",
        "meta": {},
        "currentTime": position,
        "paused": False,
    }
    data = envelope("changeMedia", payload, channel=CHANNEL, domain=DOMAIN)
    d = decode_message(event_subject(CHANNEL, "changeMedia"), data)
    assert d is not None
    return d


def test_the_media_re_sent_on_a_rejoin_is_history() -> None:
    """CyTube sends every joining socket a changeMedia for what plays, at its position."""
    it = intake()
    assert media("a1", -3).position == -3.0
    assert isinstance(it.admit(media("a1", -3), NOW), ChatEvent)  # a real change: lead-in
    assert it.admit(media("a1", 612.5), NOW) == Ignored(
        IgnoreReason.HISTORY, "media already playing"
    )
    assert isinstance(it.admit(media("b2", -3, "China O'Brien"), NOW), ChatEvent)
    assert isinstance(it.admit(media("a1", 0), NOW), ChatEvent)  # A again, from its start


def test_media_first_seen_mid_play_or_without_a_position_is_admitted() -> None:
    it = intake()
    assert isinstance(it.admit(media("a1", 300), NOW), ChatEvent)  # we did not know it played
    for junk in (None, "12", True, 10**400):
        assert media("a1", junk).position is None
        assert isinstance(it.admit(media("a1", junk), NOW), ChatEvent)


# --------------------------------------------------------------------------- the engine


HISTORY_RULES = """\
kryten_rules: 1
persona: {name: Kryten, aliases: [kryten]}
rules:
  - id: mention
    match: {mention: true}
    prompt: |
      {% for h in history %}{{ h.user }}: {{ h.text }}
      {% endfor %}{{ user.name }}: {{ message }}
"""


@pytest.fixture
def history_rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules" / "main.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(HISTORY_RULES, encoding="utf-8")
    return path


def test_the_engine_ignores_notices_and_keeps_them_out_of_history(history_rules: Path) -> None:
    ruleset = load_ruleset([history_rules], bot_name=BOT)
    clock = VirtualClock()
    engine = Engine(ruleset, clock=clock, bot_name=BOT)
    notice = "alice joined (aliases: KrytenBot, alice)"
    for t, user, text in [
        (1, "carol", "nice film"),
        (2, "[server]", notice),
        (3, "[voteskip]", "kryten"),
    ]:
        clock.set(t)
        d = engine.evaluate(ChatEvent(user=user, text=text, at=t))
        if user.startswith("["):
            assert d.ignored == "notice" and d.fired is None and d.trace == ()
    clock.set(4)
    d = engine.evaluate(ChatEvent(user="bob", text="kryten, who joined?", at=4))
    assert d.fired == "mention"
    prompt = render(d, ruleset).prompt_text
    assert prompt is not None and "carol: nice film" in prompt
    assert "aliases" not in prompt and "[server]" not in prompt and "[voteskip]" not in prompt
    assert list(engine.room.history) == [("carol", "nice film"), ("bob", "kryten, who joined?")]


def test_explain_ignores_notices(history_rules: Path) -> None:
    ruleset = load_ruleset([history_rules], bot_name=BOT)
    result = explain_event(ruleset, "KrytenBot cleared chat.", user="[server]")
    assert result["ignored"] == "notice" and result["fired"] is None and result["trace"] == []


# --------------------------------------------------------------------------- CLI paths


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_explain_command_says_a_notice_is_ignored(history_rules: Path) -> None:
    r = run("explain", "KrytenBot cleared chat.", history_rules, "--user", "[server]")
    assert r.exit_code == 0, r.output
    assert "ignored before any rule: notice" in r.output
    assert "fires: nothing" in r.output


def test_rule_test_of_the_repo_keeps_notices_out_of_the_prompt() -> None:
    r = run("test", REPO / "tests" / "rules", "--format", "json", "-k", "notices")
    assert r.exit_code == 0, r.output
    (case,) = json.loads(r.stdout)["cases"]
    assert case["passed"]
    notices = [e for e in case["events"] if e["event"]["user"].startswith("[")]
    assert [e["ignored"] for e in notices] == ["notice"] * 3
    assert all(e["fired"] is None for e in notices)
    prompt = case["events"][-1]["prompt"]
    assert "lena: what a fight scene" in prompt
    assert "aliases" not in prompt and "cleared chat" not in prompt and "skip this" not in prompt


def test_rule_test_expect_ignored_reports_a_mismatch(tmp_path: Path, history_rules: Path) -> None:
    path = tmp_path / "tests" / "t.test.yaml"
    path.parent.mkdir()
    path.write_text(
        textwrap.dedent(
            f"""\
            kryten_rules_test: 1
            rules: {history_rules}
            bot: {BOT}
            cases:
              - name: a person is not a notice
                events:
                  - {{at: 0s, user: alice, say: "kryten hi", expect: {{ignored: notice}}}}
            """
        ),
        encoding="utf-8",
    )
    r = run("test", path)
    assert r.exit_code == 1, r.output
    assert "expected the event to be ignored as 'notice', but it reached the rules" in r.output


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _line(t: float, user: str, msg: str, *, sent: float | None = None, **meta: Any) -> str:
    """A recorded envelope: published at ``t``, CyTube ``time`` ``sent`` (default ``t``)."""
    payload = {
        "username": user,
        "msg": msg,
        "meta": meta,
        "time": int((t if sent is None else sent) * 1000),
    }
    return envelope("chatMsg", payload, channel=CHANNEL, domain=DOMAIN, timestamp=_iso(t)).decode()


def test_replay_ignores_notices_and_rejoin_history(tmp_path: Path, history_rules: Path) -> None:
    chatter = [(NOW + i, f"user{i}", f"chatter {i}") for i in range(14)]
    mention = (NOW + 20, "alice", "kryten, best kick ever?")
    lines = [_line(t, u, m) for t, u, m in chatter]
    lines.append(_line(*mention))
    lines.append(
        _line(
            NOW + 30, "[server]", "bob joined (aliases: KrytenBot, bob)", addClass="server-whisper"
        )
    )
    lines.append(_line(NOW + 31, "[voteskip]", "KrytenBot: 1 of 3"))
    # the robot rejoins 200 s later: CyTube replays the last 15 lines with their own time
    rejoin = NOW + 230
    lines += [_line(rejoin, u, m, sent=t) for t, u, m in [*chatter, mention]]
    lines.append(_line(rejoin + 1, "alice", "kryten, welcome back"))
    path = tmp_path / "channel.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    r = run("replay", path, "--rules", history_rules, "--format", "json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["ignored"] == {"notice": 2, "history": 15}
    assert d["rules"] == {"mention": {"fired": 2, "blocked": {}}}
    assert d["chat_lines"] == 16  # people only, each line once
    alice = next(u for u in d["busiest_users"] if u["user"] == "alice")
    assert alice == {"user": "alice", "lines": 2, "replies": 2}
    r = run("replay", path, "--rules", history_rules)
    assert "(0 malformed, ignored: history 15, notice 2)" in r.output


def test_replay_takes_the_slack_from_the_config(tmp_path: Path, history_rules: Path) -> None:
    cfg = tmp_path / "kryten-rules.yaml"
    cfg.write_text(CONFIG + "history_slack: 2m\n", "utf-8")
    path = tmp_path / "channel.jsonl"
    path.write_text(_line(NOW, "alice", "kryten?", sent=NOW - 100) + "\n", encoding="utf-8")
    r = run("replay", path, "--rules", history_rules, "--format", "json")
    assert json.loads(r.stdout)["ignored"] == {"history": 1}, r.output
    r = run("replay", path, "--rules", history_rules, "--config", cfg, "--format", "json")
    assert json.loads(r.stdout)["ignored"] == {}, r.output
    assert re.search(r'"replies": 1\b', r.stdout)
