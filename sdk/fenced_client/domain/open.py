"""Open resource types: the client decides the events and appends them with an expected version.

An open type has no domain rules: its decider takes the events the client sent (command
``Append``, ``data = {"events": [{"type", "data" | "data_base64" + "datacontenttype", "id"?}, ...]}``)
and its ``evolve`` accepts every event, so the consumer rule has no ``invalid`` reason for it.
Everything else is the same as for a decided type: the lease and its token, one record batch
per append (accepted or discarded whole), the token, duplicate and version checks of the rule, Idempotency-Keys.

``expected_version`` of an append is ``any``, ``no_stream`` (the stream has no event yet),
``exists`` (it has one at least) or an exact version; a mismatch is 409 with
``current_version``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from fenced_client.domain import Command, Decider, InvalidCommand, State
from fenced_client.wire import OCTET_STREAM, NewEvent, canonical_base64

APPEND = "Append"
Expectation = Literal["any", "no_stream", "exists"]
EXPECTATIONS: tuple[Expectation, ...] = ("any", "no_stream", "exists")


def expectation_fails(expected: int | str | None, version: int) -> str | None:
    """Why ``expected`` does not hold at ``version`` (None: it holds)."""
    if expected is None or expected == "any":
        return None
    if expected == "no_stream":
        return None if version == 0 else f"expected no stream, the stream is at version {version}"
    if expected == "exists":
        return None if version > 0 else "expected the stream to exist, it has no event"
    if isinstance(expected, int) and not isinstance(expected, bool):
        return None if expected == version else f"expected version {expected}, the resource is at {version}"
    raise ValueError(f"not an expected version: {expected!r}")


def _decide(command: Command, state: State) -> Sequence[NewEvent]:
    events = command.data.get("events")
    if command.name != APPEND or not isinstance(events, list) or not events:
        raise InvalidCommand("an open stream takes appends of one event at least")
    return [_event(e) for e in events]


def _event(e: Mapping[str, Any]) -> NewEvent:
    """One event of an append: ``data`` (a JSON object) or ``data_base64`` (bytes, with their
    ``datacontenttype``, application/octet-stream if none), as the CloudEvents JSON format has them."""
    if "data_base64" not in e:
        return NewEvent(e["type"], e.get("data", {}), e.get("id"))
    try:
        raw = canonical_base64(e["data_base64"])
    except (TypeError, ValueError) as err:  # binascii.Error is a ValueError
        raise InvalidCommand(f"data_base64 of event {e['type']!r} is not base64: {err}") from err
    return NewEvent(e["type"], {}, e.get("id"), data_bytes=raw,
                    datacontenttype=e.get("datacontenttype") or OCTET_STREAM)


def _evolve(state: State, event_type: str, data: Mapping[str, Any]) -> State:
    return state  # no domain rules: the version the rule keeps is the whole state


def open_decider(resource_type: str) -> Decider:
    return Decider(type=resource_type, initial={}, decide=_decide, evolve=_evolve,
                   exists=lambda s: True, destroyed=lambda s: False, commands=frozenset({APPEND}), binary=True)


def is_open(decider: Decider) -> bool:
    return decider.decide is _decide
