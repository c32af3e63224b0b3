"""Who answers a channel: a lease in a JetStream KV bucket, one owner at a time.

Two or more instances with the same config and ``state.store: jetstream``
each try to hold the channel's lease; the holder answers, the others stand
by (``standby.py``) and take over when the lease is free.

How the lease works, all on the NATS server's clock:

* the bucket keeps one revision per key and drops any message older than
  the lease's ``ttl`` (the bucket's ``max_age``), so a lease nobody renews
  is gone ``ttl`` seconds after its holder's last write, whoever's clock is
  wrong;
* taking it is ``create`` (fails while someone holds it); keeping it is an
  ``update`` that names the revision the holder last wrote (fails if anyone
  else wrote since), every ``ttl / 3``;
* a holder that stops (SIGTERM) deletes it, so a standby that watches the
  key takes over at once instead of after ``ttl``.

The value is also the fencing token of every reply: before a part is sent,
:meth:`ChannelLease.claim` writes the triggering event's id into the lease
with the same conditional update. If that fails the lease is lost and the
reply is dropped, so two instances never both answer an event. A standby
that takes over reads the ids the last holder claimed (the newest
:data:`ANSWERED_KEPT`) and does not answer those events again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from kryten_rules.quietlog import QuietLog

log = logging.getLogger("kryten_rules.service")

DEFAULT_BUCKET = "kryten_rules_leases"
DEFAULT_TTL = 3.0  # a dead holder's channels are free this long after its last write
ANSWERED_KEPT = 256  # event ids a lease remembers; a takeover replays seconds, not minutes
OP_TIMEOUT = 2.0


def instance_id() -> str:
    """This process's name in a lease: host, pid and a random part (pids repeat)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class ChannelLease:
    """The lease of one channel, held or watched by this instance.

    ``on_change(owned)`` is called on the event loop whenever this instance
    takes the lease or loses it. :attr:`seen` is the monotonic time until which
    this instance knows the holder was deciding events (its last write, or the
    write that said it stopped), :attr:`peer_answered` the event ids it claimed.
    """

    def __init__(
        self,
        nc: Any,
        key: str,
        *,
        bucket: str = DEFAULT_BUCKET,
        ttl: float = DEFAULT_TTL,
        owner: str | None = None,
        on_change: Callable[[bool], None] | None = None,
        quiet: QuietLog | None = None,
    ) -> None:
        self.nc = nc
        self.key = key
        self.bucket = bucket
        self.ttl = ttl
        self.owner = owner or instance_id()
        self.on_change = on_change
        self.owned = False
        self.holder: str | None = None  # who holds it, as far as this instance knows
        self.seen = 0.0
        self.peer_answered: frozenset[str] = frozenset()
        self._peer_stopped = False  # the holder said it stopped deciding (SIGTERM)
        self._stopped = False
        self._answered: deque[str] = deque(maxlen=ANSWERED_KEPT)
        self._revision = 0
        self._kv: Any = None
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._quiet = quiet or QuietLog(log)

    # --- life cycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Open (or make) the bucket and start trying to hold the lease."""
        await self._open()
        self._tasks = [
            asyncio.create_task(self._hold(), name=f"lease-{self.key}"),
            asyncio.create_task(self._watch(), name=f"lease-watch-{self.key}"),
        ]

    async def _open(self) -> None:
        """The bucket, made when missing (also when it was deleted while running)."""
        from nats.js.api import KeyValueConfig
        from nats.js.errors import BucketNotFoundError

        js = self.nc.jetstream(timeout=OP_TIMEOUT)
        try:
            self._kv = await js.key_value(self.bucket)
        except BucketNotFoundError:
            self._kv = await js.create_key_value(
                KeyValueConfig(bucket=self.bucket, history=1, ttl=self.ttl)
            )
            return
        with contextlib.suppress(Exception):
            ttl = (await self._kv.status()).ttl
            if ttl and abs(ttl - self.ttl) > 0.01:
                log.warning(
                    "the lease bucket %s drops a lease after %gs, not lease_ttl %gs (it was "
                    "made with another lease_ttl): delete it (nats kv rm %s) to change that",
                    self.bucket, ttl, self.ttl, self.bucket,
                )

    async def stop(self, *, release: bool = True) -> None:
        """Stop renewing; with ``release``, hand the lease over at once (SIGTERM)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if release and self.owned:
            async with self._lock:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self._kv.delete(self.key, last=self._revision), OP_TIMEOUT
                    )
            self._set_owned(False)
            log.info("lease of %s released for a standby to take over", self.key)

    @property
    def stopping(self) -> bool:
        """This holder said it decides no more events (:meth:`mark_stopped`)."""
        return self._stopped

    async def mark_stopped(self) -> None:
        """Say in the lease that this holder decides no more events (its intake is
        closed); the replies it has in flight still claim. A standby then knows
        which events are its to decide when it takes over."""
        async with self._lock:
            self._stopped = True
            if self.owned:
                await self._write()

    async def wait_owned(self, timeout: float) -> bool:
        """Until this instance holds the lease, or ``timeout`` seconds (tests, start-up)."""
        deadline = time.monotonic() + timeout
        while not self.owned and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.05)
        return self.owned

    # --- the fencing token ----------------------------------------------------------

    async def claim(self, event_id: str) -> bool:
        """Claim the answer to an event: true if this instance holds the lease and
        the claim is on the server; false means do not send (the lease is lost)."""
        if not self.owned:
            return False
        async with self._lock:
            if not self.owned:
                return False
            if event_id:
                self._answered.append(event_id)
            return await self._write()

    # --- internals ---------------------------------------------------------------------

    def _value(self) -> bytes:
        value: dict[str, Any] = {"owner": self.owner, "answered": list(self._answered)}
        if self._stopped:
            value["stopped"] = True
        return json.dumps(value, separators=(",", ":")).encode()

    async def _write(self) -> bool:
        """Renew (or claim) with a conditional update.

        Someone else's write since ours (or the key gone) loses the lease. The
        bucket out of reach does not: nobody can take the lease meanwhile, so the
        holder answers on, from memory, as it does for its state (the claim fails
        open), and the next write after the outage settles who holds it.
        """
        from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError

        try:
            self._revision = await asyncio.wait_for(
                self._kv.update(self.key, self._value(), last=self._revision), OP_TIMEOUT
            )
            return True
        except (KeyWrongLastSequenceError, KeyNotFoundError, KeyDeletedError) as exc:
            self._quiet.warning(
                f"lease-lost:{self.key}", "lease of %s lost (%s): standing by", self.key,
                type(exc).__name__,
            )
            self._set_owned(False)
            return False
        except Exception as exc:
            self._quiet.warning(
                f"lease-unreachable:{self.key}",
                "lease of %s not renewed (%s): the bucket is out of reach; answering on",
                self.key, type(exc).__name__,
            )
            return True

    async def _try_take(self) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        async with self._lock:
            try:
                self._revision = await asyncio.wait_for(
                    self._kv.create(self.key, self._value()), OP_TIMEOUT
                )
            except KeyWrongLastSequenceError:
                return  # held by someone else
            except Exception as exc:
                self._quiet.warning(
                    f"lease-take:{self.key}", "cannot take the lease of %s: %s", self.key, exc
                )
                with contextlib.suppress(Exception):
                    await self._open()  # the bucket deleted under us: made again
                return
            self._answered.clear()
            self.holder = self.owner
            self._set_owned(True)
            log.info("lease of %s taken: this instance answers it", self.key)

    async def _hold(self) -> None:
        while True:
            if self.owned:
                async with self._lock:
                    if self.owned:
                        await self._write()
                await asyncio.sleep(self.ttl / 3)
            else:
                await self._try_take()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.ttl / 6)

    async def _watch(self) -> None:
        """See the holder's writes (and a release, to take over at once)."""
        while True:
            try:
                watcher = await self._kv.watch(self.key)
                async for entry in watcher:
                    self._seen_entry(entry)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._quiet.warning(f"lease-watch:{self.key}", "lease watch: %s", exc)
                await asyncio.sleep(self.ttl / 3)

    def _seen_entry(self, entry: Any) -> None:
        if entry is None:  # the end of the initial values
            return
        if entry.operation is not None or entry.value is None:  # deleted: free now
            self.holder = None
            self._wake.set()
            return
        try:
            value = json.loads(entry.value)
            holder = str(value["owner"])
            answered = frozenset(str(a) for a in value.get("answered", ()))
            stopped = bool(value.get("stopped", False))
        except (ValueError, KeyError, TypeError):
            return
        if holder != self.holder:
            self._peer_stopped = False
        self.holder = holder
        if holder != self.owner:
            # `seen`: until when the holder decided events. Its writes after it said it
            # stopped (the claims of replies in flight) do not move it on.
            if not self._peer_stopped:
                self.seen = time.monotonic()
            self._peer_stopped = stopped
            self.peer_answered = answered

    def _set_owned(self, owned: bool) -> None:
        if owned == self.owned:
            return
        self.owned = owned
        if self.on_change is not None:
            self.on_change(owned)


__all__ = ["DEFAULT_BUCKET", "DEFAULT_TTL", "ChannelLease", "instance_id"]
