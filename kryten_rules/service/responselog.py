"""The JSONL response log: one line per decision that fired.

Appended with one ``write`` per line on a file opened in append mode, so lines
of concurrent writers never interleave and a crash loses at most the line
being written. Values come from the pipeline, never from the environment, so
no secret can reach it.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..engine import Decision
from ..llm.chain import ChainResult

log = logging.getLogger(__name__)


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
        "rank": decision.context["user"]["rank"] if decision.context else None,
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
        "dry_run": dry_run,
        "error": error,
    }


class ResponseLog:
    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        try:
            with self._lock, self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError as exc:  # a full disk must not stop the bot
            log.error("response log %s: %s", self.path, exc)
