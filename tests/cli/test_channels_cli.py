"""The command line with a multi-channel config: ``validate`` checks each
channel's rule set on its own; ``explain`` answers for the ``--channel`` named.

Two channels' rules are two rule sets: each may have its persona and reuse
rule ids. Checked as one (as ``validate`` did with ``cytube`` + ``rules``)
they would report a ``duplicate-persona`` that ``run`` never meets.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from kryten_rules.cli import main
from tests.nats_fixtures import write_rules

RULES = """\
kryten_rules: 1
persona: {{name: {persona}, aliases: [{alias}]}}
rules:
  - id: mention
    match: {{mention: true}}
    reply: "{{{{ persona.name }}}} in #{{{{ channel }}}}"
"""


def _run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _config(tmp_path: Path, beta_rules: str | None = None) -> Path:
    write_rules(tmp_path / "rules/alpha/main.yaml", RULES.format(persona="Ada", alias="ada"))
    write_rules(
        tmp_path / "rules/beta/main.yaml",
        beta_rules or RULES.format(persona="Bea", alias="bea"),
    )
    cfg = tmp_path / "kryten-rules.yaml"
    cfg.write_text(
        "kryten_rules_config: 1\nchannels:\n"
        "  - {channel: alpha, username: AlphaBot, rules: rules/alpha/}\n"
        "  - {channel: beta, username: BetaBot, rules: rules/beta/}\n",
        encoding="utf-8",
    )
    return cfg


def test_validate_checks_each_channel_as_its_own_rule_set(tmp_path: Path) -> None:
    result = _run("validate", _config(tmp_path))
    assert result.exit_code == 0, result.output
    assert "2 rule(s) in 2 channels, no problems" in result.output


def test_validate_reports_a_mistake_in_one_channel(tmp_path: Path) -> None:
    broken = "kryten_rules: 1\nrules:\n  - id: x\n    match: {regex: ['(']}\n    reply: hi\n"
    cfg = _config(tmp_path, broken)
    for args in (["validate", cfg], ["validate", "--config", cfg, tmp_path / "rules/alpha"]):
        result = _run(*args, "--format", "json")
        assert result.exit_code == 1, result.output
        diags = json.loads(result.output)
        assert {(Path(d["file"]).parent.name, d["code"]) for d in diags} == {("beta", "bad-regex")}


def test_explain_answers_for_the_channel_named(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    result = _run("explain", "hey bea", "--config", cfg, "--channel", "beta", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["reply"] == "Bea in #beta"
    result = _run("explain", "hey bea", "--config", cfg, "--channel", "alpha", "--format", "json")
    assert json.loads(result.output)["fired"] is None


def test_explain_without_a_channel_of_several_lists_them(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    result = _run("explain", "hey bea", "--config", cfg)
    assert result.exit_code == 2
    assert "give --channel (cytu.be/alpha, cytu.be/beta)" in result.output
    result = _run("explain", "hey bea", "--config", cfg, "--channel", "gamma")
    assert result.exit_code == 2
    assert "no channel 'gamma' (channels: cytu.be/alpha, cytu.be/beta)" in result.output


def test_replay_needs_the_channel_of_several(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    log = tmp_path / "empty.jsonl"
    log.write_text("", encoding="utf-8")
    result = _run("replay", log, "--config", cfg)
    assert result.exit_code == 2 and "give --channel" in result.output
    result = _run("replay", log, "--config", cfg, "--channel", "beta", "--format", "json")
    assert result.exit_code == 0, result.output
