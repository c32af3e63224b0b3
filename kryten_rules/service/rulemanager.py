"""The running rule set: load it, reload it aside, swap it atomically, report.

The rule set changes only between two events. A reload builds and checks the
new set in a worker thread (the running rules keep answering meanwhile), then
swaps it on the event loop in one assignment (``Engine.swap``), so no event is
lost, handled twice, or seen by half-swapped rules. A set with errors is never
installed; an unchanged one (same digest) is not swapped. Every reload is
reported: the returned outcome, the ``kryten.events.rules.reload`` event, the
metrics, and ``last_reload`` in ``rules.status``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kryten_rules.compile.load import build_ruleset
from kryten_rules.compile.ruleset import RuleSet
from kryten_rules.config import ServiceConfig
from kryten_rules.diagnostics import Diagnostic
from kryten_rules.engine.evaluate import Engine
from kryten_rules.errors import KrytenRulesError
from kryten_rules.ruleformat.treewalk import files_under
from kryten_rules.service.metrics import ChannelMetrics
from kryten_rules.service.worker import in_daemon_thread

log = logging.getLogger("kryten_rules.service")

RELOAD_SUBJECT = "kryten.events.rules.reload"
MAX_LOGGED_ERRORS = 5  # of a failed reload; the reload event carries all of them

Report = Callable[[str, bytes], Awaitable[None]]


class RulesFailed(KrytenRulesError, RuntimeError):
    """The rules did not load; ``diagnostics`` says why."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__(f"the rules have {sum(d.is_error for d in diagnostics)} error(s)")
        self.diagnostics = diagnostics


class RuleManager:
    def __init__(self, config: ServiceConfig, metrics: ChannelMetrics, report: Report) -> None:
        self.config = config
        self.metrics = metrics
        self._report = report  # publishes the reload outcome (a failure is logged)
        self.engine: Engine | None = None
        self.last_reload: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    async def load(self) -> RuleSet:
        """The first rule set; raises :class:`RulesFailed` (its errors logged)."""
        ruleset, diags = await asyncio.to_thread(build_ruleset, self.config.rules, self.config)
        if ruleset is None:
            for d in diags:
                log.error("%s: %s[%s]: %s", d.span, d.severity, d.code, d.message)
            raise RulesFailed(list(diags))
        self.metrics.rules.labels().set(len(ruleset.rules))
        return ruleset

    @property
    def ruleset(self) -> RuleSet:
        assert self.engine is not None
        return self.engine.ruleset

    def watched_paths(self) -> list[Path]:
        paths: list[Path] = []
        for p in self.config.rules:
            if p.is_dir():
                paths += [f for f in files_under(p)[0] if f.is_file()]  # no recursion
            else:
                paths.append(p)
        if self.engine is not None:
            paths += [Path(s) for s in self.ruleset.sources]
        return paths

    async def reload(self, reason: str = "request") -> dict[str, Any]:
        """Load and check the rule files in full; swap only a clean, changed set.

        Whatever goes wrong (a diagnostic, or an exception while building or
        installing the new set) the running set stays whole, the outcome is
        published on ``kryten.events.rules.reload`` and health shows it.
        """
        async with self._lock:
            t0 = time.perf_counter()
            try:
                outcome = await self._reload(reason, t0)
            except Exception as exc:
                log.exception("reload (%s) failed; the running rules stay", reason)
                self.metrics.reloads.labels("failed").inc()
                old = self.ruleset
                outcome = {
                    "ok": False,
                    "reason": reason,
                    "files": [str(f) for f in old.files],
                    "rules": len(old.rules),
                    "diagnostics": [],
                    "error": f"{type(exc).__name__}: {exc}",
                    "took_ms": round((time.perf_counter() - t0) * 1000, 1),
                    "changed": False,
                }
            self.last_reload = {**outcome, "at": datetime.now(UTC).isoformat()}
            try:
                await self._report(RELOAD_SUBJECT, json.dumps(outcome, default=str).encode())
            except Exception as exc:
                log.warning("reload (%s): the reload event was not published: %s", reason, exc)
            return outcome

    async def _reload(self, reason: str, t0: float) -> dict[str, Any]:
        config = self.config
        log.info("reload (%s): loading the rules", reason)
        ruleset, diags = await in_daemon_thread(
            lambda: build_ruleset(config.rules, config), "kryten-rules-reload"
        )
        took = round((time.perf_counter() - t0) * 1000, 1)
        engine = self.engine
        assert engine is not None
        outcome: dict[str, Any] = {
            "ok": ruleset is not None,
            "reason": reason,
            "files": [str(f) for f in (ruleset or engine.ruleset).files],
            "rules": len((ruleset or engine.ruleset).rules),
            "diagnostics": [d.as_dict() for d in diags],
            "took_ms": took,
            "changed": False,
        }
        if ruleset is None:
            self.metrics.reloads.labels("failed").inc()
            errors = [d for d in diags if d.is_error]
            more = len(errors) - MAX_LOGGED_ERRORS
            log.error(
                "reload (%s) failed; the running rules stay: %s%s",
                reason,
                "; ".join(_short(d) for d in errors[:MAX_LOGGED_ERRORS]),
                f" (and {more} more: `kryten-rules validate` lists them)" if more > 0 else "",
            )
        elif ruleset.digest == engine.ruleset.digest:
            self.metrics.reloads.labels("unchanged").inc()
            log.debug("reload (%s): no change", reason)
        else:
            engine.swap(ruleset)  # on the loop, between two events; all or nothing
            outcome["changed"] = True
            self.metrics.reloads.labels("ok").inc()
            self.metrics.rules.labels().set(len(ruleset.rules))
            log.info(
                "reload (%s): %d rules from %d files in %.0f ms",
                reason,
                len(ruleset.rules),
                len(ruleset.files),
                took,
            )
        return outcome

    def health(self) -> dict[str, Any] | None:
        """The last reload in short, for health; None before the first."""
        last = self.last_reload
        if last is None:
            return None
        short = {k: last.get(k) for k in ("ok", "reason", "at", "error", "changed")}
        return short | {"errors": sum(d["severity"] == "error" for d in last["diagnostics"])}

    @property
    def reloading(self) -> bool:
        """A reload is in progress."""
        return self._lock.locked()

    @property
    def reload_failed(self) -> bool:
        """The last reload failed: the running rules are not what the files say."""
        return self.last_reload is not None and not self.last_reload["ok"]

    def status(self) -> dict[str, Any]:
        rs = self.ruleset
        return {
            "files": [str(f) for f in rs.files],
            "rules": len(rs.rules),
            "rule_ids": [r.id for r in rs.rules],
            "digest": rs.digest,
            "last_reload": self.last_reload,
        }


def _short(d: Diagnostic) -> str:
    return f"{d.span}: [{d.code}] {d.message}"
