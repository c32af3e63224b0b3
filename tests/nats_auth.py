"""Real nats-servers that require authentication, one per mode, for tests.

:func:`start_auth_server` writes a nats-server config file for a mode and
starts the real binary on a free loopback port:

* ``users``: ``authorization { users = [{user, password}] }``
* ``token``: ``authorization { token }``
* ``nkey``: ``authorization { users = [{nkey: U...}] }`` with a user nkey pair
  generated here (the ``nkeys`` package, which the service depends on)
* ``creds``: decentralized auth: an operator, an account and a user, their
  JWTs signed here with nkeys, the account preloaded into a memory resolver;
  the user's ``.creds`` file is what ``nats.creds_file`` names
* ``tls``: ``tls { cert_file, key_file, ca_file, verify: true }``: a CA, a
  server certificate and a client certificate made with ``openssl``

Each :class:`AuthServer` knows the ``nats:`` keys (``config``) and environment
(``env``) that let the service in, the ones that must be refused
(``bad_config``, ``bad_env``), and nats-py options for the test's own
Kryten-Robot client (``client_options``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nkeys

from kryten_rules.service.embedded import find_nats_server, free_port, wait_listening

MODES = ("users", "token", "nkey", "creds", "tls")
PASSWORD_ENV = "TEST_NATS_PASSWORD"
TOKEN_ENV = "TEST_NATS_TOKEN"
PASSWORD = "pw-Zq81-correct"
TOKEN = "tok-7fJ2-correct"
OPENSSL = "/usr/bin/openssl"


@dataclass
class AuthServer:
    mode: str
    port: int
    proc: subprocess.Popen[bytes]
    config: dict[str, Any]  # the service config's nats: keys (url added by url())
    env: dict[str, str] = field(default_factory=dict)
    bad_config: dict[str, Any] = field(default_factory=dict)
    bad_env: dict[str, str] = field(default_factory=dict)
    client_options: dict[str, Any] = field(default_factory=dict)
    scheme: str = "nats"
    secrets: tuple[str, ...] = ()  # text that must never appear in output

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def nats_yaml(self, *, bad: bool = False) -> str:
        """The config's ``nats:`` keys besides ``url``, as YAML lines (indented 2)."""
        keys = self.bad_config if bad else self.config
        return "".join(f"  {k}: {json.dumps(v)}\n" for k, v in keys.items())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _seed(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _jwt(issuer: nkeys.KeyPair, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A NATS JWT (``ed25519-nkey``), as nsc writes them: the claims' ``jti`` is
    the base32 SHA-256 of the claims without it."""
    header = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": issuer.public_key.decode(),
        "name": name,
        "sub": subject,
        "nats": {**nats, "version": 2},
    }
    digest = hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    body = _b64(json.dumps(claims).encode())
    signature = issuer.sign(f"{header}.{body}".encode())
    return f"{header}.{body}.{_b64(signature)}"


def _creds(user_jwt: str, seed: bytes) -> str:
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt}\n"
        "------END NATS USER JWT------\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{seed.decode()}\n"
        "------END USER NKEY SEED------\n"
    )


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(folder: Path, prefix: str = "") -> dict[str, Path]:
    """A CA (``ca.pem``), a server certificate for 127.0.0.1 and a client certificate."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", f"{prefix}ca.key", "-out", f"{prefix}ca.pem",
             "-days", "2", "-subj", f"/CN={prefix}test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    for who, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                      "extendedKeyUsage=serverAuth\n"),
                     ("client", "extendedKeyUsage=clientAuth\n")):
        (folder / f"{prefix}{who}.ext").write_text(ext, encoding="utf-8")
        _openssl("req", *ec, "-keyout", f"{prefix}{who}.key", "-out", f"{prefix}{who}.csr",
                 "-subj", f"/CN={prefix}{who}", cwd=folder)
        _openssl("x509", "-req", "-in", f"{prefix}{who}.csr", "-CA", f"{prefix}ca.pem",
                 "-CAkey", f"{prefix}ca.key", "-CAcreateserial", "-days", "2",
                 "-out", f"{prefix}{who}.pem", "-extfile", f"{prefix}{who}.ext", cwd=folder)
    return {name: folder / f"{prefix}{name}" for name in (
        "ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def _client_tls(certs: dict[str, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    ctx.load_cert_chain(str(certs["client.pem"]), str(certs["client.key"]))
    return ctx


def start_auth_server(mode: str, folder: Path) -> AuthServer:
    """A started nats-server requiring ``mode`` authentication; files go to ``folder``."""
    binary = find_nats_server()
    assert binary is not None, "nats-server is needed for these tests"
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    kw: dict[str, Any] = {}
    if mode == "users":
        conf = f'authorization {{ users = [ {{user: bot, password: "{PASSWORD}"}} ] }}'
        kw = {"config": {"user": "bot", "password_env": PASSWORD_ENV},
              "env": {PASSWORD_ENV: PASSWORD}, "bad_config": {"user": "bot",
              "password_env": PASSWORD_ENV}, "bad_env": {PASSWORD_ENV: "pw-wrong-1"},
              "client_options": {"user": "bot", "password": PASSWORD},
              "secrets": (PASSWORD, "pw-wrong-1")}
    elif mode == "token":
        conf = f'authorization {{ token: "{TOKEN}" }}'
        kw = {"config": {"token_env": TOKEN_ENV}, "env": {TOKEN_ENV: TOKEN},
              "bad_config": {"token_env": TOKEN_ENV}, "bad_env": {TOKEN_ENV: "tok-wrong-1"},
              "client_options": {"token": TOKEN}, "secrets": (TOKEN, "tok-wrong-1")}
    elif mode == "nkey":
        user, stranger = _seed(nkeys.PREFIX_BYTE_USER), _seed(nkeys.PREFIX_BYTE_USER)
        (folder / "user.nk").write_bytes(user.seed + b"\n")
        (folder / "stranger.nk").write_bytes(stranger.seed + b"\n")
        conf = f'authorization {{ users = [ {{nkey: "{user.public_key.decode()}"}} ] }}'
        kw = {"config": {"nkey_file": str(folder / "user.nk")},
              "bad_config": {"nkey_file": str(folder / "stranger.nk")},
              "client_options": {"nkeys_seed": str(folder / "user.nk")},
              "secrets": (user.seed.decode(), stranger.seed.decode())}
    elif mode == "creds":
        operator = _seed(nkeys.PREFIX_BYTE_OPERATOR)
        account = _seed(nkeys.PREFIX_BYTE_ACCOUNT)
        acct_pub = account.public_key.decode()
        op_jwt = _jwt(operator, operator.public_key.decode(), "test-op", {"type": "operator"})
        acct_jwt = _jwt(operator, acct_pub, "test-acct", {
            "type": "account",
            "limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                       "wildcards": True, "conn": -1, "leaf": -1}})
        files = {}
        for who in ("user", "stranger"):
            kp = _seed(nkeys.PREFIX_BYTE_USER)
            # the stranger's JWT is signed by a key the account never named
            signer = account if who == "user" else _seed(nkeys.PREFIX_BYTE_ACCOUNT)
            user_jwt = _jwt(signer, kp.public_key.decode(), who, {
                "type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1})
            files[who] = folder / f"{who}.creds"
            files[who].write_text(_creds(user_jwt, kp.seed), encoding="utf-8")
        conf = (f'operator: "{op_jwt}"\nresolver: MEMORY\n'
                f'resolver_preload: {{ {acct_pub}: "{acct_jwt}" }}\n')
        kw = {"config": {"creds_file": str(files["user"])},
              "bad_config": {"creds_file": str(files["stranger"])},
              "client_options": {"user_credentials": str(files["user"])}}
    elif mode == "tls":
        certs = make_certs(folder / "good")
        other = make_certs(folder / "other", prefix="other-")
        conf = (f'tls {{ cert_file: "{certs["server.pem"]}", key_file: "{certs["server.key"]}",'
                f' ca_file: "{certs["ca.pem"]}", verify: true, timeout: 5 }}')
        good = {"ca_file": str(certs["ca.pem"]), "cert_file": str(certs["client.pem"]),
                "key_file": str(certs["client.key"])}
        # a client certificate from a CA the server does not know
        bad = {**good, "cert_file": str(other["client.pem"]),
               "key_file": str(other["client.key"])}
        kw = {"config": {"tls": good}, "bad_config": {"tls": bad},
              "client_options": {"tls": _client_tls(certs)}, "scheme": "tls"}
    else:
        raise ValueError(mode)
    conf_path = folder / "nats-server.conf"
    conf_path.write_text(f"listen: 127.0.0.1:{port}\n{conf}\n", encoding="utf-8")
    log = (folder / "nats-server.log").open("wb")
    proc = subprocess.Popen([binary, "-c", str(conf_path)], stdout=log, stderr=log)
    log.close()
    wait_listening("127.0.0.1", port, proc, 10)
    return AuthServer(mode=mode, port=port, proc=proc, **kw)
