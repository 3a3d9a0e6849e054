"""The Kafka adapter: topic administration and the appender (an idempotent producer).

Driver errors are translated here into :class:`KafkaUnavailable` and
:class:`AppendOutcomeUnknown`; nothing above this module imports aiokafka errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    InvalidProducerEpoch,
    KafkaError,
    OutOfOrderSequenceNumber,
    TopicAlreadyExistsError,
    UnknownProducerId,
)
from aiokafka.helpers import create_ssl_context

from fenced_client.wire import Headers, partition_for
from service.settings import Settings

log = logging.getLogger("fenced.kafka")

def client_options(settings: Settings) -> dict[str, Any]:
    """Connection and security options every aiokafka client of the service shares."""
    opts: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap,
                            "security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        opts["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ssl_cafile or None, certfile=settings.kafka_ssl_certfile or None,
            keyfile=settings.kafka_ssl_keyfile or None)
    if settings.kafka_security_protocol.startswith("SASL_"):
        opts.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                    sasl_plain_username=settings.kafka_sasl_username,
                    sasl_plain_password=settings.kafka_sasl_password.get_secret_value())
    return opts


def compression_type(settings: Settings) -> str | None:
    """The writer's codec for aiokafka (``FENCED_KAFKA_COMPRESSION``; None: uncompressed)."""
    return None if settings.kafka_compression == "none" else settings.kafka_compression


TOPIC_CONFIG = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}


class KafkaUnavailable(Exception):
    """Kafka could not be reached or refused the request."""


class AppendOutcomeUnknown(Exception):
    """The append may or may not have landed (timeout, broken connection)."""


class TopicMismatch(Exception):
    """An existing topic's partition count differs from the configuration."""


async def ensure_topics(settings: Settings) -> None:
    """Create the event topics and the epoch topic if missing; refuse a partition mismatch."""
    admin = AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=15000)
    try:
        await admin.start()
        wanted = {settings.topic(t): settings.partitions for t in settings.types}
        wanted[settings.epoch_topic] = 1
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            try:
                await admin.create_topics([
                    NewTopic(name, wanted[name], settings.replication_factor, topic_configs=TOPIC_CONFIG)
                    for name in missing])
            except TopicAlreadyExistsError:
                pass
        for meta in await admin.describe_topics(list(wanted)):
            name, count = meta["topic"], len(meta["partitions"])
            if meta.get("error_code", 0) == 0 and count != wanted[name]:
                raise TopicMismatch(
                    f"topic {name} has {count} partitions but FENCED_PARTITIONS is {wanted[name]}: "
                    f"set FENCED_PARTITIONS={count} (a topic's partition count is fixed for ever)")
    except KafkaError as e:
        raise KafkaUnavailable(f"kafka at {settings.kafka_bootstrap}: {e}") from e
    finally:
        await admin.close()


BATCH_BYTES = 512 * 1024
"""Budget of one record batch of the writer (group commit); the producer allows a little more."""


def batch_bytes(key: bytes, records: Sequence[tuple[bytes, Headers]]) -> int:
    """An upper bound of the bytes ``records`` (all with ``key``) take in a record batch."""
    return sum(len(v) + len(key) + sum(len(k) + len(h) + 8 for k, h in hs) + 32 for v, hs in records)


@dataclass(frozen=True)
class Appended:
    partition: int
    offsets: tuple[int, ...]


FATAL_PRODUCER_ERRORS = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch)
"""After these the idempotent producer's sequence state is broken (seen after a broker was
killed and restarted): every later append would fail, so the producer is replaced."""


@dataclass(eq=False)
class _Append:
    key: bytes
    records: Sequence[tuple[bytes, Headers]]
    future: asyncio.Future[Appended]
    timeout: float
    size: int = 0

    def __post_init__(self) -> None:
        self.size = batch_bytes(self.key, self.records)


class Appender:
    """Appends records to a partition as record batches (acks=all, idempotent producer).

    The records of one ``append`` call always land together in one record batch, in order,
    at consecutive offsets. Calls for the same partition made while its previous batch is in
    flight are sent together as the next batch (records of several streams may share a
    batch: each record keeps its own key), so concurrent writers share produce requests.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = self._new_producer()
        self._replacing: asyncio.Lock | None = None
        self._queued: dict[tuple[str, int], list[_Append]] = {}
        self._senders: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.appends = 0

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **client_options(self.settings), acks="all", enable_idempotence=True,
            compression_type=compression_type(self.settings), linger_ms=0, max_batch_size=BATCH_BYTES + 64 * 1024,
            request_timeout_ms=max(self.settings.request_deadline_ms, 1000), client_id="fenced-writer",
        )

    async def start(self) -> None:
        try:
            await self.producer.start()
        except KafkaError as e:
            raise KafkaUnavailable(f"kafka at {self.settings.kafka_bootstrap}: {e}") from e

    async def stop(self) -> None:
        if self._senders:
            await asyncio.wait(set(self._senders), timeout=self.settings.request_deadline_ms / 1000)
        await self.producer.stop()

    async def _replace(self, broken: AIOKafkaProducer) -> None:
        """Swap in a fresh producer (a new producer id and sequence) unless someone already did."""
        self._replacing = self._replacing or asyncio.Lock()
        async with self._replacing:
            if self.producer is not broken:
                return
            log.warning("the idempotent producer lost its sequence state: starting a new one")
            fresh = self._new_producer()
            await fresh.start()
            self.producer = fresh
        with contextlib.suppress(KafkaError, TimeoutError):
            await asyncio.wait_for(broken.stop(), 5)

    def partition(self, key: str) -> int:
        return partition_for(key, self.settings.partitions)

    async def append(self, topic: str, key: str, records: Sequence[tuple[bytes, Headers]],
                     timeout: float) -> Appended:
        """Append and wait for the broker's acknowledgement; offsets are consecutive."""
        partition = self.partition(key)
        item = _Append(key.encode(), records, asyncio.get_running_loop().create_future(), timeout)
        slot = (topic, partition)
        queue = self._queued.get(slot)
        if queue is None:
            queue = self._queued[slot] = []
            sender = asyncio.create_task(self._send_loop(topic, partition, queue))
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        queue.append(item)
        try:
            return await asyncio.wait_for(asyncio.shield(item.future), timeout)
        except TimeoutError as e:
            raise AppendOutcomeUnknown(f"no acknowledgement from kafka within {timeout:.1f}s") from e

    async def _send_loop(self, topic: str, partition: int, queue: list[_Append]) -> None:
        """Send what is queued for a partition as one batch, wait for it, repeat until empty."""
        taken: list[_Append] = []
        try:
            while queue:
                producer = self.producer
                batch = producer.create_batch()
                taken = []
                used = 0
                while queue and (not taken or used + queue[0].size <= BATCH_BYTES):
                    item = queue.pop(0)
                    if all(batch.append(key=item.key, value=v, timestamp=None, headers=h) is not None
                           for v, h in item.records):
                        taken.append(item)
                        used += item.size
                    else:  # only a lone item can be this big (the producer allows more than the budget)
                        for failed in (*taken, item):  # nothing of a partly built batch is sent
                            failed.future.set_exception(ValueError("the events do not fit in one record batch"))
                        taken, used, batch = [], 0, producer.create_batch()
                if taken:
                    batch.close()
                    await self._send(producer, batch, topic, partition, taken)
        except Exception as e:  # noqa: BLE001 - the producer is stopping or broken: nobody may wait for ever
            log.warning("appending to %s[%d] failed: %r", topic, partition, e)
            for item in (*taken, *queue):
                if not item.future.done():
                    item.future.set_exception(AppendOutcomeUnknown(f"kafka: {e!r}"))
            queue.clear()
        finally:
            if self._queued.get((topic, partition)) is queue:
                del self._queued[(topic, partition)]

    async def _send(self, producer: AIOKafkaProducer, batch: Any, topic: str, partition: int,
                    taken: list[_Append]) -> None:
        self.batches += 1
        self.appends += len(taken)
        try:
            fut = await producer.send_batch(batch, topic, partition=partition)
            meta: Any = await asyncio.wait_for(fut, max(t.timeout for t in taken))
        except TimeoutError:
            err: Exception = AppendOutcomeUnknown("no acknowledgement from kafka in time")
        except FATAL_PRODUCER_ERRORS as e:
            with contextlib.suppress(KafkaError):
                await self._replace(producer)
            err = AppendOutcomeUnknown(f"kafka: {e}")
        except KafkaError as e:
            err = AppendOutcomeUnknown(f"kafka: {e}")
        else:
            offset = int(meta.offset)
            for t in taken:
                if not t.future.done():
                    t.future.set_result(Appended(partition, tuple(range(offset, offset + len(t.records)))))
                offset += len(t.records)
            return
        for t in taken:
            if not t.future.done():
                t.future.set_exception(err)

    async def append_epoch(self, replica: str) -> int:
        """Append to the epoch topic; the returned offset + 1 is a new, higher epoch."""
        value = json.dumps({"replica": replica}).encode()
        try:
            meta = await self.producer.send_and_wait(self.settings.epoch_topic, value, key=b"epoch",
                                                     partition=0)
        except KafkaError as e:
            raise KafkaUnavailable(f"kafka: {e}") from e
        return int(meta.offset) + 1
