"""Contract tests of ``locks`` against a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from devstack import RedisServer
from locks import EPOCH_SHIFT, LeaseBusy, Leases, NotBootstrapped, NotReady, stream_key, token_epoch

pytestmark = pytest.mark.integration

S = "folders:1"


@pytest.fixture
async def leases(redis: aioredis.Redis) -> AsyncIterator[Leases]:
    # leases long enough that no stall of a loaded machine lets one lapse mid-test; the test
    # that needs a lapse takes a short one of its own
    async with Leases(redis, ttl_ms=5000, heartbeat_ms=1000) as lm:
        await lm.set_epoch(1)
        yield lm


def soon(seconds: float = 2.0) -> float:
    return time.monotonic() + seconds


async def test_tokens_increase_and_carry_the_epoch(leases: Leases) -> None:
    tokens = []
    for _ in range(5):
        lease = await leases.acquire(S, soon())
        tokens.append(lease.token)
        assert await leases.release(lease, clean=True)
    assert tokens == sorted(set(tokens))
    assert all(token_epoch(t) == 1 for t in tokens)
    assert tokens[0] == (1 << EPOCH_SHIFT) + 1


async def test_exclusion_and_deadline(leases: Leases) -> None:
    first = await leases.acquire(S, soon())
    with pytest.raises(LeaseBusy) as busy:
        await leases.acquire(S, soon(0.2))
    assert busy.value.retriable and busy.value.retry_after_ms > 0
    assert await leases.release(first, clean=True)
    second = await leases.acquire(S, soon())
    assert second.token > first.token and not second.takeover


async def test_takeover_after_dirty_release_and_after_expiry(leases: Leases, redis: aioredis.Redis) -> None:
    a = await leases.acquire(S, soon())
    await leases.release(a, clean=False)
    async with Leases(redis, ttl_ms=500, heartbeat_ms=200) as short:
        b = await short.acquire(S, soon())
    assert b.takeover
    # b lets its TTL lapse: the next holder waits for the expiry, then is told takeover
    c = await leases.acquire(S, soon(5))
    assert c.takeover and c.token > b.token
    assert not await leases.release(b, clean=True), "an expired lease is not ours to release"
    await leases.release(c, clean=True)
    d = await leases.acquire(S, soon())
    assert not d.takeover


async def test_waiters_are_served_in_arrival_order(leases: Leases, redis: aioredis.Redis) -> None:
    holder = await leases.acquire(S, soon())
    order: list[int] = []

    async def waiter(i: int) -> None:
        lease = await leases.acquire(S, soon(10))
        order.append(i)
        await leases.release(lease, clean=True)

    tasks = []
    queue = f"{stream_key(S)}:q"
    for i in range(20):
        tasks.append(asyncio.create_task(waiter(i)))
        # arrival is the first script call reaching Redis, not the task's creation: wait until
        # waiter i stands in the queue before starting the next (a fixed sleep raced on slow CI)
        async with asyncio.timeout(5):
            while await redis.llen(queue) < i + 1:  # noqa: ASYNC110 -- polls Redis
                await asyncio.sleep(0.002)
    assert await leases.release(holder, clean=True), "the holder's lease lapsed while waiters queued"
    await asyncio.gather(*tasks)
    assert order == list(range(20))


async def test_raise_floor_lifts_later_tokens(leases: Leases) -> None:
    a = await leases.acquire(S, soon())
    await leases.release(a, clean=True)
    await leases.raise_floor(S, a.token + 1000)
    b = await leases.acquire(S, soon())
    assert b.token == a.token + 1001
    await leases.raise_floor(S, 5)  # a lower floor never lowers the counter
    await leases.release(b, clean=True)
    c = await leases.acquire(S, soon())
    assert c.token == b.token + 1


async def test_no_epoch_means_no_token(redis: aioredis.Redis) -> None:
    async with Leases(redis) as lm:
        with pytest.raises(NotBootstrapped):
            await lm.acquire(S, soon())


async def test_not_ready_until_the_projection_says_so(redis: aioredis.Redis) -> None:
    async with Leases(redis, require_ready=True) as lm:
        await lm.set_epoch(3)
        with pytest.raises(NotReady):
            await lm.acquire(S, soon())
        await lm.set_ready(3)
        lease = await lm.acquire(S, soon())
        assert token_epoch(lease.token) == 3


async def test_redis_wiped_then_new_epoch_keeps_tokens_above(
        redis_server: RedisServer, redis: aioredis.Redis) -> None:
    async with Leases(redis) as lm:
        await lm.set_epoch(1)
        before = []
        for _ in range(3):
            lease = await lm.acquire(S, soon())
            before.append(lease.token)
            await lm.release(lease, clean=False)
    redis_server.restart_empty()
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        async with Leases(client) as lm:
            with pytest.raises(NotBootstrapped):
                await lm.acquire(S, soon())
            await lm.set_epoch(2)  # the service derives the next epoch from the log
            lease = await lm.acquire(S, soon())
            assert lease.token > max(before)
            assert not lease.takeover  # the marker is gone with the data; the fence comes from the log
    finally:
        await client.aclose()
