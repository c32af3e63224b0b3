"""``channels:``: several channels in one config, and the mistakes it can hold.

``cytube`` + ``rules`` stays a one-entry list; both given, neither given, or
one channel listed twice is a config error that names the problem.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kryten_rules.compile.load import load_config
from kryten_rules.config import ChannelConfig, CytubeConfig
from kryten_rules.diagnostics import RuleSetError
from tests.nats_fixtures import write_rules

RULES = "kryten_rules: 1\nrules:\n  - id: ping\n    match: {regex: ['^!ping']}\n    reply: pong\n"


def _config(tmp_path: Path, body: str) -> Path:
    for name in ("a", "b"):
        write_rules(tmp_path / "rules" / name / "main.yaml", RULES)
    path = tmp_path / "kryten-rules.yaml"
    path.write_text("kryten_rules_config: 1\n" + body, encoding="utf-8")
    return path


def _codes(path: Path) -> list[str]:
    with pytest.raises(RuleSetError) as exc:
        load_config(path)
    return [d.code for d in exc.value.diagnostics if d.is_error]


def test_cytube_and_rules_are_a_one_entry_channel_list(tmp_path: Path) -> None:
    config = load_config(
        _config(tmp_path, "cytube: {channel: a, username: Bot}\nrules: rules/a/\n")
    )
    assert config.channels == ()
    assert config.channel_configs == (
        ChannelConfig(CytubeConfig(channel="a", username="Bot"), (tmp_path / "rules/a/",)),
    )


def test_channels_each_with_their_own_rules_and_options(tmp_path: Path) -> None:
    config = load_config(
        _config(
            tmp_path,
            "dry_run: false\nignore_users: [OtherBot]\nchannels:\n"
            "  - {channel: a, username: BotA, rules: rules/a/}\n"
            "  - {domain: example.org, channel: b, username: BotB, rules: [rules/b/],"
            " dry_run: true, ignore_users: [Spammer], max_message_length: 200}\n",
        )
    )
    a, b = config.channel_configs
    assert (a.label, a.rules, a.dry_run, a.ignore_users) == (
        "cytu.be/a",
        (tmp_path / "rules/a/",),
        None,
        None,
    )
    assert b.label == "example.org/b" and b.cytube.max_message_length == 200
    assert b.dry_run is True and b.ignore_users == frozenset({"spammer"})
    # the first channel is also `cytube` + `rules`, for what names one channel
    assert config.cytube == a.cytube and config.rules == a.rules
    one = config.for_channel(b)
    assert one.cytube == b.cytube and one.rules == b.rules and one.bot_name == "BotB"
    assert one.dry_run is True and one.ignore_users == frozenset({"spammer"})
    assert one.channel_configs == (ChannelConfig(b.cytube, b.rules),)
    same = config.for_channel(a)  # no options of its own: the service's
    assert same.dry_run is False and same.ignore_users == frozenset({"otherbot"})


def test_channels_beside_cytube_or_rules_is_an_error(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        "cytube: {channel: a, username: Bot}\nrules: rules/a/\n"
        "channels: [{channel: b, username: Bot, rules: rules/b/}]\n",
    )
    assert _codes(path) == ["channels-and-cytube", "channels-and-cytube"]


def test_a_config_without_any_channel_is_an_error(tmp_path: Path) -> None:
    assert _codes(_config(tmp_path, "dry_run: true\n")) == ["no-channel"]


def test_a_channel_listed_twice_is_an_error_even_on_two_domains(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        "channels:\n  - {channel: Lobby, username: Bot, rules: rules/a/}\n"
        "  - {domain: example.org, channel: lobby, username: Bot, rules: rules/b/}\n",
    )
    with pytest.raises(RuleSetError) as exc:
        load_config(path)
    (diag,) = exc.value.diagnostics
    assert diag.code == "duplicate-channel" and "'example.org/lobby'" in diag.message


def test_a_channel_needs_its_rules(tmp_path: Path) -> None:
    path = _config(tmp_path, "channels: [{channel: a, username: Bot}]\n")
    assert _codes(path) == ["missing-key"]


@pytest.mark.parametrize("name", ["...", "*", ">>"])
def test_a_channel_name_no_subject_can_carry_is_a_validate_error(
    tmp_path: Path, name: str
) -> None:
    from kryten_rules.compile.load import check_paths

    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(
        "kryten_rules: 1\nrules:\n  - {id: hi, match: {any: [hi]}, reply: hi}\n"
    )
    for body in (
        f'cytube: {{channel: "{name}", username: b}}\nrules: rules/\n',
        f'channels:\n  - {{channel: "{name}", username: b, rules: rules/}}\n',
    ):
        cfg = tmp_path / "kryten-rules.yaml"
        cfg.write_text("kryten_rules_config: 1\n" + body)
        errors = [d for d in check_paths([cfg]).diagnostics if d.is_error]
        assert any(d.code == "bad-value" and "subject" in d.message for d in errors), errors
