"""Every exception of the package is in one tree, and errors.py names each one."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import kryten_rules
from kryten_rules.errors import KrytenRulesError

PACKAGE = Path(kryten_rules.__file__).resolve().parent


def _exception_classes() -> list[tuple[str, str]]:
    """(module, class) for every class in the package that derives from an exception."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and node.bases:
                found.append((module, node.name))
    out = []
    for module, name in found:
        cls = getattr(importlib.import_module(module), name)
        if inspect.isclass(cls) and issubclass(cls, BaseException):
            out.append((module, name))
    return out


def test_every_exception_is_a_kryten_rules_error_and_documented() -> None:
    doc = inspect.getdoc(importlib.import_module("kryten_rules.errors")) or ""
    classes = _exception_classes()
    assert len(classes) > 10  # the collector finds them
    outside = [
        f"{m}.{n}"
        for m, n in classes
        if not issubclass(getattr(importlib.import_module(m), n), KrytenRulesError)
    ]
    assert not outside, f"not under KrytenRulesError: {outside}"
    undocumented = [f"{m}.{n}" for m, n in classes if n not in doc and n != "KrytenRulesError"]
    assert not undocumented, f"not in the tree of kryten_rules/errors.py: {undocumented}"


def test_the_built_in_bases_still_catch_what_they_caught() -> None:
    from kryten_rules.ruleformat.sources import SourceTooLarge
    from kryten_rules.wire import MalformedEvent

    assert issubclass(MalformedEvent, ValueError)
    assert issubclass(SourceTooLarge, OSError)
