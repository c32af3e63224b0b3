"""The JSONL response log: one line per decision that fired.

Every decision that fired gets its line, whatever became of it: ``outcome``
says what (``sent``, ``dry_run``, ``shadow``, ``silent``, ``overloaded``,
``error``, or why the message did not reach the channel: ``refused``,
``no_answer``, ``no_robot``, ``too_old``, ``queue_full``, ...), and ``sent``
is true only when kryten-robot confirmed every part. A line is written once
that outcome is known, so it never guesses.

Every line is whole or absent. Each is written with one ``os.write`` on a file
descriptor opened with ``O_APPEND`` (so lines of concurrent writers never
interleave); a write the kernel cuts short (a full disk, a file-size limit) is
taken back by truncating the file to its size before the write, so a reader
never meets half a JSON line. Values come from the pipeline, never from the
environment; URLs in them (a model's error naming its ``api_base``) are masked
by :func:`kryten_rules.redact.mask_credentials`.

A log that cannot be written is an ERROR once a minute per kind of failure
(:class:`~kryten_rules.service.quietlog.QuietLog`), not one per decision.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kryten_rules.dispatch.llm.chain import ChainResult
from kryten_rules.engine.evaluate import Decision
from kryten_rules.quietlog import QuietLog
from kryten_rules.redact import mask_credentials

log = logging.getLogger(__name__)


def _rank(decision: Decision) -> int | None:
    """The sender's rank as the templates saw it; None for a timer, which has no sender."""
    user = decision.context["user"] if decision.context else None
    return user["rank"] if user else None


def response_record(
    decision: Decision,
    *,
    channel: str,
    prompt_hash: str | None,
    result: ChainResult | None,
    parts: list[str],
    via: str,
    sent: bool,
    dry_run: bool,
    took: float,
    error: str | None,
    outcome: str | None = None,
    parts_sent: int = 0,
    send_error: str | None = None,
    hint: str | None = None,
) -> dict[str, Any]:
    """One line of the response log: who, which rule and why, which model, what was said."""
    ev = decision.event
    rule = decision.rule
    assert rule is not None
    attempts: list[dict[str, Any]] = [
        {
            "model": a.model,
            "outcome": a.outcome,
            "latency": round(a.latency, 4),
            "prompt_tokens": a.prompt_tokens,
            "completion_tokens": a.completion_tokens,
            "cost": a.cost,
            "error": a.error,
        }
        for a in (result.attempts if result else ())
    ]
    tokens = [(a["prompt_tokens"] or 0) + (a["completion_tokens"] or 0) for a in attempts]
    return {
        "time": datetime.now(UTC).isoformat(),
        "channel": channel,
        "user": ev.user,
        "rank": _rank(decision),
        "event": ev.kind,
        "rule": rule.id,
        "mode": rule.mode,
        "trace": [f"{t.rule}:{t.reason or t.outcome}" for t in decision.trace],
        "prompt_hash": prompt_hash,
        "model": result.model if result else None,
        "attempts": attempts,
        "latency": round(took, 4),
        "tokens": sum(tokens) if tokens else None,
        "cost": result.cost if result else None,
        "via": via,
        "parts": parts,
        "sent": sent,
        "outcome": outcome or ("sent" if sent else "silent"),
        "parts_sent": parts_sent,
        "send_error": send_error,
        "hint": hint,
        "dry_run": dry_run,
        "error": error,
    }


class ResponseLog:
    """Appends records to ``path`` (``None``: records are dropped)."""

    _FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._quiet = QuietLog(log)

    def open(self) -> None:
        """Create the directory and check the file can be appended to.

        Called at start, so an unwritable log is the operator's error message
        then (``OSError``), not one lost line per decision later.
        """
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(self.path, self._FLAGS, 0o644))

    def write(self, record: dict[str, Any]) -> bool:
        """Append one record as one line; False (and logged) when it could not be."""
        if self.path is None:
            return False
        line = mask_credentials(json.dumps(record, ensure_ascii=False, default=str)) + "\n"
        data = line.encode("utf-8")
        with self._lock:
            try:
                fd = os.open(self.path, self._FLAGS, 0o644)
            except OSError as exc:
                self._quiet.error(
                    f"open:{exc.errno}", "response log %s: %s", self.path, exc.strerror or exc
                )
                return False
            try:
                return self._append(fd, data)
            finally:
                os.close(fd)

    def _append(self, fd: int, data: bytes) -> bool:
        before = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
        except OSError as exc:  # nothing, or an unknown part, was written
            reason, kind = exc.strerror or str(exc), f"errno:{exc.errno}"
        else:
            if written == len(data):
                return True
            reason, kind = f"short write ({written} of {len(data)} bytes)", "short"
        try:
            os.ftruncate(fd, before)  # take back what part of the line got through
        except OSError as exc:
            self._quiet.error(
                "truncate", "response log %s: cannot remove a partial line: %s", self.path, exc
            )
        self._quiet.error(kind, "response log %s: line not written: %s", self.path, reason)
        return False
