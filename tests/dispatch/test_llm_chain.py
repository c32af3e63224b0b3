"""The LLM dispatch layer against a real local OpenAI-compatible HTTP server.

Every HTTP-path test goes through LiteLLM's ``openai/<model>`` provider to
``tests.openai_server`` on 127.0.0.1. Breaker and sit-out bookkeeping runs on
a fake clock; only real per-attempt timeouts take wall time (< 1 s each).
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kryten_rules.config import ChainConfig, ModelConfig
from kryten_rules.dispatch.llm import (
    OUTCOMES,
    Attempt,
    ChainRunner,
    CompletionError,
    CompletionResult,
    LiteLLMCompletion,
    check_api_keys,
    classify_exception,
    load_litellm,
    parse_retry_after,
)
from tests.openai_server import OpenAIServer, free_port

KEY_ENV = "KRYTEN_TEST_LLM_KEY"
SECRET = "sk-test-Zq8vN3-do-not-print"
MESSAGES = [
    {"role": "system", "content": "You are Cynthia."},
    {"role": "user", "content": "alice says hi there"},
]
# tests.openai_server counts whitespace-separated words of all message contents
PROMPT_TOKENS = 7


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module", autouse=True)
def _litellm_loaded() -> None:
    # The ~2 s import once, outside every test's timeouts.
    load_litellm()


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    server = OpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


def http_model(server: OpenAIServer, name: str, behaviour: str, **kw: object) -> ModelConfig:
    server.set(name, behaviour)
    params: dict[str, object] = {
        "model": f"openai/{name}",
        "api_base": server.base_url,
        "api_key_env": KEY_ENV,
        "timeout": 5.0,
    }
    params.update(kw)
    return ModelConfig(name=name, **params)  # type: ignore[arg-type]


def runner_for(models: list[ModelConfig], deadline: float = 30.0, **kw: object) -> ChainRunner:
    return ChainRunner(
        {m.name: m for m in models},
        {"default": ChainConfig("default", tuple(m.name for m in models), deadline)},
        **kw,  # type: ignore[arg-type]
    )


def outcomes(result: object) -> list[tuple[str, str]]:
    return [(a.model, a.outcome) for a in result.attempts]  # type: ignore[attr-defined]


# ---------------------------------------------------------------- HTTP path


async def test_success_records_text_tokens_model_and_configured_cost(
    openai_server: OpenAIServer, api_key: str
) -> None:
    fast = http_model(
        openai_server,
        "fast",
        "ok:hello there alice",
        max_tokens=50,
        temperature=0.5,
        input_cost_per_token=1e-6,
        output_cost_per_token=2e-6,
    )
    result = await runner_for([fast]).run("default", MESSAGES)

    assert result.ok
    assert result.text == "hello there alice"
    assert result.model == "fast"
    assert len(result.attempts) == 1
    attempt = result.attempts[0]
    assert attempt.model == "fast"
    assert attempt.outcome == "ok"
    assert attempt.error is None
    assert attempt.prompt_tokens == PROMPT_TOKENS
    assert attempt.completion_tokens == 3
    assert attempt.cost == pytest.approx(PROMPT_TOKENS * 1e-6 + 3 * 2e-6)
    assert result.cost == attempt.cost
    assert attempt.latency >= 0
    # what reached the server: one request, our parameters, the key as bearer token
    assert openai_server.count("fast") == 1
    body = openai_server.bodies[0]
    assert body["messages"] == MESSAGES
    assert body["max_tokens"] == 50
    assert body["temperature"] == 0.5
    assert openai_server.last_headers.get("authorization") == f"Bearer {api_key}"


async def test_cost_is_none_for_unpriced_unknown_model(
    openai_server: OpenAIServer, api_key: str
) -> None:
    result = await runner_for([http_model(openai_server, "nameless", "ok:hi")]).run(
        "default", MESSAGES
    )
    assert result.ok
    assert result.attempts[0].cost is None
    assert result.attempts[0].completion_tokens == 1


async def test_http_500_is_server_error_without_retries(
    openai_server: OpenAIServer, api_key: str
) -> None:
    result = await runner_for([http_model(openai_server, "down", "status:500")]).run(
        "default", MESSAGES
    )
    assert not result.ok
    assert result.text is None and result.model is None
    assert outcomes(result) == [("down", "server_error")]
    assert "500" in (result.attempts[0].error or "")
    assert result.attempts[0].prompt_tokens is None
    assert openai_server.count("down") == 1  # num_retries=0: LiteLLM did not retry


@pytest.mark.parametrize("status", [502, 503])
async def test_other_5xx_are_server_errors(
    openai_server: OpenAIServer, api_key: str, status: int
) -> None:
    # LiteLLM raises BadGatewayError / ServiceUnavailableError here, which are
    # not InternalServerError subclasses.
    result = await runner_for([http_model(openai_server, "gw", f"status:{status}")]).run(
        "default", MESSAGES
    )
    assert outcomes(result) == [("gw", "server_error")]
    assert str(status) in (result.attempts[0].error or "")


async def test_429_with_retry_after_makes_the_model_sit_out(
    openai_server: OpenAIServer, api_key: str
) -> None:
    clock = FakeClock()
    limited = http_model(openai_server, "limited", "status:429:retry_after=7")
    backup = http_model(openai_server, "backup", "ok:from backup")
    runner = runner_for([limited, backup], clock=clock)

    first = await runner.run("default", MESSAGES)
    assert first.text == "from backup" and first.model == "backup"
    assert outcomes(first) == [("limited", "rate_limited"), ("backup", "ok")]
    assert "429" in (first.attempts[0].error or "")
    assert runner.sitting_out("limited") == pytest.approx(7.0)

    clock.advance(6.0)
    second = await runner.run("default", MESSAGES)
    assert outcomes(second) == [("limited", "skipped_rate_limited"), ("backup", "ok")]
    assert second.attempts[0].latency == 0.0
    assert openai_server.count("limited") == 1  # no HTTP request while sitting out

    clock.advance(1.5)  # Retry-After is over
    openai_server.set("limited", "ok:limited is back")
    third = await runner.run("default", MESSAGES)
    assert third.text == "limited is back"
    assert outcomes(third) == [("limited", "ok")]
    assert openai_server.count("limited") == 2
    assert openai_server.count("backup") == 2


async def test_429_without_retry_after_sits_out_the_default(
    openai_server: OpenAIServer, api_key: str
) -> None:
    clock = FakeClock()
    runner = runner_for([http_model(openai_server, "limited", "status:429")], clock=clock)
    result = await runner.run("default", MESSAGES)
    assert outcomes(result) == [("limited", "rate_limited")]
    assert runner.sitting_out("limited") == pytest.approx(30.0)
    clock.advance(29.0)
    again = await runner.run("default", MESSAGES)
    assert outcomes(again) == [("limited", "skipped_rate_limited")]
    assert openai_server.count("limited") == 1


async def test_hang_past_the_timeout_is_a_timeout_then_fallback(
    openai_server: OpenAIServer, api_key: str
) -> None:
    slow = http_model(openai_server, "slow", "hang:3", timeout=0.5)
    backup = http_model(openai_server, "backup", "ok:quick answer")
    result = await runner_for([slow, backup]).run("default", MESSAGES)
    assert result.text == "quick answer"
    assert outcomes(result) == [("slow", "timeout"), ("backup", "ok")]
    assert result.attempts[0].error
    assert openai_server.count("slow") == 1


async def test_connection_refused_is_refused(api_key: str) -> None:
    # Nothing listens there. LiteLLM reports it as InternalServerError
    # ("Connection error."); the cause chain holds the ConnectionRefusedError.
    dead = ModelConfig(
        name="dead",
        model="openai/dead",
        api_base=f"http://127.0.0.1:{free_port()}/v1",
        api_key_env=KEY_ENV,
        timeout=2.0,
    )
    result = await runner_for([dead]).run("default", MESSAGES)
    assert not result.ok
    assert outcomes(result) == [("dead", "refused")]
    assert "Connection" in (result.attempts[0].error or "")


@pytest.mark.parametrize(
    ("behaviour", "fragment"),
    [
        ("malformed", "JSONDecodeError"),
        ("empty", "empty or blank"),
        ("blank", "empty or blank"),
        ("nochoices", "no choices"),
    ],
)
async def test_bad_responses(
    openai_server: OpenAIServer, api_key: str, behaviour: str, fragment: str
) -> None:
    result = await runner_for([http_model(openai_server, "odd", behaviour)]).run(
        "default", MESSAGES
    )
    assert not result.ok
    assert outcomes(result) == [("odd", "bad_response")]
    assert fragment in (result.attempts[0].error or "")
    assert openai_server.count("odd") == 1


async def test_first_two_fail_third_answers(openai_server: OpenAIServer, api_key: str) -> None:
    broken = http_model(openai_server, "broken", "status:500")
    dead = ModelConfig(
        name="dead",
        model="openai/dead",
        api_base=f"http://127.0.0.1:{free_port()}/v1",
        api_key_env=KEY_ENV,
    )
    good = http_model(openai_server, "good", "ok:third time lucky", input_cost_per_token=1e-6)
    result = await runner_for([broken, dead, good]).run("default", MESSAGES)
    assert result.text == "third time lucky"
    assert result.model == "good"
    assert outcomes(result) == [
        ("broken", "server_error"),
        ("dead", "refused"),
        ("good", "ok"),
    ]
    assert [a.cost for a in result.attempts] == [None, None, pytest.approx(PROMPT_TOKENS * 1e-6)]
    assert openai_server.count("broken") == 1 and openai_server.count("good") == 1


async def test_all_fail_gives_text_none(openai_server: OpenAIServer, api_key: str) -> None:
    models = [
        http_model(openai_server, "a", "status:500"),
        http_model(openai_server, "b", "empty"),
    ]
    result = await runner_for(models).run("default", MESSAGES)
    assert result.text is None and result.model is None and not result.ok
    assert outcomes(result) == [("a", "server_error"), ("b", "bad_response")]


async def test_chain_deadline_cuts_the_timeout_and_skips_the_rest(
    openai_server: OpenAIServer, api_key: str
) -> None:
    hanging = http_model(openai_server, "hanging", "hang:3", timeout=5.0)
    never = http_model(openai_server, "never", "ok:too late")
    also_never = http_model(openai_server, "also-never", "ok:too late")
    result = await runner_for([hanging, never, also_never], deadline=0.6).run("default", MESSAGES)
    assert not result.ok
    assert outcomes(result) == [
        ("hanging", "timeout"),
        ("never", "deadline"),
        ("also-never", "deadline"),
    ]
    assert result.attempts[1].latency == 0.0
    assert openai_server.count("hanging") == 1
    assert openai_server.count("never") == 0
    assert openai_server.count("also-never") == 0


async def test_circuit_breaker_opens_then_half_open_success_closes(
    openai_server: OpenAIServer, api_key: str
) -> None:
    clock = FakeClock()
    flaky = http_model(openai_server, "flaky", "status:500")
    backup = http_model(openai_server, "backup", "ok:backup here")
    runner = runner_for([flaky, backup], clock=clock, breaker_threshold=3, breaker_cooloff=60.0)

    for _ in range(3):
        result = await runner.run("default", MESSAGES)
        assert outcomes(result) == [("flaky", "server_error"), ("backup", "ok")]
    assert runner.circuit_state("flaky") == "open"

    clock.advance(30.0)
    skipped = await runner.run("default", MESSAGES)
    assert outcomes(skipped) == [("flaky", "skipped_circuit_open"), ("backup", "ok")]
    assert "circuit open" in (skipped.attempts[0].error or "")
    assert openai_server.count("flaky") == 3  # not called while open

    clock.advance(31.0)  # cool-off over: half-open, one probe goes through
    assert runner.circuit_state("flaky") == "half_open"
    openai_server.set("flaky", "ok:flaky recovered")
    probe = await runner.run("default", MESSAGES)
    assert probe.text == "flaky recovered"
    assert outcomes(probe) == [("flaky", "ok")]
    assert runner.circuit_state("flaky") == "closed"
    assert openai_server.count("flaky") == 4

    # closed again: it takes threshold failures to reopen, not one
    openai_server.set("flaky", "status:500")
    after = await runner.run("default", MESSAGES)
    assert outcomes(after) == [("flaky", "server_error"), ("backup", "ok")]
    assert runner.circuit_state("flaky") == "closed"


async def test_circuit_breaker_half_open_failure_reopens(
    openai_server: OpenAIServer, api_key: str
) -> None:
    clock = FakeClock()
    flaky = http_model(openai_server, "flaky", "status:503")
    runner = runner_for([flaky], clock=clock, breaker_threshold=2, breaker_cooloff=10.0)
    for _ in range(2):
        assert outcomes(await runner.run("default", MESSAGES)) == [("flaky", "server_error")]
    assert outcomes(await runner.run("default", MESSAGES)) == [("flaky", "skipped_circuit_open")]

    clock.advance(10.0)
    probe = await runner.run("default", MESSAGES)
    assert outcomes(probe) == [("flaky", "server_error")]
    assert runner.circuit_state("flaky") == "open"  # one failure while half-open reopens
    assert outcomes(await runner.run("default", MESSAGES)) == [("flaky", "skipped_circuit_open")]
    assert openai_server.count("flaky") == 3


async def test_max_in_flight_bounds_concurrent_requests(
    openai_server: OpenAIServer, api_key: str
) -> None:
    slow = http_model(openai_server, "slowish", "slow:0.25:done")
    runner = runner_for([slow], max_in_flight=2)
    results = await asyncio.gather(*(runner.run("default", MESSAGES) for _ in range(6)))
    assert all(r.text == "done" for r in results)
    assert all(outcomes(r) == [("slowish", "ok")] for r in results)
    assert openai_server.count("slowish") == 6
    assert openai_server.max_in_flight == 2


# ---------------------------------------------------------------- API keys


def test_check_api_keys_names_missing_variables_never_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KRYTEN_TEST_MISSING_KEY", raising=False)
    monkeypatch.setenv("KRYTEN_TEST_EMPTY_KEY", "")
    monkeypatch.setenv(KEY_ENV, SECRET)
    models = {
        "a": ModelConfig("a", "openai/a", api_key_env="KRYTEN_TEST_MISSING_KEY"),
        "b": ModelConfig("b", "openai/b", api_key_env="KRYTEN_TEST_MISSING_KEY"),
        "c": ModelConfig("c", "openai/c", api_key_env="KRYTEN_TEST_EMPTY_KEY"),
        "d": ModelConfig("d", "openai/d", api_key_env=KEY_ENV),
        "local": ModelConfig("local", "ollama/llama3.1"),
    }
    errors = check_api_keys(models)
    assert len(errors) == 2
    assert "KRYTEN_TEST_MISSING_KEY" in errors[0] and "a, b" in errors[0]
    assert "KRYTEN_TEST_EMPTY_KEY" in errors[1] and "model c" in errors[1]
    assert not any(SECRET in e or KEY_ENV in e for e in errors)
    assert check_api_keys([models["d"], models["local"]]) == []


async def test_missing_key_at_call_time_fails_without_a_request(
    openai_server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    model = http_model(openai_server, "keyless", "ok:should not happen")
    result = await runner_for([model]).run("default", MESSAGES)
    assert outcomes(result) == [("keyless", "server_error")]
    assert KEY_ENV in (result.attempts[0].error or "")
    assert openai_server.count("keyless") == 0


async def test_key_echoed_by_the_server_is_masked_everywhere(
    openai_server: OpenAIServer,
    api_key: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    model = http_model(openai_server, "auth", "authecho")
    result = await runner_for([model]).run("default", MESSAGES)
    assert outcomes(result) == [("auth", "server_error")]
    error = result.attempts[0].error or ""
    assert "401" in error and "***" in error
    assert api_key not in error
    assert api_key not in caplog.text
    captured = capsys.readouterr()
    assert api_key not in captured.out + captured.err
    assert "Give Feedback" not in captured.out  # LiteLLM's debug prints are off


# ---------------------------------------------------------------- mock_response (no HTTP)


async def test_mock_response_happy_path_uses_litellm_price_map() -> None:
    demo = ModelConfig(name="demo", model="openai/gpt-4o-mini", mock_response="mocked hello")
    result = await runner_for([demo]).run("default", MESSAGES)
    assert result.ok and result.text == "mocked hello" and result.model == "demo"
    attempt = result.attempts[0]
    assert attempt.outcome == "ok"
    assert attempt.prompt_tokens and attempt.completion_tokens
    assert attempt.cost is not None and attempt.cost > 0  # from the local price map


async def test_mock_response_prefers_configured_prices_and_needs_no_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KRYTEN_TEST_UNSET", raising=False)
    demo = ModelConfig(
        name="demo",
        model="openai/no-such-model",
        api_key_env="KRYTEN_TEST_UNSET",
        mock_response="offline answer",
        input_cost_per_token=0.5,
        output_cost_per_token=1.0,
    )
    result = await runner_for([demo]).run("default", MESSAGES)
    assert result.text == "offline answer"
    a = result.attempts[0]
    assert a.cost == pytest.approx(a.prompt_tokens * 0.5 + a.completion_tokens * 1.0)


async def test_mock_response_blank_is_bad_response_then_fallback() -> None:
    blank = ModelConfig(name="blank", model="openai/gpt-4o-mini", mock_response="   ")
    fine = ModelConfig(name="fine", model="openai/gpt-4o-mini", mock_response="fine")
    result = await runner_for([blank, fine]).run("default", MESSAGES)
    assert result.text == "fine"
    assert outcomes(result) == [("blank", "bad_response"), ("fine", "ok")]


# ---------------------------------------------------------------- run() never raises


class ScriptedCompletion:
    """A Completion that replays scripted results per model name."""

    def __init__(self, script: dict[str, object]) -> None:
        self.script = script
        self.calls: list[tuple[str, float]] = []

    async def __call__(
        self, model: ModelConfig, messages: list[dict[str, str]], timeout: float
    ) -> CompletionResult:
        self.calls.append((model.name, timeout))
        item = self.script[model.name]
        if isinstance(item, BaseException):
            raise item
        assert isinstance(item, CompletionResult)
        return item


def plain(name: str, timeout: float = 20.0) -> ModelConfig:
    return ModelConfig(name=name, model=f"openai/{name}", timeout=timeout)


async def test_unexpected_exception_is_server_error_with_type_name() -> None:
    fake = ScriptedCompletion(
        {"boom": RuntimeError("kaboom"), "ok": CompletionResult("fine", 1, 1, 0.0)}
    )
    result = await runner_for([plain("boom"), plain("ok")], completion=fake).run(
        "default", MESSAGES
    )
    assert result.text == "fine"
    assert result.attempts[0] == Attempt(
        "boom", "server_error", result.attempts[0].latency, error="RuntimeError"
    )


async def test_scripted_outcomes_and_blank_text() -> None:
    fake = ScriptedCompletion(
        {
            "limited": CompletionError("rate_limited", "429", retry_after=2.0),
            "blank": CompletionResult("  \n"),
            "last": CompletionResult("answer"),
        }
    )
    clock = FakeClock()
    runner = runner_for(
        [plain("limited"), plain("blank"), plain("last")], completion=fake, clock=clock
    )
    result = await runner.run("default", MESSAGES)
    assert outcomes(result) == [
        ("limited", "rate_limited"),
        ("blank", "bad_response"),
        ("last", "ok"),
    ]
    assert runner.sitting_out("limited") == 2.0


async def test_unknown_chain_and_unknown_model_do_not_raise() -> None:
    fake = ScriptedCompletion({"ok": CompletionResult("hi")})
    runner = ChainRunner(
        {"ok": plain("ok")},
        {"default": ChainConfig("default", ("ghost", "ok"))},
        completion=fake,
    )
    missing = await runner.run("nope", MESSAGES)
    assert not missing.ok and missing.attempts == ()
    result = await runner.run("default", MESSAGES)
    assert result.text == "hi"
    assert outcomes(result) == [("ghost", "server_error"), ("ok", "ok")]
    assert "unknown model" in (result.attempts[0].error or "")


async def test_timeout_is_the_smaller_of_model_timeout_and_time_left() -> None:
    fake = ScriptedCompletion({"a": CompletionResult("x")})
    runner = ChainRunner(
        {"a": plain("a", timeout=20.0)},
        {"short": ChainConfig("short", ("a",), 5.0), "long": ChainConfig("long", ("a",), 60.0)},
        completion=fake,
        clock=FakeClock(),
    )
    await runner.run("short", MESSAGES)
    await runner.run("long", MESSAGES)
    assert fake.calls == [("a", 5.0), ("a", 20.0)]


# ---------------------------------------------------------------- small parts


def test_parse_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    now = datetime(2030, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(90.0)


def test_classify_plain_exceptions() -> None:
    assert classify_exception(TimeoutError()) == "timeout"
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as inner:
            raise RuntimeError("Connection error.") from inner
    except RuntimeError as outer:
        assert classify_exception(outer) == "refused"
    assert classify_exception(ValueError("x")) == "server_error"


def test_completion_error_rejects_unknown_outcomes() -> None:
    with pytest.raises(ValueError):
        CompletionError("fine", "nope")


def test_litellm_is_quiet_and_offline() -> None:
    litellm = load_litellm()
    assert litellm.suppress_debug_info is True
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
        logger = logging.getLogger(name)
        assert logger.level == logging.WARNING and logger.propagate is False
    kwargs = LiteLLMCompletion().request_kwargs(plain("x"), MESSAGES, 3.0)
    assert kwargs["num_retries"] == 0 and kwargs["timeout"] == 3.0


def test_importing_the_package_does_not_import_litellm() -> None:
    code = "import sys, kryten_rules.dispatch.llm; assert 'litellm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------- property


_SCRIPTED = {
    "ok": CompletionResult("answer", 1, 1, 0.0),
    "blank": CompletionResult(" "),
    "timeout": CompletionError("timeout", "slow"),
    "rate_limited": CompletionError("rate_limited", "429", retry_after=5.0),
    "server_error": CompletionError("server_error", "500"),
    "refused": CompletionError("refused", "refused"),
    "boom": KeyError("boom"),
}


@settings(max_examples=60, deadline=None)
@given(
    runs=st.lists(
        st.tuples(
            st.lists(st.sampled_from(sorted(_SCRIPTED)), min_size=1, max_size=4),
            st.floats(min_value=0, max_value=40),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_run_records_every_model_and_never_raises(
    runs: list[tuple[list[str], float]],
) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        names = [f"m{i}" for i in range(4)]
        fake = ScriptedCompletion({})
        runner = ChainRunner(
            {n: plain(n) for n in names},
            {"default": ChainConfig("default", tuple(names))},
            completion=fake,
            clock=clock,
            breaker_threshold=2,
            breaker_cooloff=10.0,
        )
        for script, advance in runs:
            fake.script = {n: _SCRIPTED[script[i % len(script)]] for i, n in enumerate(names)}
            fake.calls.clear()
            result = await runner.run("default", MESSAGES)
            attempts = result.attempts
            assert [a.model for a in attempts] == names[: len(attempts)]
            assert all(a.outcome in OUTCOMES for a in attempts)
            # only models that were called reached the completion
            assert [n for n, _ in fake.calls] == [a.model for a in attempts if a.called]
            if result.ok:
                assert attempts[-1].outcome == "ok" and result.model == attempts[-1].model
                assert result.text == "answer"
            else:
                assert len(attempts) == len(names)
                assert all(a.outcome != "ok" for a in attempts)
            clock.advance(advance)

    asyncio.run(scenario())
