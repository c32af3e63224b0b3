"""NATS authentication and TLS: the config's ``nats:`` keys as nats-py connect options.

The config names secrets only by environment variable (``password_env``,
``token_env``) or file (``creds_file``, ``nkey_file``); they are read here,
once, at start, and handed to nats-py, never logged. Everything an operator can
get wrong before the first byte is sent (an unset variable, a missing or
malformed file, a bad PEM) is a :class:`NatsAuthError` with one clear line, so
``kryten-rules run`` exits 2 instead of retrying a connection that cannot work.

The server's own refusal (wrong password, unknown nkey, an untrusted
certificate) only shows once connected; :func:`fatal_connect_error` tells
those apart from an unreachable server, which is worth retrying.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kryten_rules.config import NatsConfig, NatsTlsConfig
from kryten_rules.errors import KrytenRulesError
from kryten_rules.redact import mask_credentials

# nkey seeds start with "S" and a type letter: "SU" for a user
_USER_SEED = "SU"
_CREDS_MARKERS = ("-----BEGIN NATS USER JWT-----", "-----BEGIN USER NKEY SEED-----")
# what nats-server says when it refuses credentials (lower case)
_AUTH_REFUSALS = (
    "authorization violation",
    "authentication expired",
    "authentication revoked",
    "account authentication expired",
)


class NatsAuthError(KrytenRulesError, ValueError):
    """The ``nats:`` section cannot be used: the message says what to fix."""


class NatsRefused(KrytenRulesError, RuntimeError):
    """The server refused the service's credentials or TLS: retrying cannot help."""


def auth_mode(cfg: NatsConfig, url: str | None = None) -> str:
    """How the service authenticates to ``url`` (default: the config's), in words
    for an operator: never a secret."""
    url = cfg.url if url is None else url
    if url == "embedded":
        return "no authentication"
    if cfg.user is not None:
        mode = f"user/password as {cfg.user!r}"
    elif cfg.token_env is not None:
        mode = "token"
    elif cfg.nkey_file is not None:
        mode = "nkey"
    elif cfg.creds_file is not None:
        mode = "credentials file"
    elif urlsplit(url).username is not None:
        mode = "credentials in the URL"
    else:
        mode = ""
    if cfg.tls is not None:
        tls = "TLS with a client certificate" if cfg.tls.cert_file is not None else "TLS"
        return f"{mode}, {tls}" if mode else tls
    return mode or "no authentication"


def _secret(key: str, name: str, env: Mapping[str, str]) -> str:
    value = env.get(name)
    if not value:
        raise NatsAuthError(
            f"nats.{key} names the environment variable {name}, which is "
            f"{'empty' if value == '' else 'not set'}: set it before starting the service"
        )
    return value


def _read(key: str, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise NatsAuthError(f"nats.{key}: cannot read {str(path)!r}: {why}") from None


def _check_nkey_seed(path: Path) -> None:
    """The file holds a user seed nats-py can use (checked without ever showing it)."""
    import nkeys

    seed = _read("nkey_file", path).strip()
    try:
        if not seed.startswith(_USER_SEED):
            raise ValueError
        nkeys.from_seed(bytearray(seed.encode())).wipe()
    except Exception:
        raise NatsAuthError(
            f"nats.nkey_file: {str(path)!r} does not hold a user nkey seed "
            "(one line starting with SU, as `nk -gen user` writes it)"
        ) from None


def _check_creds(path: Path) -> None:
    text = _read("creds_file", path)
    if not all(marker in text for marker in _CREDS_MARKERS):
        raise NatsAuthError(
            f"nats.creds_file: {str(path)!r} is not a NATS credentials file "
            "(it needs a user JWT and a user nkey seed, as `nsc generate creds` writes)"
        )


def tls_context(tls: NatsTlsConfig) -> ssl.SSLContext:
    """A client context: the server's certificate is always verified, against
    ``ca_file`` when given (else the system's CAs), with the client certificate
    the server may ask for."""
    where = "nats.tls.ca_file"
    try:
        ctx = ssl.create_default_context(
            cafile=str(tls.ca_file) if tls.ca_file is not None else None
        )
        if tls.cert_file is not None or tls.key_file is not None:
            if tls.cert_file is None or tls.key_file is None:
                raise NatsAuthError("nats.tls: cert_file and key_file go together")
            where = "nats.tls.cert_file/key_file"
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise NatsAuthError(f"{where}: cannot load: {reason}") from None
    return ctx


def connect_options(cfg: NatsConfig, env: Mapping[str, str]) -> dict[str, Any]:
    """nats-py ``connect`` keyword arguments for ``cfg``; :class:`NatsAuthError` when unusable.

    The checks of ``check_nats`` (one mode, complete pairs) ran when the config
    was loaded; this reads what they named and checks that it is there.
    """
    options: dict[str, Any] = {}
    if cfg.user is not None:
        if cfg.password_env is None:
            raise NatsAuthError("nats.user needs nats.password_env")
        options["user"] = cfg.user
        options["password"] = _secret("password_env", cfg.password_env, env)
    elif cfg.token_env is not None:
        options["token"] = _secret("token_env", cfg.token_env, env)
    elif cfg.nkey_file is not None:
        _check_nkey_seed(cfg.nkey_file)
        options["nkeys_seed"] = str(cfg.nkey_file)
    elif cfg.creds_file is not None:
        _check_creds(cfg.creds_file)
        options["user_credentials"] = str(cfg.creds_file)
    if cfg.tls is not None:
        options["tls"] = tls_context(cfg.tls)
    return options


def fatal_connect_error(exc: BaseException) -> str | None:
    """Why retrying cannot help, for a connect error that is the server's (or TLS's)
    refusal; ``None`` for one worth retrying (unreachable, timed out, restarting)."""
    import nats.errors

    text = str(exc).lower()
    if isinstance(exc, nats.errors.AuthorizationError) or any(r in text for r in _AUTH_REFUSALS):
        return "authorization failed"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS failed: the server's certificate is not trusted"
    # an alert is the server's answer to our certificate (unknown CA, none given,
    # expired); the same certificate gets the same answer next time
    reason = str(getattr(exc, "reason", "") or "").upper()
    if isinstance(exc, ssl.SSLError) and ("ALERT" in reason or "CERTIFICATE" in reason):
        return "TLS failed: the server refused the client certificate"
    return None


def refusal_message(url: str, reason: str, mode: str, exc: BaseException) -> str:
    """The one start-up line for a refused connection: URL without secrets, and the mode."""
    detail = mask_credentials(str(exc)).removeprefix("nats: ")
    return f"{reason} for {mask_credentials(url)} ({mode}): {detail}"
