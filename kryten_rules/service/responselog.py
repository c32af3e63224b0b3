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
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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
