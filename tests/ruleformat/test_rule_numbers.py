"""Issue #9 item 9: numbers a rule set cannot compute with, and installs that fail.

``limit: .inf`` in ``ranks`` passed validate and made the engine's install
raise *after* it had assigned the new rule set, so the bot answered with a
half-installed set. Such numbers are now diagnostics at their position, and an
install that raises for any reason leaves the old set whole.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kryten_rules.clock import VirtualClock
from kryten_rules.compile.load import check_paths, load_ruleset
from kryten_rules.compile.ruleset import RankMultiplier
from kryten_rules.engine.evaluate import Engine
from kryten_rules.events import ChatEvent

RULES = """\
kryten_rules: 1
ranks:
  - {min: moderator, cooldown: 1, limit: LIMIT}
rules:
  - id: greet
    match: {any: [hello]}
    limit: {per_minute: PER_MINUTE}
    cooldown: {user: COOLDOWN}
    reply: "hi {{ user.name }}"
"""


LIMIT_COLUMN = RULES.splitlines()[2].index("LIMIT") + 1


def write(tmp_path: Path, limit: str = "2", per_minute: str = "5", cooldown: str = "10s") -> Path:
    path = tmp_path / "rules" / "main.yaml"
    path.parent.mkdir(exist_ok=True)
    text = RULES.replace("LIMIT", limit).replace("PER_MINUTE", per_minute)
    path.write_text(text.replace("COOLDOWN", cooldown))
    return path


def where(tmp_path: Path, code: str) -> list[tuple[int, int]]:
    diags = check_paths([tmp_path / "rules"]).diagnostics
    return [(d.span.line, d.span.column) for d in diags if d.code == code]


@pytest.mark.parametrize("text", [".inf", "-.inf", ".Inf", ".NaN", ".nan"])
def test_nan_and_infinity_are_diagnostics_at_their_position(tmp_path: Path, text: str) -> None:
    write(tmp_path, limit=text)
    diags = check_paths([tmp_path / "rules"]).diagnostics
    assert [(d.code, d.span.line, d.span.column) for d in diags if d.is_error] == [
        ("bad-number", 3, LIMIT_COLUMN)
    ]


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("limit", "1.0e+999"),  # overflows to infinity
        ("limit", "1.0e+300"),
        ("per_minute", "99999999999999999999"),
        ("per_minute", "7" * 5000),  # past Python's int-from-text limit: used to crash validate
    ],
)
def test_out_of_range_numbers_are_diagnostics(tmp_path: Path, field: str, text: str) -> None:
    write(tmp_path, **{field: text})
    line = 3 if field == "limit" else 7
    assert [line] == [ln for ln, _ in where(tmp_path, "number-range")]
    diags = check_paths([tmp_path / "rules"]).diagnostics
    assert [d.code for d in diags if d.is_error] == ["number-range"]  # no schema noise


def test_a_duration_too_long_to_compute_with_is_a_diagnostic(tmp_path: Path) -> None:
    write(tmp_path, cooldown="9" * 400 + "d")  # float() of it is infinity
    assert where(tmp_path, "bad-duration") == [(8, RULES.splitlines()[7].index("COOLDOWN") + 1)]


def test_numbers_in_range_still_load(tmp_path: Path) -> None:
    write(tmp_path, limit="1.5", per_minute=str(2**53), cooldown="1h30m")
    rs = load_ruleset(tmp_path / "rules")
    assert rs.ranks[0].limit == 1.5 and rs.rules[0].limit == {"per_minute": 2**53}


def hello(user: str = "alice") -> ChatEvent:
    return ChatEvent(kind="chatmsg", user=user, text="hello there", rank=1, at=1000.0)


def test_an_install_that_raises_leaves_the_old_rule_set_whole(tmp_path: Path) -> None:
    write(tmp_path)
    old = load_ruleset(tmp_path / "rules")
    engine = Engine(old, clock=VirtualClock(1000.0), seed=1)
    tables = dict(vars(engine))
    # A set the checks can no longer produce, built by hand: its rank limit is
    # infinite, and the engine's install fails turning it into a count.
    bad = dataclasses.replace(
        old,
        rules=tuple(dataclasses.replace(r, id="other") for r in old.rules),
        ranks=(RankMultiplier(2, None, 1.0, float("inf")),),
        digest="new",
    )
    with pytest.raises(OverflowError):
        engine.swap(bad)
    assert engine.ruleset is old
    assert {k: v for k, v in vars(engine).items()} == tables  # not one table replaced
    assert engine.evaluate(hello()).fired == "greet"


def test_a_good_swap_after_a_failed_one_installs_everything(tmp_path: Path) -> None:
    write(tmp_path)
    old = load_ruleset(tmp_path / "rules")
    engine = Engine(old, clock=VirtualClock(1000.0), seed=1)
    renamed = dataclasses.replace(
        old, rules=tuple(dataclasses.replace(r, id="renamed") for r in old.rules), digest="n"
    )
    with pytest.raises(OverflowError):
        engine.swap(dataclasses.replace(renamed, ranks=(RankMultiplier(2, None, 1.0, 1e309),)))
    engine.swap(renamed)
    assert engine.ruleset is renamed
    assert engine.evaluate(hello()).fired == "renamed"


def test_a_duration_is_parsed_once_per_load_however_many_rules_inherit_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resolve parses each duration node once; the checks and compile read that result."""
    from kryten_rules.ruleformat import resolve as resolve_module

    seen: list[object] = []
    parse = resolve_module.parse_duration

    def counted(value: object) -> float:
        seen.append(value)
        return parse(value)

    monkeypatch.setattr(resolve_module, "parse_duration", counted)
    rules = "".join(
        f"  - id: r{i}\n    match: {{any: [w{i}]}}\n    reply: hi\n" for i in range(20)
    )
    path = tmp_path / "rules" / "many.yaml"
    path.parent.mkdir()
    path.write_text(
        "kryten_rules: 1\ndefaults:\n  cooldown: {rule: 30s}\n"
        "limits:\n  user: {cooldown: 45s}\nrules:\n" + rules + "  - id: own\n"
        "    match: {any: [x]}\n    cooldown: {user: 9s}\n    when: {media: {min_duration: 5m}}\n"
        "    reply: hi\n"
    )
    rs = load_ruleset(path)
    assert sorted(map(str, seen)) == ["30s", "45s", "5m", "9s"]
    assert rs.by_id["r0"].cooldowns == {"rule": 30.0}
    assert rs.by_id["own"].cooldowns == {"rule": 30.0, "user": 9.0}
    assert rs.user_budget.cooldown == 45.0
    assert rs.by_id["own"].media is not None and rs.by_id["own"].media.min_duration == 300.0
