"""Per-call overhead of the LLM dispatch layer.

Compares, against the local OpenAI-compatible test server answering at once:

- ``httpx``: a plain ``httpx.AsyncClient`` POST of the same JSON body (the floor)
- ``litellm``: ``litellm.acompletion`` direct, one try
- ``chain``: ``ChainRunner.run`` (LiteLLM plus our chain bookkeeping)
- ``chain-mock``: ``ChainRunner.run`` on a ``mock_response`` model (no HTTP)

N calls one after another after a warm-up, then the same N with C in flight.
Run: ``python benchmarks/dispatch_bench.py [-n 300] [-c 8]``. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kryten_rules.config import ChainConfig, ModelConfig
from kryten_rules.dispatch.llm import ChainRunner, load_litellm
from tests.openai_server import OpenAIServer

KEY_ENV = "KRYTEN_BENCH_KEY"
MESSAGES = [
    {"role": "system", "content": "You are Cynthia, a film buff in a CyTube channel."},
    {"role": "user", "content": "alice: cynthia, best kung fu film of the seventies?"},
]

Call = Callable[[], Awaitable[object]]


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "mean": statistics.fmean(ordered) * 1000,
        "p50": statistics.median(ordered) * 1000,
        "p99": p99 * 1000,
    }


async def sequential(call: Call, n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        await call()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - t0)
    return samples


async def concurrent(call: Call, n: int, width: int) -> tuple[float, list[float]]:
    """Wall time for n calls with `width` in flight, and each call's latency."""
    gate = asyncio.Semaphore(width)
    samples: list[float] = []

    async def one() -> None:
        async with gate:
            t0 = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - t0, samples


async def main(n: int, width: int, warmup: int) -> None:
    os.environ[KEY_ENV] = "sk-bench-not-a-secret"
    t0 = time.perf_counter()
    litellm = load_litellm()
    print(f"litellm import: {time.perf_counter() - t0:.2f} s (version {_version()})")

    import httpx

    server = OpenAIServer({"bench": "ok:Enter the Dragon, of course."}).start()
    try:
        model = ModelConfig(
            name="bench",
            model="openai/bench",
            api_base=server.base_url,
            api_key_env=KEY_ENV,
            timeout=10.0,
            max_tokens=120,
            temperature=0.9,
            input_cost_per_token=1e-7,
            output_cost_per_token=4e-7,
        )
        mock = ModelConfig(name="mock", model="openai/gpt-4o-mini", mock_response="Enter.")
        runner = ChainRunner(
            {"bench": model, "mock": mock},
            {
                "bench": ChainConfig("bench", ("bench",), 30.0),
                "mock": ChainConfig("mock", ("mock",), 30.0),
            },
            max_in_flight=width,
        )
        body = {
            "model": "bench",
            "messages": MESSAGES,
            "max_tokens": 120,
            "temperature": 0.9,
        }
        url = server.base_url + "/chat/completions"
        headers = {"Authorization": f"Bearer {os.environ[KEY_ENV]}"}

        async with httpx.AsyncClient(timeout=10.0) as client:

            async def plain() -> object:
                response = await client.post(url, json=body, headers=headers)
                response.raise_for_status()
                return response.json()["choices"][0]["message"]["content"]

            async def direct() -> object:
                return await litellm.acompletion(
                    model=model.model,
                    messages=MESSAGES,
                    api_base=model.api_base,
                    api_key=os.environ[KEY_ENV],
                    timeout=10.0,
                    max_tokens=120,
                    temperature=0.9,
                    num_retries=0,
                )

            async def chain() -> object:
                result = await runner.run("bench", MESSAGES)
                if not result.ok:
                    raise RuntimeError(f"chain failed: {result.attempts}")
                return result.text

            async def chain_mock() -> object:
                result = await runner.run("mock", MESSAGES)
                if not result.ok:
                    raise RuntimeError(f"chain failed: {result.attempts}")
                return result.text

            calls: dict[str, Call] = {
                "httpx": plain,
                "litellm": direct,
                "chain": chain,
                "chain-mock": chain_mock,
            }
            print(f"\nsequential: {n} calls each after {warmup} warm-up (ms per call)")
            print(f"{'path':<12}{'mean':>9}{'p50':>9}{'p99':>9}{'x httpx':>10}")
            base: dict[str, float] | None = None
            for name, call in calls.items():
                s = stats(await sequential(call, n, warmup))
                base = base or s
                ratio = s["mean"] / base["mean"]
                print(f"{name:<12}{s['mean']:>9.3f}{s['p50']:>9.3f}{s['p99']:>9.3f}{ratio:>10.1f}")

            print(f"\nconcurrent: {n} calls, {width} in flight")
            print(f"{'path':<12}{'calls/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
            for name, call in calls.items():
                wall, samples = await concurrent(call, n, width)
                s = stats(samples)
                print(f"{name:<12}{n / wall:>9.0f}{s['p50']:>9.3f}{s['p99']:>9.3f}")
        print(f"\nserver saw {server.count('bench')} requests")
    finally:
        server.stop()


def _version() -> str:
    from importlib.metadata import version

    return version("litellm")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="calls per path (default 300)")
    parser.add_argument("-c", type=int, default=8, help="calls in flight (default 8)")
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.c, args.warmup))
