"""Concurrency tests of ``locks`` against the real redis-server: many acquirers in two OS
processes, fairness across processes, cancellation at every await point, LeaseBusy.

The cross-process tests run :func:`worker_main` in child interpreters
(``python -c "from tests.integration.test_locks_concurrency import worker_main; ..."``);
they report through Redis lists, which Redis orders for us.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from devstack import RedisServer
from locks import Held, Lease, LeaseBusy, LeaseError, Leases, stream_key

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def soon(seconds: float = 2.0) -> float:
    return time.monotonic() + seconds


# -- child processes ------------------------------------------------------------------------


async def _storm(r: aioredis.Redis, lm: Leases, ns: str, stream: str, n: int, hold_ms: int) -> None:
    """``n`` tasks each take the lease once; inside it they prove they are alone."""

    async def one() -> None:
        async with lm.hold(stream, soon(120)) as held:
            enter = await r.incr(f"{ns}:clock")
            inside = await r.incr(f"{ns}:inside")
            await asyncio.sleep(hold_ms / 1000)
            await r.decr(f"{ns}:inside")
            leave = await r.incr(f"{ns}:clock")
            lease = held.lease
            await r.rpush(f"{ns}:grants", json.dumps({
                "token": lease.token, "takeover": lease.takeover, "inside": inside,
                "enter": enter, "leave": leave, "pid": os.getpid()}))
            held.settled()

    await asyncio.gather(*(one() for _ in range(n)))


async def _ordered(r: aioredis.Redis, lm: Leases, ns: str, stream: str, indices: list[int]) -> None:
    """Waiter ``i`` joins the line when the parent pushes ``go:i``; it records when served."""

    async def one(i: int) -> None:
        assert await r.blpop([f"{ns}:go:{i}"], timeout=60), f"no go signal for waiter {i}"
        lease = await lm.acquire(stream, soon(60))
        await r.rpush(f"{ns}:order", i)
        assert await lm.release(lease, clean=True)

    await asyncio.gather(*(one(i) for i in indices))


async def _worker(argv: list[str]) -> None:
    mode, url, ns, stream, *rest = argv
    r = aioredis.Redis.from_url(url, max_connections=400)  # a connection per waiting task
    try:
        async with Leases(r) as lm:
            await r.incr(f"{ns}:ready")
            if mode == "storm":
                assert await r.blpop([f"{ns}:go"], timeout=60), "no go signal"
                await _storm(r, lm, ns, stream, int(rest[0]), int(rest[1]))
            elif mode == "ordered":
                await _ordered(r, lm, ns, stream, [int(i) for i in rest[0].split(",")])
            else:
                raise SystemExit(f"unknown mode {mode}")
    finally:
        await r.aclose()


def worker_main(argv: list[str]) -> None:
    asyncio.run(_worker(argv))


async def spawn(*args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    code = "import sys; from tests.integration.test_locks_concurrency import worker_main; worker_main(sys.argv[1:])"
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def wait_for_value(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def finish(procs: list[asyncio.subprocess.Process]) -> None:
    for p in procs:
        out, err = await asyncio.wait_for(p.communicate(), 120)
        assert p.returncode == 0, f"worker failed ({p.returncode}):\n{err.decode()}{out.decode()}"


async def assert_line_is_clean(redis: aioredis.Redis, stream: str) -> None:
    """No waiter left behind: an empty queue and no heartbeat of a gone waiter."""
    k = stream_key(stream)
    assert await redis.lrange(f"{k}:q", 0, -1) == []
    assert await redis.keys(f"{k}:w:*") == []


# -- many acquirers in two processes ----------------------------------------------------------


async def test_200_acquirers_in_two_processes_are_served_one_at_a_time(
        redis_server: RedisServer, redis: aioredis.Redis) -> None:
    ns, stream, per_process = "storm", "folders:storm", 100
    await redis.hset("fenced:meta", "epoch", 1)
    procs = [await spawn("storm", redis_server.url, ns, stream, str(per_process), "1") for _ in range(2)]
    try:
        async def ready() -> bool:
            return int(await redis.get(f"{ns}:ready") or 0) == len(procs)
        await wait_for_value(ready, "both workers to start")
        t0 = time.monotonic()
        await redis.rpush(f"{ns}:go", *(["go"] * len(procs)))
        await finish(procs)
        elapsed = time.monotonic() - t0
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    grants = [json.loads(g) for g in await redis.lrange(f"{ns}:grants", 0, -1)]
    assert len(grants) == 2 * per_process, "every acquirer was served"
    tokens = [g["token"] for g in grants]
    assert tokens == sorted(set(tokens)), "tokens are distinct and increase in grant order"
    assert all(g["inside"] == 1 for g in grants), "nobody else was inside the lease"
    # the clock ticks only inside the lease: entry and exit of holder i are ticks 2i+1, 2i+2
    assert [(g["enter"], g["leave"]) for g in grants] == [(2 * i + 1, 2 * i + 2) for i in range(len(grants))]
    assert not any(g["takeover"] for g in grants), "every holder released cleanly"
    assert len({g["pid"] for g in grants}) == 2, "both processes held the lease"
    await assert_line_is_clean(redis, stream)
    print(f"200 acquirers in 2 processes served in {elapsed:.2f}s")


async def test_waiters_of_two_processes_are_served_in_arrival_order(
        redis_server: RedisServer, redis: aioredis.Redis) -> None:
    ns, stream, n = "fair", "folders:fair", 12
    async with Leases(redis, ttl_ms=30_000) as lm:
        await lm.set_epoch(1)
        holder = await lm.acquire(stream, soon())
        procs = [await spawn("ordered", redis_server.url, ns, stream, ",".join(str(i) for i in range(p, n, 2)))
                 for p in range(2)]
        try:
            async def ready() -> bool:
                return int(await redis.get(f"{ns}:ready") or 0) == len(procs)
            await wait_for_value(ready, "both workers to start")
            q = f"{stream_key(stream)}:q"
            for i in range(n):  # alternate processes: 0 and 2 and 4 ... in one, 1 and 3 ... in the other
                await redis.rpush(f"{ns}:go:{i}", "go")

                async def queued(i: int = i) -> bool:
                    return int(await redis.llen(q)) == i + 1
                await wait_for_value(queued, f"waiter {i} to join the line")
            assert await lm.release(holder, clean=True)
            await finish(procs)
        finally:
            for p in procs:
                if p.returncode is None:
                    p.kill()
                    await p.wait()
    assert [int(i) for i in await redis.lrange(f"{ns}:order", 0, -1)] == list(range(n))
    await assert_line_is_clean(redis, stream)


# -- cancellation -------------------------------------------------------------------------------


@pytest.fixture
async def leases(redis: aioredis.Redis) -> AsyncIterator[Leases]:
    # a long heartbeat: a waiter left in the line would block the next acquirer for 15 s and
    # a lost wake-up would cost 5 s, so the deadlines and bounds below, all shorter, catch both
    async with Leases(redis, ttl_ms=5000, heartbeat_ms=5000) as lm:
        await lm.set_epoch(1)
        yield lm


CANCEL_POINTS = [*range(40), 80, 160, 320, 1000, 5000]  # the long ones let Redis answer first


async def cancel_after(task: asyncio.Task[Any], spins: int, block: bool) -> bool:
    """Cancel ``task`` after ``spins`` loop iterations; ``block`` first stalls the loop so a
    request already sent gets its reply into the socket unread. Returns whether the task was
    still pending, i.e. whether the cancellation could take effect."""
    for _ in range(spins):
        await asyncio.sleep(0)
    if block:
        time.sleep(0.02)  # noqa: ASYNC251 -- deliberate: the server answers while we cannot read
    pending = not task.done()
    task.cancel()
    return pending


async def counter(redis: aioredis.Redis, stream: str) -> int:
    return int(await redis.get(f"{stream_key(stream)}:ctr") or 0)


async def test_cancelled_acquire_of_a_free_lease_leaves_no_lease_and_no_waiter(
        leases: Leases, redis: aioredis.Redis) -> None:
    seen: Counter[str] = Counter()
    for spins in CANCEL_POINTS:
        for block in (False, True):
            stream = f"folders:free-{spins}-{block}"
            task = asyncio.create_task(leases.acquire(stream, soon(10)))
            pending = await cancel_after(task, spins, block)
            try:
                lease: Lease | None = await task
            except asyncio.CancelledError:
                lease = None
                assert pending
            else:
                assert not pending, "a cancelled acquire must not return a lease"
            granted = await counter(redis, stream) > 0
            if lease is not None:
                seen["completed"] += 1
                assert await leases.release(lease, clean=True)
            elif granted:
                seen["granted, then cancelled"] += 1
            else:
                seen["cancelled before the grant"] += 1
            assert await redis.get(f"{stream_key(stream)}:lease") is None, "the cancelled attempt holds no lease"
            await assert_line_is_clean(redis, stream)
            nxt = await leases.acquire(stream, soon(2))
            assert nxt.takeover == (granted and lease is None), "a grant nobody used was given back dirty"
            assert await leases.release(nxt, clean=True)
    assert set(seen) == {"completed", "granted, then cancelled", "cancelled before the grant"}, seen


async def test_cancelled_waiter_leaves_the_line(leases: Leases, redis: aioredis.Redis) -> None:
    for spins in CANCEL_POINTS:
        for block in (False, True):
            stream = f"folders:line-{spins}-{block}"
            holder = await leases.acquire(stream, soon())
            task = asyncio.create_task(leases.acquire(stream, soon(10)))
            assert await cancel_after(task, spins, block)
            with pytest.raises(asyncio.CancelledError):
                await task
            raw = await redis.get(f"{stream_key(stream)}:lease")
            assert raw == f"{holder.owner} {holder.token}".encode(), "the holder still holds it"
            await assert_line_is_clean(redis, stream)
            assert await leases.release(holder, clean=True)
            nxt = await leases.acquire(stream, soon(2))
            assert not nxt.takeover and nxt.token == holder.token + 1
            assert await leases.release(nxt, clean=True)


async def test_cancelling_the_head_of_the_line_as_it_is_woken_hands_over_to_the_next(
        leases: Leases, redis: aioredis.Redis) -> None:
    seen: Counter[str] = Counter()
    for spins in CANCEL_POINTS:
        for block in (False, True):
            stream = f"folders:head-{spins}-{block}"
            q = f"{stream_key(stream)}:q"

            async def queued(n: int, q: str = q) -> bool:
                return int(await redis.llen(q)) == n

            holder = await leases.acquire(stream, soon())
            head = asyncio.create_task(leases.acquire(stream, soon(10)))
            await wait_for_value(lambda: queued(1), "the head to join the line")
            second = asyncio.create_task(leases.acquire(stream, soon(10)))
            await wait_for_value(lambda: queued(2), "the second to join the line")
            joined = time.monotonic()  # its 5 s heartbeat wait began before this
            release = asyncio.create_task(leases.release(holder, clean=True))  # publishes the head's wake-up
            await cancel_after(head, spins, block)
            assert await release
            try:
                lease: Lease | None = await head
            except asyncio.CancelledError:
                lease = None
            if lease is not None:
                assert await leases.release(lease, clean=True)
            # the second was woken by the release or the leave, not by its 5 s heartbeat: a lost
            # wake-up would see it served only about 5 s after it joined the line
            nxt = await asyncio.wait_for(second, 15)
            assert time.monotonic() - joined < 4.5, "the second waited for its heartbeat: a lost wake-up"
            head_granted = lease is not None or nxt.token == holder.token + 2
            assert nxt.token == holder.token + 1 + head_granted
            assert nxt.takeover == (head_granted and lease is None), "an unused grant is given back dirty"
            seen["completed" if lease else "granted, then cancelled" if head_granted else
                 "cancelled before the grant"] += 1
            assert await leases.release(nxt, clean=True)
            await assert_line_is_clean(redis, stream)
    assert seen["completed"] and seen["cancelled before the grant"], seen


async def test_cancelled_release_of_a_lease(leases: Leases, redis: aioredis.Redis) -> None:
    seen: Counter[str] = Counter()
    for spins in CANCEL_POINTS:
        for block in (False, True):
            stream = f"folders:rel-{spins}-{block}"
            lease = await leases.acquire(stream, soon())
            task = asyncio.create_task(leases.release(lease, clean=True))
            await cancel_after(task, spins, block)
            try:
                assert await task
                seen["completed"] += 1
            except asyncio.CancelledError:
                seen["cancelled"] += 1
            raw = await redis.get(f"{stream_key(stream)}:lease")
            if raw is not None:  # the script never ran: the lease is still ours to release
                assert raw == f"{lease.owner} {lease.token}".encode()
                assert await leases.release(lease, clean=True)
            nxt = await leases.acquire(stream, soon(2))
            assert not nxt.takeover
            assert await leases.release(nxt, clean=True)
            await assert_line_is_clean(redis, stream)
    assert seen["completed"] and seen["cancelled"], seen


def renewers() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks()
            if not t.done() and getattr(t.get_coro(), "__qualname__", "") == "Held._renew_loop"]


async def test_cancelled_release_of_a_held_lease_keeps_it_unreleased(
        leases: Leases, redis: aioredis.Redis) -> None:
    """Cancelling the body's exit must cancel the task (never be swallowed), stop the
    renewer, and leave ``released`` False unless the server confirmed the release first."""
    seen: Counter[str] = Counter()
    for spins in CANCEL_POINTS:
        for block in (False, True):
            stream = f"folders:held-{spins}-{block}"
            box: list[Held] = []
            entered, go = asyncio.Event(), asyncio.Event()

            async def body(stream: str = stream, box: list[Held] = box, entered: asyncio.Event = entered,
                           go: asyncio.Event = go) -> None:
                async with leases.hold(stream, soon()) as held:
                    held.settled()
                    box.append(held)
                    entered.set()
                    await go.wait()

            task = asyncio.create_task(body())
            await entered.wait()
            go.set()
            pending = await cancel_after(task, spins, block)
            held = box[0]
            try:
                await task
            except asyncio.CancelledError:
                seen["cancelled, released" if held.released else "cancelled, not released"] += 1
            else:
                assert not pending, "the cancellation was swallowed"
                assert held.released
                seen["completed"] += 1
            if running := renewers():  # cancelled by finish(); it may need a loop iteration to end
                await asyncio.wait(running, timeout=10)
            assert not renewers(), "the renewer outlived the lease"
            key = f"{stream_key(stream)}:lease"

            async def gone(key: str = key) -> bool:
                return not await redis.exists(key)
            await wait_for_value(gone, "the shielded release to finish", timeout=10)
            nxt = await leases.acquire(stream, soon(2))
            assert not nxt.takeover, "a settled holder released cleanly even when cancelled"
            assert await leases.release(nxt, clean=True)
            if not held.released:
                await held.finish()  # finishing again is harmless: the lease is no longer ours
                assert held.released
            await assert_line_is_clean(redis, stream)
    assert seen["completed"] and seen["cancelled, not released"], seen


# -- deadlines ------------------------------------------------------------------------------------


async def test_lease_busy_after_the_deadline_says_when_to_retry(leases: Leases, redis: aioredis.Redis) -> None:
    stream = "folders:busy"
    holder = await leases.acquire(stream, soon())
    t0 = time.monotonic()
    with pytest.raises(LeaseBusy) as busy:
        await leases.acquire(stream, soon(0.3))
    waited = time.monotonic() - t0
    assert 0.3 <= waited < 4.0, "gave up at the deadline, not before and not long after"
    err = busy.value
    assert isinstance(err, LeaseError) and err.retriable and type(err).retriable
    assert err.stream == stream
    assert 0 < err.retry_after_ms <= leases.ttl_ms, "retry when the holder's lease would expire"
    assert leases.ttl_ms - err.retry_after_ms >= 200, "the holder's remaining TTL, not the full TTL"
    assert "LeaseBusy" in repr(err) and stream in repr(err)
    await assert_line_is_clean(redis, stream)
    assert await leases.release(holder, clean=True)
    lease = await leases.acquire(stream, soon(0.3))
    assert not lease.takeover
    assert await leases.release(lease, clean=True)
