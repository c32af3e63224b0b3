"""The channel lease on a real nats-server with JetStream: one holder, takeover, fencing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest

from kryten_rules.service.embedded import EmbeddedNats
from kryten_rules.service.lease import ChannelLease
from tests.nats_fixtures import wait_until

TTL = 1.0


@pytest.fixture
async def conns(nats_server: EmbeddedNats) -> AsyncIterator[list[object]]:
    made = [await nats.connect(nats_server.url) for _ in range(2)]
    try:
        yield made
    finally:
        for nc in made:
            await nc.close()


async def _lease(
    nc: object, owner: str, seen: list[bool] | None = None, ttl: float = TTL
) -> ChannelLease:
    lease = ChannelLease(
        nc, "cytu=2Ebe.room", bucket=f"test_leases_{int(ttl)}", ttl=ttl, owner=owner,
        on_change=None if seen is None else seen.append,
    )
    await lease.start()
    return lease


async def test_one_holder_and_a_release_hands_over_at_once(conns: list[object]) -> None:
    # a lease of a minute: only the release, seen through the watch, can hand it over
    # within the wait below
    a = await _lease(conns[0], "a", ttl=60.0)
    assert await a.wait_owned(5)
    b = await _lease(conns[1], "b", ttl=60.0)
    try:
        await wait_until(lambda: b.holder == "a", what="b sees a holding")
        assert not b.owned
        await a.stop(release=True)
        assert await b.wait_owned(10)
    finally:
        await b.stop()


async def test_a_dead_holder_is_replaced_within_the_ttl(conns: list[object]) -> None:
    a = await _lease(conns[0], "a")
    assert await a.wait_owned(5)
    b = await _lease(conns[1], "b")
    try:
        await wait_until(lambda: b.holder == "a", what="b sees a holding")
        await a.stop(release=False)  # as kill -9: no more renewals, nothing released
        assert await b.wait_owned(10 * TTL)  # once the bucket drops the unrenewed lease
    finally:
        await b.stop()


async def test_claims_reach_the_standby_and_a_lost_lease_claims_nothing(
    conns: list[object],
) -> None:
    seen: list[bool] = []
    a = await _lease(conns[0], "a", seen)
    assert await a.wait_owned(5)
    b = await _lease(conns[1], "b")
    try:
        assert await a.claim("event-1")
        await wait_until(lambda: "event-1" in b.peer_answered, what="the claim at the standby")
        # someone else takes the lease (here: it is deleted under a, and b takes it)
        js = conns[1].jetstream()  # type: ignore[attr-defined]
        kv = await js.key_value("test_leases_1")
        await kv.delete("cytu=2Ebe.room")
        assert await b.wait_owned(5)
        assert not await a.claim("event-2")  # fenced: a must not send
        assert seen == [True, False]
        assert "event-2" not in b.peer_answered
    finally:
        await a.stop()
        await b.stop()


async def test_a_deleted_bucket_is_made_again_and_the_standby_takes_over(
    conns: list[object],
) -> None:
    a = await _lease(conns[0], "a")
    assert await a.wait_owned(5)
    b = await _lease(conns[1], "b")
    try:
        await wait_until(lambda: b.holder == "a", what="b sees a holding")
        js = conns[1].jetstream()  # type: ignore[attr-defined]
        await js.delete_key_value("test_leases_1")  # an operator's `nats kv rm`
        await a.stop(release=False)  # and then the holder dies
        assert await b.wait_owned(10 * TTL)
    finally:
        await b.stop()
