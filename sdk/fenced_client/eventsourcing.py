"""pyeventsourcing on fenced: ``PERSISTENCE_MODULE=fenced_client.eventsourcing``.

Each aggregate is one open stream of ``FENCED_RESOURCE_TYPE`` (a type in the server's
``FENCED_OPEN_TYPES``), its id the aggregate's id. A save appends the aggregate's new events
in one ``append`` whose expected version is the stream's version before the first of them, so
a stale save is refused whole (:class:`~eventsourcing.persistence.IntegrityError`) and nothing
of it is appended. Each stored event's state goes as bytes (``data_base64``), its topic as the
event type.

Settings (read through the application's environment, so ``DOGSCHOOL_FENCED_URL`` overrides
``FENCED_URL`` for an application named DogSchool):

- ``FENCED_URL``: the API's base URL, or several, comma-separated (required).
- ``FENCED_API_KEY``: the API key (``fenced keys create``), if the server has authentication on.
- ``FENCED_RESOURCE_TYPE``: the open type the aggregates' streams belong to (default ``aggregates``).
- ``FENCED_INITIAL_VERSION``: the aggregate version stored at stream version 1 (default 1,
  pyeventsourcing's ``Aggregate.INITIAL_VERSION``); stream version = version - initial + 1.
- ``FENCED_DEADLINE``: seconds a call may take, retries included (default 30).

Not supported (:class:`~eventsourcing.persistence.NotSupportedError`, or
:class:`~eventsourcing.persistence.ProgrammingError` for a save of several aggregates):
events of several aggregates in one save (fenced appends atomically to one stream only), the
notification log (Kafka has no application-wide order; fenced's issue #14), snapshots, tracking
and process recorders. See docs/eventsourcing.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    DataError,
    InfrastructureFactory,
    InfrastructureFactoryError,
    IntegrityError,
    InternalError,
    Notification,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProcessRecorder,
    ProgrammingError,
    StoredEvent,
    Subscription,
    TrackingRecorder,
)
from eventsourcing.utils import Environment, EnvType

from fenced_client.client import FencedClient
from fenced_client.errors import (
    PROBLEM_DECIDED_TYPE,
    PROBLEM_NO_SUCH_RESOURCE,
    Busy,
    Conflict,
    FencedError,
    Forbidden,
    InvalidInput,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    Unauthorized,
)
from fenced_client.models import Event, EventData
from fenced_client.protocol import MAX_PAGE_SIZE, ExpectedVersion, new_idempotency_key

MAX_TYPE_LENGTH = 200
"""The API's longest event type; a stored event's topic is its type."""

NOTIFICATION_LOG = ("fenced has no application-wide sequence of events yet (Kafka orders events per partition "
                    "only): the notification log (select_notifications, max_notification_id, subscribe) is the "
                    "work of fenced's issue #14 (an accepted-events topic and notification log); an Application's "
                    "save and repository work without it")


def _translate(e: FencedError, what: str) -> PersistenceError:
    """The pyeventsourcing error (PEP 249 classes) for a client error."""
    text = f"{what}: {e}"
    if isinstance(e, Conflict):
        return IntegrityError(f"{text} (current_version={e.current_version})")
    if isinstance(e, OutcomeUnknown) and e.idempotency_key is not None:
        return OperationalError(f"{text} (the append may have been applied; it is never applied twice with "
                                f"Idempotency-Key {e.idempotency_key})")
    if isinstance(e, Busy | RateLimited | Unauthorized | Forbidden | OutcomeUnknown) or e.status is None:
        return OperationalError(text)
    if isinstance(e, NotFound) or e.type == PROBLEM_DECIDED_TYPE:
        return ProgrammingError(f"{text} (FENCED_RESOURCE_TYPE must be one of the server's FENCED_OPEN_TYPES)")
    if isinstance(e, InvalidInput):
        return DataError(text)
    return InternalError(text)


class FencedAggregateRecorder(AggregateRecorder):
    """Stored events of aggregates as open streams of ``resource_type``, one per aggregate.

    ``initial_version`` is the aggregate version stored at stream version 1. The recorder keeps
    no state of its own, so one may be shared by threads (as its client is).
    """

    def __init__(self, client: FencedClient, resource_type: str, *, initial_version: int = 1) -> None:
        self.client = client
        self.resource_type = resource_type
        self.initial_version = initial_version

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.client!r}, {self.resource_type!r}, "
                f"initial_version={self.initial_version})")

    def _stream_version(self, version: int) -> int:
        return version - self.initial_version + 1

    def _es_version(self, stream_version: int) -> int:
        return stream_version + self.initial_version - 1

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Append the events of one aggregate, atomically, if its stream is at the version
        before the first of them; :class:`IntegrityError` if it is not."""
        if kwargs.get("tracking") is not None:
            raise NotSupportedError("fenced records no tracking objects (process applications are not supported)")
        if not stored_events:
            return None
        ids = list(dict.fromkeys(str(e.originator_id) for e in stored_events))
        if len(ids) > 1:
            raise ProgrammingError(
                f"fenced appends atomically to one stream only: this save holds events of {len(ids)} aggregates "
                f"({', '.join(ids)}); save each aggregate in its own save() call")
        first = stored_events[0].originator_version
        got = [e.originator_version for e in stored_events]
        if got != list(range(first, first + len(got))):
            raise IntegrityError(f"the originator versions of one save must follow each other: {got}")
        start = self._stream_version(first)
        if start < 1:
            raise IntegrityError(
                f"originator version {first} is below this recorder's initial version {self.initial_version}: "
                "set FENCED_INITIAL_VERSION to the aggregates' INITIAL_VERSION")
        for e in stored_events:
            if not 1 <= len(e.topic) <= MAX_TYPE_LENGTH:
                raise DataError(f"topic {e.topic[:60]!r}… is {len(e.topic)} characters; fenced takes event types "
                                f"of 1 to {MAX_TYPE_LENGTH}")
        expected: ExpectedVersion = "no_stream" if start == 1 else start - 1
        events = [EventData(e.topic, data_bytes=e.state) for e in stored_events]
        try:
            # one key per save, the same for the client's retries: a retry never appends twice, and a
            # retried append that had landed answers its first result, not a spurious conflict
            self.client.append(self.resource_type, ids[0], events, expected, new_idempotency_key())
        except FencedError as e:
            raise _translate(e, f"append to {self.resource_type}/{ids[0]} at version {first}") from e
        return None

    def select_events(self, originator_id: UUID | str, *, gt: int | None = None, lte: int | None = None,
                      desc: bool = False, limit: int | None = None) -> Sequence[StoredEvent]:
        """The aggregate's stored events with ``gt < version <= lte``, ascending (or ``desc``),
        at most ``limit``; ``[]`` for an aggregate without events."""
        low = 1 if gt is None else max(1, self._stream_version(gt) + 1)
        high = None if lte is None else self._stream_version(lte)
        if (limit is not None and limit <= 0) or (high is not None and high < low):
            return []
        stream = str(originator_id)
        try:
            return [self._stored(originator_id, e)
                    for e in self.client.read(self.resource_type, stream, from_version=low, to_version=high,
                                              order="desc" if desc else "asc", limit=limit,
                                              page_size=MAX_PAGE_SIZE)]
        except NotFound as e:
            if e.type == PROBLEM_NO_SUCH_RESOURCE:  # no event yet; the other 404 is an unserved type
                return []
            raise _translate(e, f"read of {self.resource_type}/{stream}") from e
        except FencedError as e:
            raise _translate(e, f"read of {self.resource_type}/{stream}") from e


    def _stored(self, originator_id: UUID | str, event: Event) -> StoredEvent:
        if event.data_bytes is None:
            raise DataError(f"event {event.version} of {self.resource_type}/{originator_id} is JSON "
                            f"({event.datacontenttype}), not the bytes of a stored event: another client "
                            "appended it to this stream")
        return StoredEvent(originator_id=originator_id, originator_version=self._es_version(event.version),
                           topic=event.type, state=event.data_bytes)


class FencedApplicationRecorder(FencedAggregateRecorder, ApplicationRecorder):
    """What an Application needs to save and get aggregates; its notification log is not
    supported yet (:data:`NOTIFICATION_LOG`)."""

    def select_notifications(self, start: int | None, limit: int, stop: int | None = None,
                             topics: Sequence[str] = (), *, inclusive_of_start: bool = True) -> Sequence[Notification]:
        raise NotSupportedError(NOTIFICATION_LOG)

    def max_notification_id(self) -> int | None:
        raise NotSupportedError(NOTIFICATION_LOG)

    def subscribe(self, gt: int | None = None, topics: Sequence[str] = ()) -> Subscription[ApplicationRecorder]:
        raise NotSupportedError(NOTIFICATION_LOG)


class Factory(InfrastructureFactory[TrackingRecorder]):
    """The persistence module's factory: one :class:`FencedClient` shared by its recorders.
    ``client`` replaces the one the settings describe (tests)."""

    FENCED_URL = "FENCED_URL"
    FENCED_API_KEY = "FENCED_API_KEY"
    FENCED_RESOURCE_TYPE = "FENCED_RESOURCE_TYPE"
    FENCED_INITIAL_VERSION = "FENCED_INITIAL_VERSION"
    FENCED_DEADLINE = "FENCED_DEADLINE"

    def __init__(self, env: Environment | EnvType | None, *, client: FencedClient | None = None) -> None:
        super().__init__(env)
        self.resource_type = self.env.get(self.FENCED_RESOURCE_TYPE) or "aggregates"
        self.initial_version = self._int(self.FENCED_INITIAL_VERSION, "1")
        if client is None:
            urls = [u.strip() for u in (self.env.get(self.FENCED_URL) or "").split(",") if u.strip()]
            if not urls:
                raise InfrastructureFactoryError(
                    f"{self.FENCED_URL!r} not found in environment with keys "
                    f"{', '.join(self.env.create_keys(self.FENCED_URL))!r}: the fenced API's base URL(s)")
            deadline = float(self._int(self.FENCED_DEADLINE, "30"))
            try:
                client = FencedClient(urls, api_key=self.env.get(self.FENCED_API_KEY) or None, deadline=deadline,
                                      attempt_timeout=min(15.0, deadline))
            except ValueError as e:
                raise InfrastructureFactoryError(f"{self.FENCED_URL}: {e}") from e
        self.client = client
        self._closed = False

    def _int(self, key: str, default: str) -> int:
        raw = self.env.get(key) or default
        try:
            value = int(raw)
        except ValueError:
            value = -1
        if value < 0:
            raise InfrastructureFactoryError(f"{key} must be an integer >= 0, not {raw!r}")
        return value

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        if purpose == "snapshots":
            raise NotSupportedError("snapshotting is not supported by fenced_client.eventsourcing yet: "
                                    "leave IS_SNAPSHOTTING_ENABLED unset")
        return FencedAggregateRecorder(self.client, self.resource_type, initial_version=self.initial_version)

    def application_recorder(self) -> ApplicationRecorder:
        return FencedApplicationRecorder(self.client, self.resource_type, initial_version=self.initial_version)

    def tracking_recorder(self, tracking_recorder_class: type[TrackingRecorder] | None = None) -> TrackingRecorder:
        raise NotSupportedError("fenced_client.eventsourcing has no tracking recorder (process applications "
                                "and projections need the notification log: the next issue after #13)")

    def process_recorder(self) -> ProcessRecorder:
        raise NotSupportedError("fenced_client.eventsourcing has no process recorder (process applications "
                                "need the notification log: the next issue after #13)")

    def close(self) -> None:
        """Close the client once; later calls do nothing (Application.close and __del__ both call it)."""
        if not self._closed:
            self._closed = True
            self.client.close()
