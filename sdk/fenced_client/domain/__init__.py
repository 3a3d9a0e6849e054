"""Deciders: pure functions that turn commands into events and events into state.

A resource type is a :class:`Decider`. Register one with :func:`register` and the write
path, the projector and the verifier handle it without further change. Domain code
imports no infrastructure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fenced_client.wire import NewEvent

State = Mapping[str, Any]


class Rejection(Exception):
    """The domain refuses a command; ``status`` is the HTTP status it maps to."""

    status = 422
    title = "Command rejected"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.detail!r})"


class NotFound(Rejection):
    status = 404
    title = "Not found"


class AlreadyExists(Rejection):
    status = 409
    title = "Conflict"


class Gone(Rejection):
    status = 410
    title = "Gone"


class InvalidCommand(Rejection):
    status = 422
    title = "Invalid command"


class InvalidEvent(Exception):
    """``evolve`` refuses an event in this state: the consumer rule discards it as invalid."""


@dataclass(frozen=True)
class Command:
    name: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Decider:
    """A resource type: ``decide(command, state) -> events`` and ``evolve(state, event)``.

    ``exists`` and ``destroyed`` read the state for the HTTP API (404 and 410). ``binary``: its
    events may hold bytes rather than a JSON object (open types); the rule discards a bytes
    event of any other type as ``invalid``, since ``evolve`` reads JSON.
    """

    type: str
    initial: State
    decide: Callable[[Command, State], Sequence[NewEvent]]
    evolve: Callable[[State, str, Mapping[str, Any]], State]
    exists: Callable[[State], bool]
    destroyed: Callable[[State], bool]
    commands: frozenset[str]
    binary: bool = False


_REGISTRY: dict[str, Decider] = {}


def register(decider: Decider) -> Decider:
    _REGISTRY[decider.type] = decider
    return decider


def get(resource_type: str) -> Decider | None:
    return _REGISTRY.get(resource_type)


def registered() -> Mapping[str, Decider]:
    return dict(_REGISTRY)
