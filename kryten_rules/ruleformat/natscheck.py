"""Checks of the config's ``nats:`` section that JSON Schema cannot express.

NATS takes one way of authenticating per connection; nats-py, given two,
quietly picks one by its own precedence, and the operator then debugs a
refusal for credentials they did not mean to send. So two modes, half a pair
(``user`` without ``password_env``), or credentials for the embedded server
(which takes none) are errors at ``validate`` time, where they are cheap.

Whether the variables are set and the files readable is checked at start
(``kryten_rules/natsauth.py``): CI validates configs on machines without secrets.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from kryten_rules.diagnostics import Diagnostic, error
from kryten_rules.ruleformat.yamlload import Node

# each way of authenticating, by the key that selects it
MODES = {
    "user": "user/password",
    "password_env": "user/password",
    "token_env": "token",
    "nkey_file": "nkey",
    "creds_file": "credentials file",
}
PAIRS = (("user", "password_env"), ("password_env", "user"))
TLS_PAIRS = (("cert_file", "key_file"), ("key_file", "cert_file"))


def _url_has_credentials(url: object) -> bool:
    if not isinstance(url, str):
        return False
    try:
        return urlsplit(url).username is not None
    except ValueError:
        return False


def check_nats(root: Node) -> Iterator[Diagnostic]:
    """One authentication mode, complete pairs, none of it for ``url: embedded``."""
    nats = root.get("nats")
    if nats is None or not nats.is_map:
        return
    given = [key for key in MODES if key in nats.value]
    url = nats.get("url")
    tls = nats.get("tls")
    if url is not None and url.value == "embedded":
        for key in [*given, *(["tls"] if tls is not None else [])]:
            yield error(
                "nats-auth-conflict",
                f"nats.{key} with `url: embedded`: the embedded nats-server takes no "
                "credentials and no TLS",
                nats.key_span(key),
                "point nats.url at your NATS server, or leave the key out",
            )
        return
    for key, partner in PAIRS:
        if key in nats.value and partner not in nats.value:
            yield error(
                "nats-auth-incomplete",
                f"nats.{key} needs nats.{partner}",
                nats.key_span(key),
                "user/password authentication: `user: NAME` and `password_env: VARIABLE` "
                "(the name of the environment variable that holds the password)",
            )
    modes = list(dict.fromkeys(MODES[k] for k in given))
    if len(modes) > 1:
        second = next(k for k in given if MODES[k] == modes[1])
        first = next(k for k in given if MODES[k] == modes[0])
        yield error(
            "nats-auth-conflict",
            f"nats.{first} and nats.{second} are two ways to authenticate "
            f"({modes[0]} and {modes[1]}): NATS takes one",
            nats.key_span(second),
            "keep the keys of the one your NATS server expects",
        )
    if given and url is not None and _url_has_credentials(url.value):
        yield error(
            "nats-auth-conflict",
            f"nats.url carries credentials and nats.{given[0]} gives others: NATS takes one",
            url.span,
            "take the credentials out of the URL (it is easily logged): "
            "user + password_env, or token_env",
        )
    if tls is not None and tls.is_map:
        for key, partner in TLS_PAIRS:
            if key in tls.value and partner not in tls.value:
                yield error(
                    "nats-auth-incomplete",
                    f"nats.tls.{key} needs nats.tls.{partner}",
                    tls.key_span(key),
                    "a client certificate comes with its private key",
                )
