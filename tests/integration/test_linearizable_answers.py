"""Answers that rest on appends without a verdict (issue #12, S7).

Group commit decides each command of a batch against the state its predecessors leave. A
rejection decided after a predecessor rests on that predecessor's append: it must not be
answered before the append has its verdict, and must be decided again when the append is not
accepted. Reads and rejections must also reflect the log when Redis went back in time.

The writers run in this process (``Runtime``) against the stack's projector, Kafka broker
and redis-server, so the tests decide what is queued together and when an append happens.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from devstack.stack import Stack
from locks import stream_key
from service.errors import FencedError
from service.runtime import Runtime
from service.settings import Settings
from service.write.writer import Request, new_command_id

pytestmark = pytest.mark.integration

Outcome = tuple[int, dict[str, Any] | str, int | None]


def fid() -> str:
    return f"lin-{uuid.uuid4().hex[:10]}"


async def outcome(rt: Runtime, rid: str, name: str, data: dict[str, Any] | None = None, *,
                  fault: str | None = None, key: str | None = None) -> Outcome:
    try:
        body = await rt.writer.execute(Request("folders", rid, name, data or {}, None, key or new_command_id(),
                                               fault))
    except FencedError as e:
        return e.status, e.detail, e.current_version
    return 201, body, body["version"]


def settings_for(stack: Stack, mode: str, **extra: Any) -> Settings:
    # a batch waits 300 ms once it holds the lease, so commands sent together are decided together
    return stack.settings.model_copy(update={"ack_mode": mode, "fault_injection": True, "batch_wait_ms": 300,
                                             **extra})


@pytest.fixture(params=["verified", "leased"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def redis(stack: Stack) -> AsyncIterator[aioredis.Redis]:
    r = aioredis.Redis.from_url(stack.settings.redis_url)
    yield r
    await r.aclose()


async def paused(redis: aioredis.Redis, key: str, timeout: float = 20) -> None:
    """Wait until the writer announces it holds the lease and is about to append ``key``'s events."""
    until = time.monotonic() + timeout
    while not await redis.exists(f"fenced:fault:{key}"):
        assert time.monotonic() < until, "the writer never reached the pause before its append"
        await asyncio.sleep(0.01)


async def create_twice_with_the_first_paused(rt: Runtime, redis: aioredis.Redis, rid: str) -> tuple[
        asyncio.Task[Outcome], asyncio.Task[Outcome], str]:
    """Create A (paused before its append) and Create B queued behind it, so one batch decides B
    after A; returns once the writer has paused, with A, B and A's key (delete its fault key to
    let A go on)."""
    key = new_command_id()
    a = asyncio.create_task(outcome(rt, rid, "Create", {"name": "a"}, fault="pause-before-append", key=key))
    await asyncio.sleep(0.05)
    b = asyncio.create_task(outcome(rt, rid, "Create", {"name": "b"}))
    await paused(redis, key)
    return a, b, key


async def test_a_rejection_waits_for_the_verdict_of_the_append_it_was_decided_after(
        stack: Stack, redis: aioredis.Redis, mode: str) -> None:
    """Regression (issue #12): Create A and Create B of one folder ran as one batch; B was
    answered 409 "already exists" (current_version 1) while A's append had no verdict yet, and
    a read at that moment said 404. Had A's append then failed, B's client was told of a folder
    that never existed. Now B's answer waits for A's verdict: while A is paused before its
    append, B has no answer."""
    rt = Runtime(settings_for(stack, mode))
    await rt.start()
    rid = fid()
    try:
        a, b, key = await create_twice_with_the_first_paused(rt, redis, rid)
        await asyncio.sleep(0.5)
        assert not b.done(), f"B was answered {b.result()} before A's append was even sent"
        await redis.delete(f"fenced:fault:{key}")
        got_a, got_b = await a, await b
    finally:
        await rt.stop()
    assert got_a[0] == 201 and got_a[2] == 1, got_a
    assert got_b == (409, "the folder already exists", 1), got_b


async def test_the_broken_writer_answers_that_rejection_early(stack: Stack, redis: aioredis.Redis) -> None:
    """The self-test of the test above: with FENCED_UNSAFE_EARLY_REJECTIONS the writer answers
    as before the fix, and B is refused while A's append has not been sent."""
    rt = Runtime(settings_for(stack, "verified", unsafe_early_rejections=True))
    await rt.start()
    rid = fid()
    try:
        a, b, key = await create_twice_with_the_first_paused(rt, redis, rid)
        await asyncio.sleep(0.5)
        early = b.done()
        await redis.delete(f"fenced:fault:{key}")
        await a
        await b
    finally:
        await rt.stop()
    assert early, "the broken writer should have answered B before A's verdict"


async def test_a_rejection_is_decided_again_when_its_predecessor_is_not_accepted(
        stack: Stack, redis: aioredis.Redis, mode: str) -> None:
    """A and B run as one batch on replica 1 (Create, then a Create that would be refused after
    it). A pauses before its append and loses its lease; replica 2 takes over, creates and
    destroys the folder. A's late append is discarded (stale), so B, refused "already exists"
    after A, must be decided again: the folder is gone (410 at version 2), not "exists at 1"."""
    one, two = Runtime(settings_for(stack, mode)), Runtime(settings_for(stack, mode))
    await one.start()
    await two.start()
    rid = fid()
    try:
        a, b, key = await create_twice_with_the_first_paused(one, redis, rid)
        await redis.delete(f"{stream_key(f'folders:{rid}')}:lease")  # replica 1's lease lapses
        assert (await outcome(two, rid, "Create", {"name": "c"}))[:3:2] == (201, 1)
        assert (await outcome(two, rid, "Destroy"))[:3:2] == (201, 2)
        assert not b.done()
        await redis.delete(f"fenced:fault:{key}")
        got_a, got_b = await a, await b
        assert one.writer.counters["held_redecided"] >= 1
    finally:
        await one.stop()
        await two.stop()
    assert got_a[0] == 410 and got_a[2] == 2, got_a
    assert got_b == (410, "the folder was destroyed", 2), got_b
    history = (await stack.replay()).histories()[rid]
    assert [(e["version"], e["data"].get("name")) for e in history] == [(1, "c"), (2, None)]


async def test_reads_and_rejections_reflect_the_log_when_redis_goes_back_in_time(
        stack: Stack, redis: aioredis.Redis) -> None:
    """A failover to a replica that missed the last writes takes the projection back in time.
    Simulated here by writing an older state over a stream's projection (and its partition's
    applied offset), as such a replica would hold them: a GET and a rejection that trusted
    Redis would say version 1; the log barrier waits for the projector to apply the log again."""
    from fenced_client.domain.folders import FOLDERS
    from service.read.projection import applied_key

    rt = Runtime(settings_for(stack, "verified", batch_wait_ms=0))
    await rt.start()
    rid = fid()
    stream = f"folders:{rid}"
    k = stream_key(stream)
    try:
        assert (await outcome(rt, rid, "Create", {"name": "a"}))[0] == 201
        old_proj = await redis.hgetall(f"{k}:proj")
        partition = rt.appender.partition(rid)
        topic = rt.settings.topic("folders")
        old_applied = int(await redis.hget(applied_key(topic), str(partition)))
        assert (await outcome(rt, rid, "Destroy"))[0] == 201
        stack.services.signal("projector", __import__("signal").SIGSTOP)
        try:
            await redis.hset(f"{k}:proj", mapping=old_proj)  # what a lossy replica would hold
            await redis.hset(applied_key(topic), str(partition), str(old_applied))
            assert (await rt.projection.load(FOLDERS, stream)).version == 1
            read = asyncio.create_task(rt.barrier.state(FOLDERS, stream, topic, partition, time.monotonic() + 20))
            rejected = asyncio.create_task(outcome(rt, rid, "Create", {"name": "again"}))
            await asyncio.sleep(0.5)
            assert not read.done() and not rejected.done(), "answered from the lost state"
        finally:
            stack.services.signal("projector", __import__("signal").SIGCONT)
        # the projector notices the regression and applies the log again
        state = await read
        got = await rejected
    finally:
        await rt.stop()
    assert state.version == 2 and FOLDERS.destroyed(state.state)
    assert got == (410, "the folder was destroyed", 2), got


async def test_a_read_is_answered_when_the_partition_ends_with_a_transaction_marker(stack: Stack) -> None:
    """Another producer may write a command in a Kafka transaction (wire-format.md §5). Its commit
    marker takes the partition's last offset, and the rule never sees it: the projector must
    count it as applied, or the log barrier (applied offset >= log end - 1) waits for ever and
    every read of the partition answers 503."""
    from aiokafka import AIOKafkaProducer

    from fenced_client.domain.folders import FOLDERS
    from fenced_client.wire import encode_value, event_headers

    rt = Runtime(stack.settings)
    await rt.start()
    rid = fid()
    topic, partition = rt.settings.topic("folders"), rt.appender.partition(rid)
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap,
                                transactional_id=f"other-{uuid.uuid4().hex[:6]}")
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send(topic, encode_value({"name": "tx", "parent_id": None}), key=rid.encode(),
                            partition=partition,
                            headers=event_headers(source="/other", subject=rid, event_type="FolderCreated",
                                                  version=1, token=1, command=new_command_id(), index=0, count=1))
        await producer.commit_transaction()
        state = await rt.barrier.state(FOLDERS, f"folders:{rid}", topic, partition, time.monotonic() + 8)
    finally:
        await producer.stop()
        await rt.stop()
    assert state.version == 1 and state.state["name"] == "tx"
