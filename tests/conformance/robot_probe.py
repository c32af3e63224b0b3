"""Ask the real kryten-robot package what it publishes and what it accepts.

Run with the python of a virtualenv that has ``kryten-robot`` installed (its
top-level ``kryten`` package clashes with kryten-py, so it cannot live in the
project's venv). It reads one JSON request per line on stdin and writes one
JSON response per line on stdout; nothing else goes to stdout. Bytes travel
base64-encoded so the comparison on the other side is exact.

Requests (``op`` selects):

- ``{"op": "version"}`` -> ``{"version"}``
- ``{"op": "normalize", "token"}`` -> ``{"token"}``: ``subject_builder.normalize_token``.
- ``{"op": "event", "event_name", "payload", "channel", "domain", "timestamp"?,
  "correlation_id"?}`` -> ``{"subject", "data_b64"}``: a ``RawEvent`` and the
  subject ``build_event_subject`` gives it, as ``EventPublisher`` publishes.
- ``{"op": "command", "data_b64", "domain", "channel"}`` -> ``{"emitted",
  "reply"}``: the bytes fed to ``RobotCommandHandler._handle_command`` of a robot
  configured for domain/channel, with the real ``CytubeEventSender`` over a fake
  socket. ``emitted`` lists the ``[event, data]`` Socket.IO frames sent to
  CyTube; ``reply`` is the JSON response published to the reply inbox, or
  ``null`` when the handler stayed silent.
- ``{"op": "kv", "channel", "events": [[event_name, payload], ...]}`` ->
  ``{"buckets", "puts"}``: a real ``StateManager`` over a fake JetStream, fed the
  events the way ``kryten.__main__``'s state callback dispatches them (user list and
  playlist events, ``changeMedia``, ``setCurrent``); ``puts``
  lists ``[bucket, key, value_b64]``.

Any failure answers ``{"error": "..."}`` for that request only.

``robot_probe.py --serve`` instead plays the robot's command side on a real
NATS server: it reads one line ``{"url", "domain", "channel",
"commands_enabled"}``, connects kryten's own ``NatsClient``, starts a real
``RobotCommandHandler`` on ``kryten.robot.command`` (with a real
``CytubeEventSender`` over a fake socket when commands are enabled, and no
sender when they are not, as ``kryten.__main__`` wires it), prints
``{"ready": true}``, then one ``{"emitted": [event, data]}`` line per frame
sent to CyTube, until stdin closes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sys
from types import SimpleNamespace
from typing import Any

import kryten
from kryten.cytube_event_sender import CytubeEventSender
from kryten.raw_event import RawEvent
from kryten.robot_command_handler import RobotCommandHandler
from kryten.state_manager import StateManager
from kryten.subject_builder import build_event_subject, normalize_token

LOG = logging.getLogger("robot_probe")
LOG.addHandler(logging.NullHandler())
LOG.propagate = False


class FakeSocket:
    """Records what the sender would emit over Socket.IO to CyTube."""

    def __init__(self) -> None:
        self.emitted: list[list[Any]] = []

    async def emit(self, event: str, data: Any, *args: Any, **kwargs: Any) -> None:
        self.emitted.append([event, data])


class FakeConnector:
    """Just enough of CytubeConnector for CytubeEventSender.send_chat/send_pm."""

    def __init__(self) -> None:
        self.is_connected = True
        self._socket = FakeSocket()


class PrintingSocket(FakeSocket):
    """A FakeSocket that also reports each frame on stdout (serve mode)."""

    async def emit(self, event: str, data: Any, *args: Any, **kwargs: Any) -> None:
        self.emitted.append([event, data])
        _print({"emitted": [event, data]})


def _print(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


async def serve(req: dict[str, Any]) -> None:
    """The real command handler on a real NATS connection, until stdin closes."""
    from kryten.config import NatsConfig
    from kryten.nats_client import NatsClient

    nats_client = NatsClient(NatsConfig(servers=[req["url"]], max_reconnect_attempts=0), LOG)
    await nats_client.connect()
    config = SimpleNamespace(
        cytube=SimpleNamespace(domain=req["domain"], channel=req["channel"]),
        health=SimpleNamespace(enabled=False),
    )
    connector = FakeConnector()
    connector._socket = PrintingSocket()
    # kryten.__main__ makes a sender only when config.commands.enabled (default false)
    sender = CytubeEventSender(connector, LOG) if req["commands_enabled"] else None
    handler = RobotCommandHandler(
        nats_client=nats_client, logger=LOG, version="probe", config=config, sender=sender
    )
    await handler.start()
    await nats_client._nc.flush()
    _print({"ready": True})
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):
        pass
    await handler.stop()
    await nats_client.disconnect()


class FakeNats:
    """Records publishes (the handler's replies); no real connection."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self._nc = None
        self.is_connected = True

    async def publish(self, subject: str, data: bytes) -> None:
        self.published.append((subject, data))


class FakeMsg:
    def __init__(self, data: bytes, reply: str) -> None:
        self.data = data
        self.reply = reply
        self.subject = "kryten.robot.command"


async def run_command(req: dict[str, Any]) -> dict[str, Any]:
    config = SimpleNamespace(
        cytube=SimpleNamespace(domain=req["domain"], channel=req["channel"]),
        health=SimpleNamespace(enabled=False),
    )
    connector = FakeConnector()
    nats = FakeNats()
    sender = CytubeEventSender(connector, LOG)
    handler = RobotCommandHandler(
        nats_client=nats, logger=LOG, version="probe", config=config, sender=sender
    )
    reply_inbox = "_INBOX.probe"
    await handler._handle_command(FakeMsg(base64.b64decode(req["data_b64"]), reply_inbox))
    replies = [json.loads(data) for subject, data in nats.published if subject == reply_inbox]
    return {"emitted": connector._socket.emitted, "reply": replies[0] if replies else None}


class FakeKV:
    def __init__(self, bucket: str, puts: list[list[str]]) -> None:
        self.bucket = bucket
        self.puts = puts

    async def put(self, key: str, value: bytes) -> int:
        self.puts.append([self.bucket, key, base64.b64encode(value).decode()])
        return len(self.puts)


class FakeJetStream:
    def __init__(self) -> None:
        self.buckets: list[str] = []
        self.puts: list[list[str]] = []

    async def key_value(self, bucket: str) -> FakeKV:
        self.buckets.append(bucket)
        return FakeKV(bucket, self.puts)


async def run_kv(req: dict[str, Any]) -> dict[str, Any]:
    js = FakeJetStream()
    nats = SimpleNamespace(is_connected=True, _nc=SimpleNamespace(jetstream=lambda: js))
    state = StateManager(nats, req["channel"], LOG)
    await state.start()
    for event_name, payload in req["events"]:
        # Mirrors update_state() in kryten/__main__.py (a closure, not importable).
        if event_name == "userlist":
            await state.set_userlist(payload)
        elif event_name == "addUser":
            await state.add_user(payload)
        elif event_name == "userLeave":
            if payload.get("name"):
                await state.remove_user(payload["name"])
        elif event_name == "setUserRank":
            if payload.get("name") is not None:
                await state.update_user({"name": payload["name"], "rank": payload.get("rank")})
        elif event_name == "playlist":
            await state.set_playlist(payload)
        elif event_name == "queue":
            await state.add_playlist_item(payload.get("item", {}), payload.get("after"))
        elif event_name == "delete":
            if payload.get("uid"):
                await state.remove_playlist_item(payload["uid"])
        elif event_name == "moveVideo":
            if payload.get("from") and payload.get("after") is not None:
                await state.move_playlist_item(payload["from"], str(payload["after"]))
        elif event_name == "changeMedia":
            await state.update_current_media(payload)
        elif event_name == "setCurrent":
            await state.set_current_uid(payload)
        else:
            raise ValueError(f"unsupported event {event_name}")
    return {"buckets": js.buckets, "puts": js.puts}


def run_event(req: dict[str, Any]) -> dict[str, Any]:
    extra = {k: req[k] for k in ("timestamp", "correlation_id") if k in req}
    raw = RawEvent(req["event_name"], req["payload"], req["channel"], req["domain"], **extra)
    return {
        "subject": build_event_subject(raw),
        "data_b64": base64.b64encode(raw.to_bytes()).decode(),
    }


def handle(req: dict[str, Any]) -> dict[str, Any]:
    op = req.get("op")
    if op == "version":
        return {"version": kryten.__version__}
    if op == "normalize":
        return {"token": normalize_token(req["token"])}
    if op == "event":
        return run_event(req)
    if op == "command":
        return asyncio.run(run_command(req))
    if op == "kv":
        return asyncio.run(run_kv(req))
    raise ValueError(f"unknown op {op!r}")


def main() -> None:
    if sys.argv[1:] == ["--serve"]:
        asyncio.run(serve(json.loads(sys.stdin.readline())))
        return
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            response = handle(json.loads(line))
        except Exception as exc:  # report, keep serving the other requests
            response = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(response) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
