"""Values the clients return: frozen dataclasses read from the API's JSON answers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EventRef:
    """Where one appended event landed: its type, the resource version it made, its record."""

    type: str
    version: int
    partition: int
    offset: int


@dataclass(frozen=True)
class CommandResult:
    """A command the log accepted (201). A replayed Idempotency-Key returns the same result."""

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


@dataclass(frozen=True)
class Event:
    """One accepted event of a resource's history, oldest first."""

    version: int
    type: str
    data: Mapping[str, Any]
    partition: int
    offset: int
    command: str
    time: str


@dataclass(frozen=True)
class EventPage:
    events: tuple[Event, ...]
    next_from_version: int | None
