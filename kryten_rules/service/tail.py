"""``kryten-rules tail``: the bot's replies (and decisions) as they happen, one line each.

For a moderator watching the bot from a terminal. It reads what the service
publishes for other services (``events_out.py``), so it sees every bot on
that NATS server, filtered by channel and rule; it needs no config of the
bot and changes nothing. A line in ``text`` looks like::

    12:03:04 #420grindhouse alice -> mention (fast, 1.2s): "hello there"

``json`` prints each event as it was published, for ``jq``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kryten_rules.errors import KrytenRulesError
from kryten_rules.redact import mask_credentials
from kryten_rules.service.bus import ConnectStopped, Message, connect_nats
from kryten_rules.service.events_out import DECISION_SUBJECT, REPLY_SUBJECT

CONNECT_TIMEOUT = 5.0


class TailError(KrytenRulesError, RuntimeError):
    """tail cannot run (NATS unreachable); the message says so."""


@dataclass(frozen=True, slots=True)
class TailFilter:
    channel: str | None = None  # compared case-insensitively, as CyTube names channels
    rule: str | None = None
    decisions: bool = False

    def wants(self, doc: dict[str, Any]) -> bool:
        if not isinstance(doc, dict) or doc.get("type") not in ("reply", "decision"):
            return False
        if doc["type"] == "decision" and not self.decisions:
            return False
        if self.channel is not None and str(doc.get("channel", "")).lower() != self.channel.lower():
            return False
        if self.rule is not None:
            rules = {doc.get("rule"), doc.get("fired"), *(doc.get("would_fire") or ())}
            rules |= {t.get("rule") for t in doc.get("trace") or () if isinstance(t, dict)}
            if self.rule not in rules:
                return False
        return True


def _clock(iso: Any) -> str:
    """HH:MM:SS in the terminal's local time."""
    try:
        return datetime.fromisoformat(str(iso)).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return "--:--:--"


# anyone may publish on the events' subjects: no control character reaches the terminal
# (an escape sequence could recolour it, set its title, or forge a second line)
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}


def format_line(doc: dict[str, Any]) -> str:
    """One event as one line of text, control characters escaped."""
    return _format(doc).translate(_CONTROLS)


def _format(doc: dict[str, Any]) -> str:
    where = f"{_clock(doc.get('time'))} #{doc.get('channel', '')} {doc.get('user') or '-'}"
    if doc.get("type") == "reply":
        model = doc.get("model") or "fixed"
        seconds = float(doc.get("latency_ms") or 0) / 1000.0
        parts = [str(p) for p in doc.get("parts") or []]
        sent = int(doc.get("parts_sent") or 0)
        notes = ""
        if doc.get("dry_run"):
            notes = " [dry run]"
        elif sent < len(parts):
            notes = f" [{sent} of {len(parts)} parts sent: {doc.get('outcome')}]"
        text = " / ".join(parts)
        quoted = json.dumps(text, ensure_ascii=False)
        return f"{where} -> {doc.get('rule')} ({model}, {seconds:.1f}s){notes}: {quoted}"
    fired = doc.get("fired")
    if fired:
        what = f"fired {fired}"
    elif doc.get("blocked"):
        trace = [t for t in doc.get("trace") or () if isinstance(t, dict)]
        first: dict[str, Any] = next(
            (t for t in trace if t.get("reason") == doc.get("blocked")), {}
        )
        what = f"blocked {first.get('rule', '?')}: {doc.get('blocked')}"
    else:
        what = "nothing fired"
    shadow = doc.get("would_fire") or []
    if shadow:
        what += f" (shadow would fire: {', '.join(shadow)})"
    return f"{where} ? {doc.get('event')}: {what}"


async def tail(
    url: str,
    wanted: TailFilter,
    *,
    json_lines: bool = False,
    write: Callable[[str], None] = lambda line: print(line, flush=True),
    notify: Callable[[str], None] = lambda text: None,
    stop: asyncio.Event | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    options: Mapping[str, Any] | None = None,
    mode: str = "no authentication",
) -> int:
    """Print events until ``stop`` is set (or SIGINT/SIGTERM); the number printed.

    :class:`TailError` when NATS cannot be reached within ``connect_timeout``.
    """
    stop = stop or asyncio.Event()
    give_up = asyncio.Event()  # stops the connect: a signal, or the timeout

    def interrupted() -> None:
        stop.set()
        give_up.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted)
    timer = loop.call_later(connect_timeout, give_up.set)
    count = 0
    try:
        try:
            bus = await connect_nats(
                url,
                name="kryten-rules-tail",
                stop=give_up,
                on_state=lambda up: None,
                options=options,  # the config's credentials and TLS, as the service logs in
                mode=mode,
            )
        except ConnectStopped:
            if stop.is_set():
                return 0
            raise TailError(
                f"cannot connect to NATS at {mask_credentials(url)} within {connect_timeout:g}s"
            ) from None
        finally:
            timer.cancel()

        async def on_message(msg: Message) -> None:
            nonlocal count
            try:
                doc = json.loads(msg.data)
            except ValueError:
                return
            try:
                if not wanted.wants(doc):
                    return
                line = json.dumps(doc, ensure_ascii=False) if json_lines else format_line(doc)
            except Exception:  # anyone may publish there: a line we cannot read is skipped
                return
            write(line)
            count += 1

        try:
            subjects = [REPLY_SUBJECT, DECISION_SUBJECT] if wanted.decisions else [REPLY_SUBJECT]
            for subject in subjects:
                await bus.subscribe(subject, on_message)
            await bus.flush(timeout=connect_timeout)
            notify(f"tailing {', '.join(subjects)} on {mask_credentials(url)}; Ctrl-C stops")
            await stop.wait()
        finally:
            with contextlib.suppress(Exception):
                await bus.close()
        return count
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
