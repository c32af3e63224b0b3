"""``kryten-rules record``: a channel's events from NATS into a file ``replay`` reads.

Each message on ``kryten.events.cytube.{channel}.>`` becomes one line
``{"subject": ..., "data": envelope}``, the form :func:`kryten_rules.tools.replay.read_log`
reads (``data`` is the envelope as a JSON object, or the message text when it
is not one: replay then names it as skipped). Lines are flushed as they come,
so a recording cut short by a crash still replays; SIGINT and SIGTERM stop it
cleanly, after the messages already received are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from kryten_rules.natsauth import NatsRefused, fatal_connect_error, refusal_message
from kryten_rules.redact import mask_credentials
from kryten_rules.wire import subscribe_subject


def record_line(subject: str, data: bytes) -> str:
    """One line of a recording (without the newline)."""
    text = data.decode("utf-8", "replace")
    try:
        env: Any = json.loads(text)
    except ValueError:
        env = None
    payload: Any = env if isinstance(env, dict) else text
    return json.dumps({"subject": subject, "data": payload}, ensure_ascii=False)


@dataclass(slots=True)
class Recorder:
    url: str
    channel: str
    out: IO[str]
    notify: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True)
    count: int = 0
    # nats-py authentication and TLS (kryten_rules.natsauth.connect_options), and its name
    options: dict[str, Any] = field(default_factory=dict)
    mode: str = "no authentication"

    async def run(self, stop: asyncio.Event) -> int:
        """Record until ``stop`` is set; the number of events written.

        Raises :class:`NatsRefused` when the server refuses the credentials
        (retrying would not help), as the service does at start.
        """
        import nats

        last_warning = [-1e9]
        safe_url = mask_credentials(self.url)
        refused: list[str] = []

        async def error(exc: Exception) -> None:
            reason = fatal_connect_error(exc)
            if reason is not None and not connect.done():
                if not refused:
                    refused.append(refusal_message(self.url, reason, self.mode, exc))
                    stop.set()
                return
            now = time.monotonic()
            if now - last_warning[0] > 30:
                last_warning[0] = now
                self.notify(
                    f"nats: cannot reach {safe_url} ({mask_credentials(str(exc))}); "
                    "retrying, Ctrl-C to stop"
                )

        async def disconnected() -> None:
            if not stop.is_set():
                self.notify(f"nats: disconnected from {safe_url}; events are lost until it is back")

        async def reconnected() -> None:
            self.notify(f"nats: reconnected to {safe_url}; recording again")

        # nats-py retries even the first connect for ever: a stop must interrupt it
        connect = asyncio.ensure_future(
            nats.connect(
                self.url,
                name=f"kryten-rules-record-{self.channel}",
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=2,
                error_cb=error,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                **self.options,
            )
        )
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({connect, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not connect.done():
            connect.cancel()
            await asyncio.gather(connect, return_exceptions=True)
            if refused:
                raise NatsRefused(refused[0])
            return self.count
        stopped.cancel()
        nc = connect.result()

        async def on_message(msg: Any) -> None:
            self.out.write(record_line(msg.subject, msg.data) + "\n")
            self.out.flush()
            self.count += 1

        try:
            subject = subscribe_subject(self.channel)
            sub: Any = await nc.subscribe(subject, cb=on_message)
            await nc.flush()
            self.notify(f"recording {subject} from {safe_url}; Ctrl-C (or SIGTERM) stops")
            await stop.wait()
            # what the server already sent us is written before we go
            with contextlib.suppress(Exception):
                await sub.drain()
        finally:
            with contextlib.suppress(Exception):
                await nc.close()
        return self.count


async def record(
    url: str,
    channel: str,
    out: IO[str],
    *,
    notify: Callable[[str], None] | None = None,
    options: dict[str, Any] | None = None,
    mode: str = "no authentication",
) -> int:
    """Record until SIGINT or SIGTERM; the number of events written."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    recorder = Recorder(url, channel, out, options=options or {}, mode=mode)
    if notify is not None:
        recorder.notify = notify
    try:
        return await recorder.run(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
