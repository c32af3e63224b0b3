"""Named capture groups (rule language v1.1): ``groups.name`` at run time, in the
sandbox, through the render worker, and checked by ``validate``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kryten_rules.clock import VirtualClock
from kryten_rules.compile.load import check_paths, load_ruleset
from kryten_rules.diagnostics import Diagnostic
from kryten_rules.dispatch.renderpool import Budget, RenderPool
from kryten_rules.engine.evaluate import Engine
from kryten_rules.engine.groups import Groups
from kryten_rules.events import ChatEvent
from kryten_rules.ruleformat.templates import TemplateProblem, compile_template

FILM = Groups(["Kickboxer", ""], {"title": "Kickboxer", "year": ""}, 2)


def render(source: str, groups: Groups = FILM) -> str:
    return compile_template(source).render({"groups": groups})


def write(tmp_path: Path, text: str, name: str = "rules/main.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def codes(diags: list[Diagnostic]) -> list[tuple[str, int, int]]:
    return [(d.code, d.span.line, d.span.column) for d in diags]


# --- the value -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ groups.title }}", "Kickboxer"),
        ("{{ groups['title'] }}", "Kickboxer"),
        ("{{ groups[0] }}|{{ groups[1] }}|{{ groups[-1] }}", "Kickboxer||"),
        ("{{ groups.year or 'unknown' }}", "unknown"),
        ("{{ groups|length }} {{ groups|join('/') }}", "2 Kickboxer/"),
        ("{% for g in groups %}[{{ g }}]{% endfor %}", "[Kickboxer][]"),
        ("{{ 'yes' if groups else 'no' }}", "yes"),
        ("{{ groups[1:] }}", "['']"),
        ("{{ groups }}", "['Kickboxer', '']"),  # as the plain list it used to be
    ],
)
def test_groups_by_number_and_by_name(source: str, expected: str) -> None:
    assert render(source) == expected


def test_a_group_named_like_a_sequence_method_is_the_group() -> None:
    """No public methods: a group called count or index is that group, not a method."""
    groups = Groups(["3", "x"], {"count": "3", "index": "x"}, 2)
    assert render("{{ groups.count }} {{ groups.index }}", groups) == "3 x"


def test_the_rules_other_groups_read_empty_and_unknown_ones_fail() -> None:
    groups = Groups(["Tiger"], {}, 3, frozenset({"title"}))
    assert render("[{{ groups.title }}][{{ groups[2] }}]", groups) == "[][]"
    with pytest.raises(TemplateProblem) as exc:
        render("{{ groups.nope }}", groups)
    assert exc.value.code == "template-render"
    with pytest.raises(TemplateProblem):
        render("{{ groups[3] }}", groups)


@pytest.mark.parametrize(
    "source",
    [
        "{{ groups._values }}",
        "{{ groups._named }}",
        "{{ groups['_named'] }}",
        "{{ groups.__class__ }}",
        "{{ groups['__class__'].__mro__ }}",
        "{{ groups.__getitem__('title') }}",
        "{{ groups.__reduce__() }}",
        "{{ groups|attr('_named') }}",
        "{{ groups|attr('__init__') }}",
    ],
)
def test_the_sandbox_cannot_escape_through_groups(source: str) -> None:
    with pytest.raises(TemplateProblem) as exc:
        render(source, Groups(["a"], {"_named": "a"}, 1))
    assert exc.value.code in ("template-unsafe", "template-render")


async def test_named_groups_survive_the_render_worker() -> None:
    """The service renders in worker processes: the context travels pickled."""
    pool = RenderPool(budget=Budget(seconds=5.0))
    await pool.start()
    try:
        out = await pool.render(["{{ groups.title }}/{{ groups[0] }}"], {"groups": FILM})
    finally:
        await pool.close()
    assert out == ["Kickboxer/Kickboxer"]


# --- the engine's context ----------------------------------------------------------------

RULES = """\
kryten_rules: 1
rules:
  - id: film
    match: {regex: ['^!film\\s+(?P<title>\\w+)(?:\\s+(?P<year>\\d{4}))?', '^!f\\s+(\\w+)']}
    reply: "{{ groups.title }}|{{ groups.year }}|{{ groups[0] }}|{{ groups[1] }}"
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!film Kickboxer 1989", "Kickboxer|1989|Kickboxer|1989"),
        ("!film Kickboxer", "Kickboxer||Kickboxer|"),
        ("!f Tiger", "||Tiger|"),  # the other regex matched: its names read empty
    ],
)
def test_the_engine_gives_named_groups_of_the_regex_that_matched(
    tmp_path: Path, text: str, expected: str
) -> None:
    ruleset = load_ruleset(write(tmp_path, RULES), bot_name="kryten")
    engine = Engine(ruleset, clock=VirtualClock(), seed=0, bot_name="kryten")
    d = engine.evaluate(ChatEvent(user="alice", text=text))
    assert d.fired == "film" and d.context is not None
    rule = ruleset.rules[0]
    assert rule.reply is not None
    assert rule.reply.render(d.context) == expected


# --- validate ----------------------------------------------------------------------------


def test_validate_reports_a_missing_group_in_a_prompt_file_at_its_place(tmp_path: Path) -> None:
    write(tmp_path, "Hello {{ user.name }}.\nYou asked for {{ groups.film }}.\n", "prompts/f.j2")
    rules = write(
        tmp_path,
        """\
        kryten_rules: 1
        rules:
          - id: film
            match: {regex: ['^!film (?P<title>.+)']}
            prompt_file: ../prompts/f.j2
        """,
    )
    diags = check_paths([rules]).diagnostics
    (d,) = diags
    assert d.code == "template-unknown-group" and d.is_error
    assert (Path(d.span.file).name, d.span.line, d.span.column) == ("f.j2", 2, 24)
    assert "groups.film" in d.message and d.hint is not None and "groups.title" in d.hint


def test_validate_checks_a_defaults_template_against_each_rules_regexes(tmp_path: Path) -> None:
    rules = write(
        tmp_path,
        """\
        kryten_rules: 1
        defaults:
          fallback_reply: "no luck with {{ groups.title }}"
        rules:
          - id: has-it
            match: {regex: ['^!a (?P<title>.+)']}
            reply: "ok"
          - id: lacks-it
            match: {regex: ['^!b (.+)']}
            reply: "ok"
        """,
    )
    diags = check_paths([rules]).diagnostics
    assert codes(diags) == [("template-unknown-group", 3, 42)]
    assert "'lacks-it'" in diags[0].message


@pytest.mark.parametrize(
    "template",
    [
        "{{ groups.title }} {{ groups[1] }}",  # any regex of the rule has them
        "{% set groups = ['x'] %}{{ groups[5] }}",  # the template's own groups
        "{% for i in range(3) %}{{ groups[i] }}{% endfor %}",  # computed: not checkable
        "{{ groups|length }} {{ groups[-1] if groups else '' }}",
    ],
)
def test_validate_accepts_groups_it_cannot_prove_missing(tmp_path: Path, template: str) -> None:
    rules = write(
        tmp_path,
        f"""\
        kryten_rules: 1
        rules:
          - id: film
            match: {{regex: ['^!film (?P<title>.+)', '^!f (\\w+) (\\w+)']}}
            reply: "{template}"
        """,
    )
    assert check_paths([rules]).diagnostics == []


def test_a_rule_without_regex_says_so(tmp_path: Path) -> None:
    rules = write(
        tmp_path,
        """\
        kryten_rules: 1
        rules:
          - id: film
            match: {any: [film]}
            reply: "{{ groups[0] }}"
        """,
    )
    (d,) = check_paths([rules]).diagnostics
    assert d.code == "template-unknown-group"
    assert d.hint is not None and "no match.regex" in d.hint
