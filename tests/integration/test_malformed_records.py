"""Records no fenced writer would append, sent straight to the event topic of a real stack.

The projector process must discard each one as ``malformed`` (design.md §3), keep running
and keep applying good writes; its /metrics count the discards by reason; ``fenced verify``
reads the same log without crashing, counts the same discards and finds the projection
equal to the replay.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from devstack.stack import Stack, post_body
from fenced_client import wire
from fenced_client.rule import REASONS
from service.read.verify import verify

pytestmark = pytest.mark.integration


def fid() -> str:
    return f"m-{uuid.uuid4().hex[:10]}"


@dataclass
class Raw:
    """One record to produce as is."""

    key: str | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    partition: int | None = None
    """None: the partition the key hashes to."""


def headers(key: str, *, version: int = 1, token: int = (1 << 32) + 1, command: str = "",
            index: int = 0, count: int = 1, event_type: str = "FolderCreated",
            **override: bytes | None) -> list[tuple[str, bytes | None]]:
    """Realistic event headers (as the writer builds them), with some values replaced."""
    hs: list[tuple[str, bytes | None]] = list(wire.event_headers(
        source="/malformed-test", subject=key, event_type=event_type, version=version, token=token,
        command=command or uuid.uuid4().hex, index=index, count=count))
    assert set(override) <= {name for name, _ in hs}, override
    return [(name, override.get(name, value)) for name, value in hs]


DATA = wire.encode_value({"name": "x", "parent_id": None})


def malformed_records(partitions: int) -> tuple[list[Raw], int, dict[str, str]]:
    """The records to send, how many ``malformed`` discards they make, and the streams
    (by case) that were given a key of their own."""
    keys = {case: fid() for case in (
        "no headers", "token not numeric", "token null", "invalid json", "value not an object",
        "deep json", "version above int64", "version 20 digits", "version 0", "wrong partition",
        "index without group", "counts differ", "index not below count", "group cut short")}
    k = keys
    wrong = (wire.partition_for(k["wrong partition"], partitions) + 1) % partitions
    group = uuid.uuid4().hex
    cut = uuid.uuid4().hex
    records = [
        Raw(k["no headers"], DATA, []),
        Raw(k["token not numeric"], DATA, headers(k["token not numeric"], ce_fencedtoken=b"12ab")),
        Raw(k["token null"], DATA, headers(k["token null"], ce_fencedtoken=None)),
        Raw(k["invalid json"], b'{"name": "x",', headers(k["invalid json"])),
        Raw(k["value not an object"], b'["x"]', headers(k["value not an object"])),
        Raw(k["deep json"], b"[" * 100_000 + b"]" * 100_000, headers(k["deep json"])),
        Raw(k["version above int64"], DATA, headers(k["version above int64"], ce_fencedversion=str(2**63).encode())),
        Raw(k["version 20 digits"], DATA, headers(k["version 20 digits"], ce_fencedversion=b"1" * 20)),
        Raw(k["version 0"], DATA, headers(k["version 0"], ce_fencedversion=b"0")),
        # a valid event on another partition than its key's: belongs to no stream
        Raw(k["wrong partition"], DATA, headers(k["wrong partition"]), partition=wrong),
        Raw(None, DATA, headers(""), partition=0),  # keyless
        Raw(None, b"", [], partition=partitions - 1),  # keyless, empty, no headers
        # a group member with index 1 while no group is pending
        Raw(k["index without group"], DATA, headers(k["index without group"], command=group, index=1, count=2)),
        # one command's records disagree on the count: one discard for the group of 2
        Raw(k["counts differ"], DATA, headers(k["counts differ"], command=group, index=0, count=3)),
        Raw(k["counts differ"], DATA, headers(k["counts differ"], command=group, version=2, index=1, count=2)),
        Raw(k["index not below count"], DATA, headers(k["index not below count"], index=2, count=2)),
        # first record of a group of 2 whose second never comes: the next record of the
        # stream (a good Create through the API, below) discards it
        Raw(k["group cut short"], DATA, headers(k["group cut short"], command=cut, index=0, count=2)),
    ]
    return records, 16, keys


async def produce(stack: Stack, records: Sequence[Raw]) -> None:
    topic = stack.settings.topic("folders")
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka.bootstrap, acks="all", enable_idempotence=True,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        for r in records:  # one at a time, in order: group members must be consecutive
            partition = r.partition if r.partition is not None else wire.partition_for(
                r.key or "", stack.settings.partitions)
            await producer.send_and_wait(topic, value=r.value, key=None if r.key is None else r.key.encode(),
                                         partition=partition, headers=r.headers)
    finally:
        await producer.stop()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient, stack: Stack) -> Samples:
    port = stack.env["FENCED_PROJECTOR_METRICS_PORT"]
    r = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert r.status_code == 200, r.text
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def discards(samples: Samples, topic: str) -> dict[str, float]:
    return {reason: samples.get(("fenced_projector_discards_total", (("reason", reason), ("topic", topic))), 0.0)
            for reason in REASONS}


def by_name(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


async def create(client: httpx.AsyncClient, url: str, folder: str) -> httpx.Response:
    return await client.post(f"{url}/v1/folders/{folder}/commands", json=post_body("Create", {"name": "x"}))


async def test_malformed_records_are_discarded_counted_and_verified(stack: Stack) -> None:
    topic = stack.settings.topic("folders")
    url = stack.urls[0]
    async with httpx.AsyncClient(timeout=30) as client:
        first = fid()
        assert (await create(client, url, first)).status_code == 201
        before = await scrape(client, stack)
        assert by_name(before, "fenced_projector_ready") == {(): 1.0}
        assert discards(before, topic) == dict.fromkeys(REASONS, 0.0)
        records_before = before[("fenced_projector_records_total", (("topic", topic),))]

        records, expected, keys = malformed_records(stack.settings.partitions)
        await produce(stack, records)

        # (a) the projector survives them and still applies good writes (verified mode: a
        # 201 means the projector applied the append and accepted it)
        after_folder = fid()
        assert (await create(client, url, after_folder)).status_code == 201
        assert (await create(client, stack.urls[1], keys["group cut short"])).status_code == 201
        assert (await client.get(f"{url}/v1/folders/{after_folder}")).status_code == 200
        assert (await client.get(f"{url}/v1/folders/{keys['no headers']}")).status_code == 404
        assert stack.services.procs["projector"].poll() is None, stack.log("projector")[-3000:]

        # (b) /metrics counts them by reason (the cut-short group is discarded when the
        # API's Create reaches its stream, which the 201 above guarantees)
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            after = await scrape(client, stack)
            lag = by_name(after, "fenced_projector_lag_records")
            if (discards(after, topic)["malformed"] >= expected and not any(lag.values())) \
                    or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
        assert discards(after, topic) == {**dict.fromkeys(REASONS, 0.0), "malformed": float(expected)}
        assert after[("fenced_projector_records_total", (("topic", topic),))] - records_before == len(records) + 2
        assert after[("fenced_projector_accepted_total", (("topic", topic),))] >= 3
        assert by_name(after, "fenced_projector_ready") == {(): 1.0}
        partitions = {(("partition", str(p)), ("topic", topic)) for p in range(stack.settings.partitions)}
        assert set(lag) == partitions and set(lag.values()) == {0.0}, lag
        applied = by_name(after, "fenced_projector_applied_offset")
        assert set(applied) == partitions and sum(v + 1 for v in applied.values()) == len(records) + 3
        assert stack.services.procs["projector"].poll() is None
        assert "Traceback" not in stack.log("projector")

    # (c) verify reads the same log: no crash, the same discards, no difference
    report = await verify(stack.settings)
    summary = report["types"]["folders"]
    assert report["ok"] and report["differences"] == [], report
    assert summary["discards"] == {**dict.fromkeys(REASONS, 0), "malformed": expected}, summary
    assert summary["records"] == len(records) + 3
    assert summary["accepted"] == 3
    replay = await stack.replay(group=True)
    assert replay.digest() == summary["digest"]
    histories = replay.histories()
    assert [e["type"] for e in histories[keys["group cut short"]]] == ["FolderCreated"]
    assert not any(k in histories for case, k in keys.items() if case != "group cut short")
