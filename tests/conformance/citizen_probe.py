"""The Kryten ecosystem's own code, pointed at a running kryten-rules on a real NATS server.

Run with the python of a virtualenv holding one of kryten-py, kryten-robot or
kryten-shell (tests/conformance/venvs.py). One scenario per run, named by the
first argument, with a JSON object of parameters as the second (always
``url``); the result is one JSON line on stdout. Every wait is for a
condition, bounded by ``timeout``.

Scenarios:

- ``py-commands`` (kryten-py): ``KrytenClient.nats_request`` with the flat
  form and kryten-shell's ``system`` form; ``KrytenClient.send_command`` (the
  nested form, published without a reply inbox) captured off the bus and sent
  again, byte for byte, as a request; a discovery poll through
  ``KrytenClient.publish`` and our startup as its subscriber sees it; and the
  startup kryten-py's own ``LifecycleEventPublisher`` writes, as the reference.
- ``py-restart`` (kryten-py): ``LifecycleEventPublisher.publish_group_restart``.
- ``robot-registry`` (kryten-robot): a real ``ServiceRegistry`` on kryten's
  ``NatsClient``; the robot's ``LifecycleEventPublisher`` announces a robot
  startup (kryten-rules must announce itself again), then the registry entry
  (``ServiceInfo.to_dict()``, what ``system.services`` returns) once it has
  counted ``heartbeats`` heartbeats.
- ``shell-ping`` (kryten-shell): ``KrytenClientWrapper.ping_service`` on
  ``kryten.rules.command``, as the shell's ``services`` command does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

RULES_SUBJECT = "kryten.rules.command"
log = logging.getLogger("citizen-probe")


async def until(pred: Any, timeout: float, what: Any) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what() if callable(what) else what}")
        await asyncio.sleep(0.02)


def _client_config(url: str) -> dict[str, Any]:
    return {"nats": {"servers": [url]}, "channels": [{"domain": "cytu.be", "channel": "probe"}]}


async def py_commands(p: dict[str, Any]) -> dict[str, Any]:
    import nats
    from kryten import KrytenClient
    from kryten.lifecycle_events import LifecycleEventPublisher

    out: dict[str, Any] = {}
    timeout = float(p.get("timeout", 10))
    client = KrytenClient(_client_config(p["url"]))
    await client.connect()
    raw = await nats.connect(p["url"])
    try:
        out["flat"] = await client.nats_request(
            RULES_SUBJECT,
            {"service": "rules", "command": "rules.explain", "text": p["text"], "user": "alice"},
            timeout=timeout,
        )
        out["system_ping"] = await client.nats_request(
            RULES_SUBJECT, {"service": "system", "command": "system.ping"}, timeout=timeout
        )
        out["stats"] = await client.nats_request(
            RULES_SUBJECT, {"command": "system.stats"}, timeout=timeout
        )

        sent: list[bytes] = []

        async def capture(msg: Any) -> None:
            sent.append(msg.data)

        sub = await raw.subscribe(RULES_SUBJECT, cb=capture)
        await raw.flush()
        await client.send_command("rules", "rules.explain", {"text": p["text"]}, channel="probe")
        await until(lambda: bool(sent), timeout, "send_command's message")
        await sub.unsubscribe()
        out["nested_sent"] = json.loads(sent[0])
        reply = await raw.request(RULES_SUBJECT, sent[0], timeout=timeout)
        out["nested"] = json.loads(reply.data)

        startups: list[dict[str, Any]] = []

        async def on_startup(msg: Any) -> None:
            startups.append({"subject": msg.subject, **json.loads(msg.data.decode())})

        await client.subscribe("kryten.lifecycle.*.startup", on_startup)
        # a round trip on the client's connection: the server has its SUB now
        await client.nats_request(RULES_SUBJECT, {"command": "system.ping"}, timeout=timeout)
        await client.publish("kryten.service.discovery.poll", {})
        ref = LifecycleEventPublisher(
            "reference", raw, log, version="1.0.0", health_port=1, metrics_port=1
        )
        await ref.publish_startup()
        await until(
            lambda: {s["service"] for s in startups} >= {"rules", "reference"},
            timeout,
            lambda: f"our startup and the reference's (got {startups})",
        )
        out["ours"] = next(s for s in startups if s["service"] == "rules")
        out["reference"] = next(s for s in startups if s["service"] == "reference")
    finally:
        await raw.close()
        await client.disconnect()
    return out


async def py_restart(p: dict[str, Any]) -> dict[str, Any]:
    import nats
    from kryten.lifecycle_events import LifecycleEventPublisher

    raw = await nats.connect(p["url"])
    try:
        pub = LifecycleEventPublisher("probe", raw, log)
        await pub.publish_group_restart(
            reason=p["reason"], delay_seconds=p["delay_seconds"], initiator=p["initiator"]
        )
        await raw.flush()
    finally:
        await raw.close()
    return {"published": True}


async def robot_registry(p: dict[str, Any]) -> dict[str, Any]:
    from kryten.config import NatsConfig
    from kryten.lifecycle_events import LifecycleEventPublisher
    from kryten.nats_client import NatsClient
    from kryten.service_registry import ServiceRegistry

    timeout = float(p.get("timeout", 10))
    nc = NatsClient(NatsConfig(servers=[p["url"]]), log)
    await nc.connect()
    registry = ServiceRegistry(nc, log)
    await registry.start()
    try:
        # the robot (re)starts with an empty registry and says so; kryten-rules
        # must answer with its startup to be listed at all
        robot = LifecycleEventPublisher("robot", nc, log, version="1.12.6")
        await robot.publish_startup()
        await until(lambda: registry.get_service("rules") is not None, timeout, "registration")
        service = registry.get_service("rules")
        assert service is not None
        first = service.to_dict()
        await until(
            lambda: service.heartbeat_count >= int(p["heartbeats"]), timeout, "heartbeats"
        )
        return {
            "first": first,
            "later": service.to_dict(),
            "active": [s.name for s in registry.get_active_services()],
        }
    finally:
        await registry.stop()
        await nc.disconnect()


class _App:
    """The little of kryten-shell's Textual app that its client wrapper calls."""

    def update_status(self, **kw: Any) -> None:
        pass

    def log_event(self, kind: str, data: Any) -> None:
        pass


async def shell_ping(p: dict[str, Any]) -> dict[str, Any]:
    from kryten_shell.client import KrytenClientWrapper
    from kryten_shell.config import NATSConfig, ShellConfig

    host, _, port = p["url"].removeprefix("nats://").rpartition(":")
    wrapper = KrytenClientWrapper(ShellConfig(nats=NATSConfig(host=host, port=int(port))), _App())
    if not await wrapper.connect():
        raise RuntimeError("kryten-shell could not connect")
    try:
        return {"info": await wrapper.ping_service(RULES_SUBJECT, timeout=float(p["timeout"]))}
    finally:
        await wrapper.disconnect()


SCENARIOS = {
    "py-commands": py_commands,
    "py-restart": py_restart,
    "robot-registry": robot_registry,
    "shell-ping": shell_ping,
}


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = asyncio.run(SCENARIOS[sys.argv[1]](json.loads(sys.argv[2])))
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
