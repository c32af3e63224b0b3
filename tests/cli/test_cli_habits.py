"""The habits of good CLIs (issue 12): exit codes, color, quiet, stdin, version, completion.

One table of exit codes for every command: 0 ok, 1 the input has errors or a
test failed, 2 usage error or cannot start. ``test_every_command_is_in_the_table``
fails when a command is added without its row.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kryten_rules import __version__
from kryten_rules.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "kryten-rules.example.yaml"
RULES = ROOT / "rules"

BAD_RULES = """\
kryten_rules: 1
rules:
  - id: help
    match: {regex: ['^!help']}
    cooldwn: {rule: 1m}
    reply: "hi"
"""
FAILING_TEST = """\
kryten_rules_test: 1
rules: ../rules
cases:
  - name: wrong on purpose
    events:
      - {user: a, say: "!help", expect: {silent: true}}
"""


def run(*args: str | Path, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], input=input, env=env)


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    """A project whose rule file has an error, and a rule test that fails on good rules."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "bad.yaml").write_text(BAD_RULES, "utf-8")
    good = tmp_path / "good"
    (good / "rules").mkdir(parents=True)
    (good / "rules" / "ok.yaml").write_text(BAD_RULES.replace("cooldwn", "cooldown"), "utf-8")
    (good / "tests").mkdir()
    (good / "tests" / "fail.test.yaml").write_text(FAILING_TEST, "utf-8")
    (tmp_path / "log.jsonl").write_text("", "utf-8")
    return tmp_path


# command -> {exit code: arguments} (paths relative to the `bad` fixture)
TABLE: dict[str, dict[int, Callable[[Path], list[str | Path]]]] = {
    "validate": {
        0: lambda d: [RULES],
        1: lambda d: [d / "rules"],
        2: lambda d: [d / "missing"],
    },
    "test": {
        0: lambda d: [ROOT / "tests" / "rules"],
        1: lambda d: [d / "good" / "tests"],
        2: lambda d: [d / "missing"],
    },
    "explain": {
        0: lambda d: ["hey cynthia", RULES, "--config", CONFIG],
        1: lambda d: ["hey", d / "rules"],
        2: lambda d: ["hey", RULES, "--rank", "nobody"],
    },
    "replay": {
        0: lambda d: [d / "log.jsonl", "--rules", RULES],
        1: lambda d: [d / "log.jsonl", "--rules", d / "rules"],
        2: lambda d: [d / "missing.jsonl", "--rules", RULES],
    },
    "schema": {0: lambda d: ["rules"], 2: lambda d: ["nope"]},
    "init": {0: lambda d: [d / "new"], 2: lambda d: [d / "log.jsonl"]},  # a file, not a dir
    # `run` and `chat` stop with 0 (tests/service/test_service_start.py,
    # tests/cli/test_first_run.py); a config with errors cannot start them.
    "run": {2: lambda d: ["--config", d / "rules" / "bad.yaml"]},
    "chat": {2: lambda d: ["--config", d / "rules" / "bad.yaml"]},
    # `record` stops with 0 (tests/tools/test_record.py)
    "record": {2: lambda d: [d / "out.jsonl"]},
    # `tail` stops with 0, and exits 2 without a server (tests/service/test_events_out.py)
    "tail": {2: lambda d: ["--config", d / "rules" / "bad.yaml"]},
}


def test_every_command_is_in_the_table() -> None:
    assert set(TABLE) == set(main.list_commands(None))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("command", "code"), [(c, code) for c, row in TABLE.items() for code in row]
)
def test_exit_codes(command: str, code: int, bad: Path) -> None:
    r = run(command, *TABLE[command][code](bad))
    assert r.exit_code == code, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception


@pytest.mark.parametrize("command", sorted(TABLE))
def test_an_unknown_option_is_a_usage_error(command: str) -> None:
    r = run(command, "--no-such-option")
    assert r.exit_code == 2
    assert "No such option" in r.output


def test_an_internal_error_exits_2_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from kryten_rules.ruleformat import schema

    def boom(kind: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(schema, "schema", boom)
    r = run("schema", "rules")
    assert r.exit_code == 2
    assert "internal error (RuntimeError)" in r.stderr


# --------------------------------------------------------------------------- habits


def test_version_short_and_long() -> None:
    for flag in ("-V", "--version"):
        r = run(flag)
        assert r.exit_code == 0 and __version__ in r.output


def test_validate_a_config_checks_the_rules_it_points_at(tmp_path: Path) -> None:
    """It said "ok, 0 rules" while `run` failed on the rules."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "bad.yaml").write_text(BAD_RULES, "utf-8")
    cfg = tmp_path / "kryten-rules.yaml"
    cfg.write_text(CONFIG.read_text("utf-8"), "utf-8")
    r = run("validate", cfg)
    assert r.exit_code == 1, r.output
    assert "unknown key 'cooldwn'" in r.output
    r = run("validate", CONFIG)
    assert r.exit_code == 0 and "10 rule(s)" in r.output


def test_test_finds_the_tests_among_rule_files(tmp_path: Path) -> None:
    """Tests beside the rules they test: `test rules/` and `run` both pass over the other kind."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "ok.yaml").write_text(BAD_RULES.replace("cooldwn", "cooldown"), "utf-8")
    (tmp_path / "rules" / "ok.test.yaml").write_text(
        FAILING_TEST.replace("rules: ../rules", "rules: .").replace("silent: true", "fires: help"),
        "utf-8",
    )
    r = run("test", tmp_path / "rules")
    assert r.exit_code == 0, r.output
    assert "1 passed, 0 failed" in r.output
    r = run("explain", "!help", tmp_path / "rules")
    assert r.exit_code == 0, r.output
    # a rule file named on its own is still not a test
    r = run("test", tmp_path / "rules" / "ok.yaml")
    assert r.exit_code == 2 and "reads test files" in r.output


def test_validate_reads_standard_input() -> None:
    r = run("validate", "-", input=BAD_RULES)
    assert r.exit_code == 1
    assert "<stdin>:5:5: error[unknown-key]" in r.output
    r = run("validate", "--format", "json", "-", input=BAD_RULES.replace("cooldwn", "cooldown"))
    assert r.exit_code == 0 and json.loads(r.output) == []
    assert run("validate", "-", "-", input="").exit_code == 2
    assert not list(Path.cwd().glob(".kryten-rules-stdin-*"))


ESC = "\x1b["


@pytest.mark.parametrize(
    ("args", "env", "colored"),
    [
        (["--color", "always"], {}, True),
        (["--color", "always"], {"NO_COLOR": "1"}, True),  # an explicit flag wins
        (["--color", "never"], {}, False),
        ([], {}, False),  # auto: CliRunner's output is not a terminal
        (["--color", "auto"], {"NO_COLOR": "1"}, False),
    ],
)
def test_color(args: list[str], env: dict[str, str], colored: bool) -> None:
    r = run("validate", *args, "-", input=BAD_RULES, env=env)
    assert r.exit_code == 1
    assert (ESC in r.output) is colored
    # the option before the command name does the same
    r = run(*args, "validate", "-", input=BAD_RULES, env=env)
    assert (ESC in r.output) is colored


def test_no_color_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from kryten_rules.cli import app as cli

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("NO_COLOR", "1")
    assert cli.use_color(Tty()) is False
    monkeypatch.delenv("NO_COLOR")
    assert cli.use_color(Tty()) is True


def test_quiet(tmp_path: Path, bad: Path) -> None:
    r = run("validate", "-q", RULES)
    assert r.exit_code == 0 and r.output == ""
    r = run("-q", "validate", bad / "rules")
    assert r.exit_code == 1 and "cooldwn" in r.output  # diagnostics still print
    r = run("test", "--quiet", ROOT / "tests" / "rules")
    assert r.exit_code == 0 and r.output == ""
    r = run("test", "-q", bad / "good" / "tests")
    assert r.exit_code == 1 and "FAIL" in r.output and "passed" not in r.output
    r = run("init", "-q", tmp_path / "p")
    assert r.exit_code == 0 and r.output == ""


def test_shell_completion_script() -> None:
    """As docs/cli.md says: eval "$(_KRYTEN_RULES_COMPLETE=bash_source kryten-rules)"."""
    r = CliRunner().invoke(
        main, [], prog_name="kryten-rules", env={"_KRYTEN_RULES_COMPLETE": "bash_source"}
    )
    assert r.exit_code == 0
    assert "_kryten_rules_completion" in r.output
    r = CliRunner().invoke(
        main, [], prog_name="kryten-rules",
        env={"_KRYTEN_RULES_COMPLETE": "bash_complete", "COMP_WORDS": "kryten-rules val",
             "COMP_CWORD": "1"},
    )
    assert "validate" in r.output


# --------------------------------------------------------------------------- messages


def _diags(tmp_path: Path, text: str, name: str = "rules/r.yaml") -> list[dict[str, str]]:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    r = run("validate", "--format", "json", path)
    assert r.exit_code == 1, r.output
    out: list[dict[str, str]] = json.loads(r.output)
    return out


def test_messages_name_the_rule_by_id(tmp_path: Path) -> None:
    (d,) = _diags(tmp_path, BAD_RULES)
    assert d["message"] == "unknown key 'cooldwn' in rule 'help'"
    (d,) = _diags(tmp_path, BAD_RULES.replace("cooldwn: {rule: 1m}", "cooldown: {rule: 5x}"))
    assert d["message"] == "cooldown.rule of rule 'help': '5x' is not a duration"
    # a rule without an id can only be named by its place
    no_id = "kryten_rules: 1\nrules:\n  - reply: hi\n"
    assert any(x["message"] == "rules[0] needs the key 'id'" for x in _diags(tmp_path, no_id))


def test_regexes_are_shown_as_written(tmp_path: Path) -> None:
    text = BAD_RULES.replace("cooldwn", "cooldown").replace("'^!help'", "'\\bsammo(?=x)'")
    (d,) = _diags(tmp_path, text)
    assert d["code"] == "bad-regex"
    assert d["message"].startswith("RE2 rejects '\\bsammo(?=x)': ")  # one backslash, as in YAML


def test_did_you_mean_for_rank_names_and_rule_ids(tmp_path: Path) -> None:
    text = BAD_RULES.replace("cooldwn", "cooldown").replace(
        "reply:", "when: {rank: {min: moderater}}\n    reply:"
    )
    (d,) = _diags(tmp_path, text)
    assert d["code"] == "bad-rank" and d["hint"] == "did you mean 'moderator'?"
    r = run("explain", "hi", RULES, "--rank", "moderater")
    assert r.exit_code == 2 and "did you mean 'moderator'?" in r.output
    (tmp_path / "rules" / "r.yaml").write_text(BAD_RULES.replace("cooldwn", "cooldown"), "utf-8")
    test = FAILING_TEST.replace("silent: true", "fires: hepl")
    (d,) = _diags(tmp_path, test, "tests/t.test.yaml")
    assert d["code"] == "unknown-rule" and d["hint"] == "did you mean 'help'?"


def test_a_missing_prompt_file_has_a_hint(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "mention.j2").write_text("hi", "utf-8")
    text = BAD_RULES.replace("cooldwn", "cooldown").replace(
        'reply: "hi"', "prompt_file: prompts/mention.j2"
    )
    (d,) = _diags(tmp_path, text)
    assert d["code"] == "prompt-file-missing"
    assert d["hint"].startswith("did you mean '../prompts/mention.j2'?")
    assert "relative to the rule file's directory" in d["hint"]
    (d,) = _diags(tmp_path, text.replace("mention.j2", "nowhere.j2"))
    assert d["hint"].startswith("the path is relative to the rule file's directory: it names ")


def test_validate_with_only_a_config_checks_that_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`validate --config F` (no paths) checks F and its rules; it used to ask for --config."""
    from click.testing import CliRunner

    from kryten_rules.cli import main

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["init", "."]).exit_code == 0
    result = runner.invoke(main, ["validate", "--config", "kryten-rules.yaml"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok:"), result.output
