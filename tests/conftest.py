"""Test-wide settings and the fixtures several modules share.

Hypothesis: no per-example deadline (these 2-core machines are often busy, and
a slow example is not a wrong one); under CI the examples are derandomized, so
a run on the same code always explores the same inputs and a red build means a
real regression, while local runs keep exploring new ones.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, settings

from kryten_rules.service.embedded import EmbeddedNats
from tests.nats_fixtures import RobotClient

settings.register_profile("default", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture(scope="session")
def litellm_loaded() -> None:
    """LiteLLM's ~2 s import, once, outside every test's waits."""
    from kryten_rules.dispatch.llm import load_litellm

    load_litellm()


@pytest.fixture
async def nats_server() -> AsyncIterator[EmbeddedNats]:
    """A real nats-server (with JetStream) on a free loopback port."""
    server = EmbeddedNats()
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.close)


@pytest.fixture
async def client(nats_server: EmbeddedNats) -> AsyncIterator[RobotClient]:
    """A stand-in for Kryten-Robot on that server (tests/nats_fixtures.py)."""
    c = await RobotClient().connect(nats_server.url)
    try:
        yield c
    finally:
        await c.close()
