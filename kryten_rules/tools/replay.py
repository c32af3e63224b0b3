"""``kryten-rules replay``: a recorded channel through the rules, in its own time.

The log is JSONL of Kryten-Robot event envelopes exactly as they appear on
NATS (one envelope per line; a line may also be ``{"subject": ..., "data":
envelope}`` as ``nats sub --json`` style recorders write). Each event is
decoded by the same code as the live service (``wire.decode_message``), let
through or ignored by the same intake (``intake.Intake``) and evaluated on a
virtual clock set to the event's recorded time. Timers (v1.1) run in that
recorded time too: before each event, every turn that came since the last one
is taken at its own moment, so a replay shows when timers would have spoken
(their clocks start at the recording's first event).

No line stops a replay: a line that is not an event is *skipped*, counted
under its reason (``not JSON``, ``missing channel``, ...) and, with
``verbose``, reported with its line number. ``kryten-rules record`` writes
the ``{"subject", "data"}`` form.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from kryten_rules.clock import VirtualClock
from kryten_rules.compile.ruleset import RuleSet
from kryten_rules.config import DEFAULT_HISTORY_SLACK
from kryten_rules.engine.evaluate import Decision, Engine
from kryten_rules.engine.timers import Schedule
from kryten_rules.intake import Intake
from kryten_rules.senders import Ignored
from kryten_rules.wire import MalformedEvent, decode_message, event_subject, rank_changes

MAX_GAP_TURNS = 10_000  # timer turns taken between two events at most (see _run_timers)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A line of the log that is not an event the rules can see, and why."""

    line: int
    reason: str


@dataclass(frozen=True, slots=True)
class LogEvent:
    line: int
    subject: str
    data: bytes
    env_time: float | None


@dataclass(slots=True)
class ReplayStats:
    events: int = 0
    chat_lines: int = 0
    malformed: int = 0
    timer_turns: int = 0  # v1.1: turns timers had in the recorded time
    timer_skipped: int = 0  # gaps too long to take every turn of (MAX_GAP_TURNS)
    # why lines were skipped (malformed), and events the rules do not use, by name
    skipped: Counter[str] = field(default_factory=Counter)
    unused: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)
    fired: Counter[str] = field(default_factory=Counter)
    would_fire: Counter[str] = field(default_factory=Counter)  # shadow rules (v1.1)
    blocked: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    users: Counter[str] = field(default_factory=Counter)
    replies_to: Counter[str] = field(default_factory=Counter)
    first: float | None = None
    last: float | None = None

    @property
    def hours(self) -> float:
        if self.first is None or self.last is None:
            return 0.0
        return max(self.last - self.first, 0.0) / 3600.0

    @property
    def replies(self) -> int:
        return sum(self.fired.values())

    def as_dict(self, top: int = 10) -> dict[str, Any]:
        return {
            "events": self.events,
            "chat_lines": self.chat_lines,
            "malformed": self.malformed,
            "timer_turns": self.timer_turns,
            "timer_gaps_skipped": self.timer_skipped,
            "skipped": dict(self.skipped),
            "unused": dict(self.unused),
            "ignored": dict(self.ignored),
            "hours": round(self.hours, 3),
            "replies": self.replies,
            "replies_per_hour": round(self.replies / self.hours, 2) if self.hours else None,
            "rules": {
                rid: {"fired": self.fired.get(rid, 0), "blocked": dict(self.blocked.get(rid, {}))}
                | ({"would_fire": self.would_fire[rid]} if rid in self.would_fire else {})
                for rid in sorted(set(self.fired) | set(self.blocked) | set(self.would_fire))
            },
            "busiest_users": [
                {"user": u, "lines": n, "replies": self.replies_to.get(u, 0)}
                for u, n in self.users.most_common(top)
            ],
        }


def _timestamp(env: dict[str, Any]) -> float | None:
    ts = env.get("timestamp")
    if isinstance(ts, str):
        try:
            return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def read_log(lines: Iterable[str]) -> Iterator[LogEvent | Skipped]:
    """One :class:`LogEvent` or :class:`Skipped` per non-blank line, numbered from 1."""
    for number, raw_line in enumerate(lines, 1):
        line = raw_line.strip()
        if not line:
            continue
        yield _read_line(number, line)


def _read_line(number: int, line: str) -> LogEvent | Skipped:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return Skipped(number, "not JSON")
    if not isinstance(obj, dict):
        return Skipped(number, "not a JSON object")
    if "subject" in obj and "data" in obj:  # {"subject": ..., "data": envelope}, as `record` writes
        subject, data = obj["subject"], obj["data"]
        if not isinstance(subject, str):
            return Skipped(number, "bad subject")
        if isinstance(data, dict):
            env: Any = data
            try:
                raw = json.dumps(data).encode()
            except (ValueError, RecursionError):  # pragma: no cover - it was JSON already
                return Skipped(number, "bad data")
        elif isinstance(data, str):
            raw = data.encode("utf-8", "surrogatepass")
            try:
                env = json.loads(data)
            except (ValueError, RecursionError):
                env = None
        else:
            return Skipped(number, "bad data")
        return LogEvent(number, subject, raw, _timestamp(env) if isinstance(env, dict) else None)
    if "event_name" not in obj:
        return Skipped(number, "neither an envelope nor a {subject, data} record")
    name, channel = obj["event_name"], obj.get("channel")
    if not isinstance(name, str):
        return Skipped(number, "bad event_name")
    if channel is None:
        return Skipped(number, "missing channel")
    if not isinstance(channel, str):
        return Skipped(number, "bad channel")
    try:
        subject = event_subject(channel, name)
    except ValueError as exc:
        return Skipped(number, str(exc))
    return LogEvent(number, subject, line.encode("utf-8", "surrogatepass"), _timestamp(obj))


def replay(
    ruleset: RuleSet,
    lines: Iterable[str],
    *,
    seed: int = 0,
    bot_name: str | None = None,
    ignore_users: Iterable[str] = (),
    history_slack: float = DEFAULT_HISTORY_SLACK,
    on_skip: Callable[[Skipped], None] | None = None,
) -> ReplayStats:
    """Every event of a recording through the same intake and engine as the service.

    An event "reached us" when the robot published it (the envelope's
    ``timestamp``), so the 15 lines CyTube replays on each robot rejoin are
    history here exactly as they are live.
    """
    clock = VirtualClock()
    engine = Engine(ruleset, clock=clock, seed=seed, bot_name=bot_name, ignore_users=ignore_users)
    intake = Intake(
        bot_name=bot_name if bot_name is not None else ruleset.bot_name,
        ignore_users=ignore_users,
        slack=history_slack,
    )
    stats = ReplayStats()
    started = False

    def skip(item: Skipped) -> None:
        stats.malformed += 1
        stats.skipped[item.reason] += 1
        if on_skip is not None:
            on_skip(item)

    for item in read_log(lines):
        stats.events += 1
        if isinstance(item, Skipped):
            skip(item)
            continue
        env_time = item.env_time
        try:
            decoded = decode_message(item.subject, item.data)
        except MalformedEvent as exc:
            skip(Skipped(item.line, exc.reason))
            continue
        if decoded is None:
            stats.unused[_event_name(item.data)] += 1
            continue
        engine.apply_ranks(rank_changes(decoded.event))
        at = decoded.at or env_time or clock.now()
        if not started:  # the timers' clocks start with the recording, not at time 0
            started = True
            engine.timers = Schedule(ruleset, at)
        _run_timers(engine, clock, at, stats)
        chat = intake.admit(decoded, env_time if env_time is not None else at)
        if isinstance(chat, Ignored):
            stats.ignored[chat.reason.value] += 1
            continue
        clock.set(at)
        if chat is None:
            continue
        if engine.channel_name == "":
            engine.channel_name = decoded.channel
        stats.first = at if stats.first is None else stats.first
        stats.last = at
        if chat.kind in ("chatmsg", "pm"):
            stats.chat_lines += 1
            stats.users[chat.user] += 1
        _count(stats, engine.evaluate(replace(chat, at=clock.now())))
    return stats


def _count(stats: ReplayStats, decision: Decision) -> None:
    if decision.ignored:
        stats.ignored[str(decision.ignored)] += 1
        return
    if decision.fired:
        stats.fired[decision.fired] += 1
        if decision.event.user:  # a timer answers nobody
            stats.replies_to[decision.event.user] += 1
    for rid in decision.would_fire_ids:
        stats.would_fire[rid] += 1
    for t in decision.trace:
        if t.outcome == "blocked" and t.reason:
            stats.blocked[t.rule][t.reason] += 1


def _run_timers(engine: Engine, clock: VirtualClock, until: float, stats: ReplayStats) -> None:
    """Every timer turn up to ``until``, each at its own moment of the recording.

    A gap of more than :data:`MAX_GAP_TURNS` turns (a recording with a hole of
    days, or a bogus timestamp years ahead) takes that many and skips the rest,
    so no line can make a replay spin.
    """
    taken = 0
    while True:
        due = engine.timers.next_due()
        if due is None or due > until:
            return
        if taken >= MAX_GAP_TURNS:
            stats.timer_skipped += 1
            engine.timers.skip_to(until)
            return
        clock.set(due)
        for decision in engine.tick(due):
            taken += 1
            stats.timer_turns += 1
            _count(stats, decision)


def _event_name(data: bytes) -> str:
    try:
        env = json.loads(data)
    except (ValueError, RecursionError):  # pragma: no cover - decode_message read it
        return "?"
    return str(env.get("event_name", "?")) if isinstance(env, dict) else "?"


def format_text(stats: ReplayStats, top: int = 10) -> str:
    d = stats.as_dict(top)
    ignored = ", ".join(f"{why} {n}" for why, n in sorted(d["ignored"].items()))
    out = [
        f"{d['events']} events, {d['chat_lines']} chat lines over {d['hours']:.2f} h"
        f" ({d['malformed']} malformed, ignored: {ignored or 'none'})",
    ]
    if d["timer_turns"]:
        out.append(f"{d['timer_turns']} timer turns in the recorded time")
    if d["skipped"]:
        by_count = sorted(d["skipped"].items(), key=lambda kv: (-kv[1], kv[0]))
        out.append("skipped lines: " + ", ".join(f"{why} {n}" for why, n in by_count))
    if d["unused"]:
        out.append(
            "events the rules do not use: "
            + ", ".join(f"{name} {n}" for name, n in sorted(d["unused"].items()))
        )
    out += [
        f"{d['replies']} replies"
        + (f", {d['replies_per_hour']:.1f} per hour" if d["replies_per_hour"] else ""),
        "",
        f"{'rule':<24} {'fired':>6}  blocked by",
    ]
    for rid, r in d["rules"].items():
        reasons = ", ".join(
            f"{k} {v}" for k, v in sorted(r["blocked"].items(), key=lambda kv: -kv[1])
        )
        if "would_fire" in r:  # a shadow rule: it never fires, it would have
            reasons = f"would fire {r['would_fire']}" + (f"; {reasons}" if reasons else "")
        out.append(f"{rid:<24} {r['fired']:>6}  {reasons}")
    out += ["", f"{'busiest users':<24} {'lines':>6} {'replies':>8}"]
    for u in d["busiest_users"]:
        out.append(f"{u['user']:<24} {u['lines']:>6} {u['replies']:>8}")
    return "\n".join(out)
