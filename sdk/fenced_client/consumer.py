"""Read a fenced topic straight from Kafka, keeping only what the consumer rule accepts.

A fenced topic holds every append, including those the rule discards: a zombie writer's
late append (``stale``), a retry's second copy (``duplicate``), an append that lost a race
(``conflict``), an event its resource's state refuses (``invalid``), and records no fenced
writer wrote (``malformed``). A downstream consumer that applied every record would see
histories no resource can have. :class:`AcceptedEvents` runs the same rule as the
projector and ``fenced verify`` (:mod:`fenced_client.rule`), so it yields exactly the events of
the accepted histories, each resource's in version order::

    async with AcceptedEvents("127.0.0.1:9092", "fenced.folders", partitions=12) as events:
        async for e in events:
            print(e.resource_id, e.version, e.type, dict(e.data))
        # events.discards == {"stale": 0, "duplicate": 1, "conflict": 0, ...}

The rule is stateful per resource (version, highest fencing token, recent command ids), so
every partition is read **from its beginning**, always: a consumer that started in the
middle of a partition could not tell a late append from a valid one. Without ``group_id``
the helper assigns itself every partition; with one, it joins that consumer group, which
only splits the partitions among the group's members (each member still reads its
partitions from offset 0, and never commits offsets). ``stop_at_end=True`` stops at the end
offsets the partitions had when they were assigned, instead of following the topic.

Every codec Kafka has is read (gzip, snappy, lz4, zstd), and a record batch that cannot be
decoded (a bad CRC, a garbled payload, an unknown codec) never halts a partition: it is
skipped whole and counted as one ``malformed`` discard, exactly as the projector and
``fenced verify`` count it (:mod:`fenced_client.batches`).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

try:
    from aiokafka import TopicPartition
    from aiokafka.abc import ConsumerRebalanceListener
except ImportError as e:  # the base install is the HTTP clients and the protocol only
    raise ImportError("reading Kafka needs the kafka extra: pip install 'fenced-client[kafka]'") from e

from fenced_client.batches import BatchSafeConsumer
from fenced_client.domain import Decider
from fenced_client.domain.plugins import find
from fenced_client.rule import Replay, StreamState, Verdict
from fenced_client.wire import decode


@dataclass(frozen=True)
class ConsumedEvent:
    """One accepted event, with the resource it belongs to and the record that carried it."""

    topic: str
    resource_id: str
    version: int
    type: str
    data: Mapping[str, Any]
    partition: int
    offset: int
    token: int
    command: str
    event_id: str
    time: str
    data_bytes: bytes | None = None
    """An open type's event that holds bytes (``data`` is then empty), of ``datacontenttype``."""
    datacontenttype: str = "application/json"


class _FromBeginning(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, owner: AcceptedEvents) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        consumer = self.owner._consumer
        for tp in assigned:
            consumer.seek(tp, 0)  # auto_offset_reset=earliest covers a log whose start was deleted


class AcceptedEvents:
    """Async iterator over the accepted events of a fenced topic (see the module's doc).

    ``partitions`` is the topic's partition count (``FENCED_PARTITIONS``): a record on
    another partition than its key's is malformed. ``decider`` is the resource type's
    decider or its name, found as the server finds it (:func:`fenced_client.domain.plugins.find`:
    the ``fenced.deciders`` entry points, ``deciders`` or else ``FENCED_DECIDERS``, and
    ``FENCED_OPEN_TYPES``). ``discards`` counts discarded command groups by reason (a record
    batch that could not be decoded counts once, as ``malformed``); ``on_discard`` is called
    with the verdict of each. ``consumer_options`` go to ``AIOKafkaConsumer`` (security
    settings, fetch sizes; ``check_crcs`` is always on and ``isolation_level`` must stay
    ``read_uncommitted``).
    """

    def __init__(self, bootstrap: str, topic: str, partitions: int, *, decider: Decider | str = "folders",
                 deciders: str | None = None, group_id: str | None = None, stop_at_end: bool = False,
                 poll_timeout_ms: int = 500,
                 on_discard: Callable[[Verdict], None] | None = None,
                 consumer_options: Mapping[str, Any] | None = None) -> None:
        if isinstance(decider, str):
            decider = find(decider, deciders)
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.group_id = group_id
        self.stop_at_end = stop_at_end
        self.poll_timeout_ms = poll_timeout_ms
        self.on_discard = on_discard
        self.replay = Replay(decider)
        self._options = dict(consumer_options or {})
        self._consumer: Any = None
        self._ready: collections.deque[ConsumedEvent] = collections.deque()
        self._ends: dict[Any, int] = {}

    @property
    def discards(self) -> Mapping[str, int]:
        """Discarded command groups (or records, for ``malformed``) by reason."""
        return self.replay.discards

    @property
    def accepted(self) -> int:
        """Accepted events so far (all of them, including any not yet taken from the iterator)."""
        return self.replay.accepted

    def state(self, resource_id: str) -> StreamState | None:
        """The rule's state of one resource, as of the records read so far."""
        return self.replay.streams.get(resource_id)

    def __repr__(self) -> str:
        mode = f"group_id={self.group_id!r}" if self.group_id else "assigned"
        return (f"AcceptedEvents({self.topic!r}, {mode}, records={self.replay.records}, "
                f"accepted={self.replay.accepted}, discards={dict(self.replay.discards)})")

    async def start(self) -> None:
        if self._consumer is not None:
            return
        consumer = BatchSafeConsumer(  # always checks CRCs, reads read_uncommitted only
            bootstrap_servers=self.bootstrap, group_id=self.group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", **{"fetch_max_wait_ms": 100, **self._options})
        await consumer.start()
        self._consumer = consumer
        try:
            cluster = await consumer._client.fetch_all_metadata()  # as service.read.replay does: one fresh look
            found = cluster.partitions_for_topic(self.topic)
            if not found:
                raise LookupError(f"topic {self.topic} does not exist")
            if len(found) != self.partitions:
                raise ValueError(f"topic {self.topic} has {len(found)} partitions, not {self.partitions}: "
                                 "every record would read as malformed")
            if self.group_id is None:
                tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
            else:
                consumer.subscribe([self.topic], listener=_FromBeginning(self))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ConsumedEvent:
        if self._consumer is None:
            raise RuntimeError("AcceptedEvents is not started: use `async with` or await start()")
        while not self._ready:
            if self.stop_at_end and await self._at_end():
                raise StopAsyncIteration
            await self._poll()
        return self._ready.popleft()

    async def _at_end(self) -> bool:
        consumer = self._consumer
        assigned = consumer.assignment()
        if not assigned:
            return False
        missing = [tp for tp in assigned if tp not in self._ends]
        if missing:
            self._ends.update(await consumer.end_offsets(missing))
        for tp in assigned:
            if await consumer.position(tp) < self._ends[tp]:
                return False
        return True

    async def _poll(self) -> None:
        batch = await self._consumer.getmany(timeout_ms=self.poll_timeout_ms)
        for tp, messages in batch.items():
            end = self._ends.get(tp) if self.stop_at_end else None
            for m in messages:
                if end is not None and m.offset >= end:
                    break
                record = decode(m.key, m.value, m.headers, m.partition, m.offset, self.partitions)
                for verdict in self.replay.feed(record):
                    self._settle(verdict)

    def _settle(self, verdict: Verdict) -> None:
        if verdict.accepted:
            self._ready.extend(
                ConsumedEvent(self.topic, verdict.stream, e.version, e.type, e.data, e.partition, e.offset,
                              e.token, e.command, e.event_id, e.time, e.data_bytes, e.datacontenttype)
                for e in verdict.events)
        elif self.on_discard is not None:
            self.on_discard(verdict)
