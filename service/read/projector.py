"""The projector (design.md §5): a consumer group that applies the rule and writes Redis.

Positions live in Redis beside the state they produced (``fenced:applied:<topic>``), so a
projector resumes exactly where its writes stopped, whatever Kafka's committed offsets
say; per-stream writes are compare-and-set on offset, so a zombie member after a
rebalance cannot take a stream backwards. When Redis loses its data (the epoch changes)
it replays every partition from offset 0; writers wait until it says it is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from fenced_client import domain
from fenced_client.batches import CAUSES, BatchSafeConsumer, Cause, SkippedBatch
from fenced_client.domain import Decider
from fenced_client.rule import REASONS, StreamState, Verdict, apply
from fenced_client.wire import Record, decode
from locks import LeaseError, Leases
from service.auth import KeyFile, KeyFileError
from service.infra.kafka import Appender, client_options, ensure_topics
from service.read.projection import EpochChanged, PartitionWrite, Projection, Regressed, applied_key
from service.read.projector_metrics import MetricsServer
from service.settings import Settings
from service.write.epochs import Epochs

log = logging.getLogger("fenced.projector")


HOUSEKEEPING_S = 0.5
"""How often a busy projector checks the partitions its fetches did not touch (regressed applied
offsets, control records at a partition's end); an idle one checks at every empty fetch."""


def caught_up_key(epoch: int) -> str:
    return f"fenced:caughtup:{epoch}"


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, projector: Projector) -> None:
        self.projector = projector

    async def on_partitions_revoked(self, revoked: Any) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if self.projector.rebuild:
            self.projector.rebuild = False
            await self.projector._forget_positions(list(assigned))
        else:
            await self.projector.position(list(assigned))


class Projector:
    def __init__(self, settings: Settings, redis: aioredis.Redis, *, rebuild: bool = False,
                 progress: bool = False) -> None:
        self.settings = settings
        self.redis = redis
        self.projection = Projection(redis)
        self.leases = Leases(redis)
        self.appender = Appender(settings)
        self.epochs = Epochs(self.leases, self.appender)
        self.rebuild = rebuild
        """Forget the stored positions at the first assignment (set by ``--rebuild``)."""
        self.progress = progress
        self.epoch = 0
        self.types = {settings.topic(t): t for t in settings.types}
        self.deciders: dict[str, Decider] = {}
        for topic, t in self.types.items():
            decider = domain.get(t)
            if decider is None:
                raise ValueError(f"no decider is registered for resource type {t!r}")
            self.deciders[topic] = decider
        self.total_partitions = settings.partitions * len(self.types)
        self.targets: dict[TopicPartition, int] = {}
        self.base: dict[TopicPartition, int] = {}
        self.caught_up: set[TopicPartition] = set()
        self.discards_by_topic: dict[str, dict[str, int]] = {t: dict.fromkeys(REASONS, 0) for t in self.types}
        """Discarded command groups (or records) by topic and rule reason, counted once written."""
        self.records_by_topic: dict[str, int] = dict.fromkeys(self.types, 0)
        self.accepted_by_topic: dict[str, int] = dict.fromkeys(self.types, 0)
        self.skipped_by_topic: dict[str, dict[Cause, int]] = {t: dict.fromkeys(CAUSES, 0) for t in self.types}
        """Record batches skipped as undecodable, by topic and cause; each is one ``malformed`` discard too."""
        self.applied_records = 0
        # reads every codec; a batch nobody can decode comes as one SkippedBatch (sdk/fenced_client/batches.py)
        self.consumer = BatchSafeConsumer(
            **client_options(settings), group_id=settings.projector_group,
            enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=10,
            # a killed projector's partitions move to its successor after this (the broker's minimum)
            session_timeout_ms=6000, heartbeat_interval_ms=2000,
            max_partition_fetch_bytes=4 * 1024 * 1024, client_id="fenced-projector")
        self._started = time.monotonic()
        self._checked_at = 0.0

    @property
    def discards(self) -> dict[str, int]:
        """Discards by rule reason, over every topic."""
        out: dict[str, int] = dict.fromkeys(REASONS, 0)
        for by_reason in self.discards_by_topic.values():
            for reason, n in by_reason.items():
                out[reason] += n
        return out

    def positions(self) -> list[tuple[TopicPartition, int, int]]:
        """(partition, last applied offset or -1, records behind the log end) per assigned partition."""
        out = []
        for tp in sorted(self.consumer.assignment()):
            last = self.base.get(tp, -1)
            end = max(self.consumer.highwater(tp) or 0, self.targets.get(tp, 0))
            out.append((tp, last, max(0, end - last - 1)))
        return out

    def caught_up_all(self) -> bool:
        """Every partition assigned to this projector reached the end it had when assigned."""
        assigned = self.consumer.assignment()
        return bool(assigned) and all(tp in self.caught_up for tp in assigned)

    async def position(self, tps: list[TopicPartition]) -> None:
        """Seek each partition to just after what Redis says was applied (or to 0)."""
        for tp in tps:
            raw = await self.redis.hget(applied_key(tp.topic), str(tp.partition))
            self.base[tp] = -1 if raw is None else int(raw)
            self.consumer.seek(tp, self.base[tp] + 1)
        await self._set_targets(tps)

    async def _set_targets(self, tps: list[TopicPartition]) -> None:
        if not tps:
            return
        ends = await self.consumer.end_offsets(tps)
        for tp in tps:
            self.targets[tp] = int(ends[tp])
            self.caught_up.discard(tp)

    async def start(self) -> None:
        await ensure_topics(self.settings)
        await self.appender.start()
        self.epoch = await self.epochs.current()
        if self.rebuild:
            self.epoch = await self.epochs.bootstrap("rebuild requested")
            log.warning("rebuilding the projection from offset 0 in epoch %d", self.epoch)
        await self.consumer.start()
        self.consumer.subscribe(list(self.types), listener=_Rebalance(self))

    async def stop(self) -> None:
        with contextlib.suppress(KafkaError, TimeoutError):
            await asyncio.wait_for(self.consumer.commit(), 5)
        with contextlib.suppress(KafkaError, TimeoutError):
            await asyncio.wait_for(self.consumer.stop(), 10)
        with contextlib.suppress(KafkaError, TimeoutError):
            await asyncio.wait_for(self.appender.stop(), 10)

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        last_commit = time.monotonic()
        recovering = False
        try:
            while not stop.is_set():
                try:
                    if recovering:
                        await self._recover()
                        recovering = False
                    await self._step()
                except (RedisError, OSError, KafkaError, LeaseError) as e:
                    # positions are unknown after a failed write: re-read them from Redis
                    log.warning("projector: %s; retrying", e)
                    recovering = True
                    await asyncio.sleep(0.5)
                if time.monotonic() - last_commit > 5:
                    with contextlib.suppress(KafkaError):
                        await self.consumer.commit()
                    last_commit = time.monotonic()
        finally:
            await self.stop()

    async def _step(self) -> None:
        batch = await self.consumer.getmany(timeout_ms=200, max_records=5000)
        try:
            if not batch and await self.leases.epoch() != self.epoch:
                raise EpochChanged("the epoch moved while idle")
            if batch:
                await self.apply(batch)
            if not batch or time.monotonic() - self._checked_at >= HOUSEKEEPING_S:
                self._checked_at = time.monotonic()
                await self._check_not_regressed()
                await self._advance_past_control_records()
            await self._check_caught_up()
        except EpochChanged:
            await self._restart_epoch()
        except Regressed as e:
            log.warning("%s: redis lost recent writes; re-reading from what it kept", e)
            await self.position(list(self.consumer.assignment()))

    async def _check_not_regressed(self) -> None:
        """Compare Redis's applied offsets with what this projector wrote (while idle, and at
        least every HOUSEKEEPING_S): a failover to a replica that missed writes takes them
        back, and readers wait on them (the log barrier), so it is found now rather than at the
        partition's next record."""
        for topic in {tp.topic for tp in self.consumer.assignment()}:
            applied = await self.projection.applied(topic)
            for tp in self.consumer.assignment():
                if tp.topic == topic and applied.get(tp.partition, -1) < self.base.get(tp, -1):
                    raise Regressed(f"{topic}/{tp.partition}: applied offset {applied.get(tp.partition, -1)} "
                                    f"in Redis, {self.base[tp]} written")

    async def _advance_past_control_records(self) -> None:
        """Move a partition's applied offset over records the rule never sees (transaction
        markers of another producer, at the partition's end): the log barrier waits for the
        applied offset to reach the log end, so it must count them as applied."""
        parts = []
        for tp in self.consumer.assignment():
            last = await self.consumer.position(tp) - 1
            if last > self.base.get(tp, -1):
                parts.append(PartitionWrite(tp.topic, tp.partition, self.base.get(tp, -1), last, {}, {}))
        if parts:
            await self.projection.write_batch(self.epoch, parts)
            for part in parts:
                self.base[TopicPartition(part.topic, part.partition)] = part.last_offset

    async def _recover(self) -> None:
        if await self.leases.epoch() != self.epoch:
            await self._restart_epoch()
        else:
            await self.position(list(self.consumer.assignment()))

    async def _restart_epoch(self) -> None:
        self.epoch = await self.epochs.current()
        log.warning("redis lost its data or the epoch changed: replaying from offset 0 in epoch %d",
                    self.epoch)
        await self._forget_positions(list(self.consumer.assignment()))

    async def _forget_positions(self, tps: list[TopicPartition]) -> None:
        """Start the partitions again from offset 0 (a new epoch: every stream is rebuilt)."""
        for tp in tps:
            await self.redis.hdel(applied_key(tp.topic), str(tp.partition))
            self.consumer.seek(tp, 0)
            self.base[tp] = -1
        await self._set_targets(tps)

    async def apply(self, batch: Mapping[TopicPartition, list[Any]]) -> None:
        """Apply one fetch of many partitions: one read and one write round trip to Redis."""
        decoded: dict[TopicPartition, list[Record]] = {}
        wanted: dict[str, Decider] = {}
        for tp, msgs in batch.items():
            decider = self.deciders[tp.topic]
            records = [decode(m.key, m.value, m.headers, m.partition, m.offset, self.settings.partitions)
                       for m in msgs]
            decoded[tp] = records
            for r in records:
                if r.stream:
                    wanted[f"{self.types[tp.topic]}:{r.stream}"] = decider
        states = await self.projection.load_many(wanted, self.epoch)
        parts = []
        # counted once the batch is written: a failed write is re-applied after recovery
        discarded: list[tuple[str, str]] = []
        accepted: dict[str, int] = defaultdict(int)
        for tp, records in decoded.items():
            decider = self.deciders[tp.topic]
            changed: dict[str, StreamState] = {}
            verdicts: dict[str, list[Verdict]] = defaultdict(list)
            for r in records:
                if not r.stream:  # keyless or on the wrong partition: belongs to no stream
                    discarded.append((tp.topic, "malformed"))
                    continue
                s = f"{self.types[tp.topic]}:{r.stream}"
                new, vs = apply(decider, states[s], r)
                if new is not states[s]:
                    states[s] = changed[s] = new
                for v in vs:
                    verdicts[s].append(v)
                    if v.accepted:
                        accepted[tp.topic] += len(v.events)
                    elif v.reason:
                        discarded.append((tp.topic, v.reason))
            parts.append(PartitionWrite(tp.topic, tp.partition, self.base.get(tp, -1), records[-1].offset,
                                        changed, verdicts))
        await self.projection.write_batch(self.epoch, parts)
        for part in parts:
            self.base[TopicPartition(part.topic, part.partition)] = part.last_offset
        for topic, reason in discarded:
            self.discards_by_topic[topic][reason] += 1
        for topic, n in accepted.items():
            self.accepted_by_topic[topic] += n
        for tp, msgs in batch.items():
            self.records_by_topic[tp.topic] += len(msgs)
            for m in msgs:
                if isinstance(m, SkippedBatch):
                    self.skipped_by_topic[tp.topic][m.cause] += 1
        self.applied_records += sum(len(m) for m in batch.values())
        if self.progress:
            self._print_progress()

    async def _check_caught_up(self) -> None:
        pending = [tp for tp in self.consumer.assignment() if tp not in self.caught_up]
        for tp in pending:
            if await self.consumer.position(tp) >= self.targets.get(tp, 0):
                if await self.leases.epoch() != self.epoch:
                    raise EpochChanged("the epoch moved before the projection caught up")
                self.caught_up.add(tp)
                await self.redis.hset(caught_up_key(self.epoch), f"{tp.topic}:{tp.partition}", "1")
                if await self.redis.hlen(caught_up_key(self.epoch)) >= self.total_partitions:
                    await self.leases.set_ready(self.epoch)
                    log.info("projection caught up in epoch %d", self.epoch)

    def _print_progress(self) -> None:
        total = sum(self.targets.values()) or 1
        done = min(self.applied_records, total)
        width = 30
        filled = int(width * done / total)
        rate = self.applied_records / max(time.monotonic() - self._started, 1e-6)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} records "
                         f"{rate:,.0f}/s")
        sys.stderr.flush()


async def _serve_metrics(projector: Projector, settings: Settings) -> MetricsServer | None:
    """Serve the projector's /metrics; a port that cannot be bound, or a keys file that cannot be
    read, costs the metrics, not the projector."""
    port = settings.projector_metrics_port
    if port == 0:
        log.info("projector metrics are off (FENCED_PROJECTOR_METRICS_PORT=0)")
        return None
    keys = None
    if settings.auth == "keys":
        try:
            keys = KeyFile(settings.api_keys_file)
        except KeyFileError as e:
            log.error("projector metrics: %s; running without /metrics", e)
            return None
    server = MetricsServer(projector, port, keys=keys)
    try:
        await server.start()
    except OSError as e:
        log.error("projector metrics: cannot listen on port %d (%s); running without /metrics", port, e)
        return None
    log.info("projector metrics at http://%s:%d/metrics", server.host, server.port)
    return server


async def run_projector(settings: Settings, *, rebuild: bool = False, until_caught_up: bool = False) -> None:
    redis = aioredis.Redis.from_url(settings.redis_url)
    projector = Projector(settings, redis, rebuild=rebuild, progress=rebuild)
    metrics = await _serve_metrics(projector, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if until_caught_up:
        async def watch() -> None:
            while not stop.is_set():
                ready = await redis.hget("fenced:meta", "ready")
                if ready is not None and projector.epoch and int(ready) == projector.epoch:
                    stop.set()
                await asyncio.sleep(0.2)
        watcher = asyncio.create_task(watch())
    try:
        await projector.run(stop)
    finally:
        if until_caught_up:
            watcher.cancel()
        if rebuild:
            sys.stderr.write("\n")
        if metrics is not None:
            await metrics.stop()
        await redis.aclose()
