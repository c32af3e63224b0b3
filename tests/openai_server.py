"""A real local HTTP server that speaks OpenAI's chat-completions API, for tests.

Stdlib only. Behaviour is programmed per model name (the ``model`` field of the
request body, without any provider prefix)::

    server = OpenAIServer({"good": "ok:hello", "down": "status:500"})
    server.start()            # background thread on 127.0.0.1, free port
    server.base_url           # http://127.0.0.1:PORT/v1
    server.count("good")      # requests seen for that model
    server.stop()

Behaviours:

- ``ok:<text>`` - a normal reply with ``usage`` tokens (whitespace-split counts)
- ``status:<code>`` - that HTTP status with an OpenAI-style error body
- ``status:429:retry_after=<seconds>`` - 429 with a ``Retry-After`` header
- ``hang:<seconds>`` - sleep, then answer ``ok``
- ``malformed`` - 200 with a body that is not JSON
- ``empty`` - 200 with an empty string as content
- ``blank`` - 200 with whitespace-only content
- ``nochoices`` - 200 with ``choices: []``
- ``slow:<seconds>:<text>`` - sleep, then answer ``ok:<text>`` (for concurrency tests)
- ``authecho`` - 401 whose error message repeats the bearer token, as some
  providers do ("Incorrect API key provided: ..."): for secret-masking tests

Unknown models get ``ok:echo``. The server records the current and maximum
number of requests in flight.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_BEHAVIOUR = "ok:echo"


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle plus
    # the client's delayed ACK adds ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(404, {"error": {"message": "not found", "type": "not_found"}})
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send_json(400, {"error": {"message": "bad json", "type": "invalid_request"}})
            return
        model = str(body.get("model", ""))
        owner = self.server.owner
        owner.enter(model, body, {k.lower(): v for k, v in self.headers.items()})
        try:
            self._respond(model, body, owner.behaviour(model))
        finally:
            owner.leave()

    def _respond(self, model: str, body: Mapping[str, Any], behaviour: str) -> None:
        kind, _, rest = behaviour.partition(":")
        if kind == "ok":
            self._send_reply(model, body, rest)
        elif kind == "hang":
            time.sleep(float(rest))
            self._send_reply(model, body, "late")
        elif kind == "slow":
            seconds, _, text = rest.partition(":")
            time.sleep(float(seconds))
            self._send_reply(model, body, text)
        elif kind == "status":
            code_text, _, options = rest.partition(":")
            headers: dict[str, str] = {}
            if options.startswith("retry_after="):
                headers["Retry-After"] = options.removeprefix("retry_after=")
            code = int(code_text)
            self._send_json(
                code,
                {
                    "error": {
                        "message": f"test server status {code}",
                        "type": "server_error",
                        "code": str(code),
                    }
                },
                headers,
            )
        elif kind == "authecho":
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            self._send_json(
                401,
                {
                    "error": {
                        "message": f"Incorrect API key provided: {token}",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
            )
        elif kind == "malformed":
            self._send_raw(200, b'{"id": "x", "choices": [ this is not json', "application/json")
        elif kind == "empty":
            self._send_reply(model, body, "")
        elif kind == "blank":
            self._send_reply(model, body, "  \n\t ")
        elif kind == "nochoices":
            payload = self._completion(model, body, "")
            payload["choices"] = []
            self._send_json(200, payload)
        else:
            self._send_json(500, {"error": {"message": f"unknown behaviour {behaviour!r}"}})

    def _completion(self, model: str, body: Mapping[str, Any], text: str) -> dict[str, Any]:
        prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        prompt_tokens = _tokens(prompt)
        completion_tokens = len(text.split())
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _send_reply(self, model: str, body: Mapping[str, Any], text: str) -> None:
        self._send_json(200, self._completion(model, body, text))

    def _send_json(self, code: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send_raw(code, json.dumps(payload).encode(), "application/json", headers)

    def _send_raw(
        self,
        code: int,
        data: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to tell


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: OpenAIServer


class OpenAIServer:
    """Programmable OpenAI-compatible server on 127.0.0.1 in a background thread."""

    def __init__(self, behaviours: Mapping[str, str] | None = None) -> None:
        self.behaviours: dict[str, str] = dict(behaviours or {})
        self.requests: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.last_headers: dict[str, str] = {}  # lower-case names
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -------------------------------------------------------------
    def start(self) -> OpenAIServer:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="openai-test-server",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # programming and inspection ------------------------------------------
    def set(self, model: str, behaviour: str) -> None:
        with self._lock:
            self.behaviours[model] = behaviour

    def behaviour(self, model: str) -> str:
        with self._lock:
            return self.behaviours.get(model, DEFAULT_BEHAVIOUR)

    def count(self, model: str) -> int:
        with self._lock:
            return self.requests[model]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.bodies.clear()
            self.max_in_flight = 0

    def enter(self, model: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        with self._lock:
            self.requests[model] += 1
            self.bodies.append(body)
            self.last_headers = headers
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
