"""Values the clients return: frozen dataclasses read from the API's JSON answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fenced_client.wire import CONTENT_TYPE, is_json


@dataclass(frozen=True)
class EventRef:
    """Where one appended event landed: its type, the resource version it made, its record."""

    type: str
    version: int
    partition: int
    offset: int


@dataclass(frozen=True)
class CommandResult:
    """A command or an append the log accepted (201): ``version`` is the resource's version
    after it. A replayed Idempotency-Key returns the same result."""

    command_id: str
    version: int
    events: tuple[EventRef, ...]


@dataclass(frozen=True)
class Resource:
    """A resource as the projection has it; ``etag`` is the version as an HTTP entity tag."""

    type: str
    id: str
    version: int
    destroyed: bool
    state: Mapping[str, Any]
    etag: str | None = None


JSON = CONTENT_TYPE


@dataclass(frozen=True)
class Event:
    """One accepted event of a resource's history.

    A JSON event has its object in ``data`` and ``data_bytes`` None; a binary event (sent as
    ``data_base64``) has its bytes in ``data_bytes``, ``data`` empty, and the content type the
    writer gave in ``datacontenttype``.
    """

    version: int
    type: str
    data: Mapping[str, Any]
    partition: int
    offset: int
    command: str
    time: str
    datacontenttype: str = JSON
    data_bytes: bytes | None = None


@dataclass(frozen=True)
class EventPage:
    """One page of a history: ``next_from_version`` (oldest first) or ``next_to_version``
    (newest first) says where the next page starts, None on the last one."""

    events: tuple[Event, ...]
    next_from_version: int | None
    next_to_version: int | None = None


@dataclass(frozen=True)
class EventData:
    """An event to append to an open stream (:meth:`FencedClient.append`).

    Give JSON data as ``data`` (a mapping, ``{}`` if neither is given) or bytes as
    ``data_bytes`` (sent as ``data_base64`` with ``datacontenttype``, by default
    application/octet-stream), not both. ``id`` becomes the record's ``ce_id`` (default: a
    UUID the server makes).
    """

    type: str
    data: Mapping[str, Any] | None = None
    data_bytes: bytes | None = None
    datacontenttype: str | None = None
    id: str | None = None

    def __post_init__(self) -> None:
        if not self.type:
            raise ValueError("an event needs a type")
        if self.data is not None and self.data_bytes is not None:
            raise ValueError("give data (JSON) or data_bytes (binary), not both")
        if self.data_bytes is not None and not isinstance(self.data_bytes, bytes | bytearray | memoryview):
            raise TypeError(f"data_bytes must be bytes, not {type(self.data_bytes).__name__}")
        if self.datacontenttype is not None and self.data_bytes is None and not is_json(self.datacontenttype):
            raise ValueError("a datacontenttype other than application/json needs data_bytes")
        if self.datacontenttype is not None and self.data_bytes is not None and is_json(self.datacontenttype):
            raise ValueError("JSON data goes in data, not data_bytes")
