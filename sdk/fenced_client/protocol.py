"""The HTTP API as values, without I/O: what to send for a call, what an answer means.

Both clients (sync and async) send these :class:`Call` values and read the answers with
:func:`parse_command`, :func:`parse_resource` and :func:`parse_events`, so the two differ
only in how they wait. :class:`HistoryRead` is the paging of a history read, also without I/O.
"""

from __future__ import annotations

import base64
import email.utils
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import httpx

from fenced_client.errors import FencedError, from_problem
from fenced_client.models import JSON, CommandResult, Event, EventData, EventPage, EventRef, Resource
from fenced_client.wire import OCTET_STREAM

MAX_PAGE_SIZE = 1000
"""The API's largest ``limit`` for one page of events."""

ExpectedVersion = int | Literal["any", "no_stream", "exists"]
"""What an append expects of its stream: ``"any"`` (no check), ``"no_stream"`` (no event yet),
``"exists"`` (one at least) or an exact version (0 is no event yet)."""

Order = Literal["asc", "desc"]


@dataclass(frozen=True)
class Call:
    """One request of the API. ``idempotency_key`` is set for writes only."""

    method: str
    path: str
    json: Mapping[str, Any] | None = None
    params: Mapping[str, int | str] = field(default_factory=dict)
    idempotency_key: str | None = None

    @property
    def write(self) -> bool:
        return self.idempotency_key is not None

    @property
    def headers(self) -> dict[str, str]:
        return {"Idempotency-Key": self.idempotency_key} if self.idempotency_key is not None else {}


def new_idempotency_key() -> str:
    return uuid.uuid4().hex


def _segment(value: str) -> str:
    if not value:
        raise ValueError("resource type and id must not be empty")
    if value in (".", ".."):  # a literal dot segment would be removed from the path (RFC 3986 5.2.4)
        return value.replace(".", "%2E")
    return quote(value, safe="")


def resource_path(resource_type: str, resource_id: str) -> str:
    return f"/v1/{_segment(resource_type)}/{_segment(resource_id)}"


def command_call(resource_type: str, resource_id: str, name: str, data: Mapping[str, Any],
                 expected_version: int | None, idempotency_key: str | None) -> Call:
    body: dict[str, Any] = {"name": name, "data": dict(data)}
    if expected_version is not None:
        body["expected_version"] = expected_version
    return Call("POST", f"{resource_path(resource_type, resource_id)}/commands", body,
                idempotency_key=idempotency_key or new_idempotency_key())


def resource_call(resource_type: str, resource_id: str) -> Call:
    return Call("GET", resource_path(resource_type, resource_id))


def check_expected_version(expected_version: ExpectedVersion) -> ExpectedVersion:
    if isinstance(expected_version, bool) or not (
            expected_version in ("any", "no_stream", "exists")
            or (isinstance(expected_version, int) and expected_version >= 0)):
        raise ValueError(f"expected_version must be 'any', 'no_stream', 'exists' or an int >= 0, "
                         f"not {expected_version!r}")
    return expected_version


def event_body(event: EventData) -> dict[str, Any]:
    """An event of an append as the API takes it: ``data``, or ``data_base64`` with its
    ``datacontenttype``."""
    body: dict[str, Any] = {"type": event.type}
    if event.data_bytes is not None:
        body["data_base64"] = base64.b64encode(bytes(event.data_bytes)).decode("ascii")
        body["datacontenttype"] = event.datacontenttype or OCTET_STREAM
    else:
        body["data"] = dict(event.data or {})
    if event.id is not None:
        body["id"] = event.id
    return body


def append_call(resource_type: str, resource_id: str, events: Sequence[EventData],
                expected_version: ExpectedVersion, idempotency_key: str | None) -> Call:
    if isinstance(events, EventData):
        raise TypeError("events must be a sequence of EventData; wrap one event in a list")
    if not events:
        raise ValueError("an append needs one event at least")
    for e in events:
        if not isinstance(e, EventData):
            raise TypeError(f"events must be EventData values, not {type(e).__name__}")
    body = {"expected_version": check_expected_version(expected_version),
            "events": [event_body(e) for e in events]}
    return Call("POST", f"{resource_path(resource_type, resource_id)}/events", body,
                idempotency_key=idempotency_key or new_idempotency_key())


def check_page_size(page_size: int) -> int:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be 1 to {MAX_PAGE_SIZE}")
    return page_size


class HistoryRead:
    """The pages of one history read, without I/O: :meth:`next_call` is the request of the next
    page (None when done), :meth:`take` the events of an answer, counted against ``limit``.

    Oldest first, pages go up from ``from_version`` by ``next_from_version``; newest first,
    down from ``to_version`` (the stream's version if None) by ``next_to_version``.
    """

    def __init__(self, resource_type: str, resource_id: str, *, from_version: int = 1,
                 to_version: int | None = None, order: Order = "asc", limit: int | None = None,
                 page_size: int = MAX_PAGE_SIZE) -> None:
        if isinstance(from_version, bool) or not isinstance(from_version, int) or from_version < 1:
            raise ValueError(f"from_version must be an int >= 1, not {from_version!r}")
        if to_version is not None and (isinstance(to_version, bool) or not isinstance(to_version, int)
                                       or to_version < 0):
            raise ValueError(f"to_version must be an int >= 0 or None, not {to_version!r}")
        if order not in ("asc", "desc"):
            raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be an int >= 0 or None, not {limit!r}")
        self.path = f"{resource_path(resource_type, resource_id)}/events"
        self.order = order
        self.page_size = check_page_size(page_size)
        self.remaining = limit
        self.from_version: int | None = from_version
        self.to_version = to_version
        if limit == 0 or (to_version is not None and to_version < from_version):
            self.from_version = None  # nothing to read: the API takes no to_version of 0

    def next_call(self) -> Call | None:
        if self.from_version is None or self.remaining == 0:
            return None
        size = self.page_size if self.remaining is None else min(self.page_size, self.remaining)
        params: dict[str, int | str] = {"from_version": self.from_version, "limit": size}
        if self.to_version is not None:
            params["to_version"] = self.to_version
        if self.order == "desc":
            params["order"] = "desc"
        return Call("GET", self.path, params=params)

    def take(self, page: EventPage) -> tuple[Event, ...]:
        events = page.events if self.remaining is None else page.events[:self.remaining]
        if self.remaining is not None:
            self.remaining -= len(events)
        if self.order == "asc":
            self.from_version = page.next_from_version
        elif page.next_to_version is None:
            self.from_version = None
        else:
            self.to_version = page.next_to_version
        return events


def retry_after(response: httpx.Response, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: delay-seconds or an HTTP-date; None if absent or unreadable."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def error_of(response: httpx.Response, idempotency_key: str | None = None) -> FencedError | None:
    """The error a non-2xx answer means, or None for a 2xx one."""
    if response.is_success:
        return None
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    return from_problem(response.status_code, body, response.text, retry_after=retry_after(response),
                        idempotency_key=idempotency_key)


def _body(response: httpx.Response) -> Mapping[str, Any]:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FencedError(response.status_code, "Invalid answer", f"the answer is not JSON: {e}") from e
    if not isinstance(body, Mapping):
        raise FencedError(response.status_code, "Invalid answer", "the answer is not a JSON object")
    return body


def _invalid(response: httpx.Response, e: Exception) -> FencedError:
    return FencedError(response.status_code, "Invalid answer", f"unexpected answer shape: {e!r}")


def parse_command(response: httpx.Response) -> CommandResult:
    """The answer of a command or an append (201)."""
    body = _body(response)
    try:
        return CommandResult(str(body["command_id"]), int(body["version"]),
                             tuple(EventRef(str(e["type"]), int(e["version"]), int(e["partition"]),
                                            int(e["offset"])) for e in body["events"]))
    except (KeyError, TypeError, ValueError) as e:
        raise _invalid(response, e) from e


def parse_resource(response: httpx.Response) -> Resource:
    body = _body(response)
    try:
        return Resource(str(body["type"]), str(body["id"]), int(body["version"]), bool(body["destroyed"]),
                        dict(body["state"]), response.headers.get("etag"))
    except (KeyError, TypeError, ValueError) as e:
        raise _invalid(response, e) from e


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def parse_event(e: Mapping[str, Any]) -> Event:
    """One event of a history: JSON ``data``, or ``data_base64`` (an answer without
    ``datacontenttype`` is JSON: servers before binary data sent none)."""
    raw = e.get("data_base64")
    if raw is not None:
        data: dict[str, Any] = {}
        data_bytes: bytes | None = base64.b64decode(raw, validate=True)
        content_type = str(e.get("datacontenttype") or OCTET_STREAM)
    else:
        data, data_bytes = dict(e.get("data") or {}), None
        content_type = str(e.get("datacontenttype") or JSON)
    return Event(int(e["version"]), str(e["type"]), data, int(e["partition"]), int(e["offset"]),
                 str(e["command"]), str(e["time"]), content_type, data_bytes)


def parse_events(response: httpx.Response) -> EventPage:
    body = _body(response)
    try:
        return EventPage(tuple(parse_event(e) for e in body["events"]),
                         _optional_int(body.get("next_from_version")), _optional_int(body.get("next_to_version")))
    except (KeyError, TypeError, ValueError) as e:  # binascii.Error is a ValueError
        raise _invalid(response, e) from e
