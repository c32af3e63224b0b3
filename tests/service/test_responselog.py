"""The response log writes whole lines or nothing, even when the disk is full.

Two real ways for the kernel to cut a write short: a small tmpfs that fills up
(needs root to mount; skipped otherwise) and ``RLIMIT_FSIZE`` in a child
process (a file-size limit: the write that crosses it is short, the next one
fails with EFBIG). Either way every line left in the file must parse, and the
file must end with a newline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kryten_rules.service.responselog import ResponseLog


def _record(i: int) -> dict[str, object]:
    return {"n": i, "parts": ["x" * 700], "sent": True}


def _check_whole_lines(path: Path) -> list[dict[str, object]]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"partial last line: {data[-80:]!r}"
    return [json.loads(line) for line in data.splitlines()]


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, mounted for the test (root only)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_leaves_only_whole_lines(full_disk: Path) -> None:
    log = ResponseLog(full_disk / "responses.jsonl")
    log.open()
    results = [log.write(_record(i)) for i in range(200)]  # ~150 KiB into 64 KiB
    assert results[0] is True and results[-1] is False
    lines = _check_whole_lines(full_disk / "responses.jsonl")
    assert [r["n"] for r in lines] == [i for i, ok in enumerate(results) if ok]
    assert 10 < len(lines) < 200


def test_a_short_write_at_a_file_size_limit_is_taken_back(tmp_path: Path) -> None:
    path = tmp_path / "responses.jsonl"
    limit = 20_000 + 333  # not a multiple of the line length: one write is cut short
    child = f"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
from kryten_rules.service.responselog import ResponseLog
from tests.service.test_responselog import _record
log = ResponseLog({str(path)!r})
log.open()
print(sum(log.write(_record(i)) for i in range(100)))
"""
    proc = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr
    written = int(proc.stdout)
    lines = _check_whole_lines(path)
    assert len(lines) == written and 0 < written < 100
    assert path.stat().st_size <= limit
    assert "short write" in proc.stderr  # the cut line was noticed, logged and removed


def test_an_unwritable_log_is_an_error_at_open(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(OSError):
        ResponseLog(blocker / "logs" / "responses.jsonl").open()
    # writing without open() never raises: the bot goes on
    assert ResponseLog(blocker / f"{uuid.uuid4()}.jsonl").write({"x": 1}) is False
    assert not os.path.exists(blocker / "logs")
