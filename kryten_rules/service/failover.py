"""Failover wiring: each channel held by a lease (``lease.py``), standbys (``standby.py``).

With ``state.store: jetstream`` every channel of this process tries to hold
its lease; while another instance holds it, the channel's inlet keeps its
events for a takeover and its replies are fenced by the lease (a claim per
reply). Kept apart from ``channel.py`` and ``bot.py``: they know nothing of
leases but the two hooks the inlet and replies expose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from kryten_rules.quietlog import QuietLog
from kryten_rules.service.channel import ChannelRuntime, Spawn
from kryten_rules.service.kvcodec import channel_prefix
from kryten_rules.service.lease import ChannelLease
from kryten_rules.service.metrics import Metrics

log = logging.getLogger("kryten_rules.service")


async def hold_channels(
    channels: Sequence[ChannelRuntime],
    nc: Any,
    *,
    ttl: float,
    metrics: Metrics,
    spawn: Spawn,
    quiet: QuietLog,
) -> None:
    """Start each channel's lease; a lone instance holds them at once."""
    for ch in channels:
        await _hold(ch, nc, ttl=ttl, metrics=metrics, spawn=spawn, quiet=quiet)
    # a moment for a lone instance to take them, so its first events are decided, not
    # held; all at once: a standby of many channels would otherwise wait 0.5 s for each
    await asyncio.gather(
        *(ch.inlet.lease.wait_owned(0.5) for ch in channels if ch.inlet.lease is not None)
    )


async def _hold(
    ch: ChannelRuntime, nc: Any, *, ttl: float, metrics: Metrics, spawn: Spawn, quiet: QuietLog
) -> None:
    label = ch.channel.label

    def changed(owned: bool) -> None:
        if owned:
            held = ch.inlet.take_over()
            log.info("%s: this instance answers it now; %d held event(s) to decide",
                     label, len(held))
            if held:
                spawn(ch.inlet.decide_held(lambda: ch.rules.engine, held), f"takeover:{ch.name}")
        elif not lease.stopping:
            log.warning("%s: another instance answers it now: standing by", label)

    key = channel_prefix(ch.channel.cytube.domain, ch.name).rstrip(".")
    lease = ChannelLease(nc, key, ttl=ttl, on_change=changed, quiet=quiet)
    ch.inlet.lease = lease  # before it can be taken: a takeover reads it
    try:
        await lease.start()
    except Exception as exc:  # JetStream off or out of reach: nobody else can hold it
        ch.inlet.lease = None
        log.warning(
            "%s: failover off: cannot open the lease bucket %s (%s); this instance answers "
            "the channel alone (another instance on it would answer too)",
            label, lease.bucket, exc,
        )
        return
    ch.replies.fence = lambda decision: lease.claim(decision.event.correlation_id)
    metrics.lease_held.labels(ch.name).set_function(lambda: 1.0 if lease.owned else 0.0)


async def stop_deciding(channels: Sequence[ChannelRuntime]) -> None:
    """Intake is closed: say so in each lease, so a standby knows which events are its."""
    for ch in channels:
        if ch.inlet.lease is not None:
            with contextlib.suppress(Exception):
                await ch.inlet.lease.mark_stopped()


async def release(channels: Sequence[ChannelRuntime]) -> None:
    """Hand every channel over at once (SIGTERM), once the replies in flight are done."""
    for ch in channels:
        if ch.inlet.lease is not None:
            await ch.inlet.lease.stop(release=True)


def lease_health(ch: ChannelRuntime) -> dict[str, Any] | None:
    """Whether this instance holds the channel (a standby is healthy too)."""
    lease = ch.inlet.lease
    if lease is None:
        return None
    return {
        "held": lease.owned,
        "holder": lease.holder,
        "instance": lease.owner,
        "events_held": len(ch.inlet.standby),
    }


__all__ = ["hold_channels", "lease_health", "release", "stop_deciding"]
