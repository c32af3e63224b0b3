"""``validate`` warns about rule shapes that cannot do what they say (rule language v1.1)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from kryten_rules.cli import main
from kryten_rules.compile.load import check_paths
from kryten_rules.diagnostics import Severity


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules" / "main.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def warnings(tmp_path: Path, text: str) -> list[tuple[str, int, int]]:
    diags = check_paths([write(tmp_path, text)]).diagnostics
    assert all(d.severity is Severity.WARNING for d in diags), diags
    return [(d.code, d.span.line, d.span.column) for d in diags]


def test_a_timer_gets_its_own_checks_not_these_twice(tmp_path: Path) -> None:
    """What a timer cannot have is timerchecks' (timer-user, ...): reported once."""
    diags = check_paths(
        [
            write(
                tmp_path,
                """\
                kryten_rules: 1
                rules:
                  - id: nudge
                    on: timer
                    every: 30m
                    probability: 0
                    reply: "hi {{ user.name if user else 'all' }}"
                """,
            )
        ]
    ).diagnostics
    assert sorted(d.code for d in diags) == ["probability-zero", "timer-user"]


def test_shapes_that_work_are_not_warned_about(tmp_path: Path) -> None:
    assert (
        warnings(
            tmp_path,
            """\
        kryten_rules: 1
        rules:
          - id: greet-joiner
            on: adduser
            reply: "Welcome, {{ user.name }}!"
          - id: film-intro
            on: changemedia
            when: {media: {title_any: [kung fu]}}
            match: {any: [dragon]}
            respond_via: same
            probability: 0.5
            reply: 'Now: {{ media.title }}'
          - id: dm
            match: {mention: true}
            respond_via: pm
            probability: 1
            reply: "hi {{ user.name }}"
        """,
        )
        == []
    )


def test_probability_zero_from_defaults_is_warned_where_it_is_written(tmp_path: Path) -> None:
    assert warnings(
        tmp_path,
        """\
        kryten_rules: 1
        defaults: {probability: 0}
        rules:
          - id: a
            reply: "hi"
          - id: b
            match: {any: [b]}
            probability: 0.0
            reply: "hi"
        """,
    ) == [("probability-zero", 2, 25), ("probability-zero", 8, 18)]


def test_user_is_warned_once_per_template_at_its_first_use(tmp_path: Path) -> None:
    assert warnings(
        tmp_path,
        """\
        kryten_rules: 1
        rules:
          - id: film-intro
            on: changemedia
            reply: "{{ media.title }} for {{ user.name }} ({{ user.rank }})"
            fallback_reply: "{% set user = {'name': 'all'} %}hi {{ user.name }}"
        """,
    ) == [("user-without-sender", 5, 38)]


@pytest.mark.parametrize(("strict", "code"), [((), 0), (("--strict",), 1)])
def test_strict_turns_shape_warnings_into_a_failure(
    tmp_path: Path, strict: tuple[str, ...], code: int
) -> None:
    path = write(
        tmp_path,
        """\
        kryten_rules: 1
        rules:
          - id: quiet
            probability: 0
            reply: "hi"
        """,
    )
    res = CliRunner().invoke(main, ["validate", *strict, str(path)], catch_exceptions=False)
    assert res.exit_code == code, res.output
    assert "warning[probability-zero]" in res.output
