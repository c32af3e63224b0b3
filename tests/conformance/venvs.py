"""Cached virtualenvs that hold one pinned Kryten package each, for conformance tests.

kryten-robot and kryten-py both install a top-level ``kryten`` package, and
kryten-shell pins a kryten-py older than ours: each gets a virtualenv of its
own under ``.cache/`` at the repo root, created on first use and reused while
it holds the pinned version. A venv is built under a temporary name and renamed
into place, so an interrupted install never leaves a cache that looks valid.

Only when pip cannot install (offline) does a test skip; with ``CI`` set that
is a failure, so CI never passes without having checked the real packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"


def python_of(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def installed(python: Path, dist: str) -> str | None:
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"conformance must run in CI: {reason}")
    pytest.skip(reason)


def pinned_python(name: str, dist: str, version: str) -> Path:
    """The python of ``.cache/{name}`` holding ``dist==version``, built if needed."""
    venv = CACHE / name
    if installed(python_of(venv), dist) == version:
        return python_of(venv)
    tmp = venv.with_name(f"{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(tmp)], check=True, timeout=300)
    install = subprocess.run(
        [
            str(python_of(tmp)),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            f"{dist}=={version}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if install.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = (install.stderr or install.stdout).strip().splitlines()[-3:]
        unavailable(f"pip could not install {dist}=={version}: {' '.join(tail)}")
    if installed(python_of(venv), dist) == version:  # a parallel run finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return python_of(venv)
    shutil.rmtree(venv, ignore_errors=True)
    try:
        os.replace(tmp, venv)
    except OSError:  # another test process won the race; use its venv
        shutil.rmtree(tmp, ignore_errors=True)
    if installed(python_of(venv), dist) != version:
        pytest.fail(f"{venv} does not hold {dist}=={version}")
    return python_of(venv)
