"""``explain`` v1.1: a pinned draw or a seed, the config it used, each rule's mode."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from kryten_rules.cli import main

RULES = """\
kryten_rules: 1
rules:
  - id: rare
    match: {any: [hello]}
    probability: 0.2
    reply: "hi"
  - id: trial
    mode: shadow
    match: {any: [hello]}
    reply: "hi from the shadow"
"""


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def explain_json(*args: str | Path) -> dict[str, Any]:
    r = run("explain", *args, "--format", "json")
    assert r.exit_code == 0, r.output
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules" / "chat.yaml"
    path.parent.mkdir()
    path.write_text(RULES, encoding="utf-8")
    return path.parent


@pytest.mark.parametrize(("draw", "fired"), [("0", "rare"), ("0.19", "rare"), ("0.2", None)])
def test_a_pinned_draw_decides_the_probability(rules: Path, draw: str, fired: str | None) -> None:
    doc = explain_json("hello", rules, "--draw", draw)
    assert doc["fired"] == fired
    assert doc["draw"] == float(draw)
    if fired is None:
        rare = next(t for t in doc["trace"] if t["rule"] == "rare")
        assert rare["reason"] == "probability"


def test_the_seed_is_used_and_shown(rules: Path) -> None:
    """Over a few seeds a probability-0.2 rule both fires and misses: the seed is really used."""
    fired = {explain_json("hello", rules, "--seed", str(seed))["fired"] for seed in range(40)}
    assert fired == {"rare", None}
    doc = explain_json("hello", rules, "--seed", "7")
    assert (doc["seed"], doc["draw"]) == (7, None)
    again = explain_json("hello", rules, "--seed", "7")
    assert again["fired"] == doc["fired"]  # the same seed, the same draw


def test_seed_and_draw_in_the_text_output(rules: Path) -> None:
    r = run("explain", "hello", rules, "--seed", "3", "--draw", "0.05")
    assert r.exit_code == 0, r.output
    assert "seed: 3, draw: 0.05 (pinned)" in r.output
    assert "fires: rare" in r.output
    r = run("explain", "hello", rules)
    assert "seed: 0, draw: from the seed" in r.output


@pytest.mark.parametrize("bad", ["1", "1.5", "-0.1", "nan", "often"])
def test_a_draw_outside_0_1_is_a_usage_error(rules: Path, bad: str) -> None:
    r = run("explain", "hello", rules, "--draw", bad)
    assert r.exit_code == 2
    assert "--draw" in r.output


def test_each_rule_shows_its_mode(rules: Path) -> None:
    doc = explain_json("hello", rules, "--draw", "0.5")
    assert doc["modes"] == {"rare": "live", "trial": "shadow"}
    assert doc["would_fire"] == ["trial"]
    r = run("explain", "hello", rules, "--draw", "0.5")
    trial = next(line for line in r.output.splitlines() if " trial " in line)
    assert trial.split()[:3] == ["~>", "trial", "shadow"]
    rare = next(line for line in r.output.splitlines() if " rare " in line)
    assert rare.split()[1:3] == ["rare", "live"]


def test_without_config_the_local_kryten_rules_yaml_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`init` writes ./kryten-rules.yaml; explain then finds the config and its rules."""
    assert run("init", "-q", tmp_path).exit_code == 0
    monkeypatch.chdir(tmp_path)
    r = run("explain", "hey cynthia, what's on?")
    assert r.exit_code == 0, r.output
    assert "config: kryten-rules.yaml (the default path; --config overrides it)" in r.output
    assert "fires: mention" in r.output  # the config's rules, its bot name
    assert explain_json("hi")["config"] == "kryten-rules.yaml"


def test_config_given_or_none_is_said(
    rules: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(rules)  # no kryten-rules.yaml here
    r = run("explain", "hello", rules)
    assert r.exit_code == 0, r.output
    assert r.output.startswith("config: none (no --config, and no kryten-rules.yaml")
    assert explain_json("hello", rules)["config"] is None
    config = Path(__file__).parents[2] / "kryten-rules.example.yaml"
    r = run("explain", "hello", rules, "--config", config)
    assert f"config: {config} (--config)" in r.output


def test_a_default_config_with_errors_is_named(
    rules: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "kryten-rules.yaml").write_text(
        textwrap.dedent("""\
            kryten_rules_config: 1
            bot_name: kryten
            no_such_key: 1
            """),
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    r = run("explain", "hello", rules)
    assert r.exit_code == 2
    assert "kryten-rules.yaml" in r.output
