"""The vocabularies are types, and the places that list them agree with them.

Event kinds, trace outcomes and reason codes are StrEnums (``events.EventKind``,
``trace.Outcome``, ``trace.Reason``); diagnostic codes are ``codes.Code``
(held to docs/diagnostics.md by tests/test_docs.py). A kind or an outcome
added in one place and not the other fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kryten_rules import ChatEvent, VirtualClock, load_ruleset
from kryten_rules.engine.evaluate import Engine
from kryten_rules.events import EventKind
from kryten_rules.trace import Outcome, Reason

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "kryten_rules" / "schemas" / "rules.schema.json"


def _on_enum(schema: object) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        on = schema.get("properties", {}).get("on") if "properties" in schema else None
        if isinstance(on, dict) and "enum" in on:
            found.update(on["enum"])
        for value in schema.values():
            found |= _on_enum(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= _on_enum(value)
    return found


def test_the_schemas_on_is_the_event_kinds() -> None:
    assert _on_enum(json.loads(SCHEMA.read_text(encoding="utf-8"))) == {k.value for k in EventKind}


def test_what_each_event_kind_carries() -> None:
    assert EventKind.CHATMSG.has_sender and EventKind.CHATMSG.has_text
    assert EventKind.PM.has_sender and EventKind.PM.has_text
    assert EventKind.ADDUSER.has_sender and not EventKind.ADDUSER.has_text
    assert not EventKind.CHANGEMEDIA.has_sender and not EventKind.CHANGEMEDIA.has_text
    assert not EventKind.TIMER.has_sender and not EventKind.TIMER.has_text  # v1.1


def test_reason_codes_are_built_only_from_known_parts() -> None:
    assert Reason.cooldown("user_rule") is Reason.COOLDOWN_USER_RULE
    assert Reason.limit("global", "per_day") is Reason.LIMIT_GLOBAL_PER_DAY
    with pytest.raises(ValueError):
        Reason.cooldown("channel")


def test_a_trace_carries_the_types_and_serialises_as_plain_strings(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "kryten_rules: 1\nrules:\n"
        "  - {id: hi, match: {any: [hello]}, cooldown: {user: 30s}, reply: hi}\n"
    )
    engine = Engine(load_ruleset([rules]), clock=VirtualClock())
    first = engine.evaluate(ChatEvent(user="alice", text="hello", at=1.0))
    second = engine.evaluate(ChatEvent(user="alice", text="hello", at=2.0))
    assert first.trace[0].outcome is Outcome.FIRED
    entry = second.trace[0]
    assert entry.outcome is Outcome.BLOCKED and entry.reason is Reason.COOLDOWN_USER
    as_json = json.loads(json.dumps(second.as_dict()))
    assert as_json["trace"][0]["outcome"] == "blocked"
    assert as_json["trace"][0]["reason"] == "cooldown.user"


def test_every_llm_outcome_is_in_the_metrics_docs() -> None:
    from kryten_rules.dispatch.llm.outcomes import LLMOutcome

    page = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    missing = [o.value for o in LLMOutcome if f"`{o.value}`" not in page]
    assert not missing, f"LLM outcomes not in docs/metrics.md: {missing}"
