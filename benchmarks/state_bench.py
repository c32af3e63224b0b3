"""State under pressure: budget checks with a big budget, and a flood of fake users.

Run from the repository root with the project's venv::

    python benchmarks/state_bench.py                  # throughput, both stores
    python benchmarks/state_bench.py --flood 600000   # and the fake-user flood

What is measured
----------------
* Throughput: one rule (``match: {any: [hello]}``, a fixed ``reply``) under
  ``limits.global`` of ``per_day: 100`` and of ``per_day: 100000``, fed
  ``--events`` (30,000) lines from 50 users 0.5 s apart in virtual time, so
  with 100,000 a day every line fires and the global counter holds every
  timestamp so far. Events/s of ``Engine.evaluate`` over the last third
  (where the counter is largest), best of ``--repeat`` runs on fresh engines.
  "before" is the previous store (``tests/engine/state_reference.py``: the window is
  walked), "after" today's ``kryten_rules.engine.state.MemoryStore``.
* Flood (``--flood N``): ``limits.user: {per_hour: 1}``; alice fires once,
  then N fake users fire once each, then alice speaks again (all within the
  hour) on a store of the default size (``MAX_ENTRIES``). Before: alice's
  budget was evicted and she fires again. After: the store fails closed, the
  fakes past its size are blocked as ``state_full`` and alice stays blocked.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kryten_rules import ChatEvent, VirtualClock, load_ruleset
from kryten_rules.compile.ruleset import RuleSet
from kryten_rules.engine.evaluate import Engine
from kryten_rules.engine.state import MemoryStore
from tests.engine.state_reference import LegacyMemoryStore

STORES: dict[str, Callable[[Callable[[], float]], Any]] = {
    "before": LegacyMemoryStore,
    "after": MemoryStore,
}


def ruleset(tmp: Path, limits: str) -> RuleSet:
    path = tmp / f"rules-{abs(hash(limits))}.yaml"
    path.write_text(
        "kryten_rules: 1\n"
        f"limits: {limits}\n"
        "rules:\n"
        "  - id: hello\n"
        "    match: {any: [hello]}\n"
        '    reply: "hi {{ user.name }}"\n',
        encoding="utf-8",
    )
    return load_ruleset([path], bot_name="kryten")


def throughput(rs: RuleSet, store: str, events: int) -> float:
    clock = VirtualClock()
    engine = Engine(rs, clock=clock, seed=1, state=STORES[store](clock.now))
    lines = [ChatEvent(user=f"user{i % 50}", text="hello there", at=i * 0.5) for i in range(events)]
    split = events * 2 // 3
    for ev in lines[:split]:
        clock.set(ev.at or 0.0)
        engine.evaluate(ev)
    t0 = time.perf_counter()
    for ev in lines[split:]:
        clock.set(ev.at or 0.0)
        engine.evaluate(ev)
    return (events - split) / (time.perf_counter() - t0)


def flood(rs: RuleSet, store: str, fakes: int) -> dict[str, Any]:
    clock = VirtualClock(1000.0)
    engine = Engine(rs, clock=clock, seed=1, state=STORES[store](clock.now))

    def say(user: str) -> str:
        clock.advance(0.001)  # 600,000 lines in 10 virtual minutes: well inside the hour
        d = engine.evaluate(ChatEvent(user=user, text="hello", at=clock.now()))
        return d.fired or d.blocked or "silent"

    first = say("alice")
    t0 = time.perf_counter()
    outcomes = Counter(say(f"fake{i}") for i in range(fakes))
    took = time.perf_counter() - t0
    return {
        "alice_first": first,
        "fakes": dict(outcomes),
        "alice_again": say("alice"),
        "entries": len(engine.state),
        "fakes_per_s": round(fakes / took),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--flood", type=int, default=0, help="fake users (0: skip the flood)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = ruleset(Path(tmp), "{global: {per_day: 100}}")
        big = ruleset(Path(tmp), "{global: {per_day: 100000}}")
        print(f"events/s of Engine.evaluate, last third of {args.events} lines, best of "
              f"{args.repeat}")
        print(f"{'store':8} {'per_day 100':>12} {'per_day 100000':>15}")
        for store in STORES:
            a = max(throughput(small, store, args.events) for _ in range(args.repeat))
            b = max(throughput(big, store, args.events) for _ in range(args.repeat))
            print(f"{store:8} {a:12,.0f} {b:15,.0f}")
        if args.flood:
            rs = ruleset(Path(tmp), "{user: {per_hour: 1}}")
            print(f"\nflood: alice, {args.flood:,} fake users, alice again (within the hour)")
            for store in STORES:
                print(f"{store:8} {flood(rs, store, args.flood)}")


if __name__ == "__main__":
    main()
