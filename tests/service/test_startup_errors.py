"""Start-up problems are a message and exit 2, never a traceback and exit 1.

Each case runs the real ``kryten-rules`` console script, as an operator would,
against a real nats-server where the bot needs one: an unwritable response
log, numbers in the config that the schema lets through but no float can
hold, and a rule tree nested 1,200 directories deep (``Path.rglob`` recursed
once per level and raised ``RecursionError``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from kryten_rules.compile.load import check_paths, load_config
from kryten_rules.ruleformat.treewalk import MAX_DEPTH
from kryten_rules.service.bot import Bot
from kryten_rules.service.embedded import EmbeddedNats
from tests.nats_fixtures import KEY_ENV, KEY_VALUE, write_config

SCRIPT = str(Path(sys.executable).with_name("kryten-rules"))
DEEP = 1_200


@pytest.fixture(scope="module")
def nats_url() -> Iterator[str]:
    server = EmbeddedNats(jetstream=False).start()
    try:
        yield server.url
    finally:
        server.close()


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, KEY_ENV: KEY_VALUE},
    )


def _no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


def test_an_unwritable_response_log_is_a_message_and_exit_2(tmp_path: Path, nats_url: str) -> None:
    (tmp_path / "logs").write_text("a file where the log directory should be\n", encoding="utf-8")
    cfg = write_config(tmp_path, nats_url=nats_url, api_base="http://127.0.0.1:9/v1")
    proc = _run("run", "--config", str(cfg), cwd=tmp_path)
    _no_traceback(proc)
    assert proc.returncode == 2, proc.stderr
    assert "error: cannot write the response log" in proc.stderr
    assert "log.responses" in proc.stderr


BIG = "1" + "0" * 400
NUMBERS_CONFIG = """\
kryten_rules_config: 1
nats: {url: "nats://127.0.0.1:1"}
cytube: {channel: c, username: b}
rules: rules/
models: {m: {model: openai/x, mock_response: hi}}
"""


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        (f"reply_max_age: {BIG}\n", "bad-duration"),
        (f"reply_max_age: '{'9' * 400}d'\n", "bad-duration"),
        ("reply_max_age: .inf\n", "bad-number"),
        (f"history_slack: {BIG}\n", "bad-duration"),
        ("chains: {default: {models: [m], deadline: .nan}}\n", "bad-number"),
        ("models: {m: {model: openai/x, temperature: .nan}}\n", "bad-number"),
    ],
    ids=[
        "400-digit-seconds",
        "400-digit-days",
        "infinity",
        "400-digit-slack",
        "nan-deadline",
        "nan-temperature",
    ],
)
def test_a_bad_number_in_the_config_is_a_diagnostic_and_exit_2(
    tmp_path: Path, extra: str, code: str
) -> None:
    text = NUMBERS_CONFIG
    if extra.startswith("models:"):
        text = text.replace("models: {m: {model: openai/x, mock_response: hi}}\n", "")
    cfg = tmp_path / "kryten-rules.yaml"
    cfg.write_text(text + extra, encoding="utf-8")
    proc = _run("run", "--config", str(cfg), cwd=tmp_path)
    _no_traceback(proc)
    assert proc.returncode == 2, proc.stderr
    assert f"error[{code}]" in proc.stderr
    assert [d.code for d in check_paths([cfg]).diagnostics] == [code]


def _deep_tree(base: Path, levels: int) -> Path:
    """``base/d/d/.../d/deep.yaml``, made and later removed without recursion."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open("deep.yaml", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"kryten_rules: 1\nrules: []\n")
        os.close(leaf)
    finally:
        os.close(fd)
    return base


def _remove_deep_tree(base: Path, levels: int) -> None:
    fds = [os.open(base, os.O_RDONLY | os.O_DIRECTORY)]
    for _ in range(levels):
        fds.append(os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
    os.unlink("deep.yaml", dir_fd=fds[-1])
    for i in range(levels, 0, -1):
        os.close(fds[i])
        os.rmdir("d", dir_fd=fds[i - 1])
    os.close(fds[0])


@pytest.fixture
def deep_rules(tmp_path: Path) -> Iterator[Path]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "main.yaml").write_text(
        "kryten_rules: 1\nrules:\n  - id: ping\n    match: {any: [ping]}\n    reply: pong\n",
        encoding="utf-8",
    )
    _deep_tree(rules, DEEP)
    try:
        yield rules
    finally:
        _remove_deep_tree(rules, DEEP)


def test_a_deep_rule_tree_is_a_diagnostic_not_a_recursion_error(deep_rules: Path) -> None:
    proc = _run("validate", str(deep_rules), cwd=deep_rules.parent)
    _no_traceback(proc)
    assert proc.returncode == 1
    assert "error[too-deep]" in proc.stdout
    assert f"more than {MAX_DEPTH} levels" in proc.stdout
    assert len(proc.stdout) < 2_000  # the 2,400-character path is shortened


def test_a_deep_rule_tree_stops_the_service_with_exit_2(deep_rules: Path, nats_url: str) -> None:
    cfg = write_config(deep_rules.parent, nats_url=nats_url, api_base="http://127.0.0.1:9/v1")
    (deep_rules / "main.yaml").write_text(
        "kryten_rules: 1\nrules:\n  - id: ping\n    match: {any: [ping]}\n    reply: pong\n",
        encoding="utf-8",
    )
    proc = _run("run", "--config", str(cfg), cwd=deep_rules.parent)
    _no_traceback(proc)
    assert proc.returncode == 2
    assert "too-deep" in proc.stderr


def test_the_watcher_lists_a_deep_tree_without_recursion(deep_rules: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, nats_url="nats://127.0.0.1:1", api_base="http://127.0.0.1:9/v1")
    bot = Bot(replace(load_config(cfg), rules=(deep_rules,)), watch_interval=None)
    assert deep_rules / "main.yaml" in bot.rules.watched_paths()
