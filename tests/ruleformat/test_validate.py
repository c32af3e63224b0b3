"""``kryten-rules validate``: table-driven fixtures, the CLI, and its promises.

Fixtures live in ``tests/validate/``:

* ``bad/*.bad.yaml`` - one mistake each. The leading comment block declares
  what the checker must say about it::

      # config: ../configs/chains.yaml      (optional: validate with --config)
      # expect: CODE LINE:COL [FILE]        (one or more; FILE relative to the fixture)
      # expect-hint: TEXT                   (some diagnostic's hint contains TEXT)
      # expect-message: TEXT                (some diagnostic's message contains TEXT)
      # xfail: REASON                       (a known checker bug; strict)

  The diagnostics of the file must be *exactly* the expected set of
  ``(file, code, line, column)``; every one is an error except the warnings of
  ``WARNING_CODES``.
* ``cross/<case>/`` - a directory validated as one rule set (problems across
  files); each file declares its own ``# expect:`` lines the same way.
* ``good/*.good.yaml`` - valid files using every feature: no diagnostics.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from kryten_rules.cli import main
from kryten_rules.compile.load import check_paths, load_config
from kryten_rules.diagnostics import Diagnostic, Severity

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "validate"
BAD = sorted((FIXTURES / "bad").glob("*.bad.yaml"))
GOOD = sorted((FIXTURES / "good").glob("*.good.yaml"))
CROSS = sorted(p for p in (FIXTURES / "cross").iterdir() if p.is_dir())
SCRIPT = Path(sys.executable).with_name("kryten-rules")
WARNING_CODES = {
    "shadowed",
    "mention-without-text",
    "match-without-text",
    "probability-zero",
    "pm-without-sender",
    "user-without-sender",
}

_EXPECT = re.compile(r"(?P<code>[a-z0-9-]+)\s+(?P<line>\d+):(?P<col>\d+)(?:\s+(?P<file>\S+))?")


@dataclass(frozen=True)
class Expectation:
    """What a fixture's leading comment block says the checker must report."""

    diags: frozenset[tuple[str, str, int, int]]  # (resolved file, code, line, column)
    hints: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()
    config: Path | None = None
    xfail: str | None = None


def read_expectation(path: Path) -> Expectation:
    text = path.read_bytes().decode("utf-8", errors="replace")
    diags: set[tuple[str, str, int, int]] = set()
    hints: list[str] = []
    messages: list[str] = []
    config = xfail = None
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        key, _, value = line[1:].strip().partition(":")
        value = value.strip()
        if key == "expect":
            m = _EXPECT.fullmatch(value)
            assert m, f"{path.name}: bad expect line {line!r}"
            where = (path.parent / m["file"]).resolve() if m["file"] else path.resolve()
            diags.add((str(where), m["code"], int(m["line"]), int(m["col"])))
        elif key == "expect-hint":
            hints.append(value)
        elif key == "expect-message":
            messages.append(value)
        elif key == "config":
            config = path.parent / value
        elif key == "xfail":
            xfail = value
    return Expectation(frozenset(diags), tuple(hints), tuple(messages), config, xfail)


def actual(diags: list[Diagnostic]) -> set[tuple[str, str, int, int]]:
    return {(str(Path(d.span.file).resolve()), d.code, d.span.line, d.span.column) for d in diags}


def _param(path: Path) -> Any:
    exp = read_expectation(path)
    marks = [pytest.mark.xfail(reason=exp.xfail, strict=True)] if exp.xfail else []
    return pytest.param(path, id=path.name, marks=marks)


def assert_severities(diags: list[Diagnostic]) -> None:
    for d in diags:
        want = Severity.WARNING if d.code in WARNING_CODES else Severity.ERROR
        assert d.severity is want, f"{d.code} at {d.span} is {d.severity}, expected {want}"


def assert_texts(diags: list[Diagnostic], exp: Expectation) -> None:
    for hint in exp.hints:
        assert any(d.hint and hint in d.hint for d in diags), (hint, [d.hint for d in diags])
    for text in exp.messages:
        assert any(text in d.message for d in diags), (text, [d.message for d in diags])


# --- the table ------------------------------------------------------------------


@pytest.mark.parametrize("path", [_param(p) for p in BAD])
def test_bad_fixture(path: Path) -> None:
    exp = read_expectation(path)
    assert exp.diags, f"{path.name} declares no '# expect:' line"
    config = load_config(exp.config) if exp.config else None
    diags = check_paths([path], config=config).diagnostics
    assert actual(diags) == exp.diags
    assert_severities(diags)
    assert_texts(diags, exp)


@pytest.mark.parametrize("case", CROSS, ids=[p.name for p in CROSS])
def test_cross_file_fixture(case: Path) -> None:
    """A directory is one rule set: duplicates and shadowing across its files."""
    expected: set[tuple[str, str, int, int]] = set()
    exps = [read_expectation(f) for f in sorted(case.glob("*.yaml"))]
    for exp in exps:
        expected |= exp.diags
    assert expected, f"{case.name} declares nothing"
    diags = check_paths([case]).diagnostics
    assert actual(diags) == expected
    assert_severities(diags)
    for exp in exps:
        assert_texts(diags, exp)


def test_fixture_table_is_broad() -> None:
    assert len(BAD) >= 45
    codes = {code for p in BAD for _, code, _, _ in read_expectation(p).diags}
    codes |= {
        code for c in CROSS for f in c.glob("*.yaml") for _, code, _, _ in read_expectation(f).diags
    }
    required = {
        "yaml-syntax",
        "yaml-tab",
        "yaml-alias",
        "yaml-merge-key",
        "duplicate-key",
        "not-utf8",
        "empty-file",
        "unknown-file-kind",
        "unknown-key",
        "missing-key",
        "wrong-type",
        "bad-value",
        "bad-version",
        "bad-duration",
        "bad-rank",
        "bad-id",
        "probability-range",
        "empty-value",
        "duplicate-id",
        "bad-regex",
        "template-syntax",
        "template-unknown-name",
        "template-unsafe",
        "template-unknown-filter",
        "template-include",
        "prompt-choice",
        "prompt-file-outside",
        "prompt-file-missing",
        "prompt-file-type",
        "unknown-chain",
        "rank-range",
        "duration-range",
        "shadowed",
        "duplicate-persona",
        "duplicate-ranks",
        "duplicate-limits",
        "unknown-model",
        "missing-path",
        "unknown-rule",
    }
    assert required <= codes, f"no fixture for {sorted(required - codes)}"


@pytest.mark.parametrize("path", GOOD, ids=[p.name for p in GOOD])
def test_good_fixture_alone(path: Path) -> None:
    assert check_paths([path]).diagnostics == []


def test_good_fixtures_as_one_rule_set() -> None:
    checked = check_paths([FIXTURES / "good"])
    assert checked.diagnostics == []
    assert len(checked.rule_files) == 3 and len(checked.configs) == 1 and len(checked.tests) == 1


def test_repo_rules_and_example_config_validate_clean() -> None:
    checked = check_paths([ROOT / "rules", ROOT / "kryten-rules.example.yaml"])
    assert checked.diagnostics == []
    assert checked.rule_files and checked.configs


def test_repo_rules_against_example_config() -> None:
    config = load_config(ROOT / "kryten-rules.example.yaml")
    assert check_paths([ROOT / "rules"], config=config).diagnostics == []


def test_regex_diagnostics_carry_re2_reason() -> None:
    reasons = {
        "regex_lookahead.bad.yaml": "(?=",
        "regex_lookbehind.bad.yaml": "(?<",
        "regex_backref.bad.yaml": "\\1",
    }
    for name, needle in reasons.items():
        [d] = check_paths([FIXTURES / "bad" / name]).diagnostics
        assert d.code == "bad-regex"
        assert "RE2 rejects" in d.message and needle in d.message.split(": ", 1)[1]
        assert d.hint and "look-around or back-references" in d.hint


def test_prompt_file_syntax_points_into_template() -> None:
    [d] = check_paths([FIXTURES / "bad" / "prompt_file_syntax.bad.yaml"]).diagnostics
    assert Path(d.span.file).resolve() == FIXTURES / "prompts" / "broken.j2"
    assert (d.code, d.span.line) == ("template-syntax", 3)
    assert "film-question" in d.message


def test_columns_follow_an_edited_file(tmp_path: Path) -> None:
    """A long-running process (reload) re-checks a file after the moderator edits it."""
    f = tmp_path / "rules" / "chat.yaml"
    f.parent.mkdir()
    f.write_text('kryten_rules: 1\nrules:\n  - id: a\n    reply: "{{ nope }}"\n')
    [d] = check_paths([f]).diagnostics
    assert (d.span.line, d.span.column) == (4, 16)
    f.write_text('kryten_rules: 1\nrules:\n  - id: a\n    reply: "Hello there, {{ nope }}"\n')
    [d] = check_paths([f]).diagnostics
    assert (d.span.line, d.span.column) == (4, 29)


# --- the CLI ----------------------------------------------------------------------


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def bad(name: str) -> str:
    return str(FIXTURES / "bad" / f"{name}.bad.yaml")


def test_text_format_shows_location_source_caret_hint_and_summary() -> None:
    path = bad("misspelled_cooldown")
    res = invoke("validate", path)
    assert res.exit_code == 1
    lines = res.output.splitlines()
    assert lines[0] == f"{path}:9:5: error[unknown-key]: unknown key 'cooldwn' in rule 'kung-fu'"
    assert lines[1] == "     9 |     cooldwn: {rule: 3m}"
    assert lines[2] == "       |     ^"
    assert lines[3] == "       = hint: did you mean 'cooldown'?"
    assert lines[-1] == "1 error(s), 0 warning(s) in 1 file(s)"


def test_text_format_caret_under_column() -> None:
    res = invoke("validate", bad("regex_lookahead"))
    lines = res.output.splitlines()
    src = next(i for i, line in enumerate(lines) if line.startswith("     8 | "))
    caret = lines[src + 1]
    assert caret.index("^") - len("       | ") == 20  # column 21
    assert lines[src][len("     8 | ") + 20] == "'"  # the pattern's opening quote


def test_text_format_warning_and_clean_summary() -> None:
    res = invoke("validate", bad("shadowed"))
    assert res.exit_code == 0
    assert ":12:9: warning[shadowed]: rule 'mention-horror' can never fire" in res.output
    assert res.output.splitlines()[-1] == "0 error(s), 1 warning(s) in 1 file(s)"
    res = invoke("validate", str(FIXTURES / "good"))
    assert res.exit_code == 0
    assert res.output.strip() == "ok: 5 file(s), 9 rule(s), no problems"


def test_json_format() -> None:
    path = bad("misspelled_cooldown")
    res = invoke("validate", "--format", "json", path)
    assert res.exit_code == 1
    data = json.loads(res.output)
    assert isinstance(data, list) and len(data) == 1
    keys = {"file", "line", "column", "severity", "code", "message", "hint"}
    assert all(set(item) == keys for item in data)
    assert data[0] == {
        "file": path,
        "line": 9,
        "column": 5,
        "severity": "error",
        "code": "unknown-key",
        "message": "unknown key 'cooldwn' in rule 'kung-fu'",
        "hint": "did you mean 'cooldown'?",
    }
    res = invoke("validate", "--format", "json", str(FIXTURES / "good"))
    assert (res.exit_code, json.loads(res.output)) == (0, [])


def test_json_format_null_hint_and_warning() -> None:
    res = invoke("validate", "--format", "json", bad("id_uppercase"), bad("shadowed"))
    data = json.loads(res.output)
    assert res.exit_code == 1
    by_code = {d["code"]: d for d in data}
    assert by_code["bad-id"]["hint"] is None
    assert by_code["shadowed"]["severity"] == "warning"
    assert [d["file"] for d in data] == sorted(d["file"] for d in data)


def test_github_format() -> None:
    path = bad("misspelled_cooldown")
    res = invoke("validate", "--format", "github", path, bad("shadowed"))
    assert res.exit_code == 1
    lines = res.output.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"::error file={path},line=9,col=5,title=unknown-key::")
    assert lines[0].endswith(
        "[unknown-key] unknown key 'cooldwn' in rule 'kung-fu' (hint: did you mean 'cooldown'?)"
    )
    assert re.match(r"::warning file=[^,]+,line=12,col=9,title=shadowed::\[shadowed\] ", lines[1])
    res = invoke("validate", "--format", "github", str(FIXTURES / "good"))
    assert (res.exit_code, res.output) == (0, "")


@pytest.mark.parametrize(
    ("args", "code"),
    [
        pytest.param(["validate", "rules"], 0, id="clean"),
        pytest.param(["validate", bad("shadowed")], 0, id="warnings"),
        pytest.param(["validate", "--strict", bad("shadowed")], 1, id="strict-warnings"),
        pytest.param(["validate", "--strict", "rules"], 0, id="strict-clean"),
        pytest.param(["validate", bad("probability_high")], 1, id="errors"),
        pytest.param(["validate", "no/such/rules"], 2, id="missing-path"),
        pytest.param(["validate", "rules", "no/such.yaml"], 2, id="one-missing-path"),
        pytest.param(["validate", "--format", "xml", "rules"], 2, id="bad-format"),
        pytest.param(["validate", "--frobnicate", "rules"], 2, id="unknown-option"),
        pytest.param(["validate"], 2, id="no-paths"),
        pytest.param(["validate", "--config", "no/such.yaml", "rules"], 2, id="missing-config"),
        pytest.param(
            ["validate", "--config", bad("config_unknown_model"), "rules"], 2, id="bad-config"
        ),
        pytest.param(
            ["validate", "--config", str(FIXTURES / "configs" / "chains.yaml"), bad("chain_typo")],
            1,
            id="unknown-chain",
        ),
    ],
)
def test_exit_codes(args: list[str], code: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == code, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_missing_path_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    res = CliRunner().invoke(main, ["validate", "rules", "nope.yaml"])
    assert res.exit_code == 2
    assert "no such file or directory: nope.yaml" in res.output


def test_directory_reports_every_file_in_one_run(tmp_path: Path) -> None:
    names = [
        "duration_words",
        "rank_typo",
        "id_uppercase",
        "regex_lookahead",
        "template_user_nmae",
        "tab_indent",
        "version_2",
    ]
    rules = tmp_path / "rules"
    rules.mkdir()
    expected: set[tuple[str, str, int, int]] = set()
    for name in names:
        src = FIXTURES / "bad" / f"{name}.bad.yaml"
        dst = rules / f"{name}.yaml"
        shutil.copyfile(src, dst)
        for _, code, line, col in read_expectation(src).diags:
            expected.add((str(dst.resolve()), code, line, col))
    res = invoke("validate", "--format", "json", str(rules))
    assert res.exit_code == 1
    got = {
        (str(Path(d["file"]).resolve()), d["code"], d["line"], d["column"])
        for d in json.loads(res.output)
    }
    assert got == expected
    assert len({f for f, *_ in got}) == len(names)
    text = invoke("validate", str(rules)).output
    assert text.splitlines()[-1] == f"{len(names)} error(s), 0 warning(s) in {len(names)} file(s)"


def test_console_script_subprocess() -> None:
    assert SCRIPT.exists(), SCRIPT
    res = subprocess.run(
        [str(SCRIPT), "validate", "--format", "json", bad("on_chat_msg"), "rules"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 1, res.stderr
    [d] = json.loads(res.stdout)
    assert (d["code"], d["line"], d["column"]) == ("bad-value", 7, 9)
    assert d["hint"] == "did you mean 'chatmsg'?"
    res = subprocess.run(
        [str(SCRIPT), "validate", "rules", "kryten-rules.example.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith("ok: 5 file(s), 10 rule(s)")
    res = subprocess.run(
        [str(SCRIPT), "validate", "missing-dir"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 2 and "missing-dir" in res.stderr


# --- schema ------------------------------------------------------------------------


def _undescribed(node: Any, where: str = "#") -> list[str]:
    """Every property (and $defs entry) in a JSON Schema without a description."""
    out: list[str] = []
    if isinstance(node, dict):
        for group in ("properties", "$defs"):
            for name, sub in (node.get(group) or {}).items():
                if not (isinstance(sub, dict) and str(sub.get("description", "")).strip()):
                    out.append(f"{where}/{group}/{name}")
        for key, sub in node.items():
            out.extend(_undescribed(sub, f"{where}/{key}"))
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            out.extend(_undescribed(sub, f"{where}/{i}"))
    return out


@pytest.mark.parametrize("kind", ["rules", "config", "test"])
def test_schema_command_prints_described_draft_2020_12(kind: str) -> None:
    res = invoke("schema", kind)
    assert res.exit_code == 0
    doc = json.loads(res.output)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(doc)
    assert doc.get("description")
    assert _undescribed(doc) == []
    props = [n for n in _walk(doc) if isinstance(n, dict) and "properties" in n]
    assert props, "the schema has properties"
    # the editor schema in schemas/ is the same document
    assert doc == json.loads((ROOT / "schemas" / f"{kind}.schema.json").read_text("utf-8"))


def _walk(node: Any) -> list[Any]:
    out = [node]
    if isinstance(node, dict):
        for sub in node.values():
            out.extend(_walk(sub))
    elif isinstance(node, list):
        for sub in node:
            out.extend(_walk(sub))
    return out


def test_schema_default_kind_and_bad_kind() -> None:
    assert json.loads(invoke("schema").output)["title"] == "kryten-rules rule file"
    assert CliRunner().invoke(main, ["schema", "rulez"]).exit_code == 2


def test_schema_accepts_the_good_fixtures() -> None:
    """The printed schema and the checker agree on valid files (keys as YAML 1.2 reads them)."""
    from kryten_rules.ruleformat.yamlload import load_file

    kinds = {"kryten_rules": "rules", "kryten_rules_config": "config", "kryten_rules_test": "test"}
    for path in GOOD:
        root = load_file(path).root
        assert root is not None
        kind = next(k for key, k in kinds.items() if key in root.value)
        schema = json.loads(invoke("schema", kind).output)
        errors = list(Draft202012Validator(schema).iter_errors(root.plain()))
        assert errors == [], (path.name, [e.message for e in errors])


# --- no runtime, no network -----------------------------------------------------

_PROBE = r"""
import json, sys
events = []
def hook(event, args):
    if event.startswith("socket.") and event != "socket.gethostname":
        events.append(event)
sys.addaudithook(hook)
sys.argv = ["kryten-rules", "validate", *sys.argv[1:]]
from kryten_rules.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in sys.modules
               if m.split(".")[0] in ("litellm", "nats", "openai", "httpx", "aiohttp"))
print(json.dumps({"code": code, "heavy": heavy, "sockets": events}))
"""


def test_validate_imports_no_runtime_and_opens_no_socket() -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            _PROBE,
            "rules",
            "kryten-rules.example.yaml",
            str(FIXTURES / "good"),
            bad("template_user_nmae"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = json.loads(res.stdout.splitlines()[-1])
    assert report == {"code": 1, "heavy": [], "sockets": []}, res.stderr


def test_validate_importtime_log_has_no_litellm_or_nats() -> None:
    res = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            str(SCRIPT),
            "validate",
            "rules",
            "kryten-rules.example.yaml",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert res.returncode == 0, res.stdout + res.stderr
    modules = [
        line.rsplit("|", 1)[1].strip()
        for line in res.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    ]
    assert "kryten_rules.cli" in modules and "kryten_rules.ruleformat.checks" in modules
    heavy = [m for m in modules if m.split(".")[0] in ("litellm", "nats")]
    assert heavy == []


# --- resource limits -------------------------------------------------------------


def _run_check_with_timeout(path: Path, seconds: float) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from kryten_rules.compile.load import check_paths; "
        "c = check_paths([sys.argv[1]]); print(len(c.diagnostics))"
    )
    try:
        return subprocess.run(
            [sys.executable, "-c", code, str(path)],
            capture_output=True,
            text=True,
            timeout=seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"check_paths did not finish within {seconds}s")


def test_alias_bomb_is_bounded(tmp_path: Path) -> None:
    lines = ["kryten_rules: 1", 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 8):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    f = tmp_path / "bomb.yaml"
    f.write_text("\n".join(lines) + "\n")
    assert f.stat().st_size < 1000
    res = _run_check_with_timeout(f, 4)
    assert res.returncode == 0, res.stderr


def test_recursive_alias_is_bounded(tmp_path: Path) -> None:
    f = tmp_path / "loop.yaml"
    f.write_text("kryten_rules: 1\nrules: &a [*a, *a]\n")
    res = _run_check_with_timeout(f, 4)
    assert res.returncode == 0, res.stderr


def test_many_rules_are_checked_in_bounded_time(tmp_path: Path) -> None:
    f = tmp_path / "rules" / "many.yaml"
    f.parent.mkdir()
    rule = (
        '  - id: rule-{i}\n    match: {{any: [word{i}]}}\n    reply: "{{{{ user.name }}}}: {i}"\n'
    )
    f.write_text("kryten_rules: 1\nrules:\n" + "".join(rule.format(i=i) for i in range(2500)))
    # Ungated rules are the worst case of the shadowing check (every pair is a candidate).
    res = _run_check_with_timeout(f, 5)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("name", ["x" * 5000, "a/" + "b" * 300 + "/c.yaml"])
def test_test_file_path_the_os_cannot_look_up_is_missing(tmp_path: Path, name: str) -> None:
    """A rule-test file naming an impossibly long path gets a diagnostic, not an OSError."""
    f = tmp_path / "long.test.yaml"
    f.write_text(
        f"kryten_rules_test: 1\nrules: {name}\nconfig: {name}\ncases: []\n", encoding="utf-8"
    )
    diags = check_paths([f]).diagnostics
    assert [(d.code, d.span.line) for d in diags if d.code == "missing-path"] == [
        ("missing-path", 2),
        ("missing-path", 3),
    ]


# A rule's own `cooldown` merges key by key with its file's `defaults` (docs/rules.md
# "defaults"): `first` keeps the default rule cooldown of 1m beside its own user
# cooldown, so it lets `second` through while that runs. The shadowed check once
# replaced the whole `cooldown` key instead and called `second` unreachable.
_MERGED_DEFAULTS = """\
kryten_rules: 1

defaults:
  cooldown: {rule: 1m}

rules:
  - id: first
    priority: 10
    match: {any: [hello]}
    cooldown: {user: 9s}
    reply: "hi"

  - id: second
    match: {any: [hello]}
    reply: "hello again"
"""


def test_shadowed_reads_defaults_merged_key_by_key_as_the_engine_does(tmp_path: Path) -> None:
    from kryten_rules import ChatEvent, VirtualClock, load_ruleset
    from kryten_rules.engine.evaluate import Engine

    path = tmp_path / "rules" / "merged.yaml"
    path.parent.mkdir()
    path.write_text(_MERGED_DEFAULTS)
    res = invoke("validate", "--strict", str(path))
    assert "shadowed" not in res.output
    assert res.exit_code == 0
    engine = Engine(load_ruleset(path), clock=VirtualClock(0.0), seed=0)
    fired = [
        engine.evaluate(ChatEvent(kind="chatmsg", user="ann", text="hello", at=t)).fired
        for t in (0.0, 9.0)
    ]
    assert fired == ["first", "second"]
