"""Replaying a topic from offset 0 with the consumer rule, independently of Redis.

Used by ``fenced verify``, by the chaos checker and by downstream consumers. Two modes:
``assign`` (no consumer group) and a fresh consumer group, so a checker can compare two
independent readers. Records are read with :class:`fenced_client.batches.BatchSafeConsumer`, as the
projector and the SDK's consumer read them: every codec, and a batch that cannot be decoded
comes as one :class:`~fenced_client.batches.SkippedBatch` (a keyless record: one ``malformed``
discard) instead of halting the partition.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from fenced_client.batches import BatchSafeConsumer
from fenced_client.domain import Decider
from fenced_client.rule import Replay, Verdict
from fenced_client.wire import canonical_json, decode


@dataclass
class TopicReplay:
    """One topic replayed by the rule: accepted histories, the summary ``fenced verify`` prints
    and the history digest (wire-format.md §7), which other implementations reproduce."""

    topic: str
    replay: Replay
    verdicts: list[Verdict]

    def histories(self) -> dict[str, list[dict[str, Any]]]:
        """Accepted events per stream, in version order; only streams with an accepted event."""
        out: dict[str, list[dict[str, Any]]] = {}
        for v in self.verdicts:
            if v.accepted:
                out.setdefault(v.stream, []).extend(
                    {"version": e.version, "type": e.type, **e.data_fields(), "partition": e.partition,
                     "offset": e.offset,
                     "token": e.token, "command": e.command} for e in v.events)
        return out

    def digest_lines(self) -> list[str]:
        """What the digest hashes: per stream with an accepted event, in ascending order of the
        key's UTF-8 bytes, the canonical JSON of ``[key, [event, ...]]``."""
        histories = self.histories()
        return [canonical_json([stream, histories[stream]]) for stream in sorted(histories, key=str.encode)]

    def digest(self) -> str:
        """SHA-256 (lowercase hex) of the UTF-8 of :meth:`digest_lines`, concatenated."""
        h = hashlib.sha256()
        for line in self.digest_lines():
            h.update(line.encode())
        return h.hexdigest()

    def summary(self) -> dict[str, Any]:
        """``records`` fed, ``accepted`` events, ``discards`` by reason (one per discarded group
        or record), ``streams`` with at least one accepted event, and the ``digest``."""
        r = self.replay
        return {"topic": self.topic, "records": r.records, "accepted": r.accepted,
                "discards": dict(r.discards), "streams": len(self.histories()), "digest": self.digest()}


async def read_topic(bootstrap: str, topic: str, *, group: bool = False) -> AsyncIterator[Any]:
    """Every record of ``topic`` up to its end offsets at the start, in partition order; a
    record batch that cannot be decoded is one :class:`~fenced_client.batches.SkippedBatch` instead."""
    consumer = BatchSafeConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
        group_id=f"fenced-verify-{uuid.uuid4().hex[:8]}" if group else None, fetch_max_wait_ms=50,
        max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        parts = cluster.partitions_for_topic(topic) or set()
        if not parts:
            raise LookupError(f"topic {topic} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if group:
            consumer.subscribe([topic])
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
            for tp in consumer.assignment():
                consumer.seek(tp, 0)
        else:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=10000)
            for tp, msgs in batch.items():
                for m in msgs:
                    if m.offset < ends[tp]:
                        yield m
                if msgs and msgs[-1].offset >= ends[tp] - 1:
                    remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()


async def replay_topic(bootstrap: str, topic: str, decider: Decider, partitions: int, *,
                       group: bool = False) -> TopicReplay:
    replay = Replay(decider)
    verdicts: list[Verdict] = []
    async for m in read_topic(bootstrap, topic, group=group):
        verdicts.extend(replay.feed(decode(m.key, m.value, m.headers, m.partition, m.offset, partitions)))
    return TopicReplay(topic, replay, verdicts)
