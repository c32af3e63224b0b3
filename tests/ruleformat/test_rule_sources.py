"""Issue #9 items 10 and 12: what one load reads, and what it refuses to read.

Item 10: a file is read once per load, so the bytes checked are the bytes
compiled and hashed, even when the file changes while the load runs. The
"change while it runs" is a real rewrite of the file on disk, made the moment
the load opens the prompt file a second time (today's code did, twice).

Item 12: a rule file or directory under the rules tree that is a symlink to
somewhere else is refused with ``rule-file-outside``, and ``validate`` never
prints a line of what it points to.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kryten_rules.cli import main
from kryten_rules.compile.build import digest_of
from kryten_rules.compile.load import build_ruleset, check_paths

CHECKED = "{{ user.name }} said: {{ message }}\n"
UNCHECKED = "{{ user.name }} said: {{ message }} {{ not_a_known_name }}\n"

RULES = """\
kryten_rules: 1
rules:
  - id: greet
    match: {any: [hello]}
    prompt_file: ../prompts/greet.j2
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "prompts").mkdir()
    (tmp_path / "rules" / "main.yaml").write_text(RULES)
    (tmp_path / "prompts" / "greet.j2").write_text(CHECKED)
    return tmp_path


@pytest.fixture
def edit_on_second_open(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path, str], None]]:
    """Arrange for ``path`` to be rewritten with ``text`` when it is opened a second time.

    Both ways Python opens a file are watched (``io.open``, behind ``Path.read_*``,
    and ``os.open``), so the edit happens whichever way the loader reads.
    """
    watched: dict[str, list[Any]] = {}

    def note(target: Any) -> None:
        try:
            key = os.path.realpath(os.fspath(target))
        except TypeError:
            return  # a file descriptor
        entry = watched.get(key)
        if entry is None:
            return
        entry[0] += 1
        if entry[0] == 2:
            with real_io_open(key, "w", encoding="utf-8") as f:
                f.write(entry[1])

    real_io_open = io.open
    real_os_open = os.open

    def io_open(file: Any, *args: Any, **kw: Any) -> Any:
        note(file)
        return real_io_open(file, *args, **kw)

    def os_open(path: Any, *args: Any, **kw: Any) -> int:
        note(path)
        return real_os_open(path, *args, **kw)

    def arrange(path: Path, text: str) -> None:
        watched[os.path.realpath(path)] = [0, text]

    monkeypatch.setattr(io, "open", io_open)
    monkeypatch.setattr(os, "open", os_open)
    yield arrange


def test_a_prompt_file_edited_during_a_load_is_never_installed_unchecked(
    tree: Path, edit_on_second_open: Callable[[Path, str], None]
) -> None:
    prompt = tree / "prompts" / "greet.j2"
    rules = tree / "rules" / "main.yaml"
    # the unchecked version would fail validate: make sure of that first
    prompt.write_text(UNCHECKED)
    assert "template-unknown-name" in {d.code for d in check_paths([tree / "rules"]).diagnostics}
    prompt.write_text(CHECKED)

    edit_on_second_open(prompt, UNCHECKED)
    ruleset, diags = build_ruleset([tree / "rules"])

    assert ruleset is not None, diags
    [rule] = ruleset.rules
    assert rule.prompt is not None
    assert rule.prompt.source == CHECKED  # the bytes checked are the bytes compiled ...
    assert ruleset.digest == digest_of(  # ... and the bytes hashed
        {str(rules): RULES.encode(), str(prompt.resolve()): CHECKED.encode()}
    )
    # the disk did change under the load: the next load sees (and refuses) it
    assert prompt.read_text() == UNCHECKED
    again, diags = build_ruleset([tree / "rules"])
    assert again is None and "template-unknown-name" in {d.code for d in diags}


def test_every_file_is_read_once_per_load(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real_io_open, real_os_open = io.open, os.open

    def io_open(file: Any, *args: Any, **kw: Any) -> Any:
        if isinstance(file, str | os.PathLike):
            opened.append(os.path.realpath(file))
        return real_io_open(file, *args, **kw)

    def os_open(path: Any, *args: Any, **kw: Any) -> int:
        opened.append(os.path.realpath(path))
        return real_os_open(path, *args, **kw)

    monkeypatch.setattr(io, "open", io_open)
    monkeypatch.setattr(os, "open", os_open)
    ruleset, diags = build_ruleset([tree / "rules"])
    assert ruleset is not None, diags
    mine = [p for p in opened if p.startswith(str(tree.resolve()))]
    rule_file, prompt = tree / "rules" / "main.yaml", tree / "prompts" / "greet.j2"
    assert sorted(mine) == sorted({str(rule_file.resolve()), str(prompt.resolve())})
    assert ruleset.digest == digest_of(
        {
            str(tree / "rules" / "main.yaml"): RULES.encode(),
            str((tree / "prompts" / "greet.j2").resolve()): CHECKED.encode(),
        }
    )


# --- item 12: rule files that lead outside the rules tree ------------------------------

SECRET = "db_password: hunter2-do-not-print\nkryten_rules: 1\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the rule set, holding what must never be read or shown."""
    out = tmp_path / "elsewhere"
    out.mkdir()
    (out / "secrets.yaml").write_text(SECRET)
    (out / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    return out


def validate_output(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["validate", *args], catch_exceptions=False)
    return res.exit_code, res.output


@pytest.mark.parametrize("target", ["secrets.yaml", "passwd"])
def test_a_rule_file_symlinked_outside_the_tree_is_refused_unread(
    tree: Path, outside: Path, target: str
) -> None:
    link = tree / "rules" / "zz-linked.yaml"
    link.symlink_to(outside / target)

    checked = check_paths([tree / "rules"])
    refused = [d for d in checked.diagnostics if d.code == "rule-file-outside"]
    assert [d.span.file for d in refused] == [str(link)]
    assert str(outside / target) not in checked.raw and str(link) not in checked.raw
    ruleset, _ = build_ruleset([tree / "rules"])
    assert ruleset is None

    for fmt in ("text", "json", "github"):
        code, out = validate_output(str(tree / "rules"), "--format", fmt)
        assert code == 1
        assert "rule-file-outside" in out
        assert "hunter2" not in out and "root:x:0:0" not in out


def test_a_directory_symlinked_outside_the_tree_is_refused(tree: Path, outside: Path) -> None:
    (tree / "rules" / "more").symlink_to(outside, target_is_directory=True)
    diags = check_paths([tree / "rules"]).diagnostics
    assert [(d.code, d.span.file) for d in diags if d.is_error] == [
        ("rule-file-outside", str(tree / "rules" / "more"))
    ]
    code, out = validate_output(str(tree / "rules"))
    assert code == 1 and "hunter2" not in out


def test_a_rule_file_named_directly_through_an_outside_symlink_is_refused(
    tree: Path, outside: Path
) -> None:
    link = tree / "rules" / "linked.yaml"
    link.symlink_to(outside / "secrets.yaml")
    code, out = validate_output(str(link))
    assert code == 1 and "rule-file-outside" in out and "hunter2" not in out


def test_a_symlink_that_stays_inside_the_tree_still_loads(tree: Path) -> None:
    real = tree / "rules" / "shared" / "more.yaml"
    real.parent.mkdir()
    real.write_text(RULES.replace("id: greet", "id: greet-more"))
    (tree / "rules" / "alias.yaml").symlink_to(real)
    ruleset, diags = build_ruleset([tree / "rules"])
    assert ruleset is not None, diags
    assert sorted(r.id for r in ruleset.rules) == ["greet", "greet-more"]
