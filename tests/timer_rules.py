"""A timer rule file for the v1.1 timer tests (engine, ruleformat, tools)."""

from __future__ import annotations

from pathlib import Path

TIMER = """\
kryten_rules: 1
rules:
  - id: trivia
    on: timer
    every: {every}
    when: {{chat: {{min_lines: 2, within: 10m}}}}
    reply: "Did you know?"
"""


def write_rules(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path
