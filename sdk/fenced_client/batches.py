"""Reading a partition whatever its record batches hold: every codec, and no batch that halts it.

Kafka producers compress record batches (gzip, snappy, lz4, zstd; franz-go and librdkafka
pick snappy or lz4 by default), and a batch can be unreadable: a bad CRC (bit rot on a
broker's disk), a garbled compressed payload, an unknown codec. aiokafka raises such an
error out of ``getmany`` for no partition in particular (``CorruptRecordException``,
``UnsupportedCodecError``, or whatever the codec raises: ``OSError`` for gzip,
``cramjam.DecompressionError``), after it has already moved the positions past the records
it drained in that call (they are lost with the exception), and then fetches the bad batch
again for ever.

:class:`BatchSafeConsumer` is an ``AIOKafkaConsumer`` whose ``getmany`` never does that.
It notes every partition's position before it drains; when a drain fails it puts the
positions back, fetches the same partitions once more itself, and decodes that answer one
record batch at a time (:func:`decode_fetched`), with aiokafka's own code for each batch
(CRC check, decompression, control batches), so a batch the fast path reads is read the
same way here. A batch that still cannot be decoded is skipped whole: ``getmany`` returns a
:class:`SkippedBatch` in its place, a record without key, value or headers at the batch's
last offset, which the consumer rule discards as one ``malformed`` record, and the
partition goes on at the offset after the batch. The unit is one discard per skipped batch,
however many records it held (its records cannot be counted: they cannot be read). Where a
batch's header is too damaged to say which offsets it spans, it counts as one discard and
the reader goes on one offset further. Whether a batch is skipped depends on its bytes
alone, never on fetch sizes or timing, so the projector, ``fenced verify``, the chaos
checker and the SDK's consumer skip the same batches and count the same discards.

It reads ``read_uncommitted`` only (fenced's writers are idempotent, not transactional)
and always checks CRCs. It reaches into aiokafka's consumer (pinned to 0.14.0 in
pyproject.toml) for the positions and the fetch waiter; tests/integration/test_codecs.py
fails if that changes.

This module is shared by the service (projector, ``service.read.replay``) and the SDK's
consumer, so it lives in the SDK, which imports nothing from the service.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

try:
    from aiokafka import AIOKafkaConsumer, TopicPartition
except ImportError as e:  # the base install is the HTTP clients and the protocol only
    raise ImportError("reading Kafka needs the kafka extra: pip install 'fenced-client[kafka]'") from e
from aiokafka.consumer.fetcher import READ_UNCOMMITTED, PartitionRecords
from aiokafka.errors import CorruptRecordException, KafkaError, RecordTooLargeError, UnsupportedCodecError
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

log = logging.getLogger("fenced.batches")

Cause = Literal["crc", "codec", "corrupt", "too_large", "framing"]
CAUSES: tuple[Cause, ...] = ("crc", "codec", "corrupt", "too_large", "framing")
"""Why a batch was skipped: ``crc`` its checksum fails; ``codec`` its compression codec is
unknown or not installed; ``corrupt`` its payload or records cannot be decoded; ``too_large``
the broker sent less than the batch's length; ``framing`` its header is too damaged to say
which offsets it spans."""

UNDECODABLE = (CorruptRecordException, UnsupportedCodecError, RecordTooLargeError)
"""The Kafka errors ``getmany`` raises for a batch it cannot decode; it raises other errors
(a stopped consumer, authorization, coordination) as they are."""

LOG_OVERHEAD = 12  # base offset (int64) and length (int32) start every batch of every magic
MIN_BATCH_LENGTH = 14  # the smallest v0 message after the log overhead (aiokafka's minimum)
_BASE_OFFSET = struct.Struct(">q")
_LENGTH = struct.Struct(">i")
_MAGIC_AT = 16
_LAST_OFFSET_DELTA_AT = 23  # v2: base offset, length, leader epoch, magic, crc, attributes


@dataclass(frozen=True)
class SkippedBatch:
    """A record batch that could not be decoded, in the place of its records.

    It looks like a record without key, value or headers (what ``fenced_client.wire.decode``
    calls malformed) at ``offset``, the batch's last offset, so every reader discards it as
    one ``malformed`` record and resumes after it.
    """

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    cause: Cause
    detail: str = ""
    key: None = None
    value: None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = -1
    timestamp_type: int = 0

    @property
    def offset(self) -> int:
        return self.last_offset

    def __str__(self) -> str:
        span = str(self.first_offset) if self.first_offset == self.last_offset else \
            f"{self.first_offset}..{self.last_offset}"
        return f"{self.topic}[{self.partition}] offsets {span}: skipped record batch ({self.cause}: {self.detail})"


def _claimed_offsets(raw: bytes, position: int) -> tuple[int, int] | None:
    """(first, last) offsets a batch's header says it holds from ``position`` on, or None."""
    if len(raw) <= _MAGIC_AT:
        return None
    base = _BASE_OFFSET.unpack_from(raw, 0)[0]
    if raw[_MAGIC_AT] >= 2:
        if len(raw) < _LAST_OFFSET_DELTA_AT + 4:
            return None
        first, last = base, base + _LENGTH.unpack_from(raw, _LAST_OFFSET_DELTA_AT)[0]
    else:  # a legacy message (set) carries the offset of its last record only
        first = last = base
    if last < position:
        return None
    return max(first, position), last


def _cause(tp: TopicPartition, raw: bytes, error: BaseException) -> Cause:
    if isinstance(error, UnsupportedCodecError):
        return "codec"
    try:
        batch = MemoryRecords(raw).next_batch()
        if batch is not None and not batch.validate_crc():
            return "crc"
    except Exception:  # noqa: BLE001 - a header that cannot even be parsed
        return "framing"
    return "corrupt"


def decode_fetched(tp: TopicPartition, data: bytes, position: int, *, key_deserializer: Any = None,
                   value_deserializer: Any = None) -> tuple[list[Any], int]:
    """The records of one partition's fetched bytes from ``position`` on, batch by batch,
    with a :class:`SkippedBatch` for each batch that cannot be decoded; and the offset to
    read next. A batch cut short at the end of ``data`` is left for the next fetch, unless it
    is the first: brokers send a fetch's first batch whole (fetch v3+, KIP-74) or not at all,
    so a first batch cut short is one an older broker finds too large to send."""
    out: list[Any] = []
    view = memoryview(data)
    at = 0
    while len(view) - at >= LOG_OVERHEAD:
        length = _LENGTH.unpack_from(view, at + 8)[0]
        end = at + LOG_OVERHEAD + length
        raw = bytes(view[at:min(end, len(view))])
        cause: Cause
        if length < MIN_BATCH_LENGTH:
            cause, detail = "framing", f"batch length {length}"
        elif end > len(view):
            if at > 0:
                break
            cause, detail = "too_large", f"batch of {LOG_OVERHEAD + length} bytes, {len(view)} sent"
        else:
            records = PartitionRecords(tp, MemoryRecords(raw), None, position, key_deserializer,
                                       value_deserializer, True, READ_UNCOMMITTED)
            try:
                got = list(records)  # all of the batch or none of it
            except Exception as e:  # noqa: BLE001 - a codec raises what it raises
                cause, detail = _cause(tp, raw, e), f"{type(e).__name__}: {e}"
            else:
                out.extend(got)
                position = max(position, records.next_fetch_offset)
                at = end
                continue
        span = None if cause == "framing" else _claimed_offsets(raw, position)
        if span is None:  # which offsets it spans is unknown: one discard, one offset further
            out.append(SkippedBatch(tp.topic, tp.partition, position, position, cause, detail))
            return out, position + 1
        out.append(SkippedBatch(tp.topic, tp.partition, span[0], span[1], cause, detail))
        position = span[1] + 1
        at = end
    return out, position


class BatchSafeConsumer(AIOKafkaConsumer):  # type: ignore[misc]  # aiokafka is untyped
    """An ``AIOKafkaConsumer`` whose ``getmany`` reads every codec and skips, as
    :class:`SkippedBatch` values, the batches nobody can decode (see the module's doc).
    ``skipped`` counts them by cause. Only ``getmany`` is safe: do not use ``getone`` or
    ``async for``."""

    def __init__(self, *topics: str, **options: Any) -> None:
        if options.get("isolation_level", "read_uncommitted") != "read_uncommitted":
            raise ValueError("BatchSafeConsumer reads read_uncommitted only")
        options["check_crcs"] = True  # a batch whose CRC fails must be skipped, not decoded
        super().__init__(*topics, **options)
        self.skipped: dict[Cause, int] = dict.fromkeys(CAUSES, 0)

    def _positions(self, partitions: tuple[TopicPartition, ...]) -> tuple[Any, dict[TopicPartition, int]]:
        subscription = self._subscription.subscription
        assignment = None if subscription is None else subscription.assignment
        if assignment is None:
            return None, {}
        out = {}
        for tp in partitions or assignment.tps:
            state = assignment.state_value(tp) if tp in assignment.tps else None
            if state is not None and state.has_valid_position:
                out[tp] = state.position
        return assignment, out

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        if max_records is not None and (not isinstance(max_records, int) or max_records < 1):
            raise ValueError("`max_records` must be a positive Integer")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        while True:
            # drain without waiting, so nothing (a rebalance) moves the positions between
            # the note of them and the drain; then wait for data as aiokafka's getmany does
            if self._subscription.reassignment_in_progress:
                await self._subscription.wait_for_assignment()
            assignment, before = self._positions(partitions)
            try:
                batch: dict[TopicPartition, list[Any]] = await super().getmany(
                    *partitions, timeout_ms=0, max_records=max_records)
            except KafkaError as e:
                if not isinstance(e, UNDECODABLE):
                    raise
                if isinstance(e, RecordTooLargeError) and len(e.args) >= 3 and e.args[1] in before:
                    # a broker that sent a first batch cut short (none since fetch v3 does): aiokafka
                    # has already stepped the partition one offset on, which would lose that record
                    before[e.args[1]] = int(e.args[2])
                return await self._read_batch_by_batch(assignment, before, max_records, e)
            except Exception as e:  # noqa: BLE001 - a codec raises what it raises (OSError, DecompressionError)
                return await self._read_batch_by_batch(assignment, before, max_records, e)
            remaining = deadline - loop.time()
            if batch or remaining <= 0:
                return batch
            waiter = self._fetcher._create_fetch_waiter()
            done, pending = await asyncio.wait([waiter], timeout=remaining)
            if not done or self._closed:
                for fut in pending:
                    fut.cancel()
                return {}
            waiter.result()  # authorization errors, as aiokafka's getmany raises them

    async def _fetch(self, node: int, items: list[tuple[TopicPartition, int]]) -> dict[TopicPartition, bytes]:
        """One fetch request to ``node``: the bytes of each partition that answered without error."""
        topics: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        for tp, position in items:
            topics[tp.topic].append((tp.partition, position, self._max_partition_fetch_bytes))
        request = FetchRequest(0, 1, self._fetch_max_bytes, READ_UNCOMMITTED, list(topics.items()))
        try:
            response = await self._client.send(node, request)
        except KafkaError as e:
            log.warning("fetching batch by batch from node %d failed: %s", node, e)
            return {}
        wanted = {tp for tp, _ in items}
        out: dict[TopicPartition, bytes] = {}
        for topic, parts in response.topics:
            for partition, error_code, _highwater, *part_data in parts:
                tp = TopicPartition(topic, partition)
                if error_code == 0 and tp in wanted:
                    out[tp] = bytes(part_data[-1] or b"")
        return out

    async def _read_batch_by_batch(self, assignment: Any, before: dict[TopicPartition, int],
                                   max_records: int | None, error: BaseException) -> dict[TopicPartition, list[Any]]:
        """Fetch the partitions of a failed drain again from where they were, decode them one
        batch at a time, and move each one past what it returns."""
        log.warning("a record batch could not be decoded (%s: %s): reading %d partition(s) batch by batch",
                    type(error).__name__, error, len(before))
        by_node: dict[int, list[tuple[TopicPartition, int]]] = defaultdict(list)
        for tp, position in before.items():
            node = self._client.cluster.leader_for_partition(tp)
            if node is not None and node >= 0:
                by_node[node].append((tp, position))
        decoded: dict[TopicPartition, tuple[list[Any], int]] = {}
        for node, items in sorted(by_node.items()):
            for tp, data in (await self._fetch(node, items)).items():
                decoded[tp] = decode_fetched(tp, data, before[tp], key_deserializer=self._key_deserializer,
                                             value_deserializer=self._value_deserializer)
        subscription = self._subscription.subscription
        if subscription is None or subscription.assignment is not assignment:
            return {}  # a rebalance meanwhile: the new assignment's positions stand
        out: dict[TopicPartition, list[Any]] = {}
        budget = max_records or self._max_poll_records
        for tp, position in before.items():
            records, next_offset = decoded.get(tp, ([], position))
            if budget is not None:
                if len(records) > budget:
                    records = records[:budget]
                    next_offset = records[-1].offset + 1 if records else position
                budget -= len(records)
            self.seek(tp, next_offset)  # also puts back the positions the failed drain moved
            if records:
                out[tp] = records
            for r in records:
                if isinstance(r, SkippedBatch):
                    self.skipped[r.cause] += 1
                    log.warning("%s", r)
        return out
