"""``replay`` on anything a log file can hold: it skips, counts and names, never crashes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from kryten_rules.cli import main
from kryten_rules.compile.load import load_ruleset
from kryten_rules.tools.replay import Skipped, read_log, replay
from kryten_rules.wire import envelope

ROOT = Path(__file__).resolve().parents[2]
RULESET = load_ruleset(ROOT / "rules", ROOT / "kryten-rules.example.yaml")
EVENTS = ["chatMsg", "pm", "addUser", "userLeave", "setUserRank", "userlist", "changeMedia",
          "mediaUpdate", "usercount", ""]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
payloads = st.fixed_dictionaries(
    {},
    optional={
        "username": json_values | st.sampled_from(["alice", "CynthiaRothbot"]),
        "name": json_values | st.just("bob"),
        "msg": json_values | st.just("hey cynthia"),
        "time": json_values | st.integers(0, 2**53),
        "meta": json_values,
        "rank": json_values | st.integers(-5, 10),
        "title": json_values,
        "seconds": json_values,
        "to": json_values,
    },
)
envelopes = st.fixed_dictionaries(
    {"event_name": st.sampled_from(EVENTS) | json_values},
    optional={
        "channel": st.sampled_from(["420grindhouse", "", "..", "x" * 300]) | json_values,
        "domain": st.just("cytu.be") | json_values,
        "timestamp": st.sampled_from(["2026-12-07T20:00:00+00:00", "nope", ""]) | json_values,
        "payload": payloads | json_values,
        "correlation_id": json_values,
    },
)
records = st.fixed_dictionaries(
    {
        "subject": st.sampled_from(["kryten.events.cytube.420grindhouse.chatmsg"]) | json_values,
        "data": envelopes | json_values | envelopes.map(json.dumps),
    }
)
lines = st.one_of(
    json_values.map(json.dumps),
    envelopes.map(json.dumps),
    records.map(json.dumps),
    st.text(),
    st.just('{"event_name": "chatMsg"}'),  # the line that used to be a traceback
)


@settings(max_examples=300)
@given(st.lists(lines, max_size=12))
def test_replay_never_crashes_and_accounts_for_every_line(log: list[str]) -> None:
    text_lines = [line.replace("\n", " ").replace("\r", " ") for line in log]
    seen: list[Skipped] = []
    stats = replay(RULESET, text_lines, bot_name="CynthiaRothbot", on_skip=seen.append)
    non_blank = [line for line in text_lines if line.strip()]
    assert stats.events == len(non_blank)
    assert stats.malformed == len(seen) == sum(stats.skipped.values())
    assert all(s.reason and 1 <= s.line <= len(text_lines) for s in seen)
    assert stats.malformed + sum(stats.unused.values()) <= stats.events


def test_a_line_without_channel_is_skipped_and_named() -> None:
    """It was a traceback (event_subject on an empty channel)."""
    (item,) = read_log(['{"event_name": "chatMsg", "payload": {}}'])
    assert item == Skipped(1, "missing channel")


T0 = 1_800_000_000  # 2027-01-15T08:00:00Z


def _chat(t: int, user: str, msg: str) -> str:
    payload = {"username": user, "msg": msg, "meta": {}, "time": (T0 + t) * 1000}
    stamp = datetime.fromtimestamp(T0 + t, UTC).isoformat()
    return envelope("chatMsg", payload, channel="420grindhouse", domain="cytu.be",
                    timestamp=stamp).decode()


def test_replay_verbose_names_every_skipped_line(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    usercount = json.dumps({"subject": "kryten.events.cytube.420grindhouse.usercount",
                            "data": {"event_name": "usercount", "channel": "420grindhouse",
                                     "domain": "cytu.be", "payload": 3}})
    log.write_text("\n".join([
        _chat(1, "alice", "!help"),
        "not json at all",
        "",
        '{"event_name": "chatMsg"}',
        "[1, 2]",
        json.dumps({"event_name": "chatMsg", "channel": "420grindhouse", "domain": "cytu.be"}),
        usercount,
    ]) + "\n", encoding="utf-8")
    runner = CliRunner()
    rules = str(ROOT / "rules")
    r = runner.invoke(main, ["replay", str(log), "--rules", rules, "--verbose"])
    assert r.exit_code == 0, r.output
    assert f"{log}:2: skipped: not JSON" in r.stderr
    assert f"{log}:4: skipped: missing channel" in r.stderr
    assert f"{log}:5: skipped: not a JSON object" in r.stderr
    assert f"{log}:6: skipped: missing payload" in r.stderr
    assert "line 3" not in r.stderr and ":7:" not in r.stderr  # blank; an unused event
    assert "4 malformed" in r.stdout
    assert "skipped lines: " in r.stdout and "missing channel 1" in r.stdout
    assert "events the rules do not use: usercount 1" in r.stdout
    r = runner.invoke(main, ["replay", str(log), "--rules", rules])
    assert r.exit_code == 0 and r.stderr == ""  # counted, not named, without --verbose
    r = runner.invoke(main, ["replay", str(log), "--rules", rules, "-v", "--format", "json"])
    d: dict[str, Any] = json.loads(r.stdout)
    assert d["skipped"] == {"not JSON": 1, "missing channel": 1, "not a JSON object": 1,
                            "missing payload": 1}
    assert d["skipped_lines"][0] == {"line": 2, "reason": "not JSON"}
    assert d["unused"] == {"usercount": 1}
    assert d["rules"]["help"]["fired"] == 1
