"""Which discovered paths belong to a rules tree, and which only lead out of it.

A directory of rules is its own tree: a rule file, or a directory, under it
that is a symlink to somewhere else (``/etc/passwd``, ``/proc/self/environ``)
is refused like a prompt file outside the rule set is: never read, and never
quoted in a diagnostic. A symlink that resolves inside the tree is fine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from kryten_rules.diagnostics import Diagnostic, Span, error

YAML_SUFFIXES = (".yaml", ".yml")


def inside(path: Path, tree: Path) -> bool:
    """Whether ``path``, every symlink followed, lies in ``tree`` (a resolved directory)."""
    try:
        return path.resolve().is_relative_to(tree)
    except (OSError, RuntimeError):  # a symlink loop, a name the OS cannot look up
        return False


def leads_out(path: Path, tree: Path) -> bool:
    """A symlink to somewhere outside ``tree``.

    Discovery (``treewalk.files_under``) does not descend into symlinked
    directories, so an entry it lists can only lead out of the tree through a
    symlink of its own.
    """
    try:
        return path.is_symlink() and not inside(path, tree)
    except OSError:
        return True


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def outside_links(entries: Iterable[Path], tree: Path) -> list[Diagnostic]:
    """A ``rule-file-outside`` diagnostic for each YAML file or directory leading out.

    The diagnostic names the link, not its target, and is marked so that no
    line of the file is ever quoted.
    """
    out: list[Diagnostic] = []
    for entry in entries:
        if not leads_out(entry, tree):
            continue
        is_dir = _is_dir(entry)
        if not is_dir and entry.suffix not in YAML_SUFFIXES:
            continue  # not something discovery would read anyway
        kind = "directory" if is_dir else "rule file"
        d = error(
            "rule-file-outside",
            f"{str(entry)!r} links to a {kind} outside the rules directory {str(tree)!r}; "
            "it is not read",
            Span(str(entry)),
            "copy it into the rules directory, or link to something inside it",
        )
        out.append(replace(d, quote=False))
    return out
