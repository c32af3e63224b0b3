"""The documentation in ``docs/`` is complete and cannot rot.

* Every key of every JSON Schema, every diagnostic code the package can emit,
  every reason code of the engine and every Prometheus metric of the service
  is documented: it appears as a code span in the *first cell of a table row*
  or in a *heading* of its reference page (a mention in prose does not count).
  Documented codes and metrics that no longer exist fail too.
* Every ``yaml`` block in the docs and the README is a whole kryten-rules file
  (rule file, service config or rule test) that loads with no diagnostic at
  all, and a rule test block also passes.
* Links between the documents resolve (files and ``#anchors``), and nothing in
  the repository points outside it.

Diagnostic codes are loose strings across the modules, so they are collected
from the source: the first argument of every ``error(...)``, ``warning(...)``
and ``TemplateProblem(...)`` call. A first argument the collector cannot
resolve to string literals fails the test, so a new way of passing codes
cannot slip past it.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

import kryten_rules
from kryten_rules.codes import Code
from kryten_rules.compile.load import check_paths
from kryten_rules.diagnostics import Span, error
from kryten_rules.service.metrics import Metrics
from kryten_rules.tools.ruletests import run_files
from kryten_rules.trace import Reason

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGE = Path(kryten_rules.__file__).resolve().parent
SCHEMAS = PACKAGE / "schemas"
# the reference page of each schema's keys
SCHEMA_DOCS = {
    "rules.schema.json": "rules.md",
    "test.schema.json": "rules.md",
    "config.schema.json": "config.md",
}
REFERENCE_PAGES = ("rules.md", "config.md", "operator.md", "metrics.md", "cookbook.md",
                   "diagnostics.md")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
CODE_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
# TemplateProblem and ExpandProblem (envexpand) carry a code that error(p.code) reports
DIAGNOSTIC_CALLS = {"error", "warning", "TemplateProblem", "ExpandProblem"}


# --- reading the docs ------------------------------------------------------------


def _without_fences(text: str) -> Iterator[str]:
    """The lines of a Markdown text outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def key_spans(page: str) -> set[str]:
    """Code spans in the first cell of table rows and in headings of one page."""
    found: set[str] = set()
    for line in _without_fences((DOCS / page).read_text(encoding="utf-8")):
        stripped = line.strip()
        if stripped.startswith("#"):
            found.update(CODE_SPAN.findall(stripped))
        elif stripped.startswith("|") and not re.fullmatch(r"[|\s:-]+", stripped):
            first_cell = stripped.strip("|").split("|")[0]
            found.update(CODE_SPAN.findall(first_cell))
    return found


def key_names(page: str) -> set[str]:
    """The key each documented path ends in: `ranks[].min` and `when.rank.min` give `min`."""
    return {span.replace("[]", "").rsplit(".", 1)[-1] for span in key_spans(page)}


# --- what must be documented -----------------------------------------------------


def schema_keys(schema: object) -> set[str]:
    """Every property name anywhere in a JSON Schema (``$defs`` included)."""
    keys: set[str] = set()
    if isinstance(schema, dict):
        props = schema.get("properties")
        if isinstance(props, dict):
            keys.update(props)
        for value in schema.values():
            keys |= schema_keys(value)
    elif isinstance(schema, list):
        for value in schema:
            keys |= schema_keys(value)
    return keys


def _call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    # diagnostics.error(...), but not log.error(...) / logger.warning(...)
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == "diagnostics"
    ):
        return func.attr
    return None


def _code_argument(call: ast.Call) -> ast.expr | None:
    if call.args:
        return call.args[0]
    return next((k.value for k in call.keywords if k.arg == "code"), None)


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _enclosing_function(
    node: ast.AST, parents: dict[ast.AST, ast.AST]
) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return node
    return None


def _resolve(
    arg: ast.expr, call: ast.Call, tree: ast.Module, parents: dict[ast.AST, ast.AST]
) -> set[str] | None:
    """The string literals a code argument can be; None when it cannot be told."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return {arg.value}
    if isinstance(arg, ast.Attribute) and getattr(arg.value, "id", None) == "Code":
        return {Code[arg.attr].value}
    if isinstance(arg, ast.Attribute) and arg.attr == "code":
        # `error(p.code, ...)` re-raises a TemplateProblem's code: those are collected
        # from the TemplateProblem(...) calls themselves.
        return set()
    if not isinstance(arg, ast.Name):
        return None
    func = _enclosing_function(call, parents)
    if func is None:
        return None
    params = [a.arg for a in func.args.posonlyargs + func.args.args]
    if arg.id in params or arg.id in [a.arg for a in func.args.kwonlyargs]:
        # a parameter: every call of this function in the module passes a literal
        position = params.index(arg.id) if arg.id in params else None
        values: set[str] = set()
        calls = [
            c
            for c in ast.walk(tree)
            if isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id == func.name
        ]
        if not calls:
            return None
        for c in calls:
            given = next((k.value for k in c.keywords if k.arg == arg.id), None)
            if given is None and position is not None and position < len(c.args):
                given = c.args[position]
            if not (isinstance(given, ast.Constant) and isinstance(given.value, str)):
                return None
            values.add(given.value)
        return values
    # a local variable: every value assigned to it in the function is a literal
    values = set()
    for node in ast.walk(func):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == arg.id for t in node.targets
        ):
            if not (isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
                return None
            values.add(node.value.value)
    return values or None


def diagnostic_codes() -> dict[str, str]:
    """Every diagnostic code the package can emit -> where (file:line) it is first made."""
    codes: dict[str, str] = {}
    unresolved: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        parents = _parents(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or _call_name(node.func) not in DIAGNOSTIC_CALLS:
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            arg = _code_argument(node)
            values = _resolve(arg, node, tree, parents) if arg is not None else None
            if values is None:
                unresolved.append(where)
                continue
            for code in values:
                assert CODE_RE.match(code), f"{where}: {code!r} is not a kebab-case code"
                codes.setdefault(code, where)
    assert not unresolved, (
        "cannot tell which diagnostic codes these calls make; pass a string literal "
        f"(or teach tests/test_docs.py the new way): {unresolved}"
    )
    return codes


def reason_codes() -> set[str]:
    """Every reason code the engine can put in a trace: the Reason registry."""
    return {r.value for r in Reason}


def test_the_engine_makes_no_reason_code_outside_the_registry() -> None:
    reason_like = re.compile(r"^(?:condition|cooldown|limit)\.[a-z_.]+$")
    fixed = {"disabled", "no_match", "vetoed", "probability", "state_full"}
    literals = {
        n.value
        for path in sorted((PACKAGE / "engine").glob("*.py"))
        for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }
    made = {s for s in literals if reason_like.match(s) or s in fixed}
    assert made <= reason_codes(), f"add to kryten_rules.trace.Reason: {made - reason_codes()}"


def metric_names() -> set[str]:
    """The names the service exports, as they appear on /metrics (counters end in _total)."""
    names = set()
    for family in Metrics().registry.collect():
        names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


# --- the coverage tests ------------------------------------------------------------


def test_the_reference_pages_exist() -> None:
    missing = [p for p in REFERENCE_PAGES if not (DOCS / p).is_file()]
    assert not missing


def test_the_collectors_find_what_is_known() -> None:
    """Guards the guards: a collector that finds nothing would pass every check."""
    codes = diagnostic_codes()
    for known in ("unknown-key", "yaml-tab", "duplicate-persona", "template-unknown-name",
                  "shadowed", "unknown-model", "unknown-rule"):
        assert known in codes
    assert {"cooldown.user_rule", "limit.global.per_day", "condition.media"} <= reason_codes()
    assert "kryten_rules_events_total" in metric_names()
    assert {"match", "title_any", "max_in_flight", "prompt_contains"} <= set().union(
        *(schema_keys(json.loads((SCHEMAS / s).read_text())) for s in SCHEMA_DOCS)
    )


@pytest.mark.parametrize("schema_file", sorted(SCHEMA_DOCS))
def test_every_schema_key_is_documented(schema_file: str) -> None:
    keys = schema_keys(json.loads((SCHEMAS / schema_file).read_text(encoding="utf-8")))
    page = SCHEMA_DOCS[schema_file]
    missing = sorted(keys - key_names(page))
    assert not missing, f"keys of {schema_file} not in a table row or heading of docs/{page}"


def test_every_diagnostic_code_the_package_makes_is_registered() -> None:
    made = diagnostic_codes()
    unregistered = {c: where for c, where in sorted(made.items()) if c not in set(Code)}
    assert not unregistered, f"add these to kryten_rules/codes.py: {unregistered}"
    unused = sorted(set(Code) - set(made))
    assert not unused, f"registered in kryten_rules/codes.py but never made: {unused}"


def test_the_diagnostics_table_is_the_registry() -> None:
    """docs/diagnostics.md has one row per member of Code, and nothing else."""
    page = (DOCS / "diagnostics.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", page, re.M)
    assert len(rows) == len(set(rows)), "a code has two rows in docs/diagnostics.md"
    registered = {c.value for c in Code}
    assert not registered - set(rows), (
        f"not in the table of docs/diagnostics.md: {sorted(registered - set(rows))}"
    )
    assert not set(rows) - registered, (
        f"docs/diagnostics.md documents unregistered codes: {sorted(set(rows) - registered)}"
    )


def test_an_unregistered_code_is_refused() -> None:
    with pytest.raises(ValueError):
        error("no-such-code", "x", Span("f.yaml"))
    assert error("bad-regex", "x", Span("f.yaml")).code is Code.BAD_REGEX


def test_every_reason_code_is_documented() -> None:
    missing = sorted(reason_codes() - key_spans("rules.md"))
    assert not missing, "reason codes not in a table row or heading of docs/rules.md"


def test_every_metric_is_documented() -> None:
    names = metric_names()
    documented = {s for s in key_spans("metrics.md") if s.startswith("kryten_rules_")}
    missing = sorted(names - documented)
    assert not missing, "metrics not in a table row or heading of docs/metrics.md"
    stale = sorted(documented - names)
    assert not stale, f"docs/metrics.md documents metrics the service does not export: {stale}"


# --- the examples --------------------------------------------------------------------


def yaml_blocks() -> list[tuple[str, str]]:
    """(where, text) of every ```yaml block in docs/*.md and README.md."""
    blocks = []
    for md in [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]:
        lines = md.read_text(encoding="utf-8").splitlines()
        start = None
        for i, line in enumerate(lines):
            fence = line.strip()
            if start is None and fence.startswith("```yaml"):
                start = i
            elif start is not None and fence == "```":
                where = f"{md.relative_to(ROOT)}:{start + 1}"
                blocks.append((where, "\n".join(lines[start + 1 : i]) + "\n"))
                start = None
    return blocks


def _kind(text: str) -> str | None:
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key = line.split(":", 1)[0].strip()
            return {"kryten_rules": "rules", "kryten_rules_config": "config",
                    "kryten_rules_test": "test"}.get(key)
    return None


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the repository's default project: rules/, prompts/, the example config."""
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    shutil.copy(ROOT / "kryten-rules.example.yaml", tmp_path / "kryten-rules.example.yaml")
    (tmp_path / "tests").mkdir()
    return tmp_path


def test_the_docs_have_examples() -> None:
    kinds = [_kind(text) for _, text in BLOCKS]
    assert kinds.count("rules") >= 15 and "config" in kinds and "test" in kinds


BLOCKS = yaml_blocks()


@pytest.mark.parametrize(("where", "text"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_every_yaml_example_loads_cleanly(where: str, text: str, project: Path) -> None:
    """Each block is a whole file that loads with no error and no warning."""
    from kryten_rules.compile.load import load_config

    kind = _kind(text)
    assert kind is not None, f"{where}: a yaml block must be a whole kryten-rules file"
    config = load_config(project / "kryten-rules.example.yaml")
    if kind == "rules":
        # alone, in a rules directory beside prompts/, checked against the example's chains
        (project / "example-rules").mkdir()
        path = project / "example-rules" / "example.yaml"
        path.write_text(text, encoding="utf-8")
        checked = check_paths([path], config=config)
        assert not checked.diagnostics, f"{where}: {[d.as_dict() for d in checked.diagnostics]}"
    elif kind == "config":
        path = project / "kryten-rules.yaml"
        path.write_text(text, encoding="utf-8")
        checked = check_paths([path])
        assert not checked.diagnostics, f"{where}: {[d.as_dict() for d in checked.diagnostics]}"
    else:
        path = project / "tests" / "example.test.yaml"
        path.write_text(text, encoding="utf-8")
        suite = run_files([path])
        assert not suite.diagnostics, f"{where}: {[d.as_dict() for d in suite.diagnostics]}"
        failed = {c.name: [f for e in c.events for f in e.failures]
                  for c in suite.cases if not c.passed}
        assert suite.cases and not failed, f"{where}: failing cases {failed}"


# --- links, and nothing outside the repository ----------------------------------------


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.strip().lstrip("#").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    return {
        _slug(line)
        for line in _without_fences(md.read_text(encoding="utf-8"))
        if line.startswith("#")
    }


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize(
    "md", [*sorted(DOCS.glob("*.md")), ROOT / "README.md", ROOT / "CHANGELOG.md"],
    ids=lambda p: p.name,
)
def test_links_resolve(md: Path) -> None:
    broken = []
    for line in _without_fences(md.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            file_part, _, anchor = target.partition("#")
            dest = (md.parent / file_part).resolve() if file_part else md
            outside = ROOT not in dest.parents and dest != ROOT
            missing = not dest.exists()
            bad_anchor = (
                not missing and bool(anchor) and dest.suffix == ".md"
                and anchor not in _anchors(dest)
            )
            if outside or missing or bad_anchor:
                broken.append(target)
    assert not broken, f"{md.name}: broken links {broken}"


# the design notes and the language contract live outside the repository: docs/ is their home
OUTSIDE = re.compile(r"\.\./shared|\bshared/|\b(?:RULES|DESIGN|STYLE)\.md\b|/work/")


def _repository_files() -> list[Path]:
    """The repository's own files: git's (tracked or not ignored), else a walk without
    hidden directories (caches, virtualenvs) and build output."""
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout
        return [ROOT / line for line in out.splitlines() if line]
    except (OSError, subprocess.SubprocessError):
        return [
            p for p in ROOT.rglob("*")
            if not any(part.startswith(".") or part.endswith(".egg-info")
                       or part in ("build", "dist", "__pycache__")
                       for part in p.relative_to(ROOT).parts)
        ]


def test_nothing_points_outside_the_repository() -> None:
    offenders = []
    for path in _repository_files():
        if not path.is_file() or path == Path(__file__).resolve():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, offenders


def test_the_package_metadata_links_the_docs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    urls = project["urls"]
    assert urls["Documentation"].endswith("/docs")
    assert "Changelog" in urls
    manifest = (ROOT / "MANIFEST.in").read_text(encoding="utf-8")
    for shipped in ("docs", "deploy", "CHANGELOG.md", "LICENSE"):
        assert shipped in manifest
