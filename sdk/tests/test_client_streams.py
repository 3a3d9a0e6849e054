"""append, read and the folders wrappers of both clients, against an in-memory fake of the API.

:class:`FakeStreams` answers the open-stream routes (POST and GET ``/v1/{type}/{id}/events``)
the way ``service/api/routes.py`` does: versions from 1, the expected-version check, one answer
per Idempotency-Key, pages by ``from_version``/``to_version``/``order``/``limit``, 404 for a
stream without events. ``sdk/tests/test_eventsourcing_unit.py`` uses it too.
"""

from __future__ import annotations

import base64
import json
import random
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fenced_client import AsyncFencedClient, Conflict, Event, EventData, FencedClient, NotFound, OutcomeUnknown
from fenced_client.folders import AsyncFolders, Folders
from fenced_client.protocol import HistoryRead, parse_event

URL = "http://fenced.test"


def problem(status: int, title: str, detail: str, **extra: Any) -> httpx.Response:
    return httpx.Response(status, headers={"content-type": "application/problem+json"},
                          json={"type": "about:blank", "title": title, "status": status, "detail": detail, **extra})


class FakeStreams:
    """The open-stream routes of one open type, in memory. ``busy`` answers the next that many
    accepted appends 503 "Outcome unknown" *after* applying them (a lost answer); ``binary`` False
    answers histories as a server before binary data did (no datacontenttype/data_base64)."""

    def __init__(self, open_type: str = "ledger", *, binary: bool = True) -> None:
        self.open_type = open_type
        self.binary = binary
        self.streams: dict[str, list[dict[str, Any]]] = {}
        self.answers: dict[str, httpx.Response] = {}
        self.requests: list[httpx.Request] = []
        self.busy = 0

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        parts = request.url.path.split("/")  # '', 'v1', type, id, 'events'
        if len(parts) != 5 or parts[1] != "v1" or parts[4] != "events":
            return problem(404, "HTTP error", "Not Found")
        if parts[2] != self.open_type:
            return problem(404, "Not found", f"unknown resource type {parts[2]!r}",
                           type="urn:fenced:problem:unknown-resource-type")
        if request.method == "POST":
            return self._append(request, parts[3])
        return self._history(request, parts[3])

    def _append(self, request: httpx.Request, stream: str) -> httpx.Response:
        key = request.headers["idempotency-key"]
        answer = self.answers.get(key) or self._apply(request, stream, key)
        if self.busy and answer.status_code == 201:
            self.busy -= 1
            return problem(503, "Outcome unknown", "appended, no verdict before the deadline")
        return answer

    def _apply(self, request: httpx.Request, stream: str, key: str) -> httpx.Response:
        body = json.loads(request.content)
        events = self.streams.setdefault(stream, [])
        expected, version = body.get("expected_version", "any"), len(events)
        fails = ((expected == "no_stream" and version != 0) or (expected == "exists" and version == 0)
                 or (isinstance(expected, int) and expected != version))
        if fails:
            return problem(409, "Conflict", f"expected {expected}, the resource is at {version}",
                           current_version=version)
        refs = []
        for e in body["events"]:
            version += 1
            stored = {"version": version, "type": e["type"], "partition": 3, "offset": 100 + version,
                      "command": key, "time": "2030-01-01T00:00:00.000000Z"}
            if "data_base64" in e:
                stored |= {"datacontenttype": e["datacontenttype"], "data_base64": e["data_base64"]}
            else:
                stored |= {"datacontenttype": "application/json", "data": e.get("data", {})}
            events.append(stored)
            refs.append({"type": e["type"], "version": version, "partition": 3, "offset": 100 + version})
        answer = httpx.Response(201, json={"command_id": key, "version": version, "events": refs})
        self.answers[key] = answer
        return answer

    def _history(self, request: httpx.Request, stream: str) -> httpx.Response:
        events = self.streams.get(stream, [])
        if not events:
            return problem(404, "Not found", f"{self.open_type} {stream!r} does not exist",
                           type="urn:fenced:problem:no-such-resource")
        q = request.url.params
        from_version, limit, order = int(q.get("from_version", 1)), int(q.get("limit", 100)), q.get("order", "asc")
        assert 1 <= limit <= 1000 and from_version >= 1
        assert "to_version" not in q or int(q["to_version"]) >= 1, "the API takes to_version >= 1"
        top = len(events) if "to_version" not in q else min(int(q["to_version"]), len(events))
        low, high = ((from_version, min(top, from_version + limit - 1)) if order == "asc"
                     else (max(from_version, top - limit + 1), top))
        page = [dict(e) for e in events[low - 1:high]] if high >= low else []
        if order == "desc":
            page.reverse()
        if not self.binary:
            for e in page:
                e.pop("datacontenttype", None)
        return httpx.Response(200, json={
            "type": self.open_type, "id": stream, "events": page,
            "next_from_version": high + 1 if order == "asc" and high < top else None,
            "next_to_version": low - 1 if order == "desc" and low > from_version else None})


def no_sleep(seconds: float) -> None:
    pass


async def no_asleep(seconds: float) -> None:
    pass


@pytest.fixture
def fake() -> FakeStreams:
    return FakeStreams()


@pytest.fixture
def client(fake: FakeStreams) -> Iterator[FencedClient]:
    with FencedClient(URL, transport=fake.transport, sleep=no_sleep, rng=random.Random(1)) as c:
        yield c


# --- append -------------------------------------------------------------------------------------

def test_append_sends_json_and_binary_events_in_one_request(client: FencedClient, fake: FakeStreams) -> None:
    result = client.append("ledger", "a1", [EventData("Opened", {"owner": "ann"}, id="ev-1"),
                                           EventData("Blob", data_bytes=b"\x00\xffstate"),
                                           EventData("Pic", data_bytes=b"png", datacontenttype="image/png"),
                                           EventData("Noted")], "no_stream")
    assert (result.version, [e.version for e in result.events]) == (4, [1, 2, 3, 4])
    sent = json.loads(fake.requests[0].content)
    assert sent == {"expected_version": "no_stream", "events": [
        {"type": "Opened", "data": {"owner": "ann"}, "id": "ev-1"},
        {"type": "Blob", "data_base64": base64.b64encode(b"\x00\xffstate").decode(),
         "datacontenttype": "application/octet-stream"},
        {"type": "Pic", "data_base64": "cG5n", "datacontenttype": "image/png"},
        {"type": "Noted", "data": {}}]}
    assert result.command_id == fake.requests[0].headers["idempotency-key"]


def test_append_conflict_carries_the_current_version(client: FencedClient) -> None:
    client.append("ledger", "a1", [EventData("Opened")])
    assert client.append("ledger", "a1", [EventData("Credited")], expected_version=1).version == 2
    with pytest.raises(Conflict) as info:
        client.append("ledger", "a1", [EventData("Credited")], expected_version=1)
    assert info.value.current_version == 2
    with pytest.raises(Conflict) as none:
        client.append("ledger", "a1", [EventData("Opened")], "no_stream")
    assert none.value.current_version == 2
    with pytest.raises(Conflict) as missing:
        client.append("ledger", "a2", [EventData("Credited")], "exists")
    assert missing.value.current_version == 0


def test_append_is_retried_with_the_same_key_and_applied_once(client: FencedClient, fake: FakeStreams) -> None:
    """A lost answer (503 "Outcome unknown" after the append landed) is resent with the same key,
    so the retry answers the first append's result instead of a spurious 409."""
    fake.busy = 2
    result = client.append("ledger", "a1", [EventData("Opened")], "no_stream", idempotency_key="k-1")
    assert result.version == 1
    assert [r.headers["idempotency-key"] for r in fake.requests] == ["k-1"] * 3
    assert len(fake.streams["a1"]) == 1


def test_append_gives_up_as_outcome_unknown() -> None:
    fake = FakeStreams()
    fake.busy = 1000
    t = [0.0]

    def sleep(s: float) -> None:
        t[0] += s

    with FencedClient(URL, transport=fake.transport, clock=lambda: t[0], sleep=sleep, deadline=2.0) as c, \
            pytest.raises(OutcomeUnknown) as info:
        c.append("ledger", "a1", [EventData("Opened")])
    assert info.value.idempotency_key == fake.requests[0].headers["idempotency-key"]


@pytest.mark.parametrize(("events", "expected", "error"), [
    ([], "any", ValueError),
    (EventData("A"), "any", TypeError),
    ([{"type": "A"}], "any", TypeError),
    ([EventData("A")], "sometimes", ValueError),
    ([EventData("A")], -1, ValueError),
    ([EventData("A")], True, ValueError),
])
def test_append_checks_its_arguments_before_sending(client: FencedClient, fake: FakeStreams, events: Any,
                                                    expected: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        client.append("ledger", "a1", events, expected)
    assert fake.requests == []


def test_event_data_refuses_ambiguous_values() -> None:
    with pytest.raises(ValueError):
        EventData("A", {"x": 1}, data_bytes=b"x")
    with pytest.raises(ValueError):
        EventData("")
    with pytest.raises(ValueError):
        EventData("A", {"x": 1}, datacontenttype="text/plain")
    with pytest.raises(TypeError):
        EventData("A", data_bytes="text")  # type: ignore[arg-type]


# --- read ---------------------------------------------------------------------------------------

def fill(client: FencedClient, stream: str, n: int) -> None:
    client.append("ledger", stream, [EventData("N", {"n": v}) for v in range(1, n + 1)], "no_stream")


def versions(events: Iterator[Event]) -> list[int]:
    return [e.version for e in events]


def test_read_ranges_orders_and_limits(client: FencedClient, fake: FakeStreams) -> None:
    fill(client, "a1", 25)
    assert versions(client.read("ledger", "a1")) == list(range(1, 26))
    assert versions(client.read("ledger", "a1", order="desc")) == list(range(25, 0, -1))
    assert versions(client.read("ledger", "a1", from_version=5, to_version=9)) == [5, 6, 7, 8, 9]
    assert versions(client.read("ledger", "a1", from_version=5, to_version=9, order="desc")) == [9, 8, 7, 6, 5]
    assert versions(client.read("ledger", "a1", order="desc", limit=1)) == [25]
    assert versions(client.read("ledger", "a1", to_version=11, order="desc", limit=3)) == [11, 10, 9]
    assert versions(client.read("ledger", "a1", from_version=24, limit=5)) == [24, 25]
    assert versions(client.read("ledger", "a1", from_version=26)) == []
    before = len(fake.requests)
    assert versions(client.read("ledger", "a1", limit=0)) == []
    assert versions(client.read("ledger", "a1", from_version=5, to_version=4)) == []
    assert versions(client.read("ledger", "a1", to_version=0)) == []
    assert len(fake.requests) == before, "an empty range sends nothing (the API takes no to_version 0)"


def test_read_pages_up_or_down_and_stops_at_the_limit(client: FencedClient, fake: FakeStreams) -> None:
    fill(client, "a1", 25)
    del fake.requests[:]
    assert versions(client.read("ledger", "a1", page_size=10)) == list(range(1, 26))
    assert [dict(r.url.params) for r in fake.requests] == [
        {"from_version": str(v), "limit": "10"} for v in (1, 11, 21)]
    del fake.requests[:]
    assert versions(client.read("ledger", "a1", order="desc", page_size=10, limit=23)) == list(range(25, 2, -1))
    assert [dict(r.url.params) for r in fake.requests] == [
        {"from_version": "1", "limit": "10", "order": "desc"},
        {"from_version": "1", "limit": "10", "order": "desc", "to_version": "15"},
        {"from_version": "1", "limit": "3", "order": "desc", "to_version": "5"}]
    del fake.requests[:]
    assert versions(client.read("ledger", "a1", from_version=3, page_size=4, limit=6)) == [3, 4, 5, 6, 7, 8]
    assert [dict(r.url.params)["limit"] for r in fake.requests] == ["4", "2"], "the last page asks only for the rest"


def test_read_decodes_binary_events_and_old_answers(client: FencedClient, fake: FakeStreams) -> None:
    client.append("ledger", "a1", [EventData("J", {"k": [1, 2]}), EventData("B", data_bytes=b"\x00\x01"),
                                   EventData("P", data_bytes=b"p", datacontenttype="image/png")])
    j, b, p = client.read("ledger", "a1")
    assert (j.data, j.data_bytes, j.datacontenttype) == ({"k": [1, 2]}, None, "application/json")
    assert (b.data, b.data_bytes, b.datacontenttype) == ({}, b"\x00\x01", "application/octet-stream")
    assert (p.data_bytes, p.datacontenttype) == (b"p", "image/png")
    fake.binary = False  # a server before binary data: no datacontenttype on JSON events
    assert next(client.read("ledger", "a1")).datacontenttype == "application/json"
    assert parse_event({"version": 1, "type": "T", "data": {"a": 1}, "partition": 0, "offset": 0, "command": "c",
                        "time": "t"}) == Event(1, "T", {"a": 1}, 0, 0, "c", "t")


def test_read_of_a_stream_without_events_is_not_found(client: FencedClient) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        list(client.read("ledger", "nothing"))
    with pytest.raises(NotFound, match="unknown resource type"):
        list(client.read("other", "x"))


@pytest.mark.parametrize("kwargs", [{"from_version": 0}, {"to_version": -1}, {"order": "up"}, {"limit": -1},
                                    {"page_size": 0}, {"page_size": 1001}])
def test_read_checks_its_arguments_at_the_call(client: FencedClient, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        client.read("ledger", "a1", **kwargs)


def test_history_read_without_io() -> None:
    h = HistoryRead("ledger", "a b", from_version=2, order="desc", limit=5)
    call = h.next_call()
    assert call is not None and call.path == "/v1/ledger/a%20b/events"
    assert dict(call.params) == {"from_version": 2, "limit": 5, "order": "desc"}


# --- the async client ---------------------------------------------------------------------------

async def test_async_append_and_read(fake: FakeStreams) -> None:
    fake.busy = 1
    async with AsyncFencedClient(URL, transport=fake.transport, sleep=no_asleep) as c:
        assert (await c.append("ledger", "a1", [EventData("A", data_bytes=b"x"), EventData("B", {"n": 1})],
                               "no_stream")).version == 2
        with pytest.raises(Conflict) as info:
            await c.append("ledger", "a1", [EventData("C")], 1)
        assert info.value.current_version == 2
        assert [(e.version, e.data_bytes) async for e in c.read("ledger", "a1", order="desc")] == [(2, None),
                                                                                                    (1, b"x")]
        assert [e.version async for e in c.read("ledger", "a1", limit=1)] == [1]
        assert [e.version async for e in c.events("ledger", "a1", page_size=1)] == [1, 2]


# --- the folders wrappers and the deprecated shims ----------------------------------------------

def folders_transport(seen: list[dict[str, Any]]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append({"path": request.url.path, **json.loads(request.content or b"{}")})
        if request.method == "GET":
            return httpx.Response(200, json={"type": "folders", "id": "f1", "version": 1, "destroyed": False,
                                             "state": {"name": "Inbox"}})
        return httpx.Response(201, json={"command_id": "k", "version": 1, "events": []})
    return httpx.MockTransport(handler)


def test_folders_wrapper_sends_the_folder_commands() -> None:
    seen: list[dict[str, Any]] = []
    with FencedClient(URL, transport=folders_transport(seen)) as c:
        folders = Folders(c)
        folders.create("f1", "Inbox", parent_id="root")
        folders.update("f1", "Archive", expected_version=1)
        folders.destroy("f1", 2)
        assert folders.get("f1").state == {"name": "Inbox"}
    assert seen[:3] == [
        {"path": "/v1/folders/f1/commands", "name": "Create", "data": {"name": "Inbox", "parent_id": "root"}},
        {"path": "/v1/folders/f1/commands", "name": "Update", "data": {"name": "Archive"}, "expected_version": 1},
        {"path": "/v1/folders/f1/commands", "name": "Destroy", "data": {}, "expected_version": 2}]


async def test_async_folders_wrapper() -> None:
    seen: list[dict[str, Any]] = []
    async with AsyncFencedClient(URL, transport=folders_transport(seen)) as c:
        folders = AsyncFolders(c)
        await folders.create("f1", "Inbox")
        await folders.update("f1", "A", 1)
        await folders.destroy("f1")
        assert (await folders.get("f1")).version == 1
    assert [s.get("name") for s in seen] == ["Create", "Update", "Destroy", None]


def test_the_clients_folder_methods_still_work_and_are_deprecated() -> None:
    seen: list[dict[str, Any]] = []
    with FencedClient(URL, transport=folders_transport(seen)) as c:
        with pytest.warns(DeprecationWarning, match=r"Folders\(client\)\.create") as caught:
            c.create("f1", "Inbox")
        assert caught[0].filename == __file__, "the warning names the caller's line"
        with pytest.warns(DeprecationWarning, match="update"):
            c.update("f1", "A", 1)
        with pytest.warns(DeprecationWarning, match="destroy"):
            c.destroy("f1")
    assert [s["name"] for s in seen] == ["Create", "Update", "Destroy"]


async def test_the_async_clients_folder_methods_are_deprecated() -> None:
    seen: list[dict[str, Any]] = []
    async with AsyncFencedClient(URL, transport=folders_transport(seen)) as c:
        with pytest.warns(DeprecationWarning, match=r"AsyncFolders\(client\)\.create"):
            await c.create("f1", "Inbox")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            await c.update("f1", "A")
            await c.destroy("f1")
    assert [s["name"] for s in seen] == ["Create", "Update", "Destroy"]
