"""CPU per LLM call: LiteLLM as we call it, against a plain HTTP POST, same run.

Against the local OpenAI-style test server answering at once, run in its
own process so that ``time.process_time()`` here is the client's CPU only
(all threads: LiteLLM's logging executor included). Paths:

- ``httpx``: a plain ``httpx.AsyncClient`` POST of the same JSON body (the floor)
- ``openai-sdk``: ``AsyncOpenAI.chat.completions.create``, the client
  LiteLLM's ``openai/`` provider sends through (LiteLLM's own floor)
- ``litellm-before``: ``litellm.acompletion`` with the keyword arguments
  ``LiteLLMCompletion`` passed before prices went along (no per-call prices)
- ``litellm-now``: ``LiteLLMCompletion`` as the service calls it (configured
  prices passed to LiteLLM, result read into tokens and cost)
- ``chain``: ``ChainRunner.run`` (the above plus the chain's bookkeeping)

The paths are interleaved: ``--rounds`` rounds of ``-n`` calls of each, and
the median round is reported (the machine is shared; a median of rounds is
steadier than one long run). Run: ``python benchmarks/llm_cost_bench.py
[-n 200] [--rounds 5] [--model openai/bench]``. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

KEY_ENV = "KRYTEN_BENCH_KEY"
KEY = "sk-bench-not-a-secret"
MESSAGES = [
    {"role": "system", "content": "You are Cynthia, a film buff in a CyTube channel."},
    {"role": "user", "content": "alice: cynthia, best kung fu film of the seventies?"},
]
COST_KEYS = ("input_cost_per_token", "output_cost_per_token")

Call = Callable[[], Awaitable[object]]


def _serve(port_queue: Any) -> None:
    from tests.openai_server import OpenAIServer

    server = OpenAIServer()  # every model: a short reply with usage
    server.start()
    port_queue.put(server.port)
    while True:
        time.sleep(3600)


async def cpu_per_call(call: Call, n: int) -> float:
    """Process CPU seconds per call over n calls one after another."""
    c0 = time.process_time()
    for _ in range(n):
        await call()
    return (time.process_time() - c0) / n


async def bench(base_url: str, model_name: str, n: int, rounds: int) -> dict[str, float]:
    import httpx
    import openai

    from kryten_rules.config import ChainConfig, ModelConfig
    from kryten_rules.dispatch.llm import ChainRunner, LiteLLMCompletion, load_litellm
    from kryten_rules.dispatch.llm.litellm_client import warm_up

    litellm = load_litellm()
    model = ModelConfig(
        name="bench",
        model=model_name,
        api_base=base_url,
        api_key_env=KEY_ENV,
        timeout=10.0,
        max_tokens=120,
        temperature=0.9,
        input_cost_per_token=1e-7,
        output_cost_per_token=4e-7,
    )
    await asyncio.to_thread(warm_up, [model])
    completion = LiteLLMCompletion()
    before = completion.request_kwargs(model, MESSAGES, 10.0)
    for key in COST_KEYS:
        before.pop(key, None)
    runner = ChainRunner({"bench": model}, {"bench": ChainConfig("bench", ("bench",), 30.0)})
    wire_model = model_name.split("/", 1)[1]
    body = {"model": wire_model, "messages": MESSAGES, "max_tokens": 120, "temperature": 0.9}
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(timeout=10.0) as client:
        sdk = openai.AsyncOpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=10.0)

        async def plain() -> object:
            response = await client.post(base_url + "/chat/completions", json=body, headers=headers)
            response.raise_for_status()
            return response.json()["choices"][0]["message"]["content"]

        async def via_sdk() -> object:
            return await sdk.chat.completions.create(
                model=wire_model,
                messages=MESSAGES,  # type: ignore[arg-type]
                max_tokens=120,
                temperature=0.9,
            )

        async def litellm_before() -> object:
            return await litellm.acompletion(**before)

        async def litellm_now() -> object:
            return await completion(model, MESSAGES, 10.0)

        async def chain() -> object:
            result = await runner.run("bench", MESSAGES)
            if not result.ok:
                raise RuntimeError(f"chain failed: {result.attempts}")
            return result.text

        calls: dict[str, Call] = {
            "httpx": plain,
            "openai-sdk": via_sdk,
            "litellm-before": litellm_before,
            "litellm-now": litellm_now,
            "chain": chain,
        }
        for call in calls.values():  # warm every path (connections, lazy imports)
            for _ in range(20):
                await call()
        samples: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(rounds):
            for name, call in calls.items():
                samples[name].append(await cpu_per_call(call, n))
        await sdk.close()
    return {name: statistics.median(s) for name, s in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="calls per path per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--model",
        default="openai/bench",
        help="LiteLLM model string (a name LiteLLM's price map knows, e.g. "
        "openai/gpt-4o-mini, prices faster than an unknown one)",
    )
    args = parser.parse_args()
    os.environ[KEY_ENV] = KEY
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    server = ctx.Process(target=_serve, args=(ports,), daemon=True)
    server.start()
    try:
        port = ports.get(timeout=30)
        result = asyncio.run(bench(f"http://127.0.0.1:{port}/v1", args.model, args.n, args.rounds))
    finally:
        server.terminate()
        server.join(5)
    from importlib.metadata import version

    print(
        f"python {sys.version.split()[0]}, litellm {version('litellm')}, model {args.model}; "
        f"median of {args.rounds} rounds x {args.n} calls; process CPU per call"
    )
    floor = result["httpx"]
    print(f"{'path':<16}{'CPU ms/call':>12}{'x httpx':>9}")
    for name, seconds in result.items():
        print(f"{name:<16}{seconds * 1000:>12.3f}{seconds / floor:>9.2f}")
    saved = 1 - result["litellm-now"] / result["litellm-before"]
    print(f"litellm-now saves {saved:.0%} of litellm-before's CPU per call")


if __name__ == "__main__":
    main()
