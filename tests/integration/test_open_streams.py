"""Open streams (issue #13, part 1): events the client decides, appended with an expected version.

A real stack serves ``folders`` (decided) and ``ledger`` (open, ``FENCED_OPEN_TYPES``).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack import KafkaBroker, RedisServer
from devstack.stack import Stack
from fenced_client.domain.open import expectation_fails

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def open_stack(workdir: Path, kafka: KafkaBroker, redis_server: RedisServer) -> Iterator[Stack]:
    s = Stack(workdir / "stacks", kafka, redis_server, extra_env={"FENCED_OPEN_TYPES": "ledger"}).start()
    yield s
    s.stop()


def sid() -> str:
    return f"s-{uuid.uuid4().hex[:8]}"


def append(url: str, stream: str, events: list[dict[str, Any]], expected: Any = None,
           key: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"events": events}
    if expected is not None:
        body["expected_version"] = expected
    headers = {"Idempotency-Key": key} if key else {}
    return httpx.post(f"{url}/v1/ledger/{stream}/events", json=body, headers=headers, timeout=20)


def test_expected_versions(open_stack: Stack) -> None:
    url, s = open_stack.urls[0], sid()
    assert append(url, s, [{"type": "Opened"}], "exists").status_code == 409
    first = append(url, s, [{"type": "Opened", "data": {"owner": "ann"}, "id": "ev-1"}], "no_stream")
    assert first.status_code == 201 and first.json()["version"] == 1
    again = append(url, s, [{"type": "Opened"}], "no_stream")
    assert again.status_code == 409 and again.json()["current_version"] == 1
    assert append(url, s, [{"type": "Credited", "data": {"cents": 5}}], "exists").json()["version"] == 2
    stale = append(url, s, [{"type": "Credited"}], 1)
    assert (stale.status_code, stale.json()["detail"]) == (409, "expected version 1, the resource is at 2")
    both = append(url, s, [{"type": "Debited", "data": {"cents": 2}}, {"type": "Debited", "data": {"cents": 1}}], 2)
    assert both.status_code == 201 and [e["version"] for e in both.json()["events"]] == [3, 4]
    assert append(url, s, [{"type": "Noted"}], "any").json()["version"] == 5
    history = httpx.get(f"{url}/v1/ledger/{s}/events", timeout=20).json()["events"]
    assert [(e["version"], e["type"], e["data"]) for e in history] == [
        (1, "Opened", {"owner": "ann"}), (2, "Credited", {"cents": 5}), (3, "Debited", {"cents": 2}),
        (4, "Debited", {"cents": 1}), (5, "Noted", {})]
    got = httpx.get(f"{url}/v1/ledger/{s}", timeout=20).json()
    assert (got["version"], got["destroyed"]) == (5, False)


def test_the_log_keeps_the_clients_event_ids_and_one_batch_per_append(open_stack: Stack) -> None:
    url, s = open_stack.urls[0], sid()
    body = append(url, s, [{"type": "A", "id": "x-1"}, {"type": "B", "id": "x-2"}], "no_stream").json()
    offsets = [e["offset"] for e in body["events"]]
    assert offsets[1] == offsets[0] + 1
    replay = asyncio.run(_replay(open_stack))
    accepted = [e for v in replay.verdicts if v.accepted and v.stream == s for e in v.events]
    assert [(e.type, e.event_id, e.version) for e in accepted] == [("A", "x-1", 1), ("B", "x-2", 2)]


async def _replay(stack: Stack) -> Any:
    from fenced_client import domain
    from fenced_client.domain.plugins import install
    from service.read.replay import replay_topic
    install("", (), ("ledger",))
    decider = domain.get("ledger")
    assert decider is not None
    return await replay_topic(stack.kafka.bootstrap, stack.settings.topic("ledger"), decider, stack.settings.partitions)


def test_concurrent_appends_at_one_expected_version_from_both_replicas_accept_one(open_stack: Stack) -> None:
    s = sid()
    assert append(open_stack.urls[0], s, [{"type": "Opened"}], "no_stream").status_code == 201

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=20) as http:
            return await asyncio.gather(*(
                http.post(f"{open_stack.urls[i % 2]}/v1/ledger/{s}/events",
                          json={"events": [{"type": "Took", "data": {"by": i}}], "expected_version": 1})
                for i in range(10)))

    answers = asyncio.run(race())
    assert sorted(r.status_code for r in answers) == [201] + [409] * 9
    assert all(r.json()["current_version"] == 2 for r in answers if r.status_code == 409)


def test_idempotency_key_and_bad_input(open_stack: Stack) -> None:
    url, s = open_stack.urls[0], sid()
    key = uuid.uuid4().hex
    one = append(url, s, [{"type": "Opened"}], "no_stream", key=key)
    two = append(url, s, [{"type": "Opened"}], "no_stream", key=key)
    assert one.status_code == two.status_code == 201 and one.json() == two.json()
    assert append(url, s, [{"type": "Other"}], "no_stream", key=key).status_code == 422  # the key, another body
    for bad in ([], [{"type": ""}], [{"type": "fenced.fence"}], [{"type": "A", "data": [1]}],
                [{"type": "A\u0000"}], [{"type": "A", "extra": 1}]):
        r = append(url, s, bad)
        assert r.status_code == 422, (bad, r.text)
    r = httpx.post(f"{url}/v1/ledger/{s}/events", content=b'{"events": [{"type": "A", "data": {"x": NaN}}]}',
                   headers={"content-type": "application/json"}, timeout=20)
    assert r.status_code == 422 and "NaN" in r.text
    assert append(url, s, [{"type": "A"}], "sometimes").status_code == 422
    assert append(url, s, [{"type": "A"}], -1).status_code == 422
    # an open type takes no commands, a decided type no appends
    assert httpx.post(f"{url}/v1/ledger/{s}/commands", json={"name": "Append", "data": {}},
                      timeout=20).status_code == 422
    assert httpx.post(f"{url}/v1/folders/{s}/events", json={"events": [{"type": "FolderCreated"}]},
                      timeout=20).status_code == 422
    assert httpx.get(f"{url}/v1/ledger/{s}", timeout=20).json()["version"] == 1, "nothing else was appended"


@pytest.mark.parametrize(("expected", "version", "fails"), [
    ("any", 0, False), ("any", 7, False), (None, 3, False), ("no_stream", 0, False), ("no_stream", 1, True),
    ("exists", 0, True), ("exists", 2, False), (2, 2, False), (2, 3, True), (0, 0, False)])
def test_expectations(expected: Any, version: int, fails: bool) -> None:
    assert (expectation_fails(expected, version) is not None) == fails


def test_history_reads_forwards_backwards_and_in_ranges(open_stack: Stack) -> None:
    """What pyeventsourcing's select_events(gt, lte, desc, limit) needs of the history route."""
    url, s = open_stack.urls[0], sid()
    assert append(url, s, [{"type": f"E{i}"} for i in range(1, 8)], "no_stream").status_code == 201

    def page(**params: Any) -> tuple[list[int], int | None, int | None]:
        body = httpx.get(f"{url}/v1/ledger/{s}/events", params=params, timeout=20).json()
        return [e["version"] for e in body["events"]], body["next_from_version"], body["next_to_version"]

    assert page() == ([1, 2, 3, 4, 5, 6, 7], None, None)
    assert page(limit=3) == ([1, 2, 3], 4, None)
    assert page(from_version=3, to_version=5) == ([3, 4, 5], None, None)
    assert page(order="desc") == ([7, 6, 5, 4, 3, 2, 1], None, None)
    assert page(order="desc", limit=3) == ([7, 6, 5], None, 4)
    assert page(order="desc", to_version=4, limit=3) == ([4, 3, 2], None, 1)
    assert page(order="desc", from_version=3, to_version=9, limit=10) == ([7, 6, 5, 4, 3], None, None)
    assert page(from_version=6, to_version=2) == ([], None, None)
    assert httpx.get(f"{url}/v1/ledger/{s}/events", params={"order": "sideways"}, timeout=20).status_code == 422


BYTES = bytes(range(256)) + b"\x00\xff not utf-8: \xc3\x28"


def test_binary_data_keeps_its_bytes_and_content_type_through_log_api_and_consumer(open_stack: Stack) -> None:
    url, s = open_stack.urls[0], sid()
    events = [{"type": "Blob", "data_base64": base64.b64encode(BYTES).decode(), "datacontenttype": "image/png"},
              {"type": "Raw", "data_base64": ""},  # empty bytes, default media type
              {"type": "Json", "data": {"k": 1}}]
    assert append(url, s, events, "no_stream").status_code == 201
    history = httpx.get(f"{url}/v1/ledger/{s}/events", timeout=20).json()["events"]
    assert [(e["type"], e["datacontenttype"], e.get("data"), e.get("data_base64")) for e in history] == [
        ("Blob", "image/png", None, base64.b64encode(BYTES).decode()),
        ("Raw", "application/octet-stream", None, ""),
        ("Json", "application/json", {"k": 1}, None)]

    async def consume() -> list[Any]:
        from fenced_client.consumer import AcceptedEvents
        got = []
        async with AcceptedEvents(open_stack.kafka.bootstrap, open_stack.settings.topic("ledger"),
                                  open_stack.settings.partitions, decider="ledger", stop_at_end=True) as consumer:
            async for e in consumer:
                if e.resource_id == s:
                    got.append((e.type, e.datacontenttype, e.data_bytes, dict(e.data)))
        return got

    from fenced_client.domain.plugins import install
    install("", (), ("ledger",))
    assert asyncio.run(consume()) == [("Blob", "image/png", BYTES, {}),
                                      ("Raw", "application/octet-stream", b"", {}),
                                      ("Json", "application/json", None, {"k": 1})]
    # the record value is the bytes as they are, and content-type the media type (CloudEvents binary mode)
    replay = asyncio.run(_replay(open_stack))
    blob = next(e for v in replay.verdicts if v.accepted and v.stream == s for e in v.events)
    assert (blob.data_bytes, blob.datacontenttype) == (BYTES, "image/png")


def test_binary_data_bad_input_is_a_422_that_writes_nothing(open_stack: Stack) -> None:
    url, s = open_stack.urls[0], sid()
    for bad in ([{"type": "A", "data_base64": "not base64!"}],
                [{"type": "A", "data_base64": "QQ"}],  # no padding
                [{"type": "A", "data_base64": "QR=="}],  # padding bits not zero: b"A" is QQ==
                [{"type": "A", "data_base64": "QQ==\n"}],
                [{"type": "A", "data": {}, "data_base64": "QQ=="}],
                [{"type": "A", "data": {}, "datacontenttype": "image/png"}],
                [{"type": "A", "data_base64": "QQ==", "datacontenttype": "application/json"}],
                [{"type": "A", "data_base64": "QQ==", "datacontenttype": "no-slash"}],
                [{"type": "A", "data_base64": "QQ==", "datacontenttype": "a/b\u00e9"}],
                [{"type": "A", "data_base64": 5}]):
        r = append(url, s, bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["detail"], r.text
    assert httpx.get(f"{url}/v1/ledger/{s}", timeout=20).status_code == 404, "nothing was appended"


def test_limits_of_an_append_answer_a_clear_4xx(open_stack: Stack) -> None:
    url, s = open_stack.urls[0], sid()
    limit = open_stack.settings.max_events_per_command
    many = append(url, s, [{"type": "E"}] * (limit + 1))
    assert many.status_code == 422 and "FENCED_MAX_EVENTS_PER_COMMAND" in many.json()["detail"]
    big = append(url, s, [{"type": "E", "data_base64": base64.b64encode(b"x" * open_stack.settings.max_body_bytes)
                           .decode()}])
    assert big.status_code == 413, big.text
    assert httpx.get(f"{url}/v1/ledger/{s}", timeout=20).status_code == 404, "nothing was appended"
    assert append(url, s, [{"type": "E"}] * limit).json()["version"] == limit


def test_the_answers_a_client_tells_apart_have_a_problem_type(open_stack: Stack) -> None:
    url, s = open_stack.urls[0], sid()
    cases = [(httpx.get(f"{url}/v1/carts/{s}", timeout=20), 404, "unknown-resource-type"),
             (httpx.get(f"{url}/v1/ledger/{s}/events", timeout=20), 404, "no-such-resource"),
             (httpx.post(f"{url}/v1/ledger/{s}/commands", json={"name": "Append"}, timeout=20), 422, "open-type"),
             (httpx.post(f"{url}/v1/folders/{s}/events", json={"events": [{"type": "A"}]}, timeout=20), 422,
              "decided-type")]
    for r, status, kind in cases:
        assert (r.status_code, r.json()["type"]) == (status, f"urn:fenced:problem:{kind}"), r.text
    assert append(url, s, [{"type": "A"}], 3).json()["type"] == "about:blank"  # a 409 says all with its status
