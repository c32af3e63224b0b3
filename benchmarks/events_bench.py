"""What the decision events cost: ``events.decisions`` ``all`` vs ``matched`` vs ``off``.

Setup: a real ``nats-server`` on loopback, a nats-py connection (the service's
:class:`NatsBus`), the engine on a 40-rule set (the service benchmark's
filler rules plus one that matches "popcorn"), and the service's
:class:`EventsOut`. For 20,000 chat lines (one in 20 matches a rule, as in
``service_bench.py``) it measures, in CPU time of this process:

- ``evaluate``: the engine alone, per event;
- ``hand-off``: ``EventsOut.decision`` per event (the only part on the hot path);
- ``publish``: the publishing task's JSON encoding and ``publish`` per event
  published (off the hot path, but on the same core).

and prints what each mode costs at 2,000 events/s, as a share of one core.
Run: ``python benchmarks/events_bench.py [--events 20000]``. A few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kryten_rules.compile.load import load_ruleset
from kryten_rules.engine.evaluate import Engine
from kryten_rules.events import ChatEvent
from kryten_rules.service.bus import NatsBus
from kryten_rules.service.embedded import EmbeddedNats
from kryten_rules.service.events_out import EventsOut
from kryten_rules.service.metrics import Metrics

RATE = 2000.0
FILLER = "\n".join(
    f"  - id: filler-{i}\n    match: {{any: [word{i}a, word{i}b]}}\n    reply: f{i}"
    for i in range(39)
)
RULES = f"""\
kryten_rules: 1
rules:
  - id: popcorn
    match: {{any: [popcorn]}}
    cooldown: {{user: 1m}}
    reply: "popcorn!"
{FILLER}
"""


async def measure(events: int, mode: str, url: str, engine: Engine) -> tuple[float, float, int]:
    import nats

    nc = await nats.connect(url)
    bus = NatsBus(nc)
    out = EventsOut(
        lambda: bus,
        Metrics(),
        domain="cytu.be",
        channel="Bench",
        dry_run=False,
        decisions=mode,
        max_queued=events + 1,
    )
    lines = [
        ChatEvent(
            user=f"user{i % 500}",
            text="popcorn please" if i % 20 == 0 else f"chat {i}",
            correlation_id=f"cid-{i}",
        )
        for i in range(events)
    ]
    decisions = [engine.evaluate(e, commit=True) for e in lines]
    t0 = time.process_time()
    for d in decisions:
        out.decision(d)
    handoff = time.process_time() - t0
    queued = out.queued
    t0 = time.process_time()
    await out.drain()
    await bus.flush()
    publish = time.process_time() - t0
    await nc.close()
    return handoff / events, publish / max(queued, 1), queued


async def main(events: int) -> None:
    server = EmbeddedNats()
    server.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "r.yaml"
            path.write_text(RULES, encoding="utf-8")
            engine = Engine(load_ruleset(path, bot_name="bot"), bot_name="bot")
            warm = [ChatEvent(user="w", text=f"chat {i}") for i in range(events)]
            t0 = time.process_time()
            for e in warm:
                engine.evaluate(e)
            evaluate = (time.process_time() - t0) / events
            print(f"evaluate: {evaluate * 1e6:.1f} us/event")
            for mode in ("off", "matched", "all"):
                handoff, publish, published = await measure(events, mode, server.url, engine)
                share = published / events
                per_event = handoff + (publish * share if published else 0.0)
                cost = f"{publish * 1e6:.1f} us" if published else "-"
                print(
                    f"{mode:8} published {published:6d} of {events} | hand-off "
                    f"{handoff * 1e6:.2f} us/event | publish {cost}/event published"
                    f" | at {RATE:.0f} events/s: {per_event * RATE * 100:.1f} % of a core"
                )
    finally:
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    asyncio.run(main(parser.parse_args().events))
