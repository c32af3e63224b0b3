"""Many channels in one process: CPU share, decision latency, events lost, replies.

One in-process bot serves ``--channels`` channels (one ``channels:`` entry
each, the same rule file) on a real nats-server. A peer process plays
Kryten-Robot for all of them: it publishes ``--rate`` chat lines a second per
channel (CyTube envelopes, as the robot's) and confirms every ``say``
command; ``--fire`` of the lines mention the bot and fire an LLM rule
against a local instant OpenAI-style server (its own process). For
``--seconds`` it measures:

* this process's CPU (user + system) as a share of one core;
* decision latency, from the moment the peer publishes a line (its time rides
  in the line's text) to the decision, p50/p99 (target p99 under 5 ms);
* events lost: published minus decided;
* replies sent (confirmed by the peer) against replies due (lines that fired).

    python benchmarks/scale_bench.py                          # 1,000 channels, 1 line/s, 5 %
    python benchmarks/scale_bench.py --channels 200 --seconds 20

The LLM path's CPU per call against a plain HTTP POST is
``benchmarks/llm_cost_bench.py``; failover time over repeated kills is
``benchmarks/failover_bench.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RULES = """\
kryten_rules: 1
persona: {name: Cynthia, aliases: [cynthia], system_prompt: "You are Cynthia."}
rules:
  - id: mention
    match: {mention: true}
    prompt: "{{ user.name }} said: {{ message }}"
"""


def peer(url: str, channels: int, rate: float, fire: float, seconds: float) -> None:
    """The robot's side: publish the lines, confirm the commands; print counts as JSON."""
    import nats

    from kryten_rules.wire import envelope, event_subject

    async def run() -> None:
        nc = await nats.connect(url)
        confirmed = 0

        async def on_command(msg: Any) -> None:
            nonlocal confirmed
            confirmed += 1
            await msg.respond(json.dumps({"service": "robot", "success": True}).encode())

        await nc.subscribe("kryten.robot.command", cb=on_command)
        names = [f"ch{i}" for i in range(channels)]
        subjects = [event_subject(n, "chatMsg") for n in names]
        every = max(1, round(1 / fire)) if fire > 0 else 0
        published = fired = 0
        start = time.monotonic()
        gap = 1.0 / (channels * rate)  # lines spread evenly over each second, as chat is
        while time.monotonic() - start < seconds:
            for i, name in enumerate(names):
                n = published
                mention = bool(every) and n % every == 0
                # the publish time rides in the text: the decision's latency is taken from it
                words = "cynthia what is up" if mention else "just chatting"
                text = f"{words} {n} @{time.time():.6f}"
                fired += mention
                payload = {"username": f"u{n % 97}", "msg": text, "meta": {},
                           "time": int(time.time() * 1000)}
                await nc.publish(subjects[i], envelope("chatMsg", payload, channel=name,
                                                       domain="cytu.be"))
                published += 1
                pause = start + published * gap - time.monotonic()
                if pause > 0.001:
                    await nc.flush()
                    await asyncio.sleep(pause)
        await nc.flush()
        deadline = time.monotonic() + 15  # the replies still on their way
        while confirmed < fired and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        print(json.dumps({"published": published, "fired": fired, "confirmed": confirmed}),
              flush=True)
        await nc.close()

    asyncio.run(run())


def write_config(home: Path, url: str, api_base: str, channels: int) -> Path:
    rules = home / "rules"
    rules.mkdir()
    (rules / "main.yaml").write_text(RULES, encoding="utf-8")
    entries = "".join(
        f"  - {{domain: cytu.be, channel: ch{i}, username: CynthiaBot, rules: rules/}}\n"
        for i in range(channels)
    )
    cfg = home / "kryten-rules.yaml"
    cfg.write_text(
        "kryten_rules_config: 1\n"
        f'nats: {{url: "{url}"}}\n'
        f"channels:\n{entries}"
        "models:\n"
        f'  m: {{model: openai/test-model, api_base: "{api_base}", api_key_env: BENCH_KEY,'
        " timeout: 5s, input_cost_per_token: 0.000001, output_cost_per_token: 0.000002}\n"
        "chains:\n  default: {models: [m], deadline: 10s}\n"
        "max_in_flight: 64\n"
        "pacing: {burst: 20, per_second: 10}\n"
        "metrics: {port: 0}\n"
        "events: {decisions: 'off'}\n",
        encoding="utf-8",
    )
    return cfg


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from kryten_rules.compile.load import load_config
    from kryten_rules.service.bot import Bot
    from kryten_rules.service.embedded import EmbeddedNats

    server = EmbeddedNats()
    server.start()
    model = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; sys.path.insert(0, sys.argv[1]);"
         "from tests.openai_server import OpenAIServer;"
         "s = OpenAIServer({'test-model': 'ok:Not much, you?'}).start();"
         "print(s.base_url, flush=True); time.sleep(1e9)", str(ROOT)],
        stdout=subprocess.PIPE, text=True,
    )
    assert model.stdout is not None
    api_base = model.stdout.readline().strip()
    os.environ["BENCH_KEY"] = "sk-bench"
    latencies: list[float] = []

    def on_decision(decision: Any) -> None:
        sent = decision.event.text.rpartition("@")[2]
        latencies.append(time.time() - float(sent))

    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(Path(tmp), server.url, api_base, args.channels)
        t0 = time.monotonic()
        bot = Bot(load_config(cfg), watch_interval=None, on_decision=on_decision)
        await bot.start()
        started = time.monotonic() - t0
        before = resource.getrusage(resource.RUSAGE_SELF)
        wall0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).resolve()), "--peer", server.url,
            "--channels", str(args.channels), "--rate", str(args.rate),
            "--fire", str(args.fire), "--seconds", str(args.seconds),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        wall = time.monotonic() - wall0
        after = resource.getrusage(resource.RUSAGE_SELF)
        counts = json.loads(out.decode().strip().splitlines()[-1])
        await bot.stop(grace=2.0)
    model.kill()
    server.close()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ms = sorted(x * 1000 for x in latencies)
    return {
        "channels": args.channels,
        "lines_per_second": args.channels * args.rate,
        "start_s": round(started, 1),
        "cpu_share_of_one_core": round(cpu / wall, 3),
        "cpu_us_per_event": round(cpu / max(1, counts["published"]) * 1e6, 1),
        "decision_p50_ms": round(statistics.median(ms), 2) if ms else None,
        "decision_p99_ms": round(ms[int(len(ms) * 0.99) - 1], 2) if ms else None,
        "events_published": counts["published"],
        "events_decided": len(latencies),
        "events_lost": counts["published"] - len(latencies),
        "replies_due": counts["fired"],
        "replies_sent": counts["confirmed"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=1.0, help="lines a second per channel")
    ap.add_argument("--fire", type=float, default=0.05, help="share of lines firing an LLM rule")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--peer", metavar="URL", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer:
        peer(args.peer, args.channels, args.rate, args.fire, args.seconds)
        return 0
    result = asyncio.run(bench(args))
    for key, value in result.items():
        print(f"{key:>24}: {value}")
    print("targets: cpu_share_of_one_core < 0.5, decision_p99_ms < 5, events_lost 0, "
          "replies_sent == replies_due")
    return 0


if __name__ == "__main__":
    sys.exit(main())
