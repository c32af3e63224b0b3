"""A burst of 200 firing events: every one gets a response-log line with its outcome.

Setup, all on loopback: a real ``nats-server``; the local OpenAI-style test
server answering each model call after ``--model-delay`` seconds; a stand-in
for kryten-robot on the bus that confirms every command as kryten-robot
1.12.6 does; a :class:`Bot` in this process. Half the burst mentions the bot
(a model reply, rule with a per-hour budget), half says ``!ping`` (a fixed
reply); 200 distinct users, published back to back.

For each pacing (CyTube's moderator limit, 20 then 10/s, and pacing out of
the way) it prints the outcome of every decision from the response log, how
long until the 200th line, when the first fixed reply was confirmed, and
whether the budget spent equals the model replies admitted.
Run: ``python benchmarks/burst_bench.py [--model-delay 0.5]``. About 40 s.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kryten_rules.service.embedded import EmbeddedNats
from tests.nats_fixtures import (
    KEY_ENV,
    KEY_VALUE,
    MODEL,
    RobotClient,
    events_received,
    make_bot,
    read_jsonl,
    wait_until,
    write_config,
)
from tests.openai_server import OpenAIServer

BURST = 200
RULES = """\
kryten_rules: 1
persona: {name: Cynthia, aliases: [cynthia]}
rules:
  - id: mention
    match: {mention: true}
    limit: {per_hour: 10000}
    prompt: "{{ user.name }} said: {{ message }}"
  - id: ping
    match: {regex: ['^!ping\\b']}
    reply: "{{ user.name }}: pong"
"""


async def run(pacing: tuple[int, float], model_delay: float, tmp: Path) -> dict[str, Any]:
    nats_server = EmbeddedNats()
    await asyncio.to_thread(nats_server.start)
    openai = OpenAIServer({MODEL: f"slow:{model_delay}:Hello from the model"}).start()
    os.environ[KEY_ENV] = KEY_VALUE
    cfg = write_config(
        tmp, nats_url=nats_server.url, api_base=openai.base_url, rules=RULES,
        extra="max_in_flight: 16\n",
    )  # fmt: skip
    log_path = cfg.parent / "logs" / "responses.jsonl"
    log_path.unlink(missing_ok=True)
    client = await RobotClient().connect(nats_server.url)
    bot = make_bot(cfg, pacing=pacing)
    await bot.start()
    try:
        base = events_received(bot)
        t0 = time.perf_counter()
        for i in range(BURST):
            text = "cynthia, what's on?" if i % 2 == 0 else "!ping"
            await client.chat(f"user{i}", text)
        await wait_until(lambda: events_received(bot) >= base + BURST, 60, "the burst")
        await wait_until(lambda: len(read_jsonl(log_path)) >= BURST, 300, "200 lines")
        took = time.perf_counter() - t0
        lines = read_jsonl(log_path)
        assert bot.engine is not None
        spent = bot.engine.state.count_since(("count_rule", "mention"), 0)
    finally:
        await bot.stop(grace=1.0)
        await client.close()
        openai.stop()
        await asyncio.to_thread(nats_server.close)
    by_rule: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in lines:
        by_rule[str(line["rule"])][str(line["outcome"])] += 1
    admitted_model = sum(n for o, n in by_rule["mention"].items() if o != "overloaded")
    first_ping = min(
        (float(line["latency"]) for line in lines if line["rule"] == "ping" and line["sent"]),
        default=None,
    )
    return {
        "pacing": f"burst {pacing[0]}, {pacing[1]:g}/s",
        "lines": len(lines),
        "outcomes": {rule: dict(c) for rule, c in sorted(by_rule.items())},
        "seconds_to_200th_line": round(took, 2),
        "fastest_fixed_reply_s": None if first_ping is None else round(first_ping, 4),
        "budget_spent_equals_model_admitted": spent == admitted_model,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-delay", type=float, default=0.5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as d:
        for pacing in ((20, 10.0), (1000, 1000.0)):
            result = await run(pacing, args.model_delay, Path(d))
            print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
