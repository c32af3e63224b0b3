"""Lifecycle: how the service announces itself, stays registered and restarts on request.

Kryten services (kryten-py 0.17's ``LifecycleEventPublisher``, kryten-robot
1.12's ``ServiceRegistry``) agree on:

* ``kryten.lifecycle.rules.{startup,heartbeat,shutdown}`` with ``{service,
  version, hostname, timestamp, uptime_seconds, metadata}``. The robot's
  registry reads ``metadata.endpoints.{health,metrics}`` as ``{port, path}``
  and builds its URLs from our hostname; we add ``url`` (from the address the
  endpoint really listens on) for tools that want it whole.
* A heartbeat every 30 s by default: the registry marks a service stale after
  90 s without one, so three missed beats are one stale service.
* Announcing startup again when asked (``kryten.service.discovery.poll``) and
  when kryten-robot (re)starts (``kryten.lifecycle.robot.startup``): a new robot
  has an empty registry and only learns of services that announce themselves.
* ``kryten.lifecycle.group.restart`` ``{initiator, reason, delay_seconds}``: after
  the delay the service stops cleanly and the process exits with
  :data:`EXIT_RESTART` (75), which a supervisor with ``Restart=on-failure``
  (our systemd unit) or ``--restart on-failure`` (a container) starts again.
  Re-executing ourselves would dodge the supervisor's view of the process and
  its restart limits; a clean exit lets it do what it is for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import socket
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kryten_rules.errors import KrytenRulesError
from kryten_rules.redact import mask_credentials
from kryten_rules.service.bus import Message
from kryten_rules.version import __version__

if TYPE_CHECKING:
    from kryten_rules.service.bot import Bot

log = logging.getLogger("kryten_rules.service")

SERVICE = "rules"
DISCOVERY_SUBJECT = "kryten.service.discovery.poll"
ROBOT_STARTUP_SUBJECT = "kryten.lifecycle.robot.startup"
GROUP_RESTART_SUBJECT = "kryten.lifecycle.group.restart"
# as kryten-py's publisher, when a notice names no delay
DEFAULT_RESTART_DELAY = 5.0
# as kryten-robot's system.shutdown: a longer delay is a typo, not a plan
MAX_RESTART_DELAY = 300.0
EXIT_RESTART = 75  # EX_TEMPFAIL: "try again", restarted by Restart=on-failure


def lifecycle_subject(event: str) -> str:
    return f"kryten.lifecycle.{SERVICE}.{event}"


class RestartNoticeError(KrytenRulesError, ValueError):
    """A group restart notice we cannot act on; the message says why."""


def parse_restart_notice(data: bytes) -> tuple[str, str, float]:
    """``(initiator, reason, delay_seconds)`` of a ``kryten.lifecycle.group.restart`` notice.

    Missing fields get kryten-py's defaults; a delay that is not a number in
    0..300 s is refused rather than guessed at.
    """
    try:
        notice = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RestartNoticeError(f"not JSON: {exc}") from None
    if not isinstance(notice, dict):
        raise RestartNoticeError("the notice must be a JSON object")
    delay = notice.get("delay_seconds", DEFAULT_RESTART_DELAY)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay):
        raise RestartNoticeError(f"delay_seconds must be a number, not {delay!r}")
    if not 0 <= delay <= MAX_RESTART_DELAY:
        raise RestartNoticeError(f"delay_seconds must be within 0..{MAX_RESTART_DELAY:g}")
    initiator = str(notice.get("initiator", "unknown"))[:100]
    reason = str(notice.get("reason", "No reason provided"))[:300]
    return initiator, reason, float(delay)


class Lifecycle:
    """The service's lifecycle events; reads the running :class:`~.bot.Bot`'s parts."""

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self.hostname = socket.gethostname()
        self.restart_pending = False

    def endpoints(self) -> dict[str, dict[str, Any]]:
        """``{health, metrics}`` as ``{port, path, url}``; empty while no endpoint listens."""
        http = self.bot.http
        if http is None:
            return {}
        return {
            name: {"port": http.port, "path": path, "url": f"http://{http.address}{path}"}
            for name, path in (("health", "/health"), ("metrics", "/metrics"))
        }

    def metrics_endpoint(self) -> str | None:
        return self.endpoints().get("metrics", {}).get("url")

    def payload(self, **extra: Any) -> dict[str, Any]:
        bot = self.bot
        metadata: dict[str, Any] = {
            "channel": bot.config.cytube.channel,  # the first; `channels` names them all
            "channels": [ch.name for ch in bot.channels],
            "rules": sum(len(ch.rules.ruleset.rules) for ch in bot.channels if ch.engine),
            "dry_run": bot.dry_run,
        }
        endpoints = self.endpoints()
        if endpoints:
            metadata["endpoints"] = endpoints
        return {
            "service": SERVICE,
            "version": __version__,
            "hostname": self.hostname,
            "timestamp": datetime.now(UTC).isoformat(),
            "uptime_seconds": round(bot.clock.now() - bot.started_at, 3),
            "metadata": metadata,
            **extra,
        }

    async def publish(self, event: str, **extra: Any) -> None:
        bus = self.bot.bus
        assert bus is not None
        payload = mask_credentials(json.dumps(self.payload(**extra)))
        await bus.publish(lifecycle_subject(event), payload.encode())

    async def heartbeat(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            bus = self.bot.bus
            if bus is not None and bus.connected:
                with contextlib.suppress(Exception):
                    await self.publish("heartbeat")

    async def announce(self, msg: Message) -> None:
        """A discovery poll or a robot's startup: announce ourselves again."""
        with contextlib.suppress(Exception):
            await self.publish("startup")

    async def on_group_restart(self, msg: Message) -> None:
        try:
            initiator, reason, delay = parse_restart_notice(msg.data)
        except RestartNoticeError as exc:
            log.warning("ignored a group restart notice: %s", exc)
            return
        if self.restart_pending:
            log.info("group restart notice from %s: a restart is already scheduled", initiator)
            return
        self.restart_pending = True
        log.warning(
            "group restart requested by %s (%s): stopping in %gs, exit %d to be restarted",
            initiator,
            reason,
            delay,
            EXIT_RESTART,
        )
        self.bot._spawn(self._restart_after(delay, f"group restart by {initiator}: {reason}"),
                        "restart")

    async def _restart_after(self, delay: float, reason: str) -> None:
        await asyncio.sleep(delay)
        self.bot.request_restart(reason)
