"""Failover time: two ``kryten-rules run`` processes on one channel, the holder killed.

Starts a nats-server with JetStream and two instances with the same config
(``state.store: jetstream``), then ``--kills`` times: kills the lease holder
with SIGKILL (or SIGTERM with ``--term``), and measures the time from the
kill to the first reply once the other instance holds the lease, while a chat line that
fires a fixed reply is published every 20 ms; the killed one is started
again as the next standby. Prints each takeover and the median and max.

    python benchmarks/failover_bench.py                 # 10 kills, lease_ttl 3s
    python benchmarks/failover_bench.py --kills 5 --lease-ttl 1s --term

The target: a dead holder replaced within 5 s with the default lease_ttl (3 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kryten_rules.service.embedded import EmbeddedNats
from kryten_rules.service.kvcodec import channel_prefix
from kryten_rules.service.lease import DEFAULT_BUCKET
from kryten_rules.service.lifecycle import lifecycle_subject
from tests.nats_fixtures import (
    CHANNEL,
    DOMAIN,
    KEY_ENV,
    KEY_VALUE,
    RobotClient,
    write_config,
)

RULES = """\
kryten_rules: 1
persona: {name: Cynthia, aliases: [cynthia]}
rules:
  - id: echo
    match: {regex: ['\\bq\\d+\\b']}
    reply: "ack {{ match }}"
"""
LEASE_KEY = channel_prefix(DOMAIN, CHANNEL).rstrip(".")


async def holder_pid(client: RobotClient) -> int | None:
    try:
        kv = await client.nc.jetstream(timeout=1).key_value(DEFAULT_BUCKET)
        entry = await kv.get(LEASE_KEY)
    except Exception:
        return None
    return int(json.loads(entry.value)["owner"].split(":")[1]) if entry.value else None


def start(cfg: Path, home: Path, n: int) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "kryten-rules"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "kryten_rules"]
    log = (home / f"run{n}.log").open("wb")
    env = {**os.environ, KEY_ENV: KEY_VALUE}
    return subprocess.Popen([*cmd, "run", "--config", str(cfg)], cwd=home, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


async def until(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return result


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--lease-ttl", default="3s")
    ap.add_argument("--term", action="store_true", help="SIGTERM instead of SIGKILL")
    args = ap.parse_args()
    server = EmbeddedNats()
    server.start()
    home = Path(tempfile.mkdtemp(prefix="failover-bench-"))
    cfg = write_config(
        home, nats_url=server.url, api_base="http://127.0.0.1:9/v1", rules=RULES,
        extra=f"state: {{store: jetstream, lease_ttl: {args.lease_ttl}}}\n"
              "pacing: {burst: 1000, per_second: 1000}\nmetrics: {port: 0}\n",
    )
    client = await RobotClient().connect(server.url)
    startups = await client.collect(lifecycle_subject("startup"))
    procs = {p.pid: p for p in (start(cfg, home, 0), start(cfg, home, 1))}
    took: list[float] = []
    seq = 0
    try:
        for _ in procs:
            await asyncio.wait_for(startups.get(), 120)
        await until(lambda: holder_pid(client), 90, "a first lease holder")
        for kill in range(args.kills):
            holder = await until(lambda: holder_pid(client), 30, "a holder")
            # both up and deciding: a reply comes for a line now
            seq += 1
            await client.chat("u", f"q{seq}")
            await asyncio.wait_for(client.next_command(), 60)
            client.drain()
            procs[holder].send_signal(signal.SIGTERM if args.term else signal.SIGKILL)
            killed = time.monotonic()
            while True:
                seq += 1
                await client.chat("u", f"q{seq}")
                try:
                    await asyncio.wait_for(client.next_command(), 0.02)
                except TimeoutError:
                    continue
                # an answer from the new holder (on SIGTERM the old one finishes its last)
                if await holder_pid(client) not in (None, holder):
                    break
            took.append(time.monotonic() - killed)
            new = await until(lambda: holder_pid(client), 30, "the new holder")
            print(f"takeover {kill + 1}: {took[-1]:.2f} s (holder {holder} -> {new})", flush=True)
            procs.pop(holder).wait(30)
            p = start(cfg, home, kill + 2)  # the next standby, up before the next kill
            procs[p.pid] = p
            await asyncio.wait_for(startups.get(), 120)
        how = "SIGTERM" if args.term else "SIGKILL"
        print(f"\n{how} of the holder, lease_ttl {args.lease_ttl}, {len(took)} takeovers: "
              f"median {statistics.median(took):.2f} s, max {max(took):.2f} s (target < 5 s)")
    finally:
        for p in procs.values():
            p.kill()
            p.wait()
        await client.close()
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
