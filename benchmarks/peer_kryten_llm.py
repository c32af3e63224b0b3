# requires (SEPARATE venv, not the project's .venv):
#   python3 -m venv /tmp/peer-venv
#   /tmp/peer-venv/bin/pip install --no-deps kryten-llm==0.11.1 kryten-py==0.17.5
#   /tmp/peer-venv/bin/pip install aiohttp==3.14.5 nats-py==2.16.0 pydantic==2.14.4 \
#       pydantic-settings==2.16.3 emoji==2.16.0 jinja2==3.1.6
"""Peer engine for the benchmark: kryten-llm's ``TriggerEngine``.

Install (in a separate venv, run this module with ``/tmp/peer-venv/bin/python``)::

    python3 -m venv /tmp/peer-venv
    /tmp/peer-venv/bin/pip install --no-deps kryten-llm==0.11.1 kryten-py==0.17.5
    /tmp/peer-venv/bin/pip install aiohttp==3.14.5 nats-py==2.16.0 pydantic==2.14.4 \\
        pydantic-settings==2.16.3 emoji==2.16.0 jinja2==3.1.6

``--no-deps`` matters: kryten-llm 0.11.1 declares sentence-transformers (torch),
asyncpg and pgvector, none of which the trigger engine needs.  Why the extra
packages are needed although ``trigger_engine.py`` itself only imports
``kryten.kv_store`` and ``kryten_llm.models``:

* ``kryten_llm/components/__init__.py`` eagerly imports every component
  (formatter -> ``emoji``, prompt_builder -> ``jinja2``, llm_manager ->
  ``aiohttp``), so importing ``kryten_llm.components.trigger_engine`` pulls
  them all in;
* ``kryten`` (PyPI ``kryten-py``) imports ``nats`` (``nats-py``), ``aiohttp``,
  ``pydantic`` and ``pydantic-settings`` from its package ``__init__``;
* ``kryten_llm.models.config`` is pydantic v2 models (``LLMConfig`` extends
  ``kryten.KrytenConfig``).

pip will print "kryten-llm requires sentence-transformers/asyncpg/pgvector,
which is not installed" -- harmless.  Licence of kryten-llm and kryten-py: MIT.

kryten-llm's API (``kryten_llm.components.trigger_engine``, v0.11.1)
--------------------------------------------------------------------
* ``TriggerEngine(config: LLMConfig)``.  ``LLMConfig`` (``kryten_llm.models.config``)
  requires ``nats`` (``{"servers": [...]}``), ``channels`` (>= 1
  ``{"domain", "channel"}``) and ``llm_providers`` (dict, may be empty); it is
  only validated, nothing connects.  Relevant parts:
  ``triggers: list[Trigger]`` with ``Trigger(name, patterns: list[str],
  probability=1.0, cooldown_seconds=300, max_responses_per_hour=10,
  priority=5 (1..10), enabled=True, context="", preferred_tier=None, ...)``;
  ``personality.name_variations`` (default ``["cynthia", "rothrock",
  "cynthiarothbot"]``: bot-name "mentions"); ``auto_participation.enabled``
  (default False); ``context.chat_history_size`` (30) and
  ``context.max_chat_history_in_prompt`` (50).
* ``async TriggerEngine.check_triggers(message: dict) -> TriggerResult`` --
  ASYNC.  The service (``kryten_llm/service.py::_handle_chat_message``) builds
  ``{"username", "msg", "time", "meta": {"rank", "shadow"}, "channel",
  "domain"}`` from the kryten-py ``ChatMessageEvent``, runs it through
  ``MessageListener.filter_message`` (drops system users, ignored users,
  shadow-muted users, text starting with ``!``, ``/`` or ``.``) plus
  dedup/age checks, then ``await trigger_engine.check_triggers(filtered)``.
* ``TriggerResult`` (dataclass, ``kryten_llm.models.events``): ``triggered``,
  ``trigger_type`` ("mention" | "trigger_word" | "auto_participant" | None),
  ``trigger_name``, ``cleaned_message``, ``context``, ``priority``,
  ``history``, ``preferred_tier``; ``bool(result) == result.triggered``.

Matching algorithm (read from the source)
-----------------------------------------
Per message:

1. ``history_buffer.append(message)`` (a ``deque(maxlen=chat_history_size)``).
2. Mentions: ``msg.lower()``; for each name variation (longest first)
   ``if name in msg_lower`` -> return a "mention" result.  (We configure no
   name variations, so this loop is empty.)
3. Trigger words: ``msg.lower()`` again; loop over enabled triggers sorted by
   ``priority`` descending (Python's stable sort: equal priorities keep config
   order); for each trigger loop over its patterns and test
   ``pattern.lower() in msg_lower`` -- a plain case-insensitive SUBSTRING
   test, no regex, no word boundaries (``"hi"`` matches ``"this"``), no
   Unicode case-folding/normalisation, ``pattern.lower()`` recomputed on every
   test.  The first matching pattern of a trigger rolls ``random.random() <
   probability``; on success it returns immediately: at most ONE trigger per
   message (the first in priority/config order), never the set of all matching
   rules.  Worst case (no match) is O(total number of patterns) substring
   scans per message.
4. On a fire only: ``cleaned_message`` = the message with the matched phrase
   removed via a precompiled ``\\b<re.escape(phrase)>\\b[,.:;!?]?\\s*``
   regex (IGNORECASE) -- regexes are compiled once in ``__init__`` but used
   only for this cleaning, not for matching -- and ``history`` = a copy of the
   last ``max_chat_history_in_prompt`` buffered messages.
5. Auto-participation (message counter) only if enabled -- disabled here.

Cooldowns are NOT enforced by ``TriggerEngine``: ``cooldown_seconds`` and
``max_responses_per_hour`` are read by ``RateLimiter.check_rate_limit`` in a
later pipeline step.  We set ``cooldown_seconds=0`` anyway.  Each fire logs at
INFO with an f-string (the string is built even when the level filters it).

What this module builds
-----------------------
``build_peer(rules)`` -> one ``Trigger`` per rule (``name`` = rule id,
``patterns`` = its phrases, ``probability=1.0``, ``cooldown_seconds=0``,
default priority 5 so rule order = check order), no name variations,
auto-participation off.  It returns a SYNC ``check(username, text)``; the
coroutine from ``check_triggers`` never awaits anything in this
configuration, so ``check`` steps it once (``coro.send(None)``) instead of
paying for an event loop per call, and raises if it ever suspends.  The async
form is ``check.acheck(username, text)`` (await it inside a running loop, as
the service does).  ``check.engine`` is the ``TriggerEngine``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

KRYTEN_LLM_VERSION = "0.11.1"
PEER_VENV = "/tmp/peer-venv"
INSTALL = (
    f"python3 -m venv {PEER_VENV} && "
    f"{PEER_VENV}/bin/pip install --no-deps kryten-llm=={KRYTEN_LLM_VERSION} kryten-py==0.17.5 && "
    f"{PEER_VENV}/bin/pip install aiohttp==3.14.5 nats-py==2.16.0 pydantic==2.14.4 "
    "pydantic-settings==2.16.3 emoji==2.16.0 jinja2==3.1.6"
)


class PeerMissingError(RuntimeError):
    """kryten-llm (or a module its trigger engine imports) is not installed."""


def _import_kryten_llm() -> tuple[Any, Any, Any]:
    try:
        from kryten_llm.components.listener import MessageListener
        from kryten_llm.components.trigger_engine import TriggerEngine
        from kryten_llm.models.config import LLMConfig
    except ImportError as exc:  # ModuleNotFoundError included
        import sys

        raise PeerMissingError(
            f"Cannot import kryten-llm's TriggerEngine in {sys.executable}: {exc}.\n"
            f"Run this with {PEER_VENV}/bin/python after installing:\n    {INSTALL}"
        ) from exc
    return TriggerEngine, LLMConfig, MessageListener


def _config(rules: Sequence[tuple[str, Sequence[str]]], LLMConfig: Any) -> Any:
    return LLMConfig(
        nats={"servers": ["nats://127.0.0.1:4222"]},  # validated only, never used
        channels=[{"domain": "cytu.be", "channel": "benchmark"}],
        llm_providers={},
        personality={"name_variations": []},  # no bot-name "mention" triggers
        auto_participation={"enabled": False},
        triggers=[
            {
                "name": rule_id,
                "patterns": list(phrases),
                "probability": 1.0,
                "cooldown_seconds": 0,
            }
            for rule_id, phrases in rules
        ],
    )


def _run_to_completion(coro: Coroutine[Any, Any, Any]) -> Any:
    """Finish a coroutine that never suspends, without an event loop."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError(
        "kryten-llm's check_triggers suspended (awaited real I/O); "
        "use check.acheck() inside an event loop instead"
    )


def build_peer(
    rules: list[tuple[str, list[str]]],
    *,
    quiet: bool = True,
    listener_filter: bool = False,
) -> Callable[[str, str], object]:
    """Build kryten-llm's TriggerEngine with one trigger per rule.

    Args:
        rules: ``[(rule_id, [phrase, phrase, phrase]), ...]``; order matters:
            with equal priorities the first matching rule wins.
        quiet: raise the ``kryten_llm`` logger to WARNING so the INFO line
            logged per fire is not emitted (its f-string is still built, as in
            the service).  ``False`` leaves logging as configured.
        listener_filter: also run the service's ``MessageListener.filter_message``
            first (drops text starting with ``!``, ``/`` or ``.`` and system
            users); a dropped message returns ``None``.  Off by default: the
            benchmark compares trigger matching.

    Returns:
        ``check(username, text) -> TriggerResult | None`` (sync).  Truthy iff a
        trigger fired; ``result.trigger_name`` is the rule id.  Attributes:
        ``check.acheck`` (async variant), ``check.engine``, ``check.config``.
    """
    TriggerEngine, LLMConfig, MessageListener = _import_kryten_llm()
    if quiet:
        logging.getLogger("kryten_llm").setLevel(logging.WARNING)

    config = _config(rules, LLMConfig)
    engine = TriggerEngine(config)
    listener = MessageListener(config) if listener_filter else None

    def _message(username: str, text: str) -> dict[str, Any]:
        # Same dict shape service.py builds from a kryten-py ChatMessageEvent.
        return {
            "username": username,
            "msg": text,
            "time": int(time.time()),
            "meta": {"rank": 1, "shadow": False},
            "channel": "benchmark",
            "domain": "cytu.be",
        }

    async def acheck(username: str, text: str) -> object:
        message = _message(username, text)
        if listener is not None:
            message = await listener.filter_message(message)
            if not message:
                return None
        return await engine.check_triggers(message)

    def check(username: str, text: str) -> object:
        return _run_to_completion(acheck(username, text))

    check.acheck = acheck  # type: ignore[attr-defined]
    check.engine = engine  # type: ignore[attr-defined]
    check.config = config  # type: ignore[attr-defined]
    return check


if __name__ == "__main__":  # smoke test: /tmp/peer-venv/bin/python benchmarks/peer_kryten_llm.py
    import asyncio

    rules = [
        ("greeting", ["good morning", "hello there", "howdy"]),
        ("movie-night", ["what are we watching", "next movie", "movie night"]),
    ]
    check = build_peer(rules)
    hit = check("alice", "Hello There, everyone!")
    miss = check("bob", "nothing to see here")
    assert hit and hit.trigger_name == "greeting", hit
    assert hit.trigger_type == "trigger_word" and hit.cleaned_message == "everyone!", hit
    assert not miss, miss
    # plain substring, no word boundary: "howdy" inside "showdy" still fires
    assert check("carol", "so SHOWDY today").trigger_name == "greeting"
    # first rule in config order wins when several match
    assert check("dave", "howdy, what's the next movie?").trigger_name == "greeting"
    assert asyncio.run(check.acheck("erin", "is it movie night?")).trigger_name == "movie-night"
    assert build_peer(rules, listener_filter=True)("frank", "!howdy") is None
    print("hit:", hit)
    print("miss:", miss)
    print("ok")
