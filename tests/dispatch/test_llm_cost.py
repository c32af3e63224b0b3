"""Configured per-token prices reach LiteLLM, and the recorded cost stays ours.

The call hands a model's configured prices to ``litellm.acompletion`` (so
LiteLLM does not search its price map for every response); these tests pin
that the prices go to LiteLLM and never to the provider, and that tokens and
cost recorded for a reply are what they were before: tokens from the
response's usage, cost from the configured prices (a missing one counts 0).
Real local HTTP server, real LiteLLM.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kryten_rules.config import ChainConfig, ModelConfig
from kryten_rules.dispatch.llm import ChainRunner, LiteLLMCompletion, load_litellm
from tests.openai_server import OpenAIServer

KEY_ENV = "KRYTEN_TEST_COST_KEY"
MESSAGES = [
    {"role": "system", "content": "You are Cynthia."},
    {"role": "user", "content": "alice says hi there"},
]
PROMPT_TOKENS = 7  # tests.openai_server counts whitespace-separated words
COST_KEYS = {"input_cost_per_token", "output_cost_per_token"}


@pytest.fixture(scope="module", autouse=True)
def _litellm_loaded() -> None:
    load_litellm()  # the ~2 s import once, outside every test's timeouts


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv(KEY_ENV, "sk-test-cost")
    srv = OpenAIServer().start()
    try:
        yield srv
    finally:
        srv.stop()


def model(srv: OpenAIServer, name: str, **kw: float) -> ModelConfig:
    srv.set(name, "ok:three words here")
    return ModelConfig(
        name=name,
        model=f"openai/{name}",
        api_base=srv.base_url,
        api_key_env=KEY_ENV,
        timeout=5.0,
        **kw,  # type: ignore[arg-type]
    )


def test_configured_prices_are_passed_to_litellm_missing_one_as_zero() -> None:
    both = ModelConfig(
        name="b", model="openai/b", input_cost_per_token=1e-6, output_cost_per_token=3e-6
    )
    kwargs = LiteLLMCompletion().request_kwargs(both, MESSAGES, 3.0)
    assert kwargs["input_cost_per_token"] == 1e-6
    assert kwargs["output_cost_per_token"] == 3e-6
    only_out = ModelConfig(name="o", model="openai/o", output_cost_per_token=2e-6)
    kwargs = LiteLLMCompletion().request_kwargs(only_out, MESSAGES, 3.0)
    assert kwargs["input_cost_per_token"] == 0.0
    assert kwargs["output_cost_per_token"] == 2e-6


def test_no_configured_prices_leaves_pricing_to_litellm() -> None:
    unpriced = ModelConfig(name="u", model="openai/gpt-4o-mini")
    kwargs = LiteLLMCompletion().request_kwargs(unpriced, MESSAGES, 3.0)
    assert not COST_KEYS & kwargs.keys()


async def test_prices_never_reach_the_provider_and_cost_is_recorded(
    server: OpenAIServer,
) -> None:
    m = model(server, "priced", input_cost_per_token=1e-6, output_cost_per_token=2e-6)
    result = await LiteLLMCompletion()(m, MESSAGES, 5.0)
    assert result.text == "three words here"
    assert (result.prompt_tokens, result.completion_tokens) == (PROMPT_TOKENS, 3)
    assert result.cost == pytest.approx(PROMPT_TOKENS * 1e-6 + 3 * 2e-6)
    body = server.bodies[0]
    assert not COST_KEYS & body.keys()
    assert body["model"] == "priced"


async def test_one_sided_price_costs_only_that_side_through_the_chain(
    server: OpenAIServer,
) -> None:
    m = model(server, "outonly", output_cost_per_token=5e-6)
    runner = ChainRunner({"outonly": m}, {"c": ChainConfig("c", ("outonly",), 10.0)})
    result = await runner.run("c", MESSAGES)
    assert result.ok and result.text == "three words here"
    attempt = result.attempts[0]
    assert attempt.outcome == "ok"
    assert (attempt.prompt_tokens, attempt.completion_tokens) == (PROMPT_TOKENS, 3)
    assert attempt.cost == pytest.approx(3 * 5e-6)
    assert result.cost == attempt.cost


async def test_a_repeated_call_costs_the_same(server: OpenAIServer) -> None:
    """Prices given per call do not accumulate or leak into LiteLLM's global price map."""
    m = model(server, "again", input_cost_per_token=1e-6, output_cost_per_token=1e-6)
    completion = LiteLLMCompletion()
    first = await completion(m, MESSAGES, 5.0)
    second = await completion(m, MESSAGES, 5.0)
    assert first.cost == second.cost == pytest.approx((PROMPT_TOKENS + 3) * 1e-6)
    other = model(server, "again-unpriced")
    unpriced = await completion(other, MESSAGES, 5.0)
    assert unpriced.cost in (None, 0.0)  # unknown to LiteLLM's map: no cost, as before
