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

from service.settings import Settings
from service.wire import Headers, partition_for

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


@dataclass(frozen=True)
class Appended:
    partition: int
    offsets: tuple[int, ...]


FATAL_PRODUCER_ERRORS = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch)
"""After these the idempotent producer's sequence state is broken (seen after a broker was
killed and restarted): every later append would fail, so the producer is replaced."""


class Appender:
    """Appends a command's records to one partition as one record batch (acks=all, idempotent)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = self._new_producer()
        self._replacing: asyncio.Lock | None = None

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **client_options(self.settings), acks="all", enable_idempotence=True,
            linger_ms=0, max_batch_size=1024 * 1024, request_timeout_ms=max(self.settings.request_deadline_ms, 1000),
            client_id="fenced-writer",
        )

    async def start(self) -> None:
        try:
            await self.producer.start()
        except KafkaError as e:
            raise KafkaUnavailable(f"kafka at {self.settings.kafka_bootstrap}: {e}") from e

    async def stop(self) -> None:
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
        producer = self.producer
        batch = producer.create_batch()
        for value, headers in records:
            if batch.append(key=key.encode(), value=value, timestamp=None, headers=headers) is None:
                raise ValueError("the events do not fit in one record batch")
        batch.close()
        try:
            fut = await producer.send_batch(batch, topic, partition=partition)
            meta: Any = await asyncio.wait_for(fut, timeout)
        except TimeoutError as e:
            raise AppendOutcomeUnknown(f"no acknowledgement from kafka within {timeout:.1f}s") from e
        except FATAL_PRODUCER_ERRORS as e:
            with contextlib.suppress(KafkaError):
                await self._replace(producer)
            raise AppendOutcomeUnknown(f"kafka: {e}") from e
        except KafkaError as e:
            raise AppendOutcomeUnknown(f"kafka: {e}") from e
        base = int(meta.offset)
        return Appended(partition, tuple(range(base, base + len(records))))

    async def append_epoch(self, replica: str) -> int:
        """Append to the epoch topic; the returned offset + 1 is a new, higher epoch."""
        value = json.dumps({"replica": replica}).encode()
        try:
            meta = await self.producer.send_and_wait(self.settings.epoch_topic, value, key=b"epoch",
                                                     partition=0)
        except KafkaError as e:
            raise KafkaUnavailable(f"kafka: {e}") from e
        return int(meta.offset) + 1
