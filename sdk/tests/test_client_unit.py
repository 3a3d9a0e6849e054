"""The SDK's HTTP handling against httpx.MockTransport: errors, retries, deadline, pages.

Time is injected: the clients sleep on a fake clock, so no test really waits.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from fenced_client import (
    AsyncFencedClient,
    Busy,
    CommandResult,
    Conflict,
    EventRef,
    FencedClient,
    FencedError,
    Gone,
    InvalidInput,
    NotFound,
    OutcomeUnknown,
)
from fenced_client.consumer import AcceptedEvents
from fenced_client.errors import from_problem
from fenced_client.folders import AsyncFolders, Folders
from fenced_client.protocol import retry_after
from fenced_client.retry import Attempts, RetryPolicy

URL = "http://fenced.test"
Handler = Callable[[httpx.Request], httpx.Response]


class FakeTime:
    """A monotonic clock that only moves when the client sleeps (or a handler says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


class Recorder:
    """A MockTransport handler answering from a script, recording each request."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer

    @property
    def keys(self) -> list[str | None]:
        return [r.headers.get("idempotency-key") for r in self.requests]


def problem(status: int, title: str, detail: str = "d", *, retry: int | None = None, **extra: Any) -> httpx.Response:
    headers = {"Retry-After": str(retry)} if retry is not None else {}
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return httpx.Response(status, headers={"content-type": "application/problem+json", **headers},
                          content=json.dumps(body).encode())


CREATED = {"command_id": "k", "version": 1, "events": [{"type": "FolderCreated", "version": 1, "partition": 3,
                                                        "offset": 7}]}


def created(body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.Response(201, json=body or CREATED)


def client(rec: Recorder, t: FakeTime, *, urls: str | list[str] = URL, deadline: float = 30.0,
           **kw: Any) -> FencedClient:
    return FencedClient(urls, transport=httpx.MockTransport(rec), clock=t.clock, sleep=t.sleep,
                        rng=random.Random(1), deadline=deadline, **kw)


def aclient(rec: Recorder, t: FakeTime, *, deadline: float = 30.0) -> AsyncFencedClient:
    return AsyncFencedClient(URL, transport=httpx.MockTransport(rec), clock=t.clock, sleep=t.asleep,
                             rng=random.Random(1), deadline=deadline)


# --- error mapping ---------------------------------------------------------------------------

@pytest.mark.parametrize(("answer", "cls", "status"), [
    (problem(404, "Not found"), NotFound, 404),
    (problem(409, "Conflict", current_version=4), Conflict, 409),
    (problem(410, "Gone", current_version=3), Gone, 410),
    (problem(413, "Payload too large"), InvalidInput, 413),
    (problem(422, "Invalid input", errors=[{"loc": ["body"], "msg": "x"}]), InvalidInput, 422),
    (problem(500, "Internal error"), FencedError, 500),
    (httpx.Response(400, text="<html>bad</html>"), FencedError, 400),
])
def test_4xx_and_500_map_to_their_error_and_are_sent_once(answer: httpx.Response, cls: type[FencedError],
                                                          status: int) -> None:
    t = FakeTime()
    rec = Recorder(answer)
    with client(rec, t) as c, pytest.raises(FencedError) as info:
        Folders(c).update("f1", "n", idempotency_key="key-1")
    err = info.value
    assert type(err) is cls
    assert err.status == status
    assert not err.retriable
    assert err.idempotency_key == "key-1"
    assert len(rec.requests) == 1, "a 4xx (or 500) answer is never retried"
    assert t.sleeps == []


def test_conflict_carries_current_version_and_a_useful_repr() -> None:
    rec = Recorder(problem(409, "Conflict", "expected version 1, the resource is at 4", current_version=4))
    with client(rec, FakeTime()) as c, pytest.raises(Conflict) as info:
        Folders(c).update("f1", "n", expected_version=1, idempotency_key="abc")
    assert info.value.current_version == 4
    assert info.value.detail == "expected version 1, the resource is at 4"
    assert repr(info.value) == ("Conflict(status=409, title='Conflict', detail='expected version 1, the resource "
                                "is at 4', current_version=4, idempotency_key='abc')")
    assert json.loads(rec.requests[0].content) == {"name": "Update", "data": {"name": "n"}, "expected_version": 1}


@pytest.mark.parametrize(("title", "cls"), [("Busy", Busy), ("Unavailable", Busy),
                                            ("Outcome unknown", OutcomeUnknown)])
def test_503_maps_by_title_and_is_retriable(title: str, cls: type[FencedError]) -> None:
    err = from_problem(503, {"title": title, "detail": "x", "retry_after": 0.5}, "", retry_after=None)
    assert type(err) is cls
    assert err.retriable
    assert err.retry_after == 0.5


def test_answers_that_are_not_problem_json() -> None:
    assert type(from_problem(503, None, "")) is Busy
    assert from_problem(503, None, "").title == "Unavailable"
    gateway = from_problem(502, None, "<html>502 Bad Gateway</html>")
    assert type(gateway) is OutcomeUnknown, "a gateway may have passed the request on"
    assert gateway.detail == "<html>502 Bad Gateway</html>"
    assert type(from_problem(418, ["not", "an", "object"], "")) is FencedError
    assert from_problem(409, {"current_version": True}, "").current_version is None


def test_retry_after_header_forms() -> None:
    assert retry_after(httpx.Response(503, headers={"Retry-After": "3"})) == 3.0
    when = datetime(2030, 1, 1, tzinfo=UTC)
    dated = httpx.Response(503, headers={"Retry-After": format_datetime(when, usegmt=True)})
    assert retry_after(dated, now=(when - timedelta(seconds=7)).timestamp()) == pytest.approx(7.0)
    assert retry_after(httpx.Response(503, headers={"Retry-After": "soon"})) is None
    assert retry_after(httpx.Response(503)) is None


# --- retries -----------------------------------------------------------------------------------

def test_503_is_retried_with_the_same_idempotency_key() -> None:
    t = FakeTime()
    rec = Recorder(problem(503, "Busy", retry=1), problem(503, "Outcome unknown", retry=1), created())
    with client(rec, t) as c:
        result = Folders(c).create("f1", "Inbox")
    assert result == CommandResult("k", 1, (EventRef("FolderCreated", 1, 3, 7),))
    assert len(rec.requests) == 3
    key = rec.keys[0]
    assert key is not None and re.fullmatch(r"[0-9a-f]{32}", key), "a fresh uuid4 hex key"
    assert rec.keys == [key, key, key]
    assert {r.content for r in rec.requests} == {rec.requests[0].content}, "the same body each time"
    assert json.loads(rec.requests[0].content) == {"name": "Create", "data": {"name": "Inbox"}}


def test_each_command_gets_its_own_key_unless_one_is_given() -> None:
    rec = Recorder(created())
    with client(rec, FakeTime()) as c:
        Folders(c).update("f1", "a")
        Folders(c).update("f1", "b")
        c.send("folders", "f1", "Update", {"name": "c"}, idempotency_key="mine")
    assert rec.keys[0] != rec.keys[1]
    assert rec.keys[2] == "mine"


def test_retry_after_is_a_minimum_sleep() -> None:
    t = FakeTime()
    rec = Recorder(problem(503, "Busy", retry=4), problem(503, "Busy", retry=2), created())
    with client(rec, t, backoff_base=0.01, backoff_cap=0.02) as c:
        Folders(c).destroy("f1")
    assert len(t.sleeps) == 2
    assert t.sleeps[0] >= 4
    assert t.sleeps[1] >= 2


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    class Highest(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    t = FakeTime()
    attempts = Attempts(RetryPolicy(deadline=100, backoff_base=0.1, backoff_cap=1.0), t.clock, Highest(),
                        idempotency_key="k")
    busy = Busy(503, "Busy", "x")
    assert [attempts.after_error(busy) for _ in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    seeded = Attempts(RetryPolicy(deadline=100, backoff_base=0.1, backoff_cap=1.0), t.clock, random.Random(3),
                      idempotency_key="k")
    delays = [seeded.after_error(busy) for _ in range(20)]
    assert all(0 <= d <= min(1.0, 0.1 * 2 ** i) for i, d in enumerate(delays))
    assert len(set(delays)) > 1


def test_deadline_bounds_retries_and_sleeps() -> None:
    t = FakeTime()

    def slow_busy(request: httpx.Request) -> httpx.Response:
        t.now += 0.25  # each attempt takes a while
        return problem(503, "Busy", "another writer holds folders:f1", retry=1)

    rec = Recorder(slow_busy)
    start = t.now
    with client(rec, t, deadline=5.0) as c, pytest.raises(Busy) as info:
        Folders(c).update("f1", "n")
    assert t.now - start <= 5.0, "never sleeps past the deadline"
    assert 2 <= len(rec.requests) <= 5
    assert len(set(rec.keys)) == 1
    assert "gave up after" in info.value.detail
    timeouts = [r.extensions["timeout"]["read"] for r in rec.requests]
    assert all(tmo <= 5.0 for tmo in timeouts)
    assert timeouts == sorted(timeouts, reverse=True), "each attempt may take only what remains"


def test_attempt_timeout_is_capped_by_the_deadline() -> None:
    rec = Recorder(created())
    with client(rec, FakeTime(), deadline=3.0, attempt_timeout=15.0) as c:
        Folders(c).create("f1", "n")
    assert rec.requests[0].extensions["timeout"]["read"] == pytest.approx(3.0)


def test_connection_refused_fails_over_to_the_next_replica_with_the_same_key() -> None:
    t = FakeTime()

    def by_host(request: httpx.Request) -> httpx.Response:
        if request.url.host == "down.test":
            raise httpx.ConnectError("connection refused", request=request)
        return created()

    rec = Recorder(by_host)
    with client(rec, t, urls=["http://down.test", "http://up.test/"]) as c:
        assert Folders(c).create("f1", "n").version == 1
    assert [r.url.host for r in rec.requests] == ["down.test", "up.test"]
    assert str(rec.requests[1].url) == "http://up.test/v1/folders/f1/commands"
    assert rec.keys[0] == rec.keys[1]


def test_never_connecting_is_busy_not_outcome_unknown() -> None:
    """A request that never left cannot have landed."""
    rec = Recorder(httpx.ConnectError("connection refused"))
    with client(rec, FakeTime(), deadline=2.0) as c, pytest.raises(Busy) as info:
        Folders(c).update("f1", "n")
    assert type(info.value) is Busy
    assert info.value.status is None
    assert info.value.title == "Unavailable"
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(rec.requests) > 1


def test_lost_answer_until_the_deadline_is_outcome_unknown() -> None:
    t = FakeTime()

    def times_out(request: httpx.Request) -> httpx.Response:
        t.now += request.extensions["timeout"]["read"]
        raise httpx.ReadTimeout("timed out", request=request)

    rec = Recorder(times_out)
    with client(rec, t, deadline=4.0, attempt_timeout=1.5) as c, pytest.raises(OutcomeUnknown) as info:
        Folders(c).update("f1", "n", idempotency_key="kk")
    assert info.value.retriable
    assert info.value.idempotency_key == "kk"
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert set(rec.keys) == {"kk"}


def test_busy_after_a_lost_answer_is_still_outcome_unknown() -> None:
    """The first attempt may have landed: giving up later on 503 Busy must not say "not applied"."""
    rec = Recorder(httpx.RemoteProtocolError("server disconnected"), problem(503, "Busy", retry=1))
    with client(rec, FakeTime(), deadline=3.0) as c, pytest.raises(OutcomeUnknown) as info:
        Folders(c).update("f1", "n")
    assert "may have been applied" in info.value.detail
    assert info.value.status == 503


def test_a_4xx_after_retries_is_raised_as_is() -> None:
    rec = Recorder(problem(503, "Busy", retry=1), problem(410, "Gone", "the folder was destroyed"))
    with client(rec, FakeTime()) as c, pytest.raises(Gone):
        Folders(c).update("f1", "n")
    assert len(rec.requests) == 2


def test_reads_are_retried_without_a_key_and_never_outcome_unknown() -> None:
    rec = Recorder(httpx.Response(502, text="bad gateway"))
    with client(rec, FakeTime(), deadline=2.0) as c, pytest.raises(Busy) as info:
        c.get("folders", "f1")
    assert type(info.value) is Busy
    assert rec.keys == [None] * len(rec.requests)
    assert len(rec.requests) > 1


# --- reads and pagination --------------------------------------------------------------------

def history(total: int) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        start = int(request.url.params["from_version"])
        limit = int(request.url.params["limit"])
        upto = min(total, start + limit - 1)
        events = [{"version": v, "type": "FolderUpdated" if v > 1 else "FolderCreated", "data": {"name": f"n{v}"},
                   "partition": 0, "offset": v * 2, "command": f"c{v}", "time": "2030-01-01T00:00:00Z"}
                  for v in range(start, upto + 1)]
        return httpx.Response(200, json={"type": "folders", "id": "f1", "events": events,
                                         "next_from_version": upto + 1 if upto < total else None})
    return handler


def test_events_iterates_over_every_page() -> None:
    rec = Recorder(history(250))
    with client(rec, FakeTime()) as c:
        events = list(c.events("folders", "f1", page_size=100))
    assert [e.version for e in events] == list(range(1, 251))
    assert events[0].type == "FolderCreated" and events[0].data == {"name": "n1"}
    assert [(r.url.path, dict(r.url.params)) for r in rec.requests] == [
        ("/v1/folders/f1/events", {"from_version": str(v), "limit": "100"}) for v in (1, 101, 201)]


def test_events_page_size_is_checked_at_the_call() -> None:
    with client(Recorder(history(1)), FakeTime()) as c, pytest.raises(ValueError):
        c.events("folders", "f1", page_size=1001)


def test_get_reads_the_resource_and_its_etag() -> None:
    rec = Recorder(httpx.Response(200, headers={"ETag": '"3"'}, json={
        "type": "folders", "id": "a b", "version": 3, "destroyed": False, "state": {"name": "x"}}))
    with client(rec, FakeTime()) as c:
        r = c.get("folders", "a b")
    assert (r.version, r.destroyed, dict(r.state), r.etag) == (3, False, {"name": "x"}, '"3"')
    assert rec.requests[0].url.raw_path == b"/v1/folders/a%20b", "ids are quoted as one path segment"


@pytest.mark.parametrize(("resource_id", "raw"), [("..", b"/v1/folders/%2E%2E"), (".", b"/v1/folders/%2E"),
                                                  ("a/b", b"/v1/folders/a%2Fb"), ("..a", b"/v1/folders/..a")])
def test_ids_are_one_path_segment_even_dot_segments(resource_id: str, raw: bytes) -> None:
    """The API accepts the ids "." and ".."; sent literally, URL normalisation would drop them."""
    rec = Recorder(created())
    with client(rec, FakeTime()) as c:
        Folders(c).create(resource_id, "n")
    assert rec.requests[0].url.raw_path == raw + b"/commands"


def test_a_201_with_an_unexpected_body_is_a_fenced_error() -> None:
    with client(Recorder(httpx.Response(201, json={"version": 1})), FakeTime()) as c, \
            pytest.raises(FencedError, match="unexpected answer shape"):
        Folders(c).create("f1", "n")


def test_create_with_parent_and_destroy_with_expected_version() -> None:
    rec = Recorder(created())
    with client(rec, FakeTime()) as c:
        Folders(c).create("f2", "child", parent_id="f1")
        Folders(c).destroy("f2", expected_version=1)
    assert [json.loads(r.content) for r in rec.requests] == [
        {"name": "Create", "data": {"name": "child", "parent_id": "f1"}},
        {"name": "Destroy", "data": {}, "expected_version": 1}]


# --- the async client --------------------------------------------------------------------------

async def test_async_client_retries_with_the_same_key_and_maps_errors() -> None:
    t = FakeTime()
    rec = Recorder(problem(503, "Busy", retry=2), created(), problem(409, "Conflict", current_version=1))
    async with aclient(rec, t) as c:
        assert (await AsyncFolders(c).create("f1", "n")).version == 1
        with pytest.raises(Conflict) as info:
            await AsyncFolders(c).create("f1", "n")
    assert info.value.current_version == 1
    assert rec.keys[0] == rec.keys[1] != rec.keys[2]
    assert t.sleeps and t.sleeps[0] >= 2


async def test_async_client_deadline_and_pagination() -> None:
    t = FakeTime()
    async with aclient(Recorder(problem(503, "Outcome unknown", retry=1)), t, deadline=3.0) as c:
        with pytest.raises(OutcomeUnknown):
            await AsyncFolders(c).update("f1", "n")
    assert sum(t.sleeps) <= 3.0
    async with aclient(Recorder(history(7)), FakeTime()) as c:
        versions = [e.version async for e in c.events("folders", "f1", page_size=3)]
    assert versions == list(range(1, 8))


def test_client_repr_names_its_replicas() -> None:
    c = FencedClient(["http://a:1/", "http://b:2"], deadline=12)
    assert repr(c) == "FencedClient([http://a:1, http://b:2], deadline=12)"
    c.close()


# --- the consumer helper's guards (its reading is tested on the real broker) ---------------------

async def test_accepted_events_refuses_bad_arguments_and_use_before_start() -> None:
    with pytest.raises(LookupError):
        AcceptedEvents("127.0.0.1:1", "fenced.things", 4, decider="things")
    with pytest.raises(ValueError):
        AcceptedEvents("127.0.0.1:1", "fenced.folders", 0)
    events = AcceptedEvents("127.0.0.1:1", "fenced.folders", 4)
    assert dict(events.discards) == dict.fromkeys(("stale", "duplicate", "conflict", "invalid", "malformed"), 0)
    assert repr(events).startswith("AcceptedEvents('fenced.folders', assigned, records=0")
    with pytest.raises(RuntimeError, match="not started"):
        await events.__anext__()
