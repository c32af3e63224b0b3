"""The package layout shows the pipeline, and the tree enforces it.

Each stage imports only from the stages before it (and the foundation
modules every stage shares), so data flows one way: rule files -> rule specs
-> RuleSet -> Decision -> reply text -> chat messages. A module-level import
cycle is a failure too, wherever it is. See docs/architecture.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kryten_rules"

# Stage order: a module may import its own stage or an earlier one.
STAGES = [
    "foundation",
    "ruleformat",
    "compile",
    "engine",
    "intake",
    "dispatch",
    "emit",
    "tools",
    "service",
    "entry",
]
FOUNDATION = {
    "clock", "events", "units", "diagnostics", "trace", "redact", "quietlog",
    "gcpause", "config", "wire", "senders", "version", "codes", "errors",
    "natsauth",  # NATS credentials and TLS: the service and tools.record connect with them
}  # fmt: skip
ENTRY = {"cli", "__init__", "__main__"}
MAX_LINES = 400

def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _stage(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "entry"
    top = parts[1]
    if top in FOUNDATION:
        return "foundation"
    if top in ENTRY:
        return "entry"
    if top == "intake":
        return "intake"
    if top in STAGES:
        return top
    raise AssertionError(f"{module}: not in any stage; add it to tests/test_layout.py")


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, module: str, *, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:
            continue  # `if TYPE_CHECKING:` blocks import nothing at run time
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("kryten_rules"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: -(node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("kryten_rules"):
                continue
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
    known = _modules()
    return {name for name in found if name in known}


def test_every_module_belongs_to_a_stage() -> None:
    for module in _modules():
        _stage(module)


@pytest.mark.parametrize("module", sorted(_modules()))
def test_a_stage_imports_only_from_earlier_stages(module: str) -> None:
    mine = STAGES.index(_stage(module))
    for target in _imports(_modules()[module], module, top_level_only=False):
        theirs = STAGES.index(_stage(target))
        assert theirs <= mine, f"{module} ({STAGES[mine]}) imports {target} ({STAGES[theirs]})"


def test_no_module_level_import_cycles() -> None:
    modules = _modules()
    graph = {m: _imports(p, m, top_level_only=True) for m, p in modules.items()}
    # A package's __init__ is imported by its submodules; that is not a cycle.
    for m in graph:
        graph[m] = {t for t in graph[m] if t != m and not m.startswith(t + ".")}
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycle = [*path[path.index(node) :], node]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        for target in sorted(graph[node]):
            visit(target, [*path, node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])


def test_modules_stay_small_or_say_why() -> None:
    """A module past MAX_LINES says in its docstring why it is one module."""
    too_long = []
    for module, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines > MAX_LINES and "One module because" not in (
            ast.get_docstring(ast.parse(text)) or ""
        ):
            too_long.append(f"{module} ({lines} lines)")
    assert not too_long, "split these or say why in the docstring: " + ", ".join(too_long)


def test_the_tests_mirror_the_package() -> None:
    """A test folder is named for the package folder whose code it tests."""
    tests = Path(__file__).resolve().parent
    folders = {p.parent.name for p in tests.glob("*/__init__.py")}
    stages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert folders <= stages, f"test folders with no package folder: {sorted(folders - stages)}"
