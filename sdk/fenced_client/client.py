"""The synchronous client of the fenced HTTP API."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx

from fenced_client.base import DEFAULT_URL, BaseClient, base_headers, deprecated_folder_helper
from fenced_client.folders import Folders
from fenced_client.models import CommandResult, Event, EventData, Resource
from fenced_client.protocol import (
    MAX_PAGE_SIZE,
    Call,
    ExpectedVersion,
    HistoryRead,
    Order,
    append_call,
    check_page_size,
    command_call,
    error_of,
    parse_command,
    parse_events,
    parse_resource,
    resource_call,
)


class FencedClient(BaseClient):
    """A blocking client of the generic API: ``send`` (commands), ``append`` (open streams),
    ``read`` (histories), ``get`` (state)::

        with FencedClient("http://127.0.0.1:8000") as c:
            c.send("folders", "f1", "Create", {"name": "Inbox"})

    Every write carries an Idempotency-Key (a fresh uuid4 unless given) and is retried on
    503 and on connection errors with that same key until ``deadline`` seconds passed
    (see :mod:`fenced_client.retry`); 4xx answers are never retried. Errors are :mod:`fenced_client.errors`.
    ``transport``, ``clock``, ``sleep`` and ``rng`` are for tests.
    """

    def __init__(self, base_url: str | Sequence[str] = DEFAULT_URL, *, deadline: float = 30.0,
                 attempt_timeout: float = 15.0, backoff_base: float = 0.05, backoff_cap: float = 2.0,
                 api_key: str | None = None, headers: Mapping[str, str] | None = None,
                 transport: httpx.BaseTransport | None = None,
                 clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None,
                 rng: random.Random | None = None) -> None:
        super().__init__(base_url, deadline=deadline, attempt_timeout=attempt_timeout, backoff_base=backoff_base,
                         backoff_cap=backoff_cap, clock=clock, rng=rng)
        self._sleep = sleep or time.sleep
        self._http = httpx.Client(transport=transport, headers=base_headers(api_key, headers),
                                  timeout=attempt_timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, call: Call) -> httpx.Response:
        attempts = self._attempts(call)
        while True:
            url = self._url(call)
            try:
                response = self._http.request(call.method, url, json=call.json, params=call.params,
                                              headers=call.headers, timeout=attempts.timeout())
            except httpx.TransportError as e:
                self._next_replica()
                self._sleep(attempts.after_transport_error(e, url))
                continue
            err = error_of(response, call.idempotency_key)
            if err is None:
                return response
            if err.retriable:
                self._next_replica()
            self._sleep(attempts.after_error(err))

    def send(self, resource_type: str, resource_id: str, name: str, data: Mapping[str, Any] | None = None,
             expected_version: int | None = None, idempotency_key: str | None = None) -> CommandResult:
        """Send command ``name`` to a resource; the result once the log accepted it (201)."""
        return parse_command(self._call(command_call(resource_type, resource_id, name, data or {},
                                                     expected_version, idempotency_key)))

    def get(self, resource_type: str, resource_id: str) -> Resource:
        """The resource's current state; :class:`~fenced_client.errors.NotFound` if it never existed."""
        return parse_resource(self._call(resource_call(resource_type, resource_id)))

    def append(self, resource_type: str, resource_id: str, events: Sequence[EventData],
               expected_version: ExpectedVersion = "any", idempotency_key: str | None = None) -> CommandResult:
        """Append ``events`` to an open stream (``FENCED_OPEN_TYPES``), all or none, if the stream
        is at ``expected_version``; :class:`~fenced_client.errors.Conflict` (with
        ``current_version``) if it is not. Retried like :meth:`send`, with one Idempotency-Key."""
        return parse_command(self._call(append_call(resource_type, resource_id, events, expected_version,
                                                    idempotency_key)))

    def read(self, resource_type: str, resource_id: str, *, from_version: int = 1, to_version: int | None = None,
             order: Order = "asc", limit: int | None = None, page_size: int = MAX_PAGE_SIZE) -> Iterator[Event]:
        """The accepted events with versions ``from_version … to_version`` (the stream's version if
        None), oldest first (``order="asc"``) or newest first (``"desc"``), at most ``limit`` of them,
        fetched ``page_size`` at a time. :class:`~fenced_client.errors.NotFound` if the stream has
        no event; an empty range (``to_version < from_version``, ``limit=0``) is empty without a
        request. Arguments are checked at the call; requests go out as the iterator is consumed."""
        return self._read(HistoryRead(resource_type, resource_id, from_version=from_version, to_version=to_version,
                                      order=order, limit=limit, page_size=page_size))

    def _read(self, history: HistoryRead) -> Iterator[Event]:
        while (call := history.next_call()) is not None:
            yield from history.take(parse_events(self._call(call)))

    def events(self, resource_type: str, resource_id: str, page_size: int = 100) -> Iterator[Event]:
        """Every accepted event of the resource, oldest first, fetched ``page_size`` at a time
        (``read`` with its defaults)."""
        return self.read(resource_type, resource_id, page_size=check_page_size(page_size))

    @deprecated_folder_helper
    def create(self, folder_id: str, name: str, parent_id: str | None = None, *,
               idempotency_key: str | None = None) -> CommandResult:
        """Deprecated: ``fenced_client.folders.Folders(client).create``."""
        return Folders(self).create(folder_id, name, parent_id, idempotency_key=idempotency_key)

    @deprecated_folder_helper
    def update(self, folder_id: str, name: str, expected_version: int | None = None, *,
               idempotency_key: str | None = None) -> CommandResult:
        """Deprecated: ``fenced_client.folders.Folders(client).update``."""
        return Folders(self).update(folder_id, name, expected_version, idempotency_key=idempotency_key)

    @deprecated_folder_helper
    def destroy(self, folder_id: str, expected_version: int | None = None, *,
                idempotency_key: str | None = None) -> CommandResult:
        """Deprecated: ``fenced_client.folders.Folders(client).destroy``."""
        return Folders(self).destroy(folder_id, expected_version, idempotency_key=idempotency_key)
