"""The service config as typed values: defaults that are real values, end to end.

A config may leave out ``nats:`` and ``cytube.domain``; the bot must then use
the documented defaults. Before, those defaults were read back from the slots
dataclasses (``CytubeConfig.domain``), which gives a member descriptor, so
every send failed with a ``TypeError``. The end-to-end test runs the real bot
on a real nats-server and waits for the ``say`` command to arrive.
"""

from __future__ import annotations

from pathlib import Path

from kryten_rules.compile.load import load_config
from kryten_rules.config import (
    ChainConfig,
    CytubeConfig,
    LogConfig,
    ModelConfig,
    NatsConfig,
    StateConfig,
)
from kryten_rules.service.embedded import EmbeddedNats
from tests.nats_fixtures import BOT_NAME, CHANNEL, RobotClient, make_bot, write_rules

PING_RULES = """\
kryten_rules: 1
rules:
  - id: ping
    match: {regex: ['^!ping\\b']}
    reply: "pong"
"""


def _minimal(tmp_path: Path, extra: str = "") -> Path:
    write_rules(tmp_path / "rules" / "main.yaml", PING_RULES)
    cfg = tmp_path / "kryten-rules.yaml"
    cfg.write_text(
        "kryten_rules_config: 1\n"
        f"cytube: {{channel: {CHANNEL}, username: {BOT_NAME}}}\n"
        "rules: rules/\n" + extra,
        encoding="utf-8",
    )
    return cfg


def test_every_default_of_a_minimal_config_is_a_value_of_its_type(tmp_path: Path) -> None:
    config = load_config(
        _minimal(
            tmp_path,
            "models: {m: {model: openai/x}}\nchains: {default: {models: [m]}}\nlog: {}\n",
        )
    )
    assert config.nats == NatsConfig()
    assert config.nats.url == "nats://127.0.0.1:4222"
    assert config.cytube == CytubeConfig(channel=CHANNEL, username=BOT_NAME)
    assert config.cytube.domain == "cytu.be"
    assert config.log == LogConfig()
    assert config.models["m"] == ModelConfig(name="m", model="openai/x")
    assert config.chains["default"] == ChainConfig(name="default", models=("m",))
    assert config.metrics_host == "127.0.0.1" and config.metrics_port == 28292
    assert config.state == StateConfig(store="memory", bucket="kryten_rules_state")
    for value in (config.nats.url, config.cytube.domain, config.log.level):
        assert isinstance(value, str)


def test_given_values_win_and_integers_written_as_floats_become_ints(tmp_path: Path) -> None:
    config = load_config(
        _minimal(
            tmp_path,
            "max_in_flight: 8.0\nreply_max_age: 2m\nmetrics: {port: 0, host: 127.0.0.2}\n"
            "nats: {url: 'nats://10.0.0.1:4222'}\n",
        )
    )
    assert config.max_in_flight == 8 and isinstance(config.max_in_flight, int)
    assert config.reply_max_age == 120.0
    assert config.metrics_port == 0 and config.metrics_host == "127.0.0.2"
    assert config.nats.url == "nats://10.0.0.1:4222"


def test_the_state_store_and_bucket(tmp_path: Path) -> None:
    config = load_config(_minimal(tmp_path, "state: {store: jetstream, bucket: rules-kv}\n"))
    assert config.state == StateConfig(store="jetstream", bucket="rules-kv")
    config = load_config(_minimal(tmp_path, "state: {store: jetstream}\n"))
    assert config.state.bucket == "kryten_rules_state"


async def test_a_config_without_nats_or_domain_sends_replies(
    tmp_path: Path, nats_server: EmbeddedNats, client: RobotClient
) -> None:
    bot = make_bot(_minimal(tmp_path), nats_url=nats_server.url)
    await bot.start()
    try:
        await client.chat("alice", "!ping")
        command = await client.next_command()
    finally:
        await bot.stop(grace=1.0)
    assert command["command"] == "say"
    assert command["args"]["message"] == "pong"
    assert command["meta"]["domain"] == "cytu.be"
    assert command["meta"]["channel"] == CHANNEL


def test_pacing_comes_from_the_config_and_defaults_to_cytubes_limit(tmp_path: Path) -> None:
    from kryten_rules.config import config_from_plain

    base = {"kryten_rules_config": 1, "cytube": {"channel": "c", "username": "b"}, "rules": []}
    assert config_from_plain(base, tmp_path / "c.yaml").pacing == (4, 1.0)
    fast = {**base, "pacing": {"burst": 20, "per_second": 10}}
    assert config_from_plain(fast, tmp_path / "c.yaml").pacing == (20, 10.0)


def test_a_lease_ttl_past_an_hour_is_a_validate_error(tmp_path: Path) -> None:
    from kryten_rules.compile.load import check_paths

    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(
        "kryten_rules: 1\nrules:\n  - {id: hi, match: {any: [hi]}, reply: hi}\n"
    )
    cfg = tmp_path / "kryten-rules.yaml"
    for ttl, bad in (("1000000000d", True), ("2h", True), ("1h", False), ("3s", False)):
        cfg.write_text(
            "kryten_rules_config: 1\ncytube: {channel: c, username: b}\nrules: rules/\n"
            f"state: {{store: jetstream, lease_ttl: {ttl}}}\n"
        )
        codes = [d.code for d in check_paths([cfg]).diagnostics if d.is_error]
        assert ("bad-duration" in codes) is bad, (ttl, codes)
