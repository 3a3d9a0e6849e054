"""The SDK against the real stack: two API replicas, the projector, Kafka and Redis.

The stack serves ``folders`` (decided) and ``ledger`` (open: ``append`` and ``read``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from devstack import KafkaBroker, RedisServer
from devstack.proc import free_port
from devstack.stack import Stack
from fenced_client import (
    AsyncFencedClient,
    Conflict,
    EventData,
    FencedClient,
    Gone,
    InvalidInput,
    NotFound,
)
from fenced_client.consumer import AcceptedEvents, ConsumedEvent
from fenced_client.folders import AsyncFolders, Folders
from fenced_client.rule import Verdict
from fenced_client.wire import encode_value, event_headers, partition_for

pytestmark = pytest.mark.integration

LEDGER = "ledger"


@pytest.fixture(scope="module")
def stack(workdir: Path, kafka: KafkaBroker, redis_server: RedisServer) -> Iterator[Stack]:
    s = Stack(workdir / "stacks", kafka, redis_server, extra_env={"FENCED_OPEN_TYPES": LEDGER}).start()
    yield s
    s.stop()


def fid() -> str:
    return f"sdk-{uuid.uuid4().hex[:10]}"


def test_folder_lifecycle_with_the_sync_client(stack: Stack) -> None:
    folder = fid()
    with FencedClient(stack.urls) as c:
        folders = Folders(c)
        created = folders.create(folder, "Inbox", parent_id="root")
        assert created.version == 1
        assert [e.type for e in created.events] == ["FolderCreated"]
        assert created.events[0].partition == partition_for(folder, stack.settings.partitions)
        updated = folders.update(folder, "Archive", expected_version=1)
        assert updated.version == 2
        r = c.get("folders", folder)
        assert (r.version, r.destroyed, r.state["name"], r.state["parent_id"], r.etag) == \
            (2, False, "Archive", "root", '"2"')
        assert folders.destroy(folder, expected_version=2).version == 3
        assert c.get("folders", folder).destroyed
        with pytest.raises(Gone) as gone:
            folders.update(folder, "late")
        assert gone.value.status == 410
        assert not gone.value.retriable
        assert [(e.version, e.type) for e in c.events("folders", folder)] == [
            (1, "FolderCreated"), (2, "FolderUpdated"), (3, "FolderDestroyed")]


def test_typed_errors(stack: Stack) -> None:
    folder = fid()
    with FencedClient(stack.urls[1]) as c:
        folders = Folders(c)
        with pytest.raises(NotFound):
            c.get("folders", folder)
        with pytest.raises(NotFound):
            folders.update(folder, "never created")
        with pytest.raises(NotFound):
            next(c.events("folders", folder))
        with pytest.raises(NotFound):
            c.send("no-such-type", folder, "Create", {"name": "x"})
        with pytest.raises(InvalidInput) as empty:
            folders.create(folder, "   ")
        assert empty.value.status == 422
        with pytest.raises(InvalidInput):
            c.send("folders", folder, "Rename", {"name": "x"})
        with pytest.raises(InvalidInput):
            c.send("folders", folder, "Create", {"name": "x"}, idempotency_key="not a valid key")
        with pytest.raises(InvalidInput) as too_big:
            folders.create(folder, "x" * 70_000)
        assert too_big.value.status == 413
        folders.create(folder, "Inbox")
        with pytest.raises(Conflict) as exists:
            folders.create(folder, "Inbox again")
        assert exists.value.current_version == 1
        folders.update(folder, "v2")
        with pytest.raises(Conflict) as stale:
            folders.update(folder, "v3", expected_version=1)
        assert stale.value.current_version == 2
        assert c.get("folders", folder).version == 2, "refused commands append nothing"


async def test_async_client_and_pagination(stack: Stack) -> None:
    folder = fid()
    async with AsyncFencedClient(stack.urls) as c:
        folders = AsyncFolders(c)
        await folders.create(folder, "n0")
        for i in range(1, 23):
            assert (await folders.update(folder, f"n{i}", expected_version=i)).version == i + 1
        paged = [e async for e in c.events("folders", folder, page_size=5)]
        whole = [e async for e in c.events("folders", folder, page_size=1000)]
        assert paged == whole
        assert [e.version for e in paged] == list(range(1, 24))
        assert [e.data["name"] for e in paged] == [f"n{i}" for i in range(23)]
        assert (await c.get("folders", folder)).state["name"] == "n22"
        await folders.destroy(folder)
        with pytest.raises(Gone):
            await folders.destroy(folder)


def test_same_idempotency_key_applies_once(stack: Stack) -> None:
    """A retry with the same key, even through the other replica, returns the first result."""
    folder = fid()
    key = uuid.uuid4().hex
    with FencedClient(stack.urls[0]) as a, FencedClient(stack.urls[1]) as b:
        fa, fb = Folders(a), Folders(b)
        fa.create(folder, "Inbox")
        first = fa.update(folder, "Renamed", idempotency_key=key)
        again = fb.update(folder, "Renamed", idempotency_key=key)
        assert again == first
        assert first.command_id == key
        history = list(a.events("folders", folder))
        assert [e.command for e in history].count(key) == 1
        assert [e.version for e in history] == [1, 2]
        with pytest.raises(InvalidInput, match="different request"):
            fb.update(folder, "Something else", idempotency_key=key)


def test_retry_fails_over_from_a_dead_replica(stack: Stack) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    folder = fid()
    with FencedClient([dead, stack.urls[0]], deadline=20) as c:
        folders = Folders(c)
        assert folders.create(folder, "Inbox").version == 1
        assert c.get("folders", folder).version == 1


async def forge_stale_update(stack: Stack, folder: str, version: int) -> str:
    """Append what a zombie writer would: the next version, with a token below the lease's."""
    command = uuid.uuid4().hex
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            stack.settings.topic("folders"), encode_value({"name": "zombie"}), key=folder.encode(),
            partition=partition_for(folder, stack.settings.partitions),
            headers=event_headers(source="/zombie", subject=folder, event_type="FolderUpdated", version=version,
                                  token=1, command=command, index=0, count=1))
    finally:
        await producer.stop()
    return command


async def collect(events: AcceptedEvents, folder: str, last_version: int, timeout: float) -> list[ConsumedEvent]:
    mine: list[ConsumedEvent] = []
    async with asyncio.timeout(timeout):
        async for e in events:
            if e.resource_id == folder:
                mine.append(e)
                if e.version == last_version:
                    break
    return mine


async def test_accepted_events_yields_exactly_the_accepted_history(stack: Stack) -> None:
    folder = fid()
    async with AsyncFencedClient(stack.urls) as c:
        folders = AsyncFolders(c)
        await folders.create(folder, "Inbox")
        await folders.update(folder, "Work")
        zombie = await forge_stale_update(stack, folder, version=3)
        await folders.update(folder, "Done", expected_version=2)
        with pytest.raises(Conflict):
            await folders.update(folder, "refused", expected_version=2)
        last = await folders.destroy(folder)
        assert last.version == 4
        expected = [e async for e in c.events("folders", folder)]
    assert zombie not in {e.command for e in expected}

    discarded: list[Verdict] = []
    topic = stack.settings.topic("folders")
    async with AcceptedEvents(stack.kafka.bootstrap, topic, stack.settings.partitions,
                              on_discard=discarded.append) as follower:
        mine = await collect(follower, folder, last.version, timeout=120)
        assert [(e.version, e.type, dict(e.data), e.partition, e.offset, e.command) for e in mine] == \
            [(e.version, e.type, dict(e.data), e.partition, e.offset, e.command) for e in expected]
        assert follower.discards["stale"] >= 1
        assert any(v.command == zombie and v.reason == "stale" for v in discarded)
        state = follower.state(folder)
        assert state is not None and state.version == 4 and state.state["destroyed"]

    async with AcceptedEvents(stack.kafka.bootstrap, topic, stack.settings.partitions,
                              group_id=f"sdk-test-{uuid.uuid4().hex[:8]}", stop_at_end=True) as reader:
        async with asyncio.timeout(120):
            everything = [e async for e in reader]
    assert [(e.version, e.offset, e.command) for e in everything if e.resource_id == folder] == \
        [(e.version, e.offset, e.command) for e in expected]
    assert zombie not in {e.command for e in everything}
    assert reader.discards["stale"] >= 1

    with pytest.raises(ValueError, match="partitions"):
        async with AcceptedEvents(stack.kafka.bootstrap, topic, stack.settings.partitions + 1):
            pass
    with pytest.raises(LookupError):
        async with AcceptedEvents(stack.kafka.bootstrap, topic + "-missing", stack.settings.partitions):
            pass


async def test_raw_http_and_sdk_agree_on_problem_fields(stack: Stack) -> None:
    """The SDK reads current_version from the same problem+json a plain HTTP client sees."""
    folder = fid()
    async with AsyncFencedClient(stack.urls[0]) as c, httpx.AsyncClient(timeout=30) as raw:
        folders = AsyncFolders(c)
        await folders.create(folder, "x")
        r = await raw.post(f"{stack.urls[0]}/v1/folders/{folder}/commands",
                           json={"name": "Update", "data": {"name": "y"}, "expected_version": 0})
        assert r.status_code == 409
        assert r.headers["content-type"].startswith("application/problem+json")
        with pytest.raises(Conflict) as info:
            await folders.update(folder, "y", expected_version=0)
        assert info.value.current_version == r.json()["current_version"] == 1


# --- open streams: append and read --------------------------------------------------------------

def test_append_and_read_json_and_binary_events(stack: Stack) -> None:
    stream = fid()
    blob = bytes(range(256))
    with FencedClient(stack.urls) as c:
        first = c.append(LEDGER, stream, [EventData("Opened", {"owner": "ann"}, id="ev-1"),
                                          EventData("Scanned", data_bytes=blob),
                                          EventData("Photo", data_bytes=b"\x89PNG", datacontenttype="image/png")],
                         "no_stream")
        assert (first.version, [e.version for e in first.events]) == (3, [1, 2, 3])
        assert len({e.partition for e in first.events}) == 1
        assert [e.offset for e in first.events] == list(range(first.events[0].offset, first.events[0].offset + 3))
        opened, scanned, photo = c.read(LEDGER, stream)
        assert (opened.type, dict(opened.data), opened.data_bytes, opened.datacontenttype) == (
            "Opened", {"owner": "ann"}, None, "application/json")
        assert (scanned.data_bytes, dict(scanned.data), scanned.datacontenttype) == (
            blob, {}, "application/octet-stream")
        assert (photo.data_bytes, photo.datacontenttype) == (b"\x89PNG", "image/png")
        assert opened.command == first.command_id
        with pytest.raises(Conflict) as stale:
            c.append(LEDGER, stream, [EventData("Credited", {"cents": 5})], expected_version=2)
        assert stale.value.current_version == 3
        with pytest.raises(Conflict) as exists:
            c.append(LEDGER, stream, [EventData("Opened")], "no_stream")
        assert exists.value.current_version == 3
        assert c.append(LEDGER, stream, [EventData("Credited", {"cents": 5})], "exists").version == 4
        assert c.append(LEDGER, stream, [EventData("Noted")]).version == 5
        assert c.get(LEDGER, stream).version == 5
        with pytest.raises(InvalidInput):
            c.send(LEDGER, stream, "Append", {"events": []})
        with pytest.raises(InvalidInput):
            c.append("folders", stream, [EventData("FolderCreated", {"name": "x"})])


def test_read_ranges_orders_limits_and_pages(stack: Stack) -> None:
    stream = fid()
    with FencedClient(stack.urls[0]) as c:
        c.append(LEDGER, stream, [EventData("N", {"n": v}) for v in range(1, 31)], "no_stream")
        c.append(LEDGER, stream, [EventData("N", {"n": v}) for v in range(31, 41)], 30)

        def versions(**kw: Any) -> list[int]:
            return [e.version for e in c.read(LEDGER, stream, **kw)]

        assert versions() == list(range(1, 41))
        assert versions(page_size=7) == list(range(1, 41))
        assert versions(order="desc", page_size=7) == list(range(40, 0, -1))
        assert versions(from_version=5, to_version=12) == list(range(5, 13))
        assert versions(from_version=5, to_version=12, order="desc", page_size=3) == list(range(12, 4, -1))
        assert versions(order="desc", limit=1) == [40]
        assert versions(to_version=21, order="desc", limit=2) == [21, 20]
        assert versions(from_version=31, limit=4, page_size=3) == [31, 32, 33, 34]
        assert versions(from_version=41) == []
        assert versions(from_version=9, to_version=8) == []
        assert [e.data["n"] for e in c.read(LEDGER, stream, order="desc", limit=3)] == [40, 39, 38]
        assert list(c.events(LEDGER, stream, page_size=9)) == list(c.read(LEDGER, stream))
        with pytest.raises(NotFound, match="does not exist"):
            list(c.read(LEDGER, fid()))


async def test_async_append_read_and_a_retried_key(stack: Stack) -> None:
    stream = fid()
    key = uuid.uuid4().hex
    async with AsyncFencedClient(stack.urls) as c:
        one = await c.append(LEDGER, stream, [EventData("Opened", data_bytes=b"\x00")], "no_stream",
                             idempotency_key=key)
        again = await c.append(LEDGER, stream, [EventData("Opened", data_bytes=b"\x00")], "no_stream",
                               idempotency_key=key)
        assert again == one, "the same key and request answer the first result, not a 409"
        assert (await c.append(LEDGER, stream, [EventData("Next")], 1)).version == 2
        got = [(e.version, e.type, e.data_bytes) async for e in c.read(LEDGER, stream, order="desc")]
        assert got == [(2, "Next", None), (1, "Opened", b"\x00")]
        with pytest.raises(InvalidInput, match="different request"):
            await c.append(LEDGER, stream, [EventData("Other")], "no_stream", idempotency_key=key)
