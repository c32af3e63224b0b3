"""The running service under load: decision latency, lost events and CPU.

Setup, all on loopback:

- a real ``nats-server`` (:class:`EmbeddedNats`);
- the local OpenAI-style test server answering at once, in its own process;
- a :class:`Bot` in *this* process, so ``time.process_time()`` here is the
  bot's CPU (plus LiteLLM's, whose calls the bot makes) and nothing else;
- a publisher in a *separate* process (this file run with ``--publisher``)
  that plays Kryten-Robot: ``chatMsg`` envelopes at a fixed rate, each with its
  sequence number and send time (``time.time()``) in the text.

One event in 20 (5 %) says "popcorn" and fires an LLM rule; the rest match
none of the 40 rules. Cooldowns 0, no limits, pacing out of the way. The
bot's ``on_decision`` hook (called for every event that reaches the rules)
records ``now - sent``; ``lost`` is published minus decided.

Runs: 200, 1,000 and 5,000 events/s for ``--seconds`` each, 5,000 events/s
with no event firing (a control: what the LLM replies cost), then 1,000
events/s while ``bot.reload()`` runs every second, every other one after the
rule file was rewritten (alternating contents, so the digest changes).
Run: ``python benchmarks/service_bench.py [--seconds 5]``. About a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHANNEL = "BenchChannel"
DOMAIN = "cytu.be"
BOT_NAME = "BenchBot"
KEY_ENV = "KRYTEN_BENCH_KEY"
MODEL = "bench-model"
LLM_EVERY = 20  # one event in 20 fires the LLM rule
FILLER_RULES = 40


# ------------------------------------------------------------------ publisher process


async def _publish(
    url: str, rate: float, seconds: float, run_id: str, llm_every: int
) -> dict[str, Any]:
    import nats

    from kryten_rules.wire import envelope, event_subject

    nc = await nats.connect(url, name="bench-publisher")
    subject = event_subject(CHANNEL, "chatMsg")
    total = int(rate * seconds)
    t0 = time.perf_counter()
    for i in range(total):
        ahead = t0 + i / rate - time.perf_counter()
        if ahead > 0.001:
            await asyncio.sleep(ahead)
        sent = time.time()
        llm = llm_every > 0 and i % llm_every == 0
        words = "popcorn time, anyone?" if llm else "just chatting about films"
        payload = {
            "username": f"user{i % 50}",
            "msg": f"{words} #{run_id}:{i}:{sent:.6f}",
            "meta": {},
            "time": int(sent * 1000),
        }
        await nc.publish(subject, envelope("chatMsg", payload, channel=CHANNEL, domain=DOMAIN))
    elapsed = time.perf_counter() - t0
    await nc.flush()
    await nc.flush()  # nats-py 2.16: one flush's PING can overtake the write buffer
    await nc.drain()
    return {"published": total, "elapsed": elapsed}


def publisher_main(url: str, rate: float, seconds: float, run_id: str, llm_every: int) -> None:
    result = asyncio.run(_publish(url, rate, seconds, run_id, llm_every))
    print(json.dumps(result), flush=True)


# ------------------------------------------------------------------ LLM server process


def _serve_llm(port_queue: Any) -> None:
    from tests.openai_server import OpenAIServer

    server = OpenAIServer({MODEL: "ok:Popcorn is the best part of any film."}).start()
    port_queue.put(server.port)
    while True:
        time.sleep(3600)


# ------------------------------------------------------------------ the bot side


def rules_text(variant: int) -> str:
    filler = "\n".join(
        f"""  - id: filler-{i}
    match: {{any: [zebra{i}, "quokka {i}"]}}
    reply: "filler {i} (variant {variant})"
"""
        for i in range(FILLER_RULES)
    )
    return f"""kryten_rules: 1
persona:
  name: Bench
  system_prompt: "You are Bench, variant {variant}."
rules:
  - id: popcorn
    description: the LLM rule, variant {variant}
    match: {{any: [popcorn]}}
    cooldown: {{global: 0s, rule: 0s, user: 0s}}
    prompt: "{{{{ user.name }}}} said: {{{{ message }}}}"
{filler}"""


def write_config(tmp: Path, nats_url: str, llm_port: int) -> Path:
    (tmp / "rules").mkdir()
    (tmp / "rules" / "bench.yaml").write_text(rules_text(0))
    cfg = tmp / "kryten-rules.yaml"
    cfg.write_text(
        f"""kryten_rules_config: 1
nats: {{url: "{nats_url}"}}
cytube: {{domain: {DOMAIN}, channel: {CHANNEL}, username: {BOT_NAME}}}
rules: rules/
models:
  m: {{model: openai/{MODEL}, api_base: "http://127.0.0.1:{llm_port}/v1",
      api_key_env: {KEY_ENV}, timeout: 5s}}
chains:
  default: {{models: [m], deadline: 10s}}
max_in_flight: 16
log: {{level: WARNING}}
"""
    )
    return cfg


@dataclass
class Recorder:
    """The ``on_decision`` hook: latency and identity of every decided event."""

    run_id: str = ""
    latencies: list[float] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    fired: int = 0
    duplicates: int = 0

    def reset(self, run_id: str) -> None:
        self.run_id = run_id
        self.latencies = []
        self.seen = set()
        self.fired = 0
        self.duplicates = 0

    def __call__(self, decision: Any) -> None:
        now = time.time()
        tag = decision.event.text.rpartition("#")[2]
        run_id, _, rest = tag.partition(":")
        if run_id != self.run_id:
            return
        seq, _, sent = rest.partition(":")
        i = int(seq)
        if i in self.seen:
            self.duplicates += 1
        self.seen.add(i)
        self.latencies.append(now - float(sent))
        if decision.fired:
            self.fired += 1


def _pct(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def _counter(bot: Any, name: str) -> float:
    return sum(_by_label(bot, name).values())


def _by_label(bot: Any, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in bot.metrics.registry.collect():
        for s in family.samples:
            if s.name == name:
                key = ",".join(s.labels.values())
                out[key] = out.get(key, 0.0) + s.value
    return out


async def run_load(
    bot: Any,
    rec: Recorder,
    url: str,
    rate: int,
    seconds: float,
    label: str,
    rules_file: Path | None = None,
    llm_every: int = LLM_EVERY,
) -> dict[str, Any]:
    run_id = f"r{label.replace(' ', '')}{time.monotonic_ns() % 100000}"
    rec.reset(run_id)
    replies0 = _counter(bot, "kryten_rules_replies_total")
    dropped0 = _by_label(bot, "kryten_rules_replies_dropped_total")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--publisher",
        url,
        str(rate),
        str(seconds),
        run_id,
        str(llm_every),
        stdout=asyncio.subprocess.PIPE,
    )
    reloads = {"changed": 0, "unchanged": 0, "failed": 0}
    reloader = None
    if rules_file is not None:

        async def reload_every_second() -> None:
            k = 0
            while True:
                await asyncio.sleep(1.0)
                k += 1
                if k % 2 == 1:  # every other reload edits the file first
                    rules_file.write_text(rules_text((k // 2 + 1) % 2))
                out = await bot.reload("bench")
                key = "failed" if not out["ok"] else "changed" if out["changed"] else "unchanged"
                reloads[key] += 1

        reloader = asyncio.create_task(reload_every_second())
    out, _ = await proc.communicate()
    if reloader is not None:
        reloader.cancel()
        await asyncio.gather(reloader, return_exceptions=True)
    pub = json.loads(out.decode().strip().splitlines()[-1])
    published = pub["published"]
    # drain: until every event is decided, or nothing moves for 3 s
    last, still = len(rec.seen), time.monotonic()
    while len(rec.seen) < published and time.monotonic() - still < 3.0:
        await asyncio.sleep(0.05)
        if len(rec.seen) != last:
            last, still = len(rec.seen), time.monotonic()
    while bot.replies.pending:  # replies in progress belong to this run's CPU
        await asyncio.sleep(0.05)
    await bot.pacer.drain(10)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    lat = sorted(rec.latencies)
    return {
        "run": label,
        "rate": rate,
        "pub_rate": published / pub["elapsed"],
        "published": published,
        "decided": len(rec.seen),
        "lost": published - len(rec.seen),
        "dupes": rec.duplicates,
        "p50": _pct(lat, 0.50),
        "p99": _pct(lat, 0.99),
        "max": lat[-1] * 1000 if lat else float("nan"),
        "fired": rec.fired,
        "replies": _counter(bot, "kryten_rules_replies_total") - replies0,
        "dropped": {
            k: v - dropped0.get(k, 0.0)
            for k, v in _by_label(bot, "kryten_rules_replies_dropped_total").items()
            if v - dropped0.get(k, 0.0)
        },
        "cpu": cpu,
        "cpu_pct": 100 * cpu / wall,
        "reloads": reloads if rules_file is not None else None,
    }


async def bench(seconds: float) -> list[dict[str, Any]]:
    from kryten_rules.compile.load import load_config
    from kryten_rules.dispatch.llm import load_litellm
    from kryten_rules.service.bot import Bot
    from kryten_rules.service.embedded import EmbeddedNats

    os.environ[KEY_ENV] = "sk-bench-not-a-secret"
    # "too many replies in progress" would print once per dropped reply: the
    # table counts them instead.
    logging.getLogger("kryten_rules").setLevel(logging.ERROR)
    load_litellm()
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    llm = ctx.Process(target=_serve_llm, args=(ports,), daemon=True)
    llm.start()
    llm_port = ports.get(timeout=30)
    nats_server = await asyncio.to_thread(EmbeddedNats(jetstream=False).start)
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="kryten-rules-bench-") as tmp:
            cfg = write_config(Path(tmp), nats_server.url, llm_port)
            rec = Recorder()
            bot = Bot(
                load_config(cfg),
                on_decision=rec,
                watch_interval=None,
                heartbeat_interval=60,
                pacing=(100_000, 100_000.0),
            )
            await bot.start()
            await bot.nc.flush()
            await bot.nc.flush()
            try:
                await run_load(bot, rec, nats_server.url, 200, 1.0, "warm-up")
                for rate in (200, 1000, 5000):
                    rows.append(await run_load(bot, rec, nats_server.url, rate, seconds, "steady"))
                    print(_row(rows[-1]), flush=True)
                # control: the same top rate with no LLM rule firing
                rows.append(
                    await run_load(bot, rec, nats_server.url, 5000, seconds, "no-llm", llm_every=0)
                )
                print(_row(rows[-1]), flush=True)
                rows.append(
                    await run_load(
                        bot,
                        rec,
                        nats_server.url,
                        1000,
                        seconds,
                        "reload/1s",
                        rules_file=Path(tmp) / "rules" / "bench.yaml",
                    )
                )
                print(_row(rows[-1]), flush=True)
            finally:
                await bot.stop(grace=2.0)
    finally:
        await asyncio.to_thread(nats_server.close)
        llm.terminate()
        llm.join(5)
    return rows


HEADER = (
    f"{'run':<10} {'rate/s':>6} {'sent/s':>7} {'events':>7} {'lost':>5} {'p50 ms':>7} "
    f"{'p99 ms':>7} {'max ms':>7} {'fired':>6} {'replies':>7} {'dropped':>7} "
    f"{'cpu s':>6} {'cpu %':>6}  reloads / drops by reason"
)


def _row(r: dict[str, Any]) -> str:
    reloads = r["reloads"]
    rl = (
        f"{reloads['changed']} changed, {reloads['unchanged']} same, {reloads['failed']} failed"
        if reloads
        else ""
    )
    return (
        f"{r['run']:<10} {r['rate']:>6} {r['pub_rate']:>7.0f} {r['published']:>7} "
        f"{r['lost']:>5} {r['p50']:>7.2f} {r['p99']:>7.2f} {r['max']:>7.1f} {r['fired']:>6} "
        f"{r['replies']:>7.0f} {sum(r['dropped'].values()):>7.0f} {r['cpu']:>6.2f} "
        f"{r['cpu_pct']:>6.1f}  {rl}{_drops(r['dropped'])}"
    )


def _drops(dropped: dict[str, float]) -> str:
    return "".join(f" {int(v)} {k}" for k, v in sorted(dropped.items()))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--publisher":
        url, rate, seconds, run_id, llm_every = sys.argv[2:7]
        publisher_main(url, float(rate), float(seconds), run_id, int(llm_every))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.seconds:g} s per run")
    print(HEADER, flush=True)
    t0 = time.perf_counter()
    rows = asyncio.run(bench(args.seconds))
    print(f"\nall runs: {time.perf_counter() - t0:.0f} s")
    print(
        "latency: publisher send -> bot decision (on_decision), all events; "
        "lost = published - decided; cpu = bot process (incl. LiteLLM calls);\n"
        "replies dropped as 'overloaded' are the bot's cap of 64 replies in progress "
        "(fired events stay decided)"
    )
    failed = [r for r in rows if r["reloads"] is not None and r["lost"]]
    if failed:
        print("FAIL: events lost during reloads")
        sys.exit(1)


if __name__ == "__main__":
    main()
