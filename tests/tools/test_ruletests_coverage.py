"""``kryten-rules test --coverage``, ``--min-coverage`` and ``--format junit``."""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from kryten_rules.cli import main

RULES = """\
kryten_rules: 1
persona: {name: Cynthia, aliases: [cynthia]}
rules:
  - id: greet
    match: {any: [hello]}
    cooldown: {rule: 1m}
    reply: "hi {{ user.name }}"
  - id: mention
    match: {mention: true}
    prompt: "{{ message }}"
  - id: mods
    match: {any: [status]}
    when: {rank: {min: moderator}}
    reply: "all good"
  - id: trial
    mode: shadow
    match: {any: [trial]}
    reply: "shadow"
  - id: intro
    on: changemedia
    prompt: 'Introduce "{{ media.title }}".'
  - id: old
    enabled: false
    match: {any: [old]}
    reply: "gone"
"""

TESTS = """\
kryten_rules_test: 1
rules: ../rules
bot: kryten
cases:
  - name: greet, then its cooldown
    events:
      - {at: 0s, user: alice, say: "hello", expect: {fires: greet}}
      - {at: 5s, user: bob, say: "cynthia hi"}
  - name: guests cannot ask the status
    events:
      - {at: 0s, user: bob, rank: guest, say: "status", expect: {blocked: condition.rank}}
  - name: the trial rule would fire
    events:
      - {at: 0s, user: carol, say: "trial run", expect: {would_fire: trial}}
"""


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def line_of(path: Path, rule_id: str) -> int:
    lines = path.read_text("utf-8").splitlines()
    return next(i for i, text in enumerate(lines, 1) if f"id: {rule_id}" in text)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path / "rules" / "chat.yaml", RULES)
    write(tmp_path / "tests" / "chat.test.yaml", TESTS)
    return tmp_path


# --------------------------------------------------------------------------- coverage


def test_coverage_counts_fired_blocked_and_would_fire_with_an_expectation(project: Path) -> None:
    """greet fired, mods was blocked, trial would fire; mention fired only in a setup
    event (no expect) and intro never ran; the disabled rule is not counted."""
    r = run("test", project / "tests", "--coverage")
    assert r.exit_code == 0, r.output
    rules = project / "rules" / "chat.yaml"
    assert "coverage: 3/5 rules (60.0%), 1 disabled not counted" in r.stdout
    assert f"not covered: {rules}:{line_of(rules, 'mention')}: mention" in r.stdout
    assert f"not covered: {rules}:{line_of(rules, 'intro')}: intro" in r.stdout
    assert "greet" not in r.stdout.partition("coverage:")[2]


def test_without_coverage_nothing_is_said_about_it(project: Path) -> None:
    r = run("test", project / "tests")
    assert r.exit_code == 0, r.output
    assert "coverage" not in r.output
    assert "coverage" not in json.loads(run("test", project / "tests", "--format", "json").stdout)


def test_coverage_in_json(project: Path) -> None:
    r = run("test", project / "tests", "--coverage", "--format", "json")
    assert r.exit_code == 0, r.output
    cov: dict[str, Any] = json.loads(r.stdout)["coverage"]
    rules = str(project / "rules" / "chat.yaml")
    assert (cov["covered"], cov["total"], cov["percent"], cov["disabled"]) == (3, 5, 60.0, 1)
    assert cov["uncovered"] == [
        {"id": "mention", "file": rules, "line": line_of(Path(rules), "mention")},
        {"id": "intro", "file": rules, "line": line_of(Path(rules), "intro")},
    ]


def test_coverage_is_printed_with_quiet(project: Path) -> None:
    r = run("-q", "test", project / "tests", "--coverage")
    assert r.exit_code == 0, r.output
    assert "passed" not in r.stdout
    assert "coverage: 3/5 rules" in r.stdout


def test_a_rule_set_two_test_files_load_is_counted_once(project: Path) -> None:
    more = TESTS.replace("greet, then", "intro").replace(
        '{at: 0s, user: alice, say: "hello", expect: {fires: greet}}',
        '{at: 0s, media: {title: X, duration: 1h}, expect: {fires: intro}}',
    )
    write(project / "tests" / "more.test.yaml", more)
    r = run("test", project / "tests", "--coverage")
    assert r.exit_code == 0, r.output
    assert "coverage: 4/5 rules (80.0%)" in r.stdout


def test_k_narrows_the_cases_not_the_rules(project: Path) -> None:
    r = run("test", project / "tests", "--coverage", "-k", "guests")
    assert r.exit_code == 0, r.output
    assert "coverage: 1/5 rules (20.0%)" in r.stdout


def test_a_failing_case_still_covers_and_the_run_fails(project: Path) -> None:
    write(project / "tests" / "chat.test.yaml", TESTS.replace("fires: greet", "fires: mods"))
    r = run("test", project / "tests", "--coverage")
    assert r.exit_code == 1
    assert "1 failed" in r.stdout
    assert "coverage: 3/5 rules" in r.stdout  # greet fired, where mods was expected


@pytest.mark.parametrize(("minimum", "code"), [("0", 0), ("60", 0), ("60.01", 1), ("100", 1)])
def test_min_coverage(project: Path, minimum: str, code: int) -> None:
    r = run("test", project / "tests", "--min-coverage", minimum)
    assert r.exit_code == code, r.output
    assert "coverage: 3/5 rules (60.0%)" in r.stdout  # --min-coverage implies --coverage
    below = f"error: rule coverage 60.0% (3/5) is below --min-coverage {float(minimum):g}%"
    assert (below in r.stderr) == (code == 1)


def test_min_coverage_of_a_fully_covered_project_passes() -> None:
    """The rule set `init` ships is fully covered, so its CI workflow's gate passes."""
    repo = Path(__file__).parents[2]
    r = run("test", repo / "tests" / "rules", "--min-coverage", "100")
    assert r.exit_code == 0, r.output
    assert "(100.0%)" in r.stdout


@pytest.mark.parametrize("bad", ["101", "-1", "nan", "most"])
def test_min_coverage_must_be_a_percentage(project: Path, bad: str) -> None:
    r = run("test", project / "tests", "--min-coverage", bad)
    assert r.exit_code == 2
    assert "--min-coverage" in r.output


# --------------------------------------------------------------------------- junit


def junit(r: Result) -> ET.Element:
    assert r.stdout.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(r.stdout.encode("utf-8"))


def test_junit_structure(project: Path) -> None:
    failing = TESTS.replace("fires: greet", "fires: mods").replace("tests", "bad")
    write(project / "tests" / "zbad.test.yaml", failing)
    r = run("test", project / "tests", "--format", "junit", "--coverage")
    assert r.exit_code == 1
    root = junit(r)  # stdout is the XML alone: coverage goes to stderr
    assert "coverage: 3/5 rules" in r.stderr
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("6", "1", "0")
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [
        str(project / "tests" / "chat.test.yaml"),
        str(project / "tests" / "zbad.test.yaml"),
    ]
    for suite in suites:
        cases = suite.findall("testcase")
        assert suite.get("tests") == str(len(cases)) == "3"
        assert float(suite.get("time", "x")) >= 0
        for case in cases:
            assert set(case.attrib) == {"name", "classname", "time"}  # Jenkins' XSD: no file
            assert float(case.get("time", "x")) >= 0
    ok, bad = suites
    assert ok.get("failures") == "0" and not ok.findall(".//failure")
    assert bad.get("failures") == "1"
    (failure,) = bad.findall(".//failure")
    case = bad.find("testcase[failure]")
    assert case is not None and case.get("name") == "greet, then its cooldown"
    assert case.get("classname", "").endswith(".tests.zbad")
    assert failure.get("message") == "event 1: expected 'mods' to fire, got greet"
    assert failure.get("type") == "expectation"
    text = failure.text or ""
    assert 'expected: {"fires": "mods"}' in text
    assert "greet" in text and "fired" in text  # the trace


def test_junit_escapes_what_xml_cannot_carry(project: Path) -> None:
    hostile = TESTS.replace("greet, then its cooldown", '"greet \\u001b[31m <&>"').replace(
        'say: "hello", expect: {fires: greet}', 'say: "hello\\u0007", expect: {fires: mods}'
    )
    write(project / "tests" / "chat.test.yaml", hostile)
    r = run("test", project / "tests", "--format", "junit")
    assert r.exit_code == 1
    root = junit(r)  # parses: no raw control characters
    case = root.find(".//testcase[failure]")
    assert case is not None
    assert case.get("name") == "greet \\x1b[31m <&>"
    failure = case.find("failure")
    assert failure is not None and "hello\\u0007" in (failure.text or "")  # as JSON writes it


def test_junit_of_a_broken_rule_set_is_an_error_case(project: Path) -> None:
    write(project / "rules" / "chat.yaml", "kryten_rules: 1\nrules:\n  - {id: Bad, reply: x}\n")
    r = run("test", project / "tests", "--format", "junit")
    assert r.exit_code == 1, r.output
    root = junit(r)
    assert (root.get("tests"), root.get("errors")) == ("1", "1")
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == str(project / "rules" / "chat.yaml")
    error = suite.find("testcase/error")
    assert error is not None and error.get("type") == "diagnostics"
    assert "1 error(s)" in (error.get("message") or "")
    assert "chat.yaml:3" in (error.text or "")
