"""The ``test``, ``explain`` and ``replay`` commands, through click's CliRunner."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from kryten_rules.cli import main
from kryten_rules.wire import envelope

REPO = Path(__file__).resolve().parents[2]
RULES_TESTS = REPO / "tests" / "rules"
CONFIG = REPO / "kryten-rules.example.yaml"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A small rule set in ``tmp_path/rules``; tests go in ``tmp_path/tests``."""
    write(
        tmp_path / "rules" / "chat.yaml",
        """\
        kryten_rules: 1
        persona: {name: Cynthia, aliases: [cynthia]}
        rules:
          - id: greet
            description: say hi back
            match: {any: [hello]}
            cooldown: {rule: 1m}
            reply: "hi {{ user.name }}"
          - id: mention
            match: {mention: true}
            cooldown: {user_rule: 1m}
            prompt: "{{ user.name }} asks: {{ message }}"
          - id: mods
            match: {any: [status]}
            when: {rank: {min: moderator}}
            reply: "all good"
          - id: intro
            on: changemedia
            when: {media: {min_duration: 20m}}
            prompt: 'Introduce "{{ media.title }}" in one line.'
        """,
    )
    return tmp_path


PASSING = """\
kryten_rules_test: 1
rules: ../rules
bot: kryten
seed: 7
cases:
  - name: greeting then cooldown
    events:
      - {at: 0s, user: alice, say: "hello all", expect: {fires: greet, reply_contains: "hi alice"}}
      - {at: 10s, user: bob, say: "hello", expect: {blocked: cooldown.rule}}
      - {at: 1m, user: bob, say: "hello", expect: {fires: greet}}
  - name: mention prompt carries the film
    events:
      - {at: 0s, media: {title: "Lady Reporter", duration: 95m}, expect: {fires: intro}}
      - {at: 5s, user: carol, say: "cynthia, who did the stunts?",
         expect: {fires: mention, prompt_contains: "carol asks: who did the stunts?"}}
      - {at: 6s, user: kryten, say: "cynthia hi", expect: {silent: true}}
  - name: rank is remembered per user
    events:
      - {at: 0s, user: mod, rank: moderator, join: true}
      - {at: 1s, user: mod, say: "status", expect: {fires: mods}}
      - {at: 2s, user: bob, say: "status", expect: {blocked: condition.rank}}
"""

FAILING = """\
kryten_rules_test: 1
rules: ../rules
bot: kryten
cases:
  - name: this one passes
    events:
      - {at: 0s, user: alice, say: "hello", expect: {fires: greet}}
  - name: wrong expectation about the cooldown
    events:
      - {at: 0s, user: alice, say: "hello", expect: {fires: greet}}
      - {at: 30s, user: bob, say: "hello &amp; bye", expect: {fires: greet}}
  - name: nothing matches at all
    events:
      - {at: 0s, user: alice, say: "goodbye", expect: {silent: false}}
"""


# --------------------------------------------------------------------------- test


def test_repo_rule_tests_pass() -> None:
    r = run("test", RULES_TESTS)
    assert r.exit_code == 0, r.output
    assert " passed, 0 failed" in r.output
    assert "FAIL" not in r.output


def test_v11_rule_tests_pass() -> None:
    """tests/engine/v11: rule-test tables of the rule language v1.1 semantics."""
    r = run("test", REPO / "tests" / "engine" / "v11")
    assert r.exit_code == 0, r.output
    assert " passed, 0 failed" in r.output


def test_passing_file_exits_0(project: Path) -> None:
    path = write(project / "tests" / "ok.test.yaml", PASSING)
    r = run("test", path)
    assert r.exit_code == 0, r.output
    assert "3 passed, 0 failed" in r.output


def test_failing_file_shows_case_event_expectation_outcome_and_trace(project: Path) -> None:
    path = write(project / "tests" / "bad.test.yaml", FAILING)
    r = run("test", path)
    assert r.exit_code == 1, r.output
    out = r.stdout
    assert "1 passed, 2 failed" in out
    assert "this one passes" not in out
    # the case
    assert f"FAIL {path}: wrong expectation about the cooldown" in out
    # the event, as written
    assert "event 2:" in out
    assert '"say": "hello &amp; bye"' in out and '"user": "bob"' in out
    # the expectation
    assert 'expected: {"fires": "greet"}' in out
    # what happened
    assert "expected 'greet' to fire, got nothing (blocked: cooldown.rule)" in out
    # the trace, with the seconds left
    trace_line = next(line for line in out.splitlines() if line.strip().startswith("greet"))
    assert "blocked" in trace_line and "cooldown.rule" in trace_line and "30s left" in trace_line
    # a case where no rule was even tried says so
    assert "FAIL" in out and "nothing matches at all" in out
    assert "expected a rule to fire, nothing did" in out
    assert "(no rule tried:" in out


def test_failing_file_json(project: Path) -> None:
    path = write(project / "tests" / "bad.test.yaml", FAILING)
    r = run("test", path, "--format", "json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["passed"] is False
    assert doc["diagnostics"] == []
    by_name = {c["name"]: c for c in doc["cases"]}
    assert set(by_name) == {
        "this one passes",
        "wrong expectation about the cooldown",
        "nothing matches at all",
    }
    assert by_name["this one passes"]["passed"] is True
    bad = by_name["wrong expectation about the cooldown"]
    assert bad["passed"] is False and bad["file"] == str(path)
    ev = bad["events"][1]
    assert ev["index"] == 1
    assert ev["event"] == {"at": "30s", "user": "bob", "say": "hello &amp; bye"}
    assert ev["expect"] == {"fires": "greet"}
    assert ev["fired"] is None and ev["blocked"] == "cooldown.rule"
    assert ev["trace"] == [
        {
            "rule": "greet",
            "outcome": "blocked",
            "reason": "cooldown.rule",
            "detail": "30s left, set by rule greet",
        }
    ]
    assert ev["failures"] == ["expected 'greet' to fire, got nothing (blocked: cooldown.rule)"]
    assert bad["events"][0]["failures"] == []
    assert bad["events"][0]["reply"] == "hi alice"


def test_passing_file_json_carries_prompts(project: Path) -> None:
    path = write(project / "tests" / "ok.test.yaml", PASSING)
    r = run("test", path, "--format", "json")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["passed"] is True
    case = next(c for c in doc["cases"] if c["name"] == "mention prompt carries the film")
    assert "carol asks: who did the stunts?" in case["events"][1]["prompt"]
    assert 'Introduce "Lady Reporter"' in case["events"][0]["prompt"]


def test_keyword_filter(project: Path) -> None:
    path = write(project / "tests" / "bad.test.yaml", FAILING)
    r = run("test", path, "-k", "PASSES")  # case-insensitive
    assert r.exit_code == 0, r.output
    assert "1 passed, 0 failed" in r.output
    r = run("test", path, "-k", "cooldown")
    assert r.exit_code == 1
    assert "0 passed, 1 failed" in r.output
    assert "nothing matches at all" not in r.output
    r = run("test", path, "-k", "no such case")
    assert r.exit_code == 2
    assert "no test cases found" in r.output


def test_directory_of_test_files(project: Path) -> None:
    write(project / "tests" / "ok.test.yaml", PASSING)
    write(project / "tests" / "bad.test.yaml", FAILING)
    r = run("test", project / "tests")
    assert r.exit_code == 1
    assert "4 passed, 2 failed" in r.output


@pytest.mark.parametrize(
    "text",
    [
        # not YAML
        "kryten_rules_test: 1\nrules: ../rules\ncases: [ {name: x, events: [\n",
        # no events
        "kryten_rules_test: 1\nrules: ../rules\ncases:\n  - name: x\n",
        # an unknown key in an event
        "kryten_rules_test: 1\nrules: ../rules\ncases:\n"
        "  - name: x\n    events:\n      - {at: 0s, user: a, sya: hi}\n",
        # a rule that is not in the rule set
        "kryten_rules_test: 1\nrules: ../rules\ncases:\n"
        "  - name: x\n    events:\n      - {at: 0s, user: a, say: hi, expect: {fires: nope}}\n",
        # a rules path that does not exist
        "kryten_rules_test: 1\nrules: ../nowhere\ncases:\n"
        "  - name: x\n    events:\n      - {at: 0s, user: a, say: hi}\n",
        # a rule file, not a test file
        "kryten_rules: 1\nrules:\n  - {id: a, reply: x}\n",
    ],
)
def test_malformed_test_file_exits_2(project: Path, text: str) -> None:
    path = write(project / "tests" / "broken.test.yaml", text)
    r = run("test", path)
    assert r.exit_code == 2, r.output
    assert "broken.test.yaml" in r.output


def test_broken_rule_set_under_test_exits_1_like_validate(project: Path) -> None:
    """Mistakes in the rules are the input's errors (1), as `validate` says; it was 2."""
    write(project / "rules" / "chat.yaml", "kryten_rules: 1\nrules:\n  - {id: Bad, reply: x}\n")
    path = write(project / "tests" / "ok.test.yaml", PASSING)
    assert run("validate", project / "rules").exit_code == 1
    r = run("test", path)
    assert r.exit_code == 1, r.output
    assert "chat.yaml:3" in r.output  # the rule file's diagnostic is printed
    r = run("test", path, "--format", "json")
    assert r.exit_code == 1
    assert json.loads(r.stdout)["diagnostics"][0]["code"]


def test_broken_test_file_and_missing_rules_still_exit_2(project: Path) -> None:
    write(project / "rules" / "chat.yaml", "kryten_rules: 1\nrules:\n  - {id: Bad, reply: x}\n")
    path = write(project / "tests" / "ok.test.yaml", PASSING.replace("fires: greet", "silent: 1"))
    assert run("test", path).exit_code == 2  # the test file is wrong too (silent: 1)
    path = write(project / "tests" / "ok.test.yaml", PASSING.replace("../rules", "../nowhere"))
    assert run("test", path).exit_code == 2


def test_missing_path_exits_2(tmp_path: Path) -> None:
    r = run("test", tmp_path / "nothing-here")
    assert r.exit_code == 2
    assert "no such file or directory" in r.output


def test_each_case_starts_from_empty_state_at_time_0(project: Path) -> None:
    text = """\
    kryten_rules_test: 1
    rules: ../rules
    cases:
      - name: first
        events:
          - {at: 0s, user: alice, say: "hello", expect: {fires: greet}}
      - name: second, same time, fresh cooldowns
        events:
          - {at: 0s, user: alice, say: "hello", expect: {fires: greet}}
    """
    r = run("test", write(project / "tests" / "fresh.test.yaml", text))
    assert r.exit_code == 0, r.output


def test_default_bot_name_is_kryten(project: Path) -> None:
    text = """\
    kryten_rules_test: 1
    rules: ../rules
    cases:
      - name: default bot name
        events:
          - {at: 0s, user: alice, say: "kryten, hi", expect: {fires: mention}}
          - {at: 1s, user: kryten, say: "hello", expect: {silent: true}}
    """
    r = run("test", write(project / "tests" / "default-bot.test.yaml", text))
    assert r.exit_code == 0, r.output


# --------------------------------------------------------------------------- explain


def test_explain_text_fires() -> None:
    r = run("explain", "hey cynthia, kung fu?", REPO / "rules", "--config", CONFIG)
    assert r.exit_code == 0, r.output
    assert "=> mention" in r.output
    assert "fires: mention - Answer whoever addresses the bot by name" in r.output
    assert "prompt (chain default):" in r.output
    assert "hey kung fu?" in r.output  # the mention is removed from the message


def test_explain_text_blocked() -> None:
    r = run("explain", "kung fu", REPO / "rules", "--rank", "guest")
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if "kung-fu" in x)
    assert "blocked" in line and "condition.rank" in line and "(rank 0 < 1)" in line
    assert "fires: nothing" in r.output
    assert " - help" in r.output  # rules that did not match are listed too


def test_explain_json_shape(project: Path) -> None:
    r = run("explain", "hello there", project / "rules", "--format", "json")
    assert r.exit_code == 0, r.output
    doc: dict[str, Any] = json.loads(r.stdout)
    assert {"fired", "trace", "prompt"} <= set(doc)
    assert doc["fired"] == "greet"
    assert doc["prompt"] is None and doc["reply"] == "hi someone"
    assert doc["trace"] == [{"rule": "greet", "outcome": "fired", "reason": None, "detail": None}]
    for entry in doc["trace"]:
        assert set(entry) == {"rule", "outcome", "reason", "detail"}

    r = run("explain", "cynthia what's up?", project / "rules", "--format", "json")
    doc = json.loads(r.stdout)
    assert doc["fired"] == "mention"
    assert doc["prompt"].endswith("someone asks: what's up?")
    assert [t["rule"] for t in doc["trace"]] == ["greet", "mention"]
    assert doc["trace"][0]["reason"] == "no_match"

    r = run("explain", "status", project / "rules", "--rank", "registered", "--format", "json")
    doc = json.loads(r.stdout)
    assert doc["fired"] is None and doc["prompt"] is None
    mods = next(t for t in doc["trace"] if t["rule"] == "mods")
    assert mods == {
        "rule": "mods",
        "outcome": "blocked",
        "reason": "condition.rank",
        "detail": "rank 1 < 2",
    }


def test_explain_changemedia(project: Path) -> None:
    args = ("explain", "", project / "rules", "--on", "changemedia", "--media", "Yes, Madam!")
    r = run(*args, "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["fired"] == "intro"
    assert 'Introduce "Yes, Madam!" in one line.' in doc["prompt"]
    assert [t["rule"] for t in doc["trace"]] == ["intro"]  # only changemedia rules

    r = run(*args, "--media-duration", "3m", "--format", "json")
    doc = json.loads(r.stdout)
    assert doc["fired"] is None
    assert doc["trace"][0]["reason"] == "condition.media"
    assert doc["trace"][0]["detail"] == "3m < 20m"

    r = run(*args)
    assert "fires: intro" in r.output
    assert 'Introduce "Yes, Madam!"' in r.output


def test_explain_chat_sees_the_media(project: Path) -> None:
    write(
        project / "rules" / "more.yaml",
        """\
        kryten_rules: 1
        rules:
          - id: film
            match: {any: [film]}
            when: {media: {title_any: [madam]}}
            prompt: "{{ media.title }}"
        """,
    )
    r = run("explain", "nice film", project / "rules", "--media", "Yes, Madam!", "--format", "json")
    doc = json.loads(r.stdout)
    assert doc["fired"] == "film"
    assert doc["prompt"].endswith("Yes, Madam!")
    r = run("explain", "nice film", project / "rules", "--format", "json")
    film = next(t for t in json.loads(r.stdout)["trace"] if t["rule"] == "film")
    assert (film["reason"], film["detail"]) == ("condition.media", "nothing is playing")


def test_explain_bad_rules_exit_1(tmp_path: Path) -> None:
    bad = write(tmp_path / "rules" / "x.yaml", "kryten_rules: 1\nrules:\n  - {id: X1, reply: x}\n")
    r = run("explain", "hi", bad)
    assert r.exit_code == 1


# --------------------------------------------------------------------------- replay

CHANNEL, DOMAIN = "420Grindhouse", "cytu.be"
T0 = 1_700_000_000.0  # Unix seconds


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def chat(t: float, user: str, msg: str, meta: dict[str, Any] | None = None) -> str:
    payload = {"username": user, "msg": msg, "meta": meta or {}, "time": int(t * 1000)}
    return envelope("chatMsg", payload, channel=CHANNEL, domain=DOMAIN, timestamp=_iso(t)).decode()


def add_user(t: float, name: str, rank: int) -> str:
    payload = {"name": name, "rank": rank, "profile": {}, "meta": {}}
    return envelope("addUser", payload, channel=CHANNEL, domain=DOMAIN, timestamp=_iso(t)).decode()


def change_media(t: float, title: str, seconds: int) -> str:
    payload = {
        "id": "abc123",
        "title": title,
        "seconds": seconds,
        "duration": f"{seconds // 60}:{seconds % 60:02d}",
        "type": "yt",
        "meta": {},
        "currentTime": 0,
        "paused": False,
    }
    return envelope(
        "changeMedia", payload, channel=CHANNEL, domain=DOMAIN, timestamp=_iso(t)
    ).decode()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    lines = [
        add_user(T0, "alice", 2),
        change_media(T0 + 1, "Trailer", 120),  # too short for intro: blocked
        chat(T0 + 2, "alice", "cynthia, hi"),  # mention
        chat(T0 + 10, "alice", "cynthia again"),  # cooldown.user_rule
        "this line is not JSON",
        chat(T0 + 20, "bob", "cynthia yo"),  # mention
        chat(T0 + 30, "alice", "status"),  # mods (rank from addUser)
        chat(T0 + 40, "bob", "status"),  # condition.rank
        chat(T0 + 45, "bob", "cynthia psst", meta={"shadow": True}),  # shadow-muted
        json.dumps({"event_name": "chatMsg", "payload": {"msg": 5}, "channel": "x"}),
        "",
        chat(T0 + 50, "carol", "hello hello"),  # greet
        chat(T0 + 60, "carol", "hello?"),  # greet cooldown.rule
        change_media(T0 + 100, "Yes, Madam!", 95 * 60),  # intro
        chat(T0 + 3600, "alice", "cynthia!"),  # mention, an hour on
    ]
    path = tmp_path / "channel.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_replay_json(project: Path, log: Path) -> None:
    r = run("replay", log, "--rules", project / "rules", "--format", "json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["events"] == 14  # blank lines are not events
    assert d["malformed"] == 2
    assert d["ignored"] == {"muted": 1}
    assert d["chat_lines"] == 8  # the shadow-muted line is not counted
    assert d["hours"] == 1.0
    assert d["replies"] == 6
    assert d["replies_per_hour"] == 6.0
    assert d["rules"] == {
        "greet": {"fired": 1, "blocked": {"cooldown.rule": 1}},
        "intro": {"fired": 1, "blocked": {"condition.media": 1}},
        "mention": {"fired": 3, "blocked": {"cooldown.user_rule": 1}},
        "mods": {"fired": 1, "blocked": {"condition.rank": 1}},
    }
    assert d["busiest_users"][:3] == [
        {"user": "alice", "lines": 4, "replies": 3},
        {"user": "bob", "lines": 2, "replies": 1},
        {"user": "carol", "lines": 2, "replies": 1},
    ]


def test_replay_text(project: Path, log: Path) -> None:
    r = run("replay", log, "--rules", project / "rules")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "14 events, 8 chat lines over 1.00 h (2 malformed" in out
    assert "6 replies, 6.0 per hour" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert rows["mention"].split()[1] == "3" and "cooldown.user_rule 1" in rows["mention"]
    assert rows["mods"].split()[1] == "1" and "condition.rank 1" in rows["mods"]
    assert rows["greet"].split()[1] == "1" and "cooldown.rule 1" in rows["greet"]
    assert "busiest users" in out
    assert rows["alice"].split()[1:] == ["4", "3"]


def test_replay_only_malformed_is_not_fatal(project: Path, tmp_path: Path) -> None:
    path = tmp_path / "junk.jsonl"
    path.write_bytes(b"{\n[1, 2]\n\xff\xfe not utf8\nnull\n")
    r = run("replay", path, "--rules", project / "rules", "--format", "json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["malformed"] == 4 and d["replies"] == 0 and d["replies_per_hour"] is None


def test_replay_with_config_ignores_the_bot(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(
        "\n".join(
            [
                chat(T0, "CynthiaRothbot", "cynthia says hi"),
                chat(T0 + 1, "alice", "!help"),
            ]
        )
    )
    r = run("replay", path, "--config", CONFIG, "--rules", REPO / "rules", "--format", "json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["ignored"] == {"self": 1}
    assert d["rules"]["help"]["fired"] == 1


def test_explain_and_replay_without_rules_are_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from kryten_rules.cli import main

    log = tmp_path / "empty.jsonl"
    log.write_text("")
    monkeypatch.chdir(tmp_path)  # no rules/ here
    runner = CliRunner()
    assert runner.invoke(main, ["explain", "hi"]).exit_code == 2
    assert runner.invoke(main, ["replay", str(log)]).exit_code == 2


def test_detail_contains_checks_where_the_block_was_set(project: Path) -> None:
    """v1.1: expect.detail_contains reads the blocking trace entry's detail."""
    path = write(
        project / "tests" / "detail.test.yaml",
        """\
        kryten_rules_test: 1
        rules: ../rules
        cases:
          - name: right
            events:
              - {at: 0s, user: alice, say: "hello", expect: {fires: greet}}
              - at: 20s
                user: bob
                say: "hello"
                expect: {blocked: cooldown.rule, detail_contains: "40s left, set by rule greet"}
          - name: wrong
            events:
              - {at: 0s, user: alice, say: "hello", expect: {fires: greet}}
              - at: 20s
                user: bob
                say: "hello"
                expect: {blocked: cooldown.rule, detail_contains: "limits.user"}
        """,
    )
    r = run("test", path)
    assert r.exit_code == 1, r.output
    assert "1 passed, 1 failed" in r.output
    assert "FAIL" in r.output and ": wrong" in r.output
    assert (
        "expected the block's detail to contain 'limits.user', got cooldown.rule: 40s left, "
        "set by rule greet" in r.output
    )
