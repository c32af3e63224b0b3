"""The default persona the package carries, and ``kryten-rules init``.

``kryten_rules/data/`` is the packaged copy of the repository's ``rules/``,
``prompts/``, ``kryten-rules.example.yaml`` and ``tests/rules/``, laid out as
they are in the repository, so relative paths inside them (``prompt_file:
../prompts/mention.j2``, the rule test's ``rules: ../../rules``) mean the same
thing in both places. The repository's files are the source; a test fails
when the packaged copy differs from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent
DATA = PACKAGE / "data"
SCHEMAS = PACKAGE / "schemas"
EXAMPLE_CONFIG = DATA / "kryten-rules.example.yaml"
CONFIG_NAME = "kryten-rules.yaml"
# The project files the repository holds; the packaged copies must equal them.
PERSONA_FILES = ("kryten-rules.example.yaml", "rules", "prompts", "tests/rules")


def packaged_files() -> list[Path]:
    """The packaged persona's files, relative to :data:`DATA` (not the CI example)."""
    out: list[Path] = []
    for name in PERSONA_FILES:
        p = DATA / name
        if p.is_file():
            out.append(Path(name))
        else:
            out += sorted(f.relative_to(DATA) for f in p.rglob("*") if f.is_file())
    return [p for p in out if "__pycache__" not in p.parts]


@dataclass(slots=True)
class Planned:
    target: Path  # relative to the project directory
    content: bytes


def plan_project() -> list[Planned]:
    """What ``init`` writes: the service config, rules, prompts, a rule test, CI, schemas."""
    plan: list[Planned] = []
    for rel in packaged_files():
        content = (DATA / rel).read_bytes()
        target = rel
        if rel == Path("kryten-rules.example.yaml"):
            target = Path(CONFIG_NAME)
        elif rel.parts[:2] == ("tests", "rules"):
            old = b"config: ../../kryten-rules.example.yaml"
            if old not in content:  # pragma: no cover - guarded by test_project
                raise RuntimeError(f"{rel}: the config line to rewrite is gone")
            content = content.replace(old, f"config: ../../{CONFIG_NAME}".encode())
        plan.append(Planned(target, content))
    plan.append(
        Planned(Path(".github/workflows/rules.yml"), (DATA / "rules-workflow.yml").read_bytes())
    )
    # The editor schemas the files' `yaml-language-server` comments point at.
    for schema in sorted(SCHEMAS.glob("*.schema.json")):
        plan.append(Planned(Path("schemas") / schema.name, schema.read_bytes()))
    return plan


def existing(directory: Path, plan: list[Planned]) -> list[Path]:
    """The planned files that are already there (``init`` will not overwrite them)."""
    return [p.target for p in plan if (directory / p.target).exists()]


def write_project(directory: Path, plan: list[Planned]) -> list[Path]:
    """Write every planned file under ``directory``; returns what was written."""
    written = []
    for p in plan:
        path = directory / p.target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(p.content)
        written.append(p.target)
    return written
