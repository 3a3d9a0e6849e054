"""What the API takes, the log keeps; what the API returns, the log holds (issue 12, part 3).

Through the real stack (two API replicas, the projector, Kafka, Redis): awkward but valid JSON
(integers beyond int64, 1e308, 5e-324, 0.1, -0.0, unicode escapes, nested arrays) comes back
from ``GET /v1/{type}/{id}`` and ``GET .../events`` exactly as the record value decodes, and
input the log could not keep as JSON (``NaN``, ``Infinity``, ``1E400``, lone surrogates) is
refused with a 422 that names it. "Exactly" is strict: ``-0.0`` is not ``0``, ``1.0`` is not
``1`` (:func:`same`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devstack.stack import Stack
from fenced_client import wire

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def fid() -> str:
    return f"j-{uuid.uuid4().hex[:10]}"


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values, and of the same kind: Python's ``==`` takes -0.0 for 0, 1.0 for 1
    and True for 1; ``json.dumps`` of a double is its shortest round trip, so this does not."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_same_is_strict() -> None:
    assert same({"a": [1, 0.1]}, {"a": [1, 0.1]})
    assert not same(-0.0, 0.0)
    assert not same(1.0, 1)
    assert not same(True, 1)
    assert not same(2**64 + 1, float(2**64 + 1))


async def logged_value(stack: Stack, partition: int, offset: int) -> Any:
    """The record value at (partition, offset) of the folders topic, decoded as JSON."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(stack.settings.topic("folders"), partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        record = await consumer.getone(tp)
        assert record.offset == offset
        return json.loads(record.value)
    finally:
        await consumer.stop()


async def produce(stack: Stack, key: str, value: bytes, event_type: str = "FolderCreated",
                  version: int = 1) -> tuple[int, int]:
    """One event record as another producer following the wire format would write it."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        headers = wire.event_headers(source="/fidelity-test", subject=key, event_type=event_type, version=version,
                                     token=(1 << 32) + 1, command=uuid.uuid4().hex, index=0, count=1)
        meta = await producer.send_and_wait(stack.settings.topic("folders"), value=value, key=key.encode(),
                                            partition=wire.partition_for(key, stack.settings.partitions),
                                            headers=headers)
        return meta.partition, meta.offset
    finally:
        await producer.stop()


async def wait_for(client: httpx.AsyncClient, url: str, version: int) -> dict[str, Any]:
    for _ in range(200):
        r = await client.get(url)
        if r.status_code == 200 and r.json()["version"] >= version:
            return dict(r.json())
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never reached version {version}: {r.status_code} {r.text}")


# Every value here is valid JSON (RFC 8259) that the protocol keeps: numbers that are finite
# doubles, however many digits, and Unicode text however escaped.
AWKWARD: list[tuple[str, bytes]] = [
    ("int64 max", b"9223372036854775807"),
    ("int64 max + 1", b"9223372036854775808"),
    ("2**64 + 1", b"18446744073709551617"),
    ("below int64 min", b"-9223372036854775809"),
    ("30 digits", b"123456789012345678901234567890"),
    ("300 digits", b"9" * 300),
    ("1e308", b"1e308"),
    ("largest double", b"1.7976931348623157e308"),
    ("5e-324", b"5e-324"),
    ("underflow to 0", b"1e-400"),
    ("0.1", b"0.1"),
    ("-0.0", b"-0.0"),
    ("-0", b"-0"),
    ("1.0", b"1.0"),
    ("1E2", b"1E2"),
    ("17 significant digits", b"0.30000000000000004"),
    ("unicode escapes", b'"\\u00e9\\ud83d\\ude00\\u2028\\u2029\\u0000\\u001f\\u007f\\"\\\\\\/"'),
    ("raw UTF-8", '"Ordner \u00fc \u65e5\u672c \U0001f600"'.encode()),
    ("nested arrays", b'[[[]],[1,[2.5,[-0.0,["x",[null,true,false]]]]],{}]'),
    ("object", b'{"\\u00e9":{"a":[{"b":18446744073709551617}]},"":0}'),
]


@pytest.mark.parametrize("case", [c[0] for c in AWKWARD])
async def test_api_returns_what_the_log_holds(stack: Stack, case: str) -> None:
    """A FolderCreated from another producer whose name and data hold the awkward value: the
    state and the history the API serves equal the record value, decoded as JSON."""
    literal = dict(AWKWARD)[case]
    key = fid()
    value = b'{"name":' + literal + b',"parent_id":null,"extra":{"v":[' + literal + b"]}}"
    partition, offset = await produce(stack, key, value)
    url = f"{stack.urls[0]}/v1/folders/{key}"
    async with httpx.AsyncClient(timeout=30) as client:
        resource = await wait_for(client, url, 1)
        events = (await client.get(f"{url}/events")).json()["events"]
    logged = await logged_value(stack, partition, offset)
    assert same(logged, json.loads(value))
    assert same(resource["state"]["name"], logged["name"]), (resource, logged)
    assert [e["offset"] for e in events] == [offset]
    assert same(events[0]["data"], logged), (events[0]["data"], logged)


async def test_api_commands_keep_unicode_exactly(stack: Stack) -> None:
    """A Create through the API: the name, sent with escapes, is the name the log holds, the
    state holds and the history holds."""
    key = fid()
    body = (b'{"name":"Create","data":{"name":"\\u00e9\\ud83d\\ude00 \\u2028 \\u0000 \\"q\\" \\\\ ' +
            "\u65e5\u672c".encode() + b'","parent_id":"p-\\u00f8","ignored":18446744073709551617}}')
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{stack.urls[0]}/v1/folders/{key}/commands", content=body,
                              headers={"content-type": "application/json"})
        assert r.status_code == 201, r.text
        ref = r.json()["events"][0]
        resource = (await client.get(f"{stack.urls[1]}/v1/folders/{key}")).json()
        events = (await client.get(f"{stack.urls[1]}/v1/folders/{key}/events")).json()["events"]
    logged = await logged_value(stack, ref["partition"], ref["offset"])
    sent = json.loads(body)["data"]
    assert same(logged, {"name": sent["name"], "parent_id": sent["parent_id"]})
    assert same(events[0]["data"], logged)
    assert same({k: resource["state"][k] for k in ("name", "parent_id")}, logged)


NOT_JSON: list[tuple[bytes, list[Any], str]] = [
    (b'{"name":"x","ratio":NaN}', ["ratio"], "NaN"),
    (b'{"name":"x","n":[1,{"v":Infinity}]}', ["n", 1, "v"], "Infinity"),
    (b'{"name":"x","n":-Infinity}', ["n"], "-Infinity"),
    (b'{"name":"x","big":1E400}', ["big"], "1E400"),
    (b'{"name":"x","big":[-1.5e999]}', ["big", 0], "-1.5e999"),
    (b'{"name":"x","n":' + b"9" * 400 + b"}", ["n"], "9999"),
    (b'{"name":"x\\ud800"}', ["name"], "lone surrogate"),
    (b'{"name":"x","\\udfff":1}', ["\\udfff"], "lone surrogate"),
]


@pytest.mark.parametrize(("data", "where", "named"), NOT_JSON,
                         ids=["NaN", "Infinity", "-Infinity", "1E400", "-1.5e999", "400 digits",
                              "lone surrogate", "lone surrogate name"])
async def test_values_the_log_cannot_keep_are_refused(stack: Stack, data: bytes, where: list[Any],
                                                      named: str) -> None:
    """Python's parser takes NaN, Infinity and 1E400 (as inf); the API used to append them and
    then answer ``null`` where the log held ``NaN``. Now: 422, nothing appended."""
    key = fid()
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{stack.urls[0]}/v1/folders/{key}/commands",
                              content=b'{"name":"Create","data":' + data + b"}",
                              headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == PROBLEM
        problem = r.json()
        assert problem["title"] == "Invalid input"
        assert problem["errors"][0]["loc"] == ["body", "data", *[str(w) for w in where]], problem
        assert named in problem["detail"], problem
        assert (await client.get(f"{stack.urls[1]}/v1/folders/{key}")).status_code == 404


LOG_NOT_JSON: list[bytes] = [
    b'{"name":NaN}', b'{"name":"x","n":Infinity}', b'{"name":1E400}', b'{"name":"\\ud800"}',
    b'{"name":"x","name":"y"}', b"\xef\xbb\xbf" + b'{"name":"x"}', '{"name":"x"}'.encode("utf-16"),
    b'{"name":"x","n":' + b"[" * 1000 + b"]" * 1000 + b"}",
]


async def test_the_projector_reads_values_that_are_not_json_as_malformed(stack: Stack) -> None:
    """The consumer side of the same rule: such a record is malformed, so the stream it names
    gets no accepted event, and a good Create after it is version 1."""
    keys = [fid() for _ in LOG_NOT_JSON]
    for key, value in zip(keys, LOG_NOT_JSON, strict=True):
        await produce(stack, key, value)
    async with httpx.AsyncClient(timeout=30) as client:
        for key in keys:
            r = await client.post(f"{stack.urls[0]}/v1/folders/{key}/commands",
                                  json={"name": "Create", "data": {"name": "after"}})
            assert r.status_code == 201, r.text
            assert r.json()["version"] == 1
            resource = (await client.get(f"{stack.urls[1]}/v1/folders/{key}")).json()
            assert resource["state"]["name"] == "after"
