"""The writer's codec (``FENCED_KAFKA_COMPRESSION``), side by side: appends/s, bytes, reads/s.

Starts its own Kafka broker (and a redis-server it does not use) on free ports, then for
each codec (none, gzip, snappy, lz4, zstd) appends realistic event records (a FolderCreated
value and the writer's CloudEvents headers, one event per append) through
``service.infra.kafka.Appender`` (``acks=all``, idempotent, the writer's batching of concurrent
appends per partition) from many tasks for a few seconds, in rounds that rotate the order of
the codecs (the machine is noisy: compare within one run). Each codec writes its own topic,
so it also prints the bytes the broker stores per append and how fast
``fenced_client.batches.BatchSafeConsumer`` (what every reader uses) reads the topic back from offset
0. Ratios are against ``none`` measured in the same run.

    python -m bench.compression [--seconds 5] [--rounds 3] [--tasks 64] [--partitions 12]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from devstack import KafkaBroker
from devstack.stack import servers
from fenced_client import wire
from fenced_client.batches import BatchSafeConsumer
from service.infra.kafka import Appender, ensure_topics
from service.settings import Settings

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def settings_for(kafka: KafkaBroker, codec: str, partitions: int) -> Settings:
    return Settings.model_validate({
        "kafka_bootstrap": kafka.bootstrap, "topic_prefix": f"bench-{codec}-{uuid.uuid4().hex[:6]}.",
        "partitions": partitions, "kafka_compression": codec, "auth": "off"})


def record(key: str, rng: random.Random) -> tuple[bytes, wire.Headers]:
    value = wire.encode_value({"name": f"folder {rng.random():.6f}", "parent_id": None})
    headers = wire.event_headers(source="/fenced", subject=key, event_type="FolderCreated", version=1,
                                 token=(1 << 32) + rng.randrange(1000), command=uuid.uuid4().hex, index=0,
                                 count=1)
    return value, headers


async def appends(appender: Appender, topic: str, tasks: int, seconds: float, folders: int) -> dict[str, Any]:
    latencies: list[float] = []
    failures = 0
    end = time.monotonic() + seconds

    async def task(i: int) -> None:
        nonlocal failures
        rng = random.Random(i)
        while time.monotonic() < end:
            key = f"f{rng.randrange(folders)}"
            t0 = time.perf_counter()
            try:
                await appender.append(topic, key, [record(key, rng)], timeout=10)
            except Exception:  # noqa: BLE001 - counted, not fatal: a benchmark reports what it saw
                failures += 1
                continue
            latencies.append(time.perf_counter() - t0)

    t0 = time.monotonic()
    await asyncio.gather(*(task(i) for i in range(tasks)))
    elapsed = time.monotonic() - t0
    lat = sorted(latencies)
    return {"appends_per_s": len(lat) / elapsed, "failures": failures,
            "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
            "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else None}


async def read_back(kafka: KafkaBroker, topic: str, partitions: int) -> dict[str, Any]:
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer = BatchSafeConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False,
                                 auto_offset_reset="earliest", fetch_max_wait_ms=10,
                                 max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        total = sum(ends.values())
        seen = skipped = 0
        t0 = time.monotonic()
        while seen < total:
            for msgs in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                seen += len(msgs)
                skipped += sum(1 for m in msgs if m.key is None)
        elapsed = time.monotonic() - t0
    finally:
        await consumer.stop()
    return {"records": total, "reads_per_s": total / elapsed, "skipped": skipped}


def stored_bytes(kafka: KafkaBroker, topic: str, partitions: int) -> int:
    return sum(f.stat().st_size for p in range(partitions)
               for f in (kafka.data_dir / f"{topic}-{p}").glob("*.log"))


async def bench(kafka: KafkaBroker, args: argparse.Namespace) -> dict[str, Any]:
    configs = {codec: settings_for(kafka, codec, args.partitions) for codec in CODECS}
    appenders: dict[str, Appender] = {}
    for codec, s in configs.items():
        await ensure_topics(s)
        appenders[codec] = Appender(s)
        await appenders[codec].start()
    rounds: dict[str, list[dict[str, Any]]] = {c: [] for c in CODECS}
    try:
        for codec in CODECS:  # warm-up: connections, the broker's JIT, first segments
            await appends(appenders[codec], configs[codec].topic("folders"), args.tasks, 1, args.folders)
        for rnd in range(args.rounds):
            order = CODECS[rnd % len(CODECS):] + CODECS[:rnd % len(CODECS)]
            for codec in order:
                r = await appends(appenders[codec], configs[codec].topic("folders"), args.tasks, args.seconds,
                                  args.folders)
                rounds[codec].append(r)
                print(f"round {rnd} {codec:6}: {r['appends_per_s']:7.0f} appends/s  p50 {r['p50_ms']:.1f} ms  "
                      f"p99 {r['p99_ms']:.1f} ms  failures {r['failures']}", flush=True)
    finally:
        for a in appenders.values():
            await a.stop()
    reads: dict[str, list[dict[str, Any]]] = {c: [] for c in CODECS}
    for rnd in range(args.rounds):
        for codec in CODECS[rnd % len(CODECS):] + CODECS[:rnd % len(CODECS)]:
            r = await read_back(kafka, configs[codec].topic("folders"), args.partitions)
            reads[codec].append(r)
            print(f"round {rnd} {codec:6}: {r['reads_per_s']:7.0f} records/s read back of {r['records']}",
                  flush=True)
    out: dict[str, Any] = {}
    for codec in CODECS:
        topic = configs[codec].topic("folders")
        records = reads[codec][0]["records"]
        out[codec] = {
            "appends_per_s": statistics.median(r["appends_per_s"] for r in rounds[codec]),
            "p99_ms": statistics.median(r["p99_ms"] for r in rounds[codec]),
            "bytes_per_append": stored_bytes(kafka, topic, args.partitions) / max(records, 1),
            "reads_per_s": statistics.median(r["reads_per_s"] for r in reads[codec]),
            "skipped": reads[codec][0]["skipped"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=64)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--folders", type=int, default=10000)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fenced-bench-"))
    with ExitStack() as cleanup:  # stops the servers also on failure or Ctrl-C
        kafka, _redis = cleanup.enter_context(servers(root))
        out = asyncio.run(bench(kafka, args))
    base = out["none"]
    print(f"{'codec':6}  {'appends/s':>9}  {'ratio':>5}  {'p99 ms':>6}  {'bytes/append':>12}  {'ratio':>5}  "
          f"{'reads/s':>8}  {'ratio':>5}")
    for codec, r in out.items():
        print(f"{codec:6}  {r['appends_per_s']:9.0f}  {r['appends_per_s'] / base['appends_per_s']:5.2f}  "
              f"{r['p99_ms']:6.1f}  {r['bytes_per_append']:12.0f}  "
              f"{r['bytes_per_append'] / base['bytes_per_append']:5.2f}  {r['reads_per_s']:8.0f}  "
              f"{r['reads_per_s'] / base['reads_per_s']:5.2f}")
    print(json.dumps({"args": vars(args), "codecs": out}))


if __name__ == "__main__":
    main()
