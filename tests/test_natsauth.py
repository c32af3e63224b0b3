"""The config's ``nats:`` keys as nats-py options (kryten_rules.natsauth).

What can be wrong before the first byte is sent (an unset variable, a
missing or malformed file, a bad PEM) is one line naming the key, never the
secret. The real servers of each mode are in tests/test_nats_auth.py.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import nkeys
import pytest

from kryten_rules.compile.load import load_config
from kryten_rules.config import NatsConfig, NatsTlsConfig
from kryten_rules.natsauth import (
    NatsAuthError,
    auth_mode,
    connect_options,
    fatal_connect_error,
)
from tests.nats_auth import make_certs

SCRIPT = str(Path(sys.executable).with_name("kryten-rules"))


def _seed_file(tmp_path: Path) -> tuple[Path, str]:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    path = tmp_path / "bot.nk"
    path.write_bytes(seed + b"\n")
    return path, seed.decode()


def test_user_and_password_from_the_environment() -> None:
    cfg = NatsConfig(user="bot", password_env="PW")
    assert connect_options(cfg, {"PW": "s3cret"}) == {"user": "bot", "password": "s3cret"}
    assert auth_mode(cfg) == "user/password as 'bot'"


@pytest.mark.parametrize(("env", "state"), [({}, "not set"), ({"TOK": ""}, "empty")])
def test_an_unset_or_empty_variable_is_named(env: dict[str, str], state: str) -> None:
    with pytest.raises(NatsAuthError) as raised:
        connect_options(NatsConfig(token_env="TOK"), env)
    assert str(raised.value) == (
        f"nats.token_env names the environment variable TOK, which is {state}: "
        "set it before starting the service"
    )


def test_an_nkey_seed_file_is_checked_without_showing_it(tmp_path: Path) -> None:
    path, seed = _seed_file(tmp_path)
    assert connect_options(NatsConfig(nkey_file=path), {}) == {"nkeys_seed": str(path)}
    path.write_text(seed[:-3] + "\n", encoding="utf-8")  # damaged
    with pytest.raises(NatsAuthError) as raised:
        connect_options(NatsConfig(nkey_file=path), {})
    assert "does not hold a user nkey seed" in str(raised.value)
    assert seed[:-3] not in str(raised.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(NatsAuthError) as raised:
        connect_options(NatsConfig(creds_file=tmp_path / "nope.creds"), {})
    assert str(raised.value) == (
        f"nats.creds_file: cannot read {str(tmp_path / 'nope.creds')!r}: No such file or directory"
    )


def test_a_file_that_is_not_a_creds_file(tmp_path: Path) -> None:
    path, _ = _seed_file(tmp_path)
    with pytest.raises(NatsAuthError, match="is not a NATS credentials file"):
        connect_options(NatsConfig(creds_file=path), {})


def test_tls_context_verifies_the_server_and_carries_the_client_certificate(
    tmp_path: Path,
) -> None:
    certs = make_certs(tmp_path)
    tls = NatsTlsConfig(certs["ca.pem"], certs["client.pem"], certs["client.key"])
    ctx = connect_options(NatsConfig(tls=tls), {})["tls"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    assert auth_mode(NatsConfig(tls=tls)) == "TLS with a client certificate"
    bad = NatsTlsConfig(certs["ca.pem"], certs["client.pem"], certs["server.key"])
    with pytest.raises(NatsAuthError, match=r"^nats.tls.cert_file/key_file: cannot load"):
        connect_options(NatsConfig(tls=bad), {})
    (tmp_path / "junk.pem").write_text("not a certificate\n", encoding="utf-8")
    with pytest.raises(NatsAuthError, match=r"^nats.tls.ca_file: cannot load"):
        connect_options(NatsConfig(tls=NatsTlsConfig(ca_file=tmp_path / "junk.pem")), {})


def test_only_refusals_are_fatal() -> None:
    import nats.errors

    assert fatal_connect_error(nats.errors.Error("nats: 'Authorization Violation'"))
    assert fatal_connect_error(nats.errors.AuthorizationError())
    assert fatal_connect_error(ConnectionRefusedError(111, "Connect call failed")) is None
    assert fatal_connect_error(TimeoutError()) is None
    assert fatal_connect_error(nats.errors.Error("nats: 'Stale Connection'")) is None


def test_config_files_are_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    path = tmp_path / "kryten-rules.yaml"
    path.write_text(
        "kryten_rules_config: 1\n"
        "nats: {url: 'tls://nats:4222', nkey_file: secrets/bot.nk, tls: {ca_file: ca.pem}}\n"
        "cytube: {channel: c, username: b}\nrules: rules/\n",
        encoding="utf-8",
    )
    cfg = load_config(path).nats
    assert cfg.nkey_file == tmp_path / "secrets" / "bot.nk"
    assert cfg.tls == NatsTlsConfig(ca_file=tmp_path / "ca.pem")
    assert auth_mode(cfg) == "nkey, TLS"


@pytest.mark.parametrize(
    "nats",
    ["{user: bot, password: hunter2-XYZ}", "{user: bot, password_env: 'hunter2-XYZ'}"],
    ids=["inline-password", "secret-as-env-name"],
)
def test_validate_never_prints_a_pasted_secret(tmp_path: Path, nats: str) -> None:
    path = tmp_path / "kryten-rules.yaml"
    path.write_text(
        f"kryten_rules_config: 1\nnats: {nats}\ncytube: {{channel: c, username: b}}\n",
        encoding="utf-8",
    )
    proc = subprocess.run(
        [SCRIPT, "validate", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "password_env" in proc.stdout
    assert "hunter2" not in proc.stdout + proc.stderr
