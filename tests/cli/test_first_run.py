"""A new user's first minutes: the packaged persona, ``init``, and ``chat``.

The wheel itself is built and tried in ``tests/test_wheel.py``; these tests
run the same commands from the source tree, faster.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kryten_rules import cli
from kryten_rules.cli.service import route_to_chain
from kryten_rules.compile.load import load_config
from kryten_rules.service.chat import ChatClient
from kryten_rules.tools.project import DATA, packaged_files

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = shutil.which("kryten-rules") or str(Path(sys.executable).with_name("kryten-rules"))


def test_the_packaged_persona_is_the_repository_s() -> None:
    """One persona: kryten_rules/data/ is a copy of rules/, prompts/, the example, tests/rules/."""
    packaged = {str(p) for p in packaged_files()}
    in_repo = {"kryten-rules.example.yaml"} | {
        str(f.relative_to(ROOT))
        for d in ("rules", "prompts", "tests/rules")
        for f in (ROOT / d).rglob("*")
        if f.is_file() and "__pycache__" not in f.parts
    }
    assert packaged == in_repo, "copy rules/, prompts/, tests/rules/ into kryten_rules/data/"
    for rel in packaged:
        assert (DATA / rel).read_bytes() == (ROOT / rel).read_bytes(), (
            f"kryten_rules/data/{rel} differs from {rel}: copy it over"
        )


def test_the_example_s_default_chain_ends_with_real_models() -> None:
    """An operator who copies the example never posts the canned demo line in an outage."""
    config = load_config(ROOT / "kryten-rules.example.yaml")
    demo_models = {n for n, m in config.models.items() if m.mock_response}
    assert demo_models == {"demo"}
    for name, chain in config.chains.items():
        if name != "demo":
            assert not demo_models & set(chain.models), name
    assert config.chains["demo"].models == ("demo",)
    chat = yaml.safe_load((ROOT / "rules" / "chat.yaml").read_text("utf-8"))
    assert chat["defaults"]["fallback_reply"]


def test_every_model_rule_of_the_default_persona_has_a_fallback_reply() -> None:
    """In an outage every rule that asks a model still says something plain.

    Timers excepted: they answer nobody, so in an outage silence is the plain answer."""
    from kryten_rules.compile.load import load_ruleset

    ruleset = load_ruleset([ROOT / "rules"], ROOT / "kryten-rules.example.yaml")
    silent = [
        r.id for r in ruleset.rules if r.needs_llm and r.on != "timer" and not r.fallback_reply
    ]
    assert not silent, f"model rules without fallback_reply: {silent}"


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(cli.main, list(args), catch_exceptions=False)


def test_init_writes_a_project_that_validates_and_passes_its_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "mybot"
    result = _invoke("init", str(project))
    assert result.exit_code == 0, result.output
    for rel in (
        "kryten-rules.yaml",
        "rules/chat.yaml",
        "rules/persona.yaml",
        "prompts/mention.j2",
        "tests/rules/default.test.yaml",
        ".github/workflows/rules.yml",
        "schemas/rules.schema.json",
    ):
        assert (project / rel).is_file(), rel
    workflow = (project / ".github/workflows/rules.yml").read_text("utf-8")
    assert "kryten-rules validate --format github" in workflow
    assert "kryten-rules test tests/" in workflow
    assert yaml.safe_load(workflow)["jobs"]
    monkeypatch.chdir(project)
    result = _invoke("validate", "--format", "github", "kryten-rules.yaml", "rules/", "tests/")
    assert result.exit_code == 0, result.output
    result = _invoke("test", "tests/")
    assert result.exit_code == 0, result.output
    assert "0 failed" in result.output
    # the whole project too: its .github workflow is YAML, but hidden, and not a rule file
    assert _invoke("validate", ".").exit_code == 0
    result = _invoke("test", ".")
    assert result.exit_code == 0, result.output


def test_init_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    mine = tmp_path / "rules" / "chat.yaml"
    mine.write_text("mine\n", encoding="utf-8")
    result = _invoke("init", str(tmp_path))
    assert result.exit_code == 2
    assert "rules/chat.yaml" in result.output and "--force" in result.output
    assert mine.read_text("utf-8") == "mine\n"
    assert not (tmp_path / "kryten-rules.yaml").exists()  # nothing at all was written
    result = _invoke("init", "--force", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert mine.read_text("utf-8").startswith("# yaml-language-server")


def test_init_into_a_file_is_a_usage_error(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("", encoding="utf-8")
    assert _invoke("init", str(f)).exit_code == 2


def _client(out: io.StringIO, interactive: bool) -> ChatClient:
    bot: Any = SimpleNamespace(
        config=SimpleNamespace(cytube=SimpleNamespace(channel="c", domain="d"), bot_name="B")
    )
    return ChatClient(bot, user="alice", out=out, interactive=interactive)


def test_chat_output_is_printed_above_the_prompt_not_after_it() -> None:
    out = io.StringIO()
    client = _client(out, interactive=True)
    client.show_prompt()
    client.say("    rules: mention fired")
    # the prompt line is cleared, the trace printed, the prompt drawn again
    assert out.getvalue() == "alice> \r\x1b[K    rules: mention fired\nalice> "
    client.prompt_shown = False  # Enter was pressed: the cursor is on a fresh line
    client.say("B> hi")
    assert out.getvalue().endswith("\nalice> B> hi\n")


async def test_chat_bad_rank_is_a_message_not_a_traceback() -> None:
    out = io.StringIO()
    client = _client(out, interactive=False)
    assert await client.line("/rank admn") is True
    assert "not a rank" in out.getvalue() and "did you mean 'admin'?" in out.getvalue()
    assert client.rank == 1


def test_chat_without_nats_server_is_a_message_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kryten_rules.service import embedded

    monkeypatch.setattr(embedded, "find_nats_server", lambda: None)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.main, ["chat", "--demo"])
    assert result.exit_code == 2, result.output
    assert "nats-server is not on PATH" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_chat_demo_routes_every_rule_to_the_demo_chain() -> None:
    config = load_config(ROOT / "kryten-rules.example.yaml")
    routed = route_to_chain(config, "demo")
    assert set(routed.chains) == set(config.chains)
    assert all(c.models == ("demo",) for c in routed.chains.values())
    assert set(routed.models) == {"demo"}  # no "OPENAI_API_KEY is not set" noise in the demo


def test_chat_unknown_chain_is_a_usage_error(tmp_path: Path) -> None:
    result = _invoke("chat", "--config", str(ROOT / "kryten-rules.example.yaml"), "--chain", "nope")
    assert result.exit_code == 2
    assert "no chain 'nope'" in result.output and "demo" in result.output


def test_chat_ctrl_c_quits_at_once(tmp_path: Path) -> None:
    """Ctrl-C while the client waits for a line: out in a moment, not at the next Enter."""
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    proc = subprocess.Popen(
        [SCRIPT, "chat", "--config", str(ROOT / "kryten-rules.example.yaml")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        line = ""
        while "connected to" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        # the client now waits for a line (or is about to: either way Ctrl-C must end it)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)  # hung on the read, it would run into this and fail
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0
    assert proc.stderr is not None and "Traceback" not in proc.stderr.read()


def test_chat_in_an_outage_sends_the_fallback_reply_never_the_demo_line(tmp_path: Path) -> None:
    """The example config as an operator copies it, with no model reachable."""
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    cfg = tmp_path / "kryten-rules.yaml"
    text = (ROOT / "kryten-rules.example.yaml").read_text("utf-8")
    # nothing listens on port 9 (discard): the local model fails at once
    text = text.replace("http://127.0.0.1:11434", "http://127.0.0.1:9")
    cfg.write_text(text.replace("rules: rules/", f"rules: {ROOT / 'rules'}"), "utf-8")
    proc = subprocess.run(
        [SCRIPT, "chat", "--config", str(cfg), "--user", "alice"],
        input="hey cynthia, you there?\n/quit\n", capture_output=True, text=True,
        timeout=120, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "CynthiaRothbot> alice: my pager's down" in proc.stdout
    assert "offline demo" not in proc.stdout
    assert "OPENAI_API_KEY" in proc.stderr  # the missing key is named
