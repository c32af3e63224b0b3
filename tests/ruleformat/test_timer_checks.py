"""v1.1 timers and when.chat in validate: what the schema cannot say about them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kryten_rules.compile.load import check_paths
from tests.timer_rules import TIMER, write_rules


def _codes(path: Path) -> list[str]:
    return sorted(d.code for d in check_paths([path]).diagnostics)


@pytest.mark.parametrize(
    ("text", "codes"),
    [
        (TIMER.format(every="10m"), []),
        (TIMER.format(every="30s"), ["timer-every-short"]),
        (TIMER.format(every="0.5"), ["timer-every-too-short"]),
        (TIMER.format(every="999999999999d"), ["bad-duration"]),
        (TIMER.replace("    every: {every}\n", "").format(), ["timer-every-missing"]),
        (
            TIMER.format(every="10m").replace("on: timer", "on: chatmsg"),
            ["every-not-timer"],
        ),
        (
            TIMER.format(every="10m") + "    match: {any: [hello]}\n",
            ["timer-match"],
        ),
        (
            TIMER.format(every="10m").replace("{chat:", "{rank: {min: 1}, chat:"),
            ["timer-sender-condition"],
        ),
        (TIMER.format(every="10m").replace("within: 10m", "within: 0s"), ["chat-window"]),
        (TIMER.format(every="10m").replace("Did you know?", "Hi {{ user.name }}"), ["timer-user"]),
        (TIMER.format(every="10m") + "    respond_via: pm\n", ["timer-respond-via"]),
        (TIMER.format(every="10m").replace("min_lines: 2, ", ""), ["missing-key"]),
        (TIMER.format(every="10m").replace("min_lines: 2", "min_lines: 201"), ["schema"]),
    ],
)
def test_validate_timers(tmp_path: Path, text: str, codes: list[str]) -> None:
    assert _codes(write_rules(tmp_path, text)) == codes


def test_timers_do_not_shadow_each_other(tmp_path: Path) -> None:
    text = "kryten_rules: 1\nrules:\n" + "".join(
        f"  - id: t{i}\n    on: timer\n    every: 10m\n    reply: x\n" for i in range(3)
    )
    assert _codes(write_rules(tmp_path, text)) == []
