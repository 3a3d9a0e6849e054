"""Compressed and corrupt record batches in the event topic of a real stack (issue 12).

Producers other than fenced's writer compress batches (franz-go: snappy, librdkafka: none
or lz4 as configured). Every reader (the projector, ``fenced verify``, the SDK's consumer)
must read gzip, snappy, lz4 and zstd, and a batch nobody can decode must be skipped whole
and counted as one ``malformed`` discard, never halt its partition. The corrupt batches
here are made the way a reader meets them: the broker validates every produced batch, so
they are written to the topic by a real producer and then damaged in the broker's segment
file (bit rot under the CRC; and, behind a recomputed CRC, a garbled zstd payload and a
codec number Kafka does not have, as a broken broker or storage layer would serve them).
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.record._crc32c import crc as crc32c
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from devstack import KafkaBroker, RedisServer
from devstack.stack import Stack, post_body
from fenced_client import wire
from fenced_client.batches import CAUSES, SkippedBatch, decode_fetched
from fenced_client.consumer import AcceptedEvents
from fenced_client.rule import REASONS
from service.read.verify import verify
from tests.integration.test_malformed_records import by_name, discards, scrape

CODECS = ("gzip", "snappy", "lz4", "zstd")
TOKEN = 1  # below every token the service hands out, so API writes to these folders are not stale
BAD_VALUE = b'{"name": "cut'  # valid headers, a value that is not JSON: malformed, in a good batch


def key_on(partition: int, partitions: int, prefix: str) -> str:
    while True:
        key = f"{prefix}-{uuid.uuid4().hex[:10]}"
        if wire.partition_for(key, partitions) == partition:
            return key


def event(key: str, *, version: int = 1, index: int = 0, count: int = 1, command: str = "") -> list[tuple[str, bytes]]:
    return [(k, v) for k, v in wire.event_headers(
        source="/codec-test", subject=key, event_type="FolderCreated", version=version, token=TOKEN,
        command=command or uuid.uuid4().hex, index=index, count=count)]


def created(name: str) -> bytes:
    return wire.encode_value({"name": name, "parent_id": None})


@dataclass
class Ledger:
    """What the topic holds, as the test wrote it: the folders the rule must accept (by
    key), the keys whose events no reader can see, and how many discards and skips."""

    stack: Stack
    visible: dict[str, str] = field(default_factory=dict)
    """key -> the name its FolderCreated gave"""
    renamed: dict[str, str] = field(default_factory=dict)
    """key -> the name an Update through the API gave"""
    hidden: set[str] = field(default_factory=set)
    malformed: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CAUSES, 0))
    api_events: int = 0


# -- the corrupt batches, written before the stack starts (so no reader saw them whole) --

def _batches(segment: Path) -> dict[int, tuple[int, int]]:
    """Base offset -> (file position, size) of each batch of a segment file."""
    data = segment.read_bytes()
    out, at = {}, 0
    while at + 12 <= len(data):
        base, length = struct.unpack_from(">qi", data, at)
        out[base] = (at, 12 + length)
        at += 12 + length
    return out


def _damage(segment: Path, base: int, how: Callable[[bytearray], None]) -> None:
    at, size = _batches(segment)[base]
    with segment.open("r+b") as f:
        f.seek(at)
        raw = bytearray(f.read(size))
        how(raw)
        assert len(raw) == size
        f.seek(at)
        f.write(raw)


def _flip_payload_byte(raw: bytearray) -> None:  # bit rot: the CRC no longer matches
    raw[-3] ^= 0x55


def _recrc(raw: bytearray) -> None:  # CRC-32C over attributes..end, at byte 17 (v2)
    struct.pack_into(">I", raw, 17, crc32c(bytes(raw[21:])))


def _garble_payload(raw: bytearray) -> None:  # a zstd frame that does not decompress, behind a valid CRC
    for i in range(61 + 4, len(raw)):
        raw[i] ^= 0xA5
    _recrc(raw)


def _unknown_codec(raw: bytearray) -> None:  # codec 7: Kafka has 0..4
    attributes = struct.unpack_from(">h", raw, 21)[0]
    struct.pack_into(">h", raw, 21, (attributes & ~0x07) | 0x07)
    _recrc(raw)


async def _send_batch(producer: AIOKafkaProducer, topic: str, partition: int,
                      records: list[tuple[str, bytes, list[tuple[str, bytes]]]]) -> int:
    batch = producer.create_batch()
    for key, value, headers in records:
        assert batch.append(key=key.encode(), value=value, timestamp=None, headers=headers) is not None
    batch.close()
    meta = await (await producer.send_batch(batch, topic, partition=partition))
    return int(meta.offset)


async def write_corrupt_batches(stack: Stack, kafka: KafkaBroker, ledger: Ledger) -> None:
    """On one partition: a good batch, three batches damaged on disk, a good gzip batch; on
    another partition, a good snappy batch (drained in the same fetch as the bad ones)."""
    settings = stack.settings
    topic, n = settings.topic("folders"), settings.partitions
    p, q = 1, 2
    keys = {name: key_on(p, n, name) for name in ("before", "rot", "garbled-a", "garbled-b", "codec7", "after")}
    other = key_on(q, n, "other")
    producers = {codec: AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", enable_idempotence=True,
                                         compression_type=codec) for codec in (None, "gzip", "snappy", "lz4", "zstd")}
    for producer in producers.values():
        await producer.start()
    try:
        await _send_batch(producers[None], topic, p, [(keys["before"], created("before"), event(keys["before"]))])
        rot = await _send_batch(producers["zstd"], topic, p, [(keys["rot"], created("rot"), event(keys["rot"]))])
        group = uuid.uuid4().hex  # one command's two events: one skipped batch, one discard
        garbled = await _send_batch(producers["zstd"], topic, p, [
            (keys["garbled-a"], created("garbled-a"), event(keys["garbled-a"], command=group, count=2)),
            (keys["garbled-a"], created("garbled-b"), event(keys["garbled-a"], command=group, version=2,
                                                             index=1, count=2))])
        codec7 = await _send_batch(producers["lz4"], topic, p, [(keys["codec7"], created("codec7"),
                                                                 event(keys["codec7"]))])
        await _send_batch(producers["gzip"], topic, p, [(keys["after"], created("after"), event(keys["after"]))])
        await _send_batch(producers["snappy"], topic, q, [(other, created("other"), event(other))])
    finally:
        for producer in producers.values():
            await producer.stop()
    segment = kafka.data_dir / f"{topic}-{p}" / "00000000000000000000.log"
    _damage(segment, rot, _flip_payload_byte)
    _damage(segment, garbled, _garble_payload)
    _damage(segment, codec7, _unknown_codec)
    ledger.visible.update({keys["before"]: "before", keys["after"]: "after", other: "other"})
    ledger.hidden.update({keys["rot"], keys["garbled-a"], keys["codec7"]})
    ledger.malformed += 3
    ledger.skipped.update(crc=1, corrupt=1, codec=1)


@pytest.fixture(scope="module")
async def codecs(workdir: Path, kafka: KafkaBroker, redis_server: RedisServer) -> AsyncIterator[Ledger]:
    stack = Stack(workdir / "stacks", kafka, redis_server)
    ledger = Ledger(stack)
    await asyncio.to_thread(stack.start)
    try:
        # written while no projector runs (none may read them whole before they are damaged);
        # a fresh projector then reads the damaged partition from offset 0, counting from 0
        await asyncio.to_thread(stack.services.stop, "projector")
        await write_corrupt_batches(stack, kafka, ledger)
        stack.services.start_projector()
        yield ledger
    finally:
        stack.stop()


# -- what every reader must agree on --

async def until(check: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{check.__doc__ or check.__name__} still false after {timeout:.0f}s")
        await asyncio.sleep(0.2)


async def projected(client: httpx.AsyncClient, ledger: Ledger) -> None:
    """Every visible folder can be read with its name; no hidden one exists."""
    url = ledger.stack.urls[0]

    async def all_visible() -> bool:
        """every folder the test wrote can be read through the API"""
        for key in ledger.visible:
            if (await client.get(f"{url}/v1/folders/{key}")).status_code != 200:
                return False
        return True

    await until(all_visible)
    for key, name in ledger.visible.items():
        body = (await client.get(f"{url}/v1/folders/{key}")).json()
        assert body["state"]["name"] == ledger.renamed.get(key, name), body
    for key in ledger.hidden:
        assert (await client.get(f"{url}/v1/folders/{key}")).status_code == 404, key


async def counted(client: httpx.AsyncClient, ledger: Ledger) -> None:
    """The projector's /metrics: the discards, the skipped batches by cause, no lag."""
    stack = ledger.stack
    topic = stack.settings.topic("folders")
    samples: dict[Any, float] = {}

    async def settled() -> bool:
        """the projector counted every malformed discard and has no lag"""
        nonlocal samples
        samples = await scrape(client, stack)
        lag = by_name(samples, "fenced_projector_lag_records")
        return discards(samples, topic)["malformed"] >= ledger.malformed and not any(lag.values())

    await until(settled)
    assert discards(samples, topic) == {**dict.fromkeys(REASONS, 0.0), "malformed": float(ledger.malformed)}
    skipped = {cause: samples.get(("fenced_projector_skipped_batches_total", (("cause", cause), ("topic", topic))))
               for cause in CAUSES}
    assert skipped == {cause: float(n) for cause, n in ledger.skipped.items()}, skipped
    assert by_name(samples, "fenced_projector_ready") == {(): 1.0}
    assert stack.services.procs["projector"].poll() is None, stack.log("projector")[-3000:]
    assert "Traceback" not in stack.log("projector")


async def verified(ledger: Ledger) -> None:
    """``fenced verify`` reads the same log: the same discards, no difference with the projection."""
    report = await verify(ledger.stack.settings)
    summary = report["types"]["folders"]
    assert report["ok"] and report["differences"] == [], report
    assert summary["discards"] == {**dict.fromkeys(REASONS, 0), "malformed": ledger.malformed}, summary
    assert summary["accepted"] == len(ledger.visible) + ledger.api_events, summary
    grouped = await ledger.stack.replay(group=True)
    assert grouped.digest() == summary["digest"]


async def consumed(ledger: Ledger) -> None:
    """The SDK's consumer yields exactly the visible folders' Creates and counts the same discards."""
    stack = ledger.stack
    async with AcceptedEvents(stack.kafka.bootstrap, stack.settings.topic("folders"), stack.settings.partitions,
                              stop_at_end=True) as reader:
        async with asyncio.timeout(60):
            events = [e async for e in reader]
        assert dict(reader.discards) == {**dict.fromkeys(REASONS, 0), "malformed": ledger.malformed}
    assert {e.resource_id: e.data["name"] for e in events if e.type == "FolderCreated"} == ledger.visible
    assert {e.resource_id: e.data["name"] for e in events if e.type == "FolderUpdated"} == ledger.renamed
    assert not ledger.hidden & {e.resource_id for e in events}


async def writable(client: httpx.AsyncClient, ledger: Ledger) -> None:
    """The API still writes: a new folder, and an Update of a folder another client created."""
    url = ledger.stack.urls[1]
    fresh = f"after-{uuid.uuid4().hex[:10]}"
    r = await client.post(f"{url}/v1/folders/{fresh}/commands", json=post_body("Create", {"name": "fresh"}))
    assert r.status_code == 201, r.text
    some = next(key for key in ledger.visible if key not in ledger.renamed)
    r = await client.post(f"{url}/v1/folders/{some}/commands",
                          json=post_body("Update", {"name": "renamed"}, expected_version=1))
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 2
    hidden = next(iter(ledger.hidden))  # its Create was skipped: the stream is empty
    r = await client.post(f"{url}/v1/folders/{hidden}/commands", json=post_body("Create", {"name": "again"}))
    assert r.status_code == 201 and r.json()["version"] == 1, r.text
    ledger.visible[fresh] = "fresh"
    ledger.renamed[some] = "renamed"
    ledger.hidden.discard(hidden)
    ledger.visible[hidden] = "again"
    ledger.api_events += 1  # the Update; the two Creates are in ``visible``


async def check_all(ledger: Ledger) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        await projected(client, ledger)
        await counted(client, ledger)
        await verified(ledger)
        await consumed(ledger)
        await writable(client, ledger)
        await projected(client, ledger)
        await verified(ledger)


# -- the tests --

@pytest.mark.integration
async def test_corrupt_batches_are_skipped_and_counted_by_every_reader(codecs: Ledger) -> None:
    """Three batches damaged on disk (bad CRC; garbled zstd; codec 7), between good batches of
    the same partition and beside another partition's: a projector started on that log
    catches up, each bad batch is one malformed discard in the projector's metrics, in
    ``fenced verify`` and in the SDK's consumer; the good records around them, drained in the
    same fetch, are all applied; and the API writes afterwards."""
    await check_all(codecs)


@pytest.mark.integration
@pytest.mark.parametrize("client", ["aiokafka", "librdkafka"])
async def test_every_codec_is_read(codecs: Ledger, client: str) -> None:
    """One FolderCreated per codec (and one undecodable value per codec) from a real producer
    with that codec, produced while the stack runs: every folder becomes visible, every reader
    accepts it, and the undecodable values are malformed discards (the issue's report)."""
    stack = codecs.stack
    topic, n = stack.settings.topic("folders"), stack.settings.partitions
    sent: list[tuple[str, int, str, bytes, list[tuple[str, bytes]]]] = []
    for codec in CODECS:
        good = f"{client}-{codec}-{uuid.uuid4().hex[:8]}"
        bad = f"{client}-{codec}-bad-{uuid.uuid4().hex[:8]}"
        sent.append((codec, wire.partition_for(good, n), good, created(codec), event(good)))
        sent.append((codec, wire.partition_for(bad, n), bad, BAD_VALUE, event(bad)))
        codecs.visible[good] = codec
        codecs.hidden.add(bad)
        codecs.malformed += 1
    if client == "aiokafka":
        for codec in CODECS:
            producer = AIOKafkaProducer(bootstrap_servers=stack.kafka.bootstrap, acks="all",
                                        enable_idempotence=True, compression_type=codec)
            await producer.start()
            try:
                for c, partition, key, value, headers in sent:
                    if c == codec:
                        await producer.send_and_wait(topic, value=value, key=key.encode(), partition=partition,
                                                     headers=headers)
            finally:
                await producer.stop()
    else:
        await asyncio.to_thread(_produce_with_librdkafka, stack.kafka.bootstrap, topic, sent)
    await check_all(codecs)


def _produce_with_librdkafka(bootstrap: str, topic: str,
                             sent: list[tuple[str, int, str, bytes, list[tuple[str, bytes]]]]) -> None:
    from confluent_kafka import KafkaException, Producer

    errors: list[Any] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    for codec in CODECS:
        producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "acks": "all",
                             "enable.idempotence": True, "linger.ms": 0})
        for c, partition, key, value, headers in sent:
            if c == codec:
                producer.produce(topic, value=value, key=key.encode(), partition=partition,
                                 headers=list[tuple[str, str | bytes | None]](headers), on_delivery=delivered)
        assert producer.flush(30) == 0
    if errors:
        raise KafkaException(errors[0])


# -- the decoding rule on bytes alone (no servers) --

def _batch(base: int, values: list[bytes], codec: int = 0) -> bytearray:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False, producer_id=-1,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for i, v in enumerate(values):
        builder.append(i, timestamp=1, key=b"k", value=v, headers=[])
    raw = bytearray(builder.build())
    struct.pack_into(">q", raw, 0, base)
    return raw


def test_decoding_skips_each_bad_batch_whole_whatever_the_fetch_holds() -> None:
    """The same bytes give the same records and skips however a fetch cuts them, and a bad
    batch is one SkippedBatch spanning its offsets, after which reading goes on."""
    tp = TopicPartition("t", 0)
    rot = _batch(2, [b"r0", b"r1", b"r2"], codec=4)
    _flip_payload_byte(rot)
    garbled = _batch(5, [b"g0", b"g1"], codec=4)
    _garble_payload(garbled)
    codec7 = _batch(7, [b"c0"])
    _unknown_codec(codec7)
    log = b"".join(bytes(b) for b in (_batch(0, [b"a", b"b"], codec=1), rot, garbled, codec7,
                                       _batch(8, [b"z"], codec=2)))
    records, next_offset = decode_fetched(tp, log, 0)
    assert next_offset == 9
    assert [(r.offset, r.value) if not isinstance(r, SkippedBatch) else (r.first_offset, r.last_offset, r.cause)
            for r in records] == [(0, b"a"), (1, b"b"), (2, 4, "crc"), (5, 6, "corrupt"), (7, 7, "codec"),
                                  (8, b"z")]
    # read again from every offset, with fetches cut after any byte (the broker always sends
    # a fetch's first batch whole): the same records, the same skipped batches
    def outcome(rs: list[Any]) -> list[tuple[int, Any]]:
        return [(r.offset, r.cause if isinstance(r, SkippedBatch) else r.value) for r in rs]

    for start in range(9):
        for cut in range(len(log) + 1):
            got: list[Any] = []
            position = start
            while position < 9:
                rest = log[_start_of(log, position):]
                first = 12 + struct.unpack_from(">i", rest, 8)[0]
                part, position = decode_fetched(tp, rest[:max(cut, first)], position)
                got.extend(part)
            assert outcome(got) == [o for o in outcome(records) if o[0] >= start], (start, cut)


def _start_of(log: bytes, offset: int) -> int:
    """The byte where the batch holding ``offset`` starts, as a broker would fetch from it."""
    at = 0
    while at + 12 <= len(log):
        base, length = struct.unpack_from(">qi", log, at)
        last = base + struct.unpack_from(">i", log, at + 23)[0]
        if last >= offset:
            return at
        at += 12 + length
    return len(log)


def test_a_batch_whose_header_is_unreadable_is_one_discard_and_one_offset() -> None:
    tp = TopicPartition("t", 0)
    broken = bytearray(_batch(3, [b"x"]))
    struct.pack_into(">i", broken, 8, 5)  # a length no batch can have
    records, next_offset = decode_fetched(tp, bytes(broken), 3)
    assert records == [SkippedBatch("t", 0, 3, 3, "framing", "batch length 5")]
    assert next_offset == 4
    cut = _batch(3, [b"y" * 100])
    records, next_offset = decode_fetched(tp, bytes(cut[:80]), 3)  # the broker sent less than the batch
    assert [(r.first_offset, r.last_offset, r.cause) for r in records] == [(3, 3, "too_large")]
    assert next_offset == 4
