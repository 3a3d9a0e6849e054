"""The HTTP API as values, without I/O: what to send for a call, what an answer means.

Both clients (sync and async) send these :class:`Call` values and read the answers with
:func:`parse_command`, :func:`parse_resource` and :func:`parse_events`, so the two differ
only in how they wait.
"""

from __future__ import annotations

import email.utils
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from fenced_client.errors import FencedError, from_problem
from fenced_client.models import CommandResult, Event, EventPage, EventRef, Resource

MAX_PAGE_SIZE = 1000
"""The API's largest ``limit`` for one page of events."""


@dataclass(frozen=True)
class Call:
    """One request of the API. ``idempotency_key`` is set for writes only."""

    method: str
    path: str
    json: Mapping[str, Any] | None = None
    params: Mapping[str, int] = field(default_factory=dict)
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


def events_call(resource_type: str, resource_id: str, from_version: int, limit: int) -> Call:
    return Call("GET", f"{resource_path(resource_type, resource_id)}/events",
                params={"from_version": from_version, "limit": limit})


def check_page_size(page_size: int) -> int:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be 1 to {MAX_PAGE_SIZE}")
    return page_size


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


def parse_events(response: httpx.Response) -> EventPage:
    body = _body(response)
    try:
        nxt = body["next_from_version"]
        return EventPage(
            tuple(Event(int(e["version"]), str(e["type"]), dict(e["data"]), int(e["partition"]),
                        int(e["offset"]), str(e["command"]), str(e["time"])) for e in body["events"]),
            None if nxt is None else int(nxt))
    except (KeyError, TypeError, ValueError) as e:
        raise _invalid(response, e) from e
