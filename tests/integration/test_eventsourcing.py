"""pyeventsourcing on fenced (issue #13, part 4), against a real stack with the open type ``aggregates``.

pyeventsourcing's own ``AggregateRecorderTestCase`` runs unmodified against
``fenced_client.eventsourcing``, and the library tutorial's dog school runs with
``PERSISTENCE_MODULE=fenced_client.eventsourcing``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar
from uuid import UUID

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError, NotSupportedError, ProgrammingError
from eventsourcing.tests import persistence as es_tests  # not the abstract base by name: unittest would collect it

from devstack import KafkaBroker, RedisServer
from devstack.stack import Stack
from fenced_client import FencedClient
from fenced_client.eventsourcing import FencedAggregateRecorder

pytestmark = pytest.mark.integration

TYPE = "aggregates"


@pytest.fixture(scope="module")
def es_stack(workdir: Path, kafka: KafkaBroker, redis_server: RedisServer) -> Iterator[Stack]:
    s = Stack(workdir / "stacks", kafka, redis_server, extra_env={"FENCED_OPEN_TYPES": TYPE}).start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _stack_for_unittest_classes(request: pytest.FixtureRequest, es_stack: Stack) -> None:
    """The contract below is a unittest.TestCase: it finds the stack's URLs on its class."""
    if request.cls is not None:
        request.cls.urls = es_stack.urls


class TestFencedAggregateRecorder(es_tests.AggregateRecorderTestCase):
    """The library's contract, unmodified. INITIAL_VERSION 0 (and a recorder whose stream version 1
    holds aggregate version 0): the test writes a second stream whose first event is at version 0
    whatever INITIAL_VERSION says, as eventsourcing-kurrentdb's test also sets."""

    INITIAL_VERSION = 0
    urls: ClassVar[list[str]]

    def create_recorder(self) -> FencedAggregateRecorder:
        self.client = FencedClient(self.urls)
        return FencedAggregateRecorder(self.client, TYPE, initial_version=0)

    def tearDown(self) -> None:
        if hasattr(self, "client"):
            self.client.close()


# --- the tutorial's application (eventsourcing docs, tutorial part 1), as the tutorial writes it -----

class Dog(Aggregate):
    @event("Registered")
    def __init__(self, name):
        self.name = name
        self.tricks = []

    @event("TrickAdded")
    def add_trick(self, trick):
        self.tricks.append(trick)


class DogSchool(Application):
    def register_dog(self, name):
        dog = Dog(name)
        self.save(dog)
        return dog.id

    def add_trick(self, dog_id, trick):
        dog = self.repository.get(dog_id)
        dog.add_trick(trick=trick)
        self.save(dog)

    def get_dog(self, dog_id):
        dog = self.repository.get(dog_id)
        return {"name": dog.name, "tricks": tuple(dog.tricks)}


def tutorial_test_dog_school() -> UUID:
    """The tutorial's exercise test, verbatim but for returning the dog's id."""
    app = DogSchool()
    dog_id = app.register_dog(name="Fido")
    assert app.get_dog(dog_id) == {"name": "Fido", "tricks": ()}
    app.add_trick(dog_id, trick="roll over")
    app.add_trick(dog_id, trick="fetch ball")
    assert app.get_dog(dog_id) == {"name": "Fido", "tricks": ("roll over", "fetch ball")}
    app.close()
    return dog_id


@pytest.fixture
def on_fenced(es_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    """The environment the tutorial's application reads: fenced as its persistence module."""
    monkeypatch.setenv("PERSISTENCE_MODULE", "fenced_client.eventsourcing")
    monkeypatch.setenv("FENCED_URL", ",".join(es_stack.urls))
    monkeypatch.setenv("FENCED_RESOURCE_TYPE", TYPE)
    return es_stack


def test_the_tutorials_dog_school_on_fenced(on_fenced: Stack) -> None:
    dog_id = tutorial_test_dog_school()
    fresh = DogSchool()
    assert fresh.get_dog(dog_id) == {"name": "Fido", "tricks": ("roll over", "fetch ball")}, \
        "a new application reconstructs the dog from the log"
    with FencedClient(on_fenced.urls[0]) as c:
        history = list(c.read(TYPE, str(dog_id)))
    assert [(e.version, e.type, e.datacontenttype) for e in history] == [
        (1, f"{__name__}:Dog.Registered", "application/octet-stream"),
        (2, f"{__name__}:Dog.TrickAdded", "application/octet-stream"),
        (3, f"{__name__}:Dog.TrickAdded", "application/octet-stream")]
    fresh.close()


def test_a_stale_concurrent_save_is_refused_whole(on_fenced: Stack) -> None:
    a, b = DogSchool(), DogSchool()
    dog_id = a.register_dog("Rex")
    dog_a, dog_b = a.repository.get(dog_id), b.repository.get(dog_id)
    dog_a.add_trick(trick="sit")
    a.save(dog_a)
    dog_b.add_trick(trick="beg")
    dog_b.add_trick(trick="stay")
    with pytest.raises(IntegrityError, match="current_version=2"):
        b.save(dog_b)
    assert DogSchool().get_dog(dog_id) == {"name": "Rex", "tricks": ("sit",)}, "none of the stale save's events"
    a.close()
    b.close()


def test_a_save_of_two_aggregates_is_a_clear_error_and_appends_nothing(on_fenced: Stack) -> None:
    app = DogSchool()
    one, two = Dog("a"), Dog("b")
    with pytest.raises(ProgrammingError, match="one stream only: this save holds events of 2 aggregates"):
        app.save(one, two)
    assert app.recorder.select_events(one.id) == []
    assert app.recorder.select_events(two.id) == []
    # the failed save took the dogs' pending events; each in its own save() works
    three, four = Dog("c"), Dog("d")
    app.save(three)
    app.save(four)
    assert (app.get_dog(three.id)["name"], app.get_dog(four.id)["name"]) == ("c", "d")
    app.close()


def test_what_is_not_supported_yet_says_so(on_fenced: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    app = DogSchool()
    app.register_dog("Fido")
    with pytest.raises(NotSupportedError, match="notification log"):
        app.notification_log.select(start=1, limit=10)  # the README's synopsis ends with this
    app.close()
    monkeypatch.setenv("IS_SNAPSHOTTING_ENABLED", "y")
    with pytest.raises(NotSupportedError, match="snapshotting"):
        DogSchool()


def test_a_cached_aggregate_fast_forwards_from_the_log(on_fenced: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGGREGATE_CACHE_MAXSIZE", "100")
    cached, other = DogSchool(), DogSchool()
    dog_id = cached.register_dog("Fido")
    assert cached.get_dog(dog_id)["tricks"] == ()
    other.add_trick(dog_id, trick="roll over")
    assert cached.get_dog(dog_id)["tricks"] == ("roll over",), "select_events(gt=cached version) gets the rest"
    cached.close()
    other.close()


def test_the_applications_own_url_key_wins(on_fenced: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """DOGSCHOOL_FENCED_URL wins over FENCED_URL (pyeventsourcing's per-application keys)."""
    monkeypatch.setenv("FENCED_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DOGSCHOOL_FENCED_URL", on_fenced.urls[1])
    app = DogSchool()
    dog_id = app.register_dog("Solo")
    assert app.get_dog(dog_id)["name"] == "Solo"
    app.close()

