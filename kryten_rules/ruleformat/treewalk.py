"""Listing the files under a directory without recursion, to a bounded depth.

``Path.rglob`` recurses once per directory level, so a directory nested
1,200 levels deep under ``rules/`` raised ``RecursionError`` from ``validate``,
the service's start and every watcher poll. This walk keeps its own stack and
stops at :data:`MAX_DEPTH`, reporting where, so the caller can turn it into a
diagnostic. Like ``rglob``, it does not descend into symlinked directories.
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_DEPTH = 32  # directory levels below the root; rule trees are two or three deep


def files_under(root: Path, max_depth: int = MAX_DEPTH) -> tuple[list[Path], Path | None]:
    """Every non-directory entry below ``root``, and the first directory too deep to read.

    Unreadable directories are skipped, as ``rglob`` skips them, and so are
    hidden entries (a name starting with a dot), as linters skip them: a
    project's ``.github/`` workflows are YAML, not rules. The order is the file
    system's: callers sort.
    """
    files: list[Path] = []
    too_deep: Path | None = None
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):  # .git, .github, editors' files: never rules
                continue
            path = folder / entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if not is_dir:
                files.append(path)
            elif depth < max_depth:
                stack.append((path, depth + 1))
            elif too_deep is None:
                too_deep = path
    return files, too_deep


def short_path(path: Path, keep: int = 60) -> str:
    """``path`` for a message: its start and end when it is long."""
    text = str(path)
    return text if len(text) <= 2 * keep else f"{text[:keep]}…{text[-keep:]}"
