"""``LogEnds``, the log barrier's source of end offsets, against the real broker.

What the barrier's correctness rests on: a caller gets the end offset of a ListOffsets request
sent *after* it asked (so every record acknowledged before is below it), concurrent callers
share requests, and a failing or hung request answers its callers instead of stranding them.
Delays and failures are injected by wrapping the consumer's ``end_offsets``; the requests
themselves go to the test session's Kafka broker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from devstack.stack import Stack
from service.infra.kafka import KafkaUnavailable
from service.read.barrier import LogEnds

pytestmark = pytest.mark.integration


@pytest.fixture
async def ends(stack: Stack) -> AsyncIterator[LogEnds]:
    e = LogEnds(stack.settings)
    await e.start()
    yield e
    await e.stop()


async def produce(stack: Stack, topic: str, partition: int) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, b"{}", key=f"le-{uuid.uuid4().hex[:6]}".encode(),
                                            partition=partition)
        return int(meta.offset)
    finally:
        await producer.stop()


async def test_concurrent_callers_share_one_request_for_every_partition(ends: LogEnds, stack: Stack) -> None:
    topic = stack.settings.topic("folders")
    truth = await ends.consumer.end_offsets([TopicPartition(topic, p) for p in range(stack.settings.partitions)])
    before = ends.requests
    got = await asyncio.gather(*(ends.end(topic, i % stack.settings.partitions) for i in range(50)))
    assert got == [truth[TopicPartition(topic, i % stack.settings.partitions)] for i in range(50)]
    # the first caller's request, then one for all 49 who asked while it was in flight
    assert ends.requests - before == 2


async def test_a_caller_gets_an_answer_from_a_request_sent_after_it_asked(ends: LogEnds, stack: Stack) -> None:
    """A request that was sent before a record was acknowledged must not answer a caller that
    asked after: here the first request's answer is held back until after the append."""
    topic = stack.settings.topic("folders")
    real = ends.consumer.end_offsets
    release = asyncio.Event()
    calls = 0

    async def slow_first(partitions: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        answer = await real(partitions, *args, **kwargs)
        if calls == 1:
            await release.wait()  # sent and answered by the broker; delivered late
        return answer

    ends.consumer.end_offsets = slow_first  # type: ignore[method-assign]
    first = asyncio.create_task(ends.end(topic, 0))
    await asyncio.sleep(0.2)
    offset = await produce(stack, topic, 0)  # acknowledged while the first request is in flight
    second = asyncio.create_task(ends.end(topic, 0))
    await asyncio.sleep(0.05)
    release.set()
    assert await first <= offset
    assert await second == offset + 1, "answered from a request sent before the append"


async def test_a_failing_request_answers_its_callers_and_the_next_one_works(ends: LogEnds, stack: Stack) -> None:
    topic = stack.settings.topic("folders")
    real = ends.consumer.end_offsets

    async def broken(partitions: Any, *args: Any, **kwargs: Any) -> Any:
        raise KafkaConnectionError("no broker answers")

    ends.consumer.end_offsets = broken  # type: ignore[method-assign]
    results = await asyncio.gather(*(ends.end(topic, p) for p in range(3)), return_exceptions=True)
    assert all(isinstance(r, KafkaUnavailable) for r in results), results
    ends.consumer.end_offsets = real  # type: ignore[method-assign]
    assert await ends.end(topic, 0) >= 0


async def test_stop_answers_the_callers_of_a_hung_request(stack: Stack) -> None:
    ends = LogEnds(stack.settings)
    await ends.start()
    topic = stack.settings.topic("folders")

    async def hung(partitions: Any, *args: Any, **kwargs: Any) -> Any:
        await asyncio.Event().wait()

    ends.consumer.end_offsets = hung  # type: ignore[method-assign]
    waiting = [asyncio.create_task(ends.end(topic, p)) for p in range(3)]
    await asyncio.sleep(0.1)
    await asyncio.wait_for(ends.stop(), 10)
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, KafkaUnavailable) for r in results), results
    with pytest.raises(KafkaUnavailable):
        await ends.end(topic, 0)
