"""The consumer rule: the one source of truth of what the log means (design.md §3).

Pure and deterministic: the projector, the verifier, the chaos checker and the SDK's
consumer helper all run this module, so every replay of a topic from offset 0 yields the
same accepted history. Per stream it keeps ``(version, max_token, recent commands,
state)`` and, for each record in partition order:

1. fence with token t: ``max_token = max(max_token, t)``;
2. event group with ``token < max_token``: discard ``stale``;
3. command id among the last ``RECENT_WINDOW`` accepted commands: discard ``duplicate``;
4. first version ``!= version + 1``: discard ``conflict``;
5. ``evolve`` refuses an event, or an event holds bytes and its type takes JSON only: discard
   ``invalid``;
6. else accept: ``version += n``, ``max_token = token``, ``state = evolve(...)``.

The events of one command form a group (``index``/``count`` headers) decided as a whole.
Records that cannot be read, or groups that do not hang together, are ``malformed``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from fenced_client.domain import Decider, InvalidEvent, State
from fenced_client.wire import CONTENT_TYPE, Record

RECENT_WINDOW = 256
"""Accepted command ids remembered per stream; part of the protocol (replays must agree)."""
RECENT_FINGERPRINT_HEX = 16
"""Hex digits of a command's fingerprint kept in the window (64 bits: enough to tell a reused
Idempotency-Key's other body from a retry, at a third of the window's size)."""

Reason = Literal["stale", "duplicate", "conflict", "invalid", "malformed"]
REASONS: tuple[Reason, ...] = ("stale", "duplicate", "conflict", "invalid", "malformed")


@dataclass(frozen=True)
class AcceptedEvent:
    version: int
    type: str
    data: Mapping[str, Any]
    partition: int
    offset: int
    token: int
    command: str
    event_id: str = ""
    time: str = ""
    data_bytes: bytes | None = None
    """The data of an event of an open type that holds bytes (``data`` is then empty)."""
    datacontenttype: str = CONTENT_TYPE

    def data_fields(self) -> dict[str, Any]:
        """The data as the CloudEvents JSON format has it: ``{"data": object}``, or bytes as
        ``{"data_base64": ..., "datacontenttype": ...}`` (wire-format.md §3.1)."""
        if self.data_bytes is None:
            return {"data": self.data}
        return {"data_base64": base64.b64encode(self.data_bytes).decode("ascii"),
                "datacontenttype": self.datacontenttype}


@dataclass(frozen=True)
class Verdict:
    """What the rule decided for one command's group (or one malformed record)."""

    stream: str
    command: str
    accepted: bool
    reason: Reason | None
    partition: int
    first_offset: int
    last_offset: int
    events: tuple[AcceptedEvent, ...] = ()
    token: int = 0

    @property
    def version(self) -> int | None:
        return self.events[-1].version if self.events else None


@dataclass(frozen=True)
class StreamState:
    """The rule's memory of one stream; serialisable so the projector can keep it in Redis."""

    version: int = 0
    max_token: int = 0
    recent: tuple[tuple[str, int, int, int, str], ...] = ()
    """(command id, last version, first offset, last offset, fingerprint) of recent accepted
    commands; the fingerprint is the first :data:`RECENT_FINGERPRINT_HEX` digits of the first
    event's ``ce_fencedfingerprint`` ("" if it had none); the rule never decides by it."""
    state: State = field(default_factory=dict)
    pending: tuple[Record, ...] = ()
    offset: int = -1
    """Offset of the last record of this stream the rule has seen."""

    def recent_command(self, command: str) -> tuple[str, int, int, int, str] | None:
        for entry in self.recent:
            if entry[0] == command:
                return entry
        return None

    def to_json(self) -> str:
        return json.dumps({
            "version": self.version, "max_token": self.max_token,
            "recent": [list(r) for r in self.recent], "state": self.state,
            "pending": [_record_to_json(r) for r in self.pending], "offset": self.offset,
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> StreamState:
        raw = json.loads(text)
        return cls(
            version=raw["version"], max_token=raw["max_token"],
            # entries stored before the fingerprint existed have four fields
            recent=tuple((r[0], r[1], r[2], r[3], r[4] if len(r) > 4 else "") for r in raw["recent"]),
            # fields a later version added are left out, so a rollback can still read its states
            state=raw["state"], pending=tuple(_record_from_json(p) for p in raw["pending"]),
            offset=raw["offset"],
        )


_RECORD_FIELDS = frozenset(f.name for f in fields(Record))


def _record_to_json(r: Record) -> dict[str, Any]:
    out = {"kind": r.kind, "stream": r.stream, "partition": r.partition, "offset": r.offset,
           "token": r.token, "version": r.version, "command": r.command, "index": r.index,
           "count": r.count, "event_type": r.event_type, "data": dict(r.data),
           "event_id": r.event_id, "time": r.time, "problem": r.problem, "fingerprint": r.fingerprint}
    if r.data_bytes is not None:  # only then: a JSON record's JSON is what it was before bytes existed
        out["data_base64"] = base64.b64encode(r.data_bytes).decode("ascii")
        out["datacontenttype"] = r.datacontenttype
    return out


def _record_from_json(p: Mapping[str, Any]) -> Record:
    # fields a later version added are left out, so a rollback can still read its states
    known = {k: v for k, v in p.items() if k in _RECORD_FIELDS and k != "data_bytes"}
    if "data_base64" in p:
        known["data_bytes"] = base64.b64decode(p["data_base64"])
    return Record(**known)


def initial(decider: Decider) -> StreamState:
    return StreamState(state=decider.initial)


def _discard(group: tuple[Record, ...], reason: Reason) -> Verdict:
    first, last = group[0], group[-1]
    return Verdict(first.stream, first.command, False, reason, first.partition,
                   first.offset, last.offset, token=first.token)


def _decide_group(decider: Decider, s: StreamState,
                  group: tuple[Record, ...]) -> tuple[StreamState, Verdict]:
    first = group[0]
    if any(r.token != first.token or r.command != first.command for r in group):
        return s, _discard(group, "malformed")
    if first.token < s.max_token:
        return s, _discard(group, "stale")
    if s.recent_command(first.command) is not None:
        return s, _discard(group, "duplicate")
    if any(r.version != s.version + 1 + i for i, r in enumerate(group)):
        return s, _discard(group, "conflict")
    state = s.state
    if not decider.binary and any(r.data_bytes is not None for r in group):
        return s, _discard(group, "invalid")
    try:
        for r in group:
            state = decider.evolve(state, r.event_type, r.data)
    except InvalidEvent:
        return s, _discard(group, "invalid")
    events = tuple(AcceptedEvent(r.version, r.event_type, r.data, r.partition, r.offset, r.token,
                                 r.command, r.event_id, r.time, r.data_bytes, r.datacontenttype)
                   for r in group)
    last = group[-1]
    recent = (*s.recent, (first.command, last.version, first.offset, last.offset,
                          first.fingerprint[:RECENT_FINGERPRINT_HEX]))
    accepted = replace(s, version=last.version, max_token=first.token,
                       recent=recent[-RECENT_WINDOW:], state=state)
    return accepted, Verdict(first.stream, first.command, True, None, first.partition,
                             first.offset, last.offset, events, first.token)


def apply(decider: Decider, s: StreamState, r: Record) -> tuple[StreamState, list[Verdict]]:
    """Apply one record of the stream; returns the new state and the verdicts it settled.

    Records at or below ``s.offset`` were applied before and change nothing, so a
    projector that re-reads a partition after a crash cannot apply a record twice.
    """
    if r.offset <= s.offset:
        return s, []
    verdicts: list[Verdict] = []
    s = replace(s, offset=r.offset)
    if s.pending and (r.kind != "event" or r.command != s.pending[0].command
                      or r.index != len(s.pending)):
        verdicts.append(_discard(s.pending, "malformed"))
        s = replace(s, pending=())
    if r.kind == "malformed":
        verdicts.append(_discard((r,), "malformed"))
        return s, verdicts
    if r.kind == "fence":
        return replace(s, max_token=max(s.max_token, r.token)), verdicts
    if not s.pending and r.index != 0:
        verdicts.append(_discard((r,), "malformed"))
        return s, verdicts
    group = (*s.pending, r)
    if len(group) < r.count:
        return replace(s, pending=group), verdicts
    if any(g.count != r.count for g in group):
        verdicts.append(_discard(group, "malformed"))
        return replace(s, pending=()), verdicts
    s, verdict = _decide_group(decider, replace(s, pending=()), group)
    verdicts.append(verdict)
    return s, verdicts


@dataclass
class Replay:
    """The rule over a whole topic, in memory: the verifier's and the SDK's consumer."""

    decider: Decider
    streams: dict[str, StreamState] = field(default_factory=dict)
    discards: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    records: int = 0
    accepted: int = 0

    def feed(self, r: Record) -> list[Verdict]:
        self.records += 1
        if not r.stream:  # keyless: belongs to no stream, discarded on its own
            self.discards["malformed"] += 1
            return [_discard((r,), "malformed")]
        s = self.streams.get(r.stream) or initial(self.decider)
        s, verdicts = apply(self.decider, s, r)
        self.streams[r.stream] = s
        for v in verdicts:
            if v.accepted:
                self.accepted += len(v.events)
            elif v.reason is not None:
                self.discards[v.reason] += 1
        return verdicts

    def feed_all(self, records: Iterable[Record]) -> list[Verdict]:
        out: list[Verdict] = []
        for r in records:
            out.extend(self.feed(r))
        return out
