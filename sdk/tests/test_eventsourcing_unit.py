"""fenced_client.eventsourcing against the in-memory fake of the open-stream API.

pyeventsourcing's own AggregateRecorderTestCase runs here unmodified, as it does against the
real stack in tests/integration/test_eventsourcing.py; the rest checks what the contract does
not: the factory, the errors, a retried save, the tutorial's application.
"""

from __future__ import annotations

import random
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    DataError,
    InfrastructureFactory,
    InfrastructureFactoryError,
    IntegrityError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.tests import persistence as es_tests  # not the abstract base by name: unittest would collect it
from eventsourcing.utils import Environment
from test_client_streams import URL, FakeStreams, no_sleep

from fenced_client import EventData, FencedClient
from fenced_client import eventsourcing as fenced_es
from fenced_client.eventsourcing import FencedAggregateRecorder, FencedApplicationRecorder

TYPE = "aggregates"


def fake_client(fake: FakeStreams, **kw: Any) -> FencedClient:
    return FencedClient(URL, transport=fake.transport, sleep=no_sleep, rng=random.Random(1), **kw)


class TestRecorderContractOnTheFake(es_tests.AggregateRecorderTestCase):
    """pyeventsourcing's contract, unmodified. INITIAL_VERSION 0: the test writes a second
    stream whose first event is at version 0 whatever INITIAL_VERSION says."""

    INITIAL_VERSION = 0

    def create_recorder(self) -> FencedAggregateRecorder:
        self.client = fake_client(FakeStreams(TYPE))
        return FencedAggregateRecorder(self.client, TYPE, initial_version=0)

    def tearDown(self) -> None:
        self.client.close()


def stored(originator_id: UUID | str, version: int, topic: str = "t", state: bytes = b"s") -> StoredEvent:
    return StoredEvent(originator_id=originator_id, originator_version=version, topic=topic, state=state)


@pytest.fixture
def fake() -> FakeStreams:
    return FakeStreams(TYPE)


@pytest.fixture
def recorder(fake: FakeStreams) -> FencedAggregateRecorder:
    return FencedAggregateRecorder(fake_client(fake), TYPE)


def test_versions_map_to_stream_versions_by_the_initial_version(fake: FakeStreams,
                                                                recorder: FencedAggregateRecorder) -> None:
    a = uuid4()
    recorder.insert_events([stored(a, 1, state=b"\x00\xff"), stored(a, 2)])
    assert [e["version"] for e in fake.streams[str(a)]] == [1, 2]
    recorder.insert_events([stored(a, 3)])
    assert [r.method for r in fake.requests] == ["POST", "POST"], "one append per save"
    assert [e.originator_version for e in recorder.select_events(a)] == [1, 2, 3]
    assert recorder.select_events(a)[0] == stored(a, 1, state=b"\x00\xff"), "the caller's id, the bytes as sent"
    with pytest.raises(IntegrityError, match="below this recorder's initial version"):
        recorder.insert_events([stored(uuid4(), 0)])
    based = FencedAggregateRecorder(recorder.client, TYPE, initial_version=10)
    b = uuid4()
    based.insert_events([stored(b, 10), stored(b, 11)])
    assert [e["version"] for e in fake.streams[str(b)]] == [1, 2]
    assert [e.originator_version for e in based.select_events(b, gt=10)] == [11]


def test_select_ranges_send_nothing_when_empty(fake: FakeStreams, recorder: FencedAggregateRecorder) -> None:
    a = uuid4()
    recorder.insert_events([stored(a, v) for v in range(1, 8)])
    v = [e.originator_version for e in recorder.select_events(a, gt=2, lte=5)]
    assert v == [3, 4, 5]
    assert [e.originator_version for e in recorder.select_events(a, lte=5, desc=True, limit=2)] == [5, 4]
    assert [e.originator_version for e in recorder.select_events(a, gt=6)] == [7]
    assert recorder.select_events(a, gt=7) == []
    before = len(fake.requests)
    assert recorder.select_events(a, lte=0) == []
    assert recorder.select_events(a, gt=5, lte=5) == []
    assert recorder.select_events(a, limit=0) == []
    assert len(fake.requests) == before


def test_a_save_of_two_aggregates_is_refused_before_any_append(fake: FakeStreams,
                                                               recorder: FencedAggregateRecorder) -> None:
    a, b = uuid4(), uuid4()
    with pytest.raises(ProgrammingError, match=r"one stream only.*2 aggregates") as info:
        recorder.insert_events([stored(a, 1), stored(b, 1)])
    assert str(a) in str(info.value) and str(b) in str(info.value)
    assert fake.requests == []


def test_a_stale_save_is_an_integrity_error(recorder: FencedAggregateRecorder) -> None:
    a = uuid4()
    recorder.insert_events([stored(a, 1)])
    with pytest.raises(IntegrityError, match=r"current_version=1\b"):
        recorder.insert_events([stored(a, 1)])
    with pytest.raises(IntegrityError, match="follow each other"):
        recorder.insert_events([stored(a, 2), stored(a, 2)])


def test_a_retried_save_whose_answer_was_lost_is_no_conflict(fake: FakeStreams,
                                                            recorder: FencedAggregateRecorder) -> None:
    """The first attempt landed but its answer was lost: the retry carries the same key and gets
    the first result, so the application sees a save, not an IntegrityError."""
    a = uuid4()
    fake.busy = 1
    recorder.insert_events([stored(a, 1)])
    keys = [r.headers["idempotency-key"] for r in fake.requests]
    assert len(keys) == 2 and len(set(keys)) == 1
    assert len(fake.streams[str(a)]) == 1


def test_client_errors_become_pep_249_errors(fake: FakeStreams) -> None:
    fake.busy = 10_000
    t = [0.0]

    def sleep(s: float) -> None:
        t[0] += s

    lost = FencedAggregateRecorder(FencedClient(URL, transport=fake.transport, clock=lambda: t[0], sleep=sleep,
                                                deadline=1.0), TYPE)
    with pytest.raises(OperationalError, match="may have been applied"):
        lost.insert_events([stored(uuid4(), 1)])
    unserved = FencedAggregateRecorder(fake_client(fake), "folders")
    with pytest.raises(ProgrammingError, match="FENCED_OPEN_TYPES"):
        unserved.select_events(uuid4())
    refused = FencedAggregateRecorder(fake_client(FakeStreams(TYPE)), TYPE)
    with pytest.raises(DataError, match="1 to 200"):
        refused.insert_events([stored(uuid4(), 1, topic="m" * 201)])


def test_invalid_input_is_a_data_error_but_a_decided_type_a_programming_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "/folders/" in request.url.path:
            return httpx.Response(422, json={"type": "urn:fenced:problem:decided-type", "title": "Invalid input",
                                             "detail": "folders is a decided type: send commands to ..."})
        return httpx.Response(422, json={"title": "Invalid input", "detail": "resource id must be ..."})

    client = FencedClient(URL, transport=httpx.MockTransport(handler))
    with pytest.raises(DataError, match="resource id"):
        FencedAggregateRecorder(client, TYPE).insert_events([stored("not/valid", 1)])
    with pytest.raises(ProgrammingError, match="FENCED_OPEN_TYPES"):
        FencedAggregateRecorder(client, "folders").insert_events([stored(uuid4(), 1)])


def test_a_json_event_in_a_stream_is_a_data_error(fake: FakeStreams, recorder: FencedAggregateRecorder) -> None:
    a = uuid4()
    recorder.insert_events([stored(a, 1)])
    recorder.client.append(TYPE, str(a), [EventData("Foreign", {"x": 1})], 1)
    assert len(recorder.select_events(a, lte=1)) == 1
    with pytest.raises(DataError, match=r"event 2 .* is JSON"):
        recorder.select_events(a)


def test_tracking_is_not_supported(recorder: FencedAggregateRecorder) -> None:
    with pytest.raises(NotSupportedError):
        recorder.insert_events([stored(uuid4(), 1)], tracking=object())


# --- the factory ----------------------------------------------------------------------------------

def test_the_module_is_a_persistence_module() -> None:
    env = Environment("DogSchool", {"PERSISTENCE_MODULE": "fenced_client.eventsourcing",
                                    "DOGSCHOOL_FENCED_URL": "http://a:1, http://b:2", "FENCED_URL": "http://no:3",
                                    "FENCED_RESOURCE_TYPE": "es", "FENCED_INITIAL_VERSION": "0",
                                    "FENCED_API_KEY": "fk_x", "FENCED_DEADLINE": "7"})
    factory = InfrastructureFactory.construct(env)
    assert type(factory) is fenced_es.Factory
    assert factory.client.base_urls == ("http://a:1", "http://b:2"), "the application's own key first"
    assert factory.client.policy.deadline == 7
    assert factory.client._http.headers["authorization"] == "Bearer fk_x"
    recorder = factory.application_recorder()
    assert isinstance(recorder, FencedApplicationRecorder)
    assert (recorder.resource_type, recorder.initial_version) == ("es", 0)
    assert isinstance(factory.aggregate_recorder(), FencedAggregateRecorder)
    with pytest.raises(NotSupportedError, match="snapshotting"):
        factory.aggregate_recorder("snapshots")
    with pytest.raises(NotSupportedError):
        factory.tracking_recorder()
    with pytest.raises(NotSupportedError):
        factory.process_recorder()
    for call in (lambda: recorder.select_notifications(1, 10), recorder.max_notification_id, recorder.subscribe):
        with pytest.raises(NotSupportedError, match=r"notification log .* issue #14"):
            call()
    factory.close()
    factory.close()


@pytest.mark.parametrize(("env", "match"), [
    ({}, "'FENCED_URL' not found in environment with keys 'APP_FENCED_URL, FENCED_URL'"),
    ({"FENCED_URL": "ftp://x"}, "must start with http"),
    ({"FENCED_URL": "http://x", "FENCED_INITIAL_VERSION": "one"}, "FENCED_INITIAL_VERSION must be an integer"),
])
def test_factory_settings_errors(env: dict[str, str], match: str) -> None:
    with pytest.raises(InfrastructureFactoryError, match=match):
        fenced_es.Factory(Environment("App", env))


# --- the tutorial's application on the fake ---------------------------------------------------------

class Dog(Aggregate):
    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name
        self.tricks: list[str] = []

    @event("TrickAdded")
    def add_trick(self, trick: str) -> None:
        self.tricks.append(trick)


class DogSchool(Application[UUID]):
    def register_dog(self, name: str) -> UUID:
        dog = Dog(name)
        self.save(dog)
        return dog.id

    def add_trick(self, dog_id: UUID, trick: str) -> None:
        dog: Dog = self.repository.get(dog_id)
        dog.add_trick(trick)
        self.save(dog)

    def get_dog(self, dog_id: UUID) -> dict[str, Any]:
        dog: Dog = self.repository.get(dog_id)
        return {"name": dog.name, "tricks": tuple(dog.tricks)}


def test_dog_school_on_the_fake(fake: FakeStreams) -> None:
    class FakeDogSchool(DogSchool):
        def construct_factory(self, env: Environment) -> InfrastructureFactory:
            return fenced_es.Factory(env, client=fake_client(fake))

    env = {"PERSISTENCE_MODULE": "fenced_client.eventsourcing"}
    school = FakeDogSchool(env=env)
    dog_id = school.register_dog("Fido")
    school.add_trick(dog_id, "roll over")
    assert school.get_dog(dog_id) == {"name": "Fido", "tricks": ("roll over",)}
    assert [e["type"] for e in fake.streams[str(dog_id)]] == [
        "test_eventsourcing_unit:Dog.Registered", "test_eventsourcing_unit:Dog.TrickAdded"]
    assert FakeDogSchool(env=env).get_dog(dog_id)["tricks"] == ("roll over",)
    with pytest.raises(ProgrammingError, match="one stream only"):
        school.save(Dog("a"), Dog("b"))
    school.close()
