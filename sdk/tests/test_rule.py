"""The consumer rule (sdk/fenced_client/rule.py, design.md section 3), on the folders decider.

Table-driven tests of every branch of ``rule.apply``, then hypothesis properties over random
logs: accepted histories are valid, replays agree, and a replay split into chunks with the
stream state serialised in between (what the projector does) equals a straight replay.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fenced_client import rule
from fenced_client.domain import InvalidEvent, State
from fenced_client.domain.folders import FOLDERS, INITIAL
from fenced_client.rule import (
    REASONS,
    RECENT_WINDOW,
    AcceptedEvent,
    Replay,
    StreamState,
    Verdict,
    apply,
)
from fenced_client.wire import Record, decode, encode_value, event_headers, fence_headers, partition_for

FAST = settings(max_examples=200, deadline=None, database=None)

CREATED, UPDATED, DESTROYED = "FolderCreated", "FolderUpdated", "FolderDestroyed"


# --------------------------------------------------------------------------------------------
# Record builders
# --------------------------------------------------------------------------------------------

def ev(offset: int, version: int, etype: str = UPDATED, *, token: int = 1,
       command: str | None = None, index: int = 0, count: int = 1, stream: str = "f1",
       partition: int = 0, data: Mapping[str, Any] | None = None) -> Record:
    """An event record; the command id defaults to one per offset (a fresh command)."""
    if data is None:
        data = ({"name": f"n{offset}", "parent_id": None} if etype == CREATED
                else {"name": f"n{offset}"} if etype == UPDATED else {})
    return Record("event", stream, partition, offset, token=token, version=version,
                  command=command if command is not None else f"cmd@{offset}", index=index,
                  count=count, event_type=etype, data=data, event_id=f"id@{offset}",
                  time="2024-01-01T00:00:00.000000Z")


def fence(offset: int, token: int, *, stream: str = "f1", partition: int = 0) -> Record:
    return Record("fence", stream, partition, offset, token=token)


def bad(offset: int, *, stream: str = "f1", partition: int = 0) -> Record:
    return Record("malformed", stream, partition, offset, problem="unreadable")


def run(records: Iterable[Record], s: StreamState | None = None,
        ) -> tuple[StreamState, list[Verdict]]:
    s = s if s is not None else rule.initial(FOLDERS)
    verdicts: list[Verdict] = []
    for r in records:
        s, vs = apply(FOLDERS, s, r)
        verdicts.extend(vs)
    return s, verdicts


def summary(verdicts: Sequence[Verdict]) -> list[tuple[str, int, int]]:
    return [(v.reason or "accepted", v.first_offset, v.last_offset) for v in verdicts]


# --------------------------------------------------------------------------------------------
# Every branch of rule.apply, table-driven
# --------------------------------------------------------------------------------------------

# (id, records, verdicts as (reason or "accepted", first offset, last offset),
#  final version, final max_token, records left pending)
Case = tuple[str, list[Record], list[tuple[str, int, int]], int, int, int]

CASES: list[Case] = [
    # accept
    ("accept create", [ev(0, 1, CREATED)], [("accepted", 0, 0)], 1, 1, 0),
    ("accept create update destroy",
     [ev(0, 1, CREATED), ev(1, 2, UPDATED, token=2), ev(2, 3, DESTROYED, token=2)],
     [("accepted", 0, 0), ("accepted", 1, 1), ("accepted", 2, 2)], 3, 2, 0),
    ("accept token zero", [ev(0, 1, CREATED, token=0)], [("accepted", 0, 0)], 1, 0, 0),
    # fences
    ("fence raises max_token", [fence(0, 5)], [], 0, 5, 0),
    ("fence never lowers max_token", [fence(0, 5), fence(1, 3)], [], 0, 5, 0),
    ("fence above accepted token", [ev(0, 1, CREATED, token=1), fence(1, 4)],
     [("accepted", 0, 0)], 1, 4, 0),
    ("fence below accepted token", [ev(0, 1, CREATED, token=6), fence(1, 4)],
     [("accepted", 0, 0)], 1, 6, 0),
    # stale
    ("stale after fence",
     [ev(0, 1, CREATED, token=1), fence(1, 5), ev(2, 2, token=3)],
     [("accepted", 0, 0), ("stale", 2, 2)], 1, 5, 0),
    ("stale below accepted token",
     [ev(0, 1, CREATED, token=5), ev(1, 2, token=4)],
     [("accepted", 0, 0), ("stale", 1, 1)], 1, 5, 0),
    ("stale first event after fence", [fence(0, 3), ev(1, 1, CREATED, token=2)],
     [("stale", 1, 1)], 0, 3, 0),
    ("token equal to fence is accepted",
     [ev(0, 1, CREATED, token=1), fence(1, 5), ev(2, 2, token=5)],
     [("accepted", 0, 0), ("accepted", 2, 2)], 2, 5, 0),
    ("higher token is accepted and raises max_token",
     [ev(0, 1, CREATED, token=1), ev(1, 2, token=9)],
     [("accepted", 0, 0), ("accepted", 1, 1)], 2, 9, 0),
    ("stale beats duplicate",
     [ev(0, 1, CREATED, command="a"), fence(1, 2), ev(2, 1, CREATED, command="a")],
     [("accepted", 0, 0), ("stale", 2, 2)], 1, 2, 0),
    # duplicate
    ("duplicate of the same record",
     [ev(0, 1, CREATED, command="a"), ev(1, 1, CREATED, command="a")],
     [("accepted", 0, 0), ("duplicate", 1, 1)], 1, 1, 0),
    ("duplicate beats conflict",
     [ev(0, 1, CREATED, command="a"), ev(1, 2, command="b"), ev(2, 3, command="b")],
     [("accepted", 0, 0), ("accepted", 1, 1), ("duplicate", 2, 2)], 2, 1, 0),
    ("duplicate with a higher token",
     [ev(0, 1, CREATED, command="a", token=1), ev(1, 2, command="a", token=3)],
     [("accepted", 0, 0), ("duplicate", 1, 1)], 1, 1, 0),
    ("duplicate of an older command",
     [ev(0, 1, CREATED, command="a"), ev(1, 2, command="b"), ev(2, 3, command="a")],
     [("accepted", 0, 0), ("accepted", 1, 1), ("duplicate", 2, 2)], 2, 1, 0),
    ("a discarded command can be accepted later",
     [ev(0, 1, CREATED, command="a"), ev(1, 3, command="b"), ev(2, 2, command="b")],
     [("accepted", 0, 0), ("conflict", 1, 1), ("accepted", 2, 2)], 2, 1, 0),
    # conflict
    ("conflict on the same version",
     [ev(0, 1, CREATED), ev(1, 2, UPDATED), ev(2, 2, DESTROYED)],
     [("accepted", 0, 0), ("accepted", 1, 1), ("conflict", 2, 2)], 2, 1, 0),
    ("conflict on a version gap", [ev(0, 1, CREATED), ev(1, 3)],
     [("accepted", 0, 0), ("conflict", 1, 1)], 1, 1, 0),
    ("conflict when the first version is not 1", [ev(0, 2, CREATED)],
     [("conflict", 0, 0)], 0, 0, 0),
    ("conflict beats invalid",
     [ev(0, 1, CREATED), ev(1, 2, DESTROYED), ev(2, 4, UPDATED)],
     [("accepted", 0, 0), ("accepted", 1, 1), ("conflict", 2, 2)], 2, 1, 0),
    ("a discarded event does not raise max_token",
     [ev(0, 1, CREATED, token=1), ev(1, 3, token=9), ev(2, 2, token=2)],
     [("accepted", 0, 0), ("conflict", 1, 1), ("accepted", 2, 2)], 2, 2, 0),
    # invalid
    ("invalid update after destroy",
     [ev(0, 1, CREATED), ev(1, 2, DESTROYED), ev(2, 3, UPDATED)],
     [("accepted", 0, 0), ("accepted", 1, 1), ("invalid", 2, 2)], 2, 1, 0),
    ("invalid destroy after destroy",
     [ev(0, 1, CREATED), ev(1, 2, DESTROYED), ev(2, 3, DESTROYED)],
     [("accepted", 0, 0), ("accepted", 1, 1), ("invalid", 2, 2)], 2, 1, 0),
    ("invalid create after destroy",
     [ev(0, 1, CREATED), ev(1, 2, DESTROYED), ev(2, 3, CREATED)],
     [("accepted", 0, 0), ("accepted", 1, 1), ("invalid", 2, 2)], 2, 1, 0),
    ("invalid update before create", [ev(0, 1, UPDATED)], [("invalid", 0, 0)], 0, 0, 0),
    ("invalid destroy before create", [ev(0, 1, DESTROYED)], [("invalid", 0, 0)], 0, 0, 0),
    ("invalid second create", [ev(0, 1, CREATED), ev(1, 2, CREATED)],
     [("accepted", 0, 0), ("invalid", 1, 1)], 1, 1, 0),
    ("invalid unknown event type", [ev(0, 1, CREATED), ev(1, 2, "FolderRenamed")],
     [("accepted", 0, 0), ("invalid", 1, 1)], 1, 1, 0),
    ("an invalid event does not raise max_token",
     [ev(0, 1, CREATED, token=1), ev(1, 2, CREATED, token=7), ev(2, 2, token=2)],
     [("accepted", 0, 0), ("invalid", 1, 1), ("accepted", 2, 2)], 2, 2, 0),
    # malformed records
    ("malformed record", [ev(0, 1, CREATED), bad(1), ev(2, 2)],
     [("accepted", 0, 0), ("malformed", 1, 1), ("accepted", 2, 2)], 2, 1, 0),
    ("index != 0 without pending", [ev(0, 1, CREATED, command="g", index=1, count=2)],
     [("malformed", 0, 0)], 0, 0, 0),
    # groups accepted or discarded as a whole
    ("group accepted",
     [ev(0, 1, CREATED, command="g", index=0, count=2),
      ev(1, 2, UPDATED, command="g", index=1, count=2)],
     [("accepted", 0, 1)], 2, 1, 0),
    ("group of three accepted",
     [ev(0, 1, CREATED, command="g", index=0, count=3),
      ev(1, 2, UPDATED, command="g", index=1, count=3),
      ev(2, 3, DESTROYED, command="g", index=2, count=3)],
     [("accepted", 0, 2)], 3, 1, 0),
    ("group invalid as a whole",
     [ev(0, 1, CREATED, command="g", index=0, count=2),
      ev(1, 2, CREATED, command="g", index=1, count=2)],
     [("invalid", 0, 1)], 0, 0, 0),
    ("group with update after destroy invalid as a whole",
     [ev(0, 1, CREATED),
      ev(1, 2, DESTROYED, command="g", index=0, count=2),
      ev(2, 3, UPDATED, command="g", index=1, count=2)],
     [("accepted", 0, 0), ("invalid", 1, 2)], 1, 1, 0),
    ("group conflict as a whole",
     [ev(0, 1, CREATED, command="g", index=0, count=2),
      ev(1, 3, UPDATED, command="g", index=1, count=2)],
     [("conflict", 0, 1)], 0, 0, 0),
    ("group stale as a whole",
     [fence(0, 5),
      ev(1, 1, CREATED, command="g", index=0, count=2, token=3),
      ev(2, 2, UPDATED, command="g", index=1, count=2, token=3)],
     [("stale", 1, 2)], 0, 5, 0),
    ("group duplicate as a whole",
     [ev(0, 1, CREATED, command="a"),
      ev(1, 2, command="g", index=0, count=2), ev(2, 3, command="g", index=1, count=2),
      ev(3, 2, command="g", index=0, count=2), ev(4, 3, command="g", index=1, count=2)],
     [("accepted", 0, 0), ("accepted", 1, 2), ("duplicate", 3, 4)], 3, 1, 0),
    ("incomplete group has no verdict yet",
     [ev(0, 1, CREATED, command="g", index=0, count=3),
      ev(1, 2, UPDATED, command="g", index=1, count=3)],
     [], 0, 0, 2),
    ("group with mixed tokens is malformed",
     [ev(0, 1, CREATED, command="g", index=0, count=2, token=1),
      ev(1, 2, UPDATED, command="g", index=1, count=2, token=2)],
     [("malformed", 0, 1)], 0, 0, 0),
    ("group whose count shrinks is malformed",
     [ev(0, 1, CREATED, command="g", index=0, count=3),
      ev(1, 2, UPDATED, command="g", index=1, count=2)],
     [("malformed", 0, 1)], 0, 0, 0),
    ("group whose count grows is malformed",
     [ev(0, 1, CREATED, command="g", index=0, count=2),
      ev(1, 2, UPDATED, command="g", index=1, count=3),
      ev(2, 3, UPDATED, command="g", index=2, count=3)],
     [("malformed", 0, 2)], 0, 0, 0),
    # a pending group interrupted
    ("pending interrupted by a fence",
     [ev(0, 1, CREATED, command="g", index=0, count=2), fence(1, 9)],
     [("malformed", 0, 0)], 0, 9, 0),
    ("pending interrupted by another command",
     [ev(0, 1, CREATED, command="g", index=0, count=2), ev(1, 1, CREATED, command="h")],
     [("malformed", 0, 0), ("accepted", 1, 1)], 1, 1, 0),
    ("pending interrupted by a malformed record",
     [ev(0, 1, CREATED, command="g", index=0, count=2), bad(1)],
     [("malformed", 0, 0), ("malformed", 1, 1)], 0, 0, 0),
    ("pending interrupted by a skipped index",
     [ev(0, 1, CREATED, command="g", index=0, count=3),
      ev(1, 3, UPDATED, command="g", index=2, count=3)],
     [("malformed", 0, 0), ("malformed", 1, 1)], 0, 0, 0),
    ("pending interrupted by the same command restarting",
     [ev(0, 1, CREATED, command="g", index=0, count=2),
      ev(1, 1, CREATED, command="g", index=0, count=2),
      ev(2, 2, UPDATED, command="g", index=1, count=2)],
     [("malformed", 0, 0), ("accepted", 1, 2)], 2, 1, 0),
    ("pending of two interrupted",
     [ev(0, 1, CREATED, command="g", index=0, count=3),
      ev(1, 2, UPDATED, command="g", index=1, count=3), fence(2, 1)],
     [("malformed", 0, 1)], 0, 1, 0),
]


@pytest.mark.parametrize(("records", "expected", "version", "max_token", "pending"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_apply(records: list[Record], expected: list[tuple[str, int, int]], version: int,
               max_token: int, pending: int) -> None:
    s, verdicts = run(records)
    assert summary(verdicts) == expected
    assert (s.version, s.max_token, len(s.pending)) == (version, max_token, pending)
    assert s.offset == records[-1].offset
    # The state is exactly the accepted events folded through evolve.
    state: State = FOLDERS.initial
    for v in verdicts:
        for e in v.events:
            state = FOLDERS.evolve(state, e.type, e.data)
    assert s.state == state
    # A straight Replay agrees and counts what it discarded.
    replay = Replay(FOLDERS)
    assert replay.feed_all(records) == verdicts
    assert replay.streams["f1"] == s
    assert replay.discards == {r: sum(1 for e in expected if e[0] == r) for r in REASONS}
    assert replay.accepted == sum(len(v.events) for v in verdicts)
    assert replay.records == len(records)


def test_accepted_verdict_carries_the_events() -> None:
    records = [ev(10, 1, CREATED, command="g", index=0, count=2, token=4, partition=3,
                  data={"name": "Inbox", "parent_id": "root"}),
               ev(11, 2, UPDATED, command="g", index=1, count=2, token=4, partition=3,
                  data={"name": "Mail"})]
    s, [v] = run(records)
    assert v == Verdict(
        stream="f1", command="g", accepted=True, reason=None, partition=3, first_offset=10,
        last_offset=11, token=4, events=(
            AcceptedEvent(1, CREATED, {"name": "Inbox", "parent_id": "root"}, 3, 10, 4, "g",
                          "id@10", "2024-01-01T00:00:00.000000Z"),
            AcceptedEvent(2, UPDATED, {"name": "Mail"}, 3, 11, 4, "g",
                          "id@11", "2024-01-01T00:00:00.000000Z"),
        ))
    assert v.version == 2
    assert s.state == {"exists": True, "destroyed": False, "name": "Mail", "parent_id": "root"}
    assert s.recent == (("g", 2, 10, 11, ""),)
    assert s.recent_command("g") == ("g", 2, 10, 11, "")
    assert s.recent_command("h") is None


def test_discard_verdict_has_no_events() -> None:
    _, [_, v] = run([ev(0, 1, CREATED, token=3), ev(1, 5, command="x", token=4, partition=0)])
    assert v == Verdict("f1", "x", False, "conflict", 0, 1, 1, (), 4)
    assert v.version is None


def test_discards_leave_the_state_untouched() -> None:
    s0, _ = run([ev(0, 1, CREATED, token=2), ev(1, 2, DESTROYED, token=2)])
    for r in [ev(2, 3, UPDATED, token=2),          # invalid
              ev(3, 2, UPDATED, token=2),          # conflict
              ev(4, 3, UPDATED, token=1),          # stale
              ev(5, 3, command="cmd@1", token=2),  # duplicate
              bad(6)]:                             # malformed
        s1, [v] = apply(FOLDERS, s0, r)
        assert not v.accepted
        assert (s1.version, s1.max_token, s1.recent, s1.state, s1.pending) == (
            s0.version, s0.max_token, s0.recent, s0.state, s0.pending)
        assert s1.offset == r.offset


def test_fence_leaves_everything_but_max_token_untouched() -> None:
    s0, _ = run([ev(0, 1, CREATED, token=2)])
    s1, verdicts = apply(FOLDERS, s0, fence(1, 8))
    assert verdicts == []
    assert s1 == StreamState(version=1, max_token=8, recent=s0.recent, state=s0.state,
                             offset=1)


# --------------------------------------------------------------------------------------------
# Offsets: re-applying a record at or below s.offset changes nothing
# --------------------------------------------------------------------------------------------

PREFIXES: list[tuple[str, list[Record]]] = [
    ("after accept", [ev(0, 1, CREATED), ev(3, 2)]),
    ("after fence", [ev(0, 1, CREATED), fence(3, 7)]),
    ("after discard", [ev(0, 1, CREATED), ev(3, 5)]),
    ("after malformed", [ev(0, 1, CREATED), bad(3)]),
    ("with pending", [ev(0, 1, CREATED), ev(3, 2, command="g", index=0, count=2)]),
]


@pytest.mark.parametrize("prefix", [p[1] for p in PREFIXES], ids=[p[0] for p in PREFIXES])
@pytest.mark.parametrize("again", [
    pytest.param(lambda o: ev(o, 2, command="g", index=1, count=2), id="group continuation"),
    pytest.param(lambda o: ev(o, 2, token=99), id="valid event"),
    pytest.param(lambda o: fence(o, 1000), id="fence"),
    pytest.param(bad, id="malformed"),
])
@pytest.mark.parametrize("delta", [0, 1, 3])
def test_reapplying_an_old_offset_is_a_no_op(prefix: list[Record], again: Any,
                                             delta: int) -> None:
    s, _ = run(prefix)
    assert s.offset == 3
    r = again(3 - delta)
    s2, verdicts = apply(FOLDERS, s, r)
    assert verdicts == []
    assert s2 is s


def test_replaying_a_prefix_again_is_a_no_op() -> None:
    records = [ev(0, 1, CREATED), fence(1, 3), ev(2, 2, token=3), ev(3, 3, token=2),
               ev(4, 3, command="g", index=0, count=2, token=3)]
    s, _ = run(records)
    s2, verdicts = run(records, s)
    assert verdicts == []
    assert s2 == s


def test_offset_advances_on_every_record() -> None:
    s = rule.initial(FOLDERS)
    assert s.offset == -1
    for r in [ev(4, 1, CREATED), fence(9, 1), bad(10), ev(15, 7),
              ev(20, 2, command="g", index=0, count=2)]:
        s, _ = apply(FOLDERS, s, r)
        assert s.offset == r.offset


# --------------------------------------------------------------------------------------------
# The window of recent commands
# --------------------------------------------------------------------------------------------

def test_recent_window_is_bounded_and_defined_by_the_log() -> None:
    n = RECENT_WINDOW + 2
    records = [ev(0, 1, CREATED, command="c0")] + [
        ev(i, i + 1, command=f"c{i}") for i in range(1, n)]
    s, verdicts = run(records)
    assert all(v.accepted for v in verdicts)
    assert len(s.recent) == RECENT_WINDOW
    assert s.recent[-1] == (f"c{n - 1}", n, n - 1, n - 1, "")
    assert s.recent_command("c0") is None
    assert s.recent_command("c1") is None
    assert s.recent_command("c2") is not None
    # c2 is still remembered: a retry of it is a duplicate, even at the right next version.
    s2, [v] = apply(FOLDERS, s, ev(n, n + 1, command="c2"))
    assert v.reason == "duplicate"
    # c1 has left the window: the rule no longer recognises it and decides it afresh.
    _, [v] = apply(FOLDERS, s2, ev(n + 1, n + 1, command="c1"))
    assert v.accepted


# --------------------------------------------------------------------------------------------
# StreamState serialisation
# --------------------------------------------------------------------------------------------

def _states() -> list[tuple[str, StreamState]]:
    many = [ev(0, 1, CREATED, command="c0")] + [
        ev(i, i + 1, command=f"c{i}") for i in range(1, RECENT_WINDOW + 5)]
    return [
        ("default", StreamState()),
        ("initial", rule.initial(FOLDERS)),
        ("accepted", run([ev(0, 1, CREATED), ev(1, 2, token=3)])[0]),
        ("fenced", run([ev(0, 1, CREATED), fence(1, 2**62)])[0]),
        ("destroyed", run([ev(0, 1, CREATED), ev(1, 2, DESTROYED)])[0]),
        ("pending", run([
            ev(0, 1, CREATED),
            ev(1, 2, command="g", index=0, count=3, token=5,
               data={"name": "ü 日本 \"q\"", "nested": {"a": [1, 2.5, None, True]}}),
            ev(2, 3, command="g", index=1, count=3, token=5)])[0]),
        ("full window", run(many)[0]),
        ("pending bytes", run([
            ev(0, 1, CREATED),
            replace(ev(1, 2, command="b", index=0, count=2, token=5, data={}), data_bytes=b"\x00\xff",
                    datacontenttype="image/png"),
            replace(ev(2, 3, command="b", index=1, count=2, token=5, data={}), data_bytes=b"",
                    datacontenttype="application/octet-stream")][:2])[0]),
    ]


@pytest.mark.parametrize("s", [x[1] for x in _states()], ids=[x[0] for x in _states()])
def test_stream_state_json_round_trip(s: StreamState) -> None:
    text = s.to_json()
    back = StreamState.from_json(text)
    assert back == s
    assert StreamState.from_json(text.encode()) == s
    assert back.to_json() == text
    assert json.loads(text)["offset"] == s.offset


def test_pending_survives_serialisation() -> None:
    first = ev(0, 1, CREATED, command="g", index=0, count=2, data={"name": "A", "parent_id": "p"})
    s, verdicts = run([first])
    assert verdicts == []
    s = StreamState.from_json(s.to_json())
    assert s.pending == (first,)
    s, [v] = apply(FOLDERS, s, ev(1, 2, command="g", index=1, count=2))
    assert v.accepted
    assert v.events[0].data == {"name": "A", "parent_id": "p"}


def test_initial_shares_the_deciders_initial_state() -> None:
    s = rule.initial(FOLDERS)
    assert s == StreamState(state=INITIAL)
    assert (s.version, s.max_token, s.recent, s.pending, s.offset) == (0, 0, (), (), -1)


# --------------------------------------------------------------------------------------------
# Replay
# --------------------------------------------------------------------------------------------

def test_replay_keeps_streams_apart() -> None:
    records = [
        ev(0, 1, CREATED, stream="a", command="g", index=0, count=2),
        ev(1, 1, CREATED, stream="b", token=5),      # does not interrupt a's group
        fence(2, 9, stream="b"),                     # nor does b's fence
        ev(3, 2, stream="a", command="g", index=1, count=2),
        ev(4, 2, stream="b", token=6),               # stale in b
        ev(5, 3, stream="a", token=2),               # accepted in a: b's fence is not a's
    ]
    replay = Replay(FOLDERS)
    verdicts = replay.feed_all(records)
    assert [(v.stream, v.reason or "accepted") for v in verdicts] == [
        ("b", "accepted"), ("a", "accepted"), ("b", "stale"), ("a", "accepted")]
    assert (replay.streams["a"].version, replay.streams["a"].max_token) == (3, 2)
    assert (replay.streams["b"].version, replay.streams["b"].max_token) == (1, 9)
    assert replay.accepted == 4
    assert replay.discards == {"stale": 1, "duplicate": 0, "conflict": 0, "invalid": 0,
                               "malformed": 0}
    assert replay.records == 6


def test_replay_of_decoded_records() -> None:
    """The wire format and the rule together, as a consumer sees a topic."""
    def event(offset: int, version: int, etype: str, data: dict[str, Any], *, token: int,
              command: str, index: int = 0, count: int = 1) -> Record:
        headers = event_headers(source="/t", subject="f1", event_type=etype, version=version,
                                token=token, command=command, index=index, count=count)
        return decode(b"f1", encode_value(data), headers, 0, offset)

    records = [
        event(0, 1, CREATED, {"name": "a", "parent_id": None}, token=1, command="c1"),
        event(1, 2, UPDATED, {"name": "b"}, token=1, command="c2", index=0, count=2),
        event(2, 3, DESTROYED, {}, token=1, command="c2", index=1, count=2),
        decode(b"f1", None, fence_headers(source="/t", subject="f1", token=2), 0, 3),
        event(4, 4, UPDATED, {"name": "z"}, token=1, command="zombie"),   # stale
        event(5, 4, UPDATED, {"name": "z"}, token=2, command="late"),     # invalid
        event(6, 2, UPDATED, {"name": "b"}, token=2, command="c2"),       # duplicate
        decode(b"f1", b"[]", event_headers(source="/t", subject="f1", event_type=UPDATED,
                                           version=4, token=2, command="x", index=0, count=1),
               0, 7),                                                     # malformed
    ]
    replay = Replay(FOLDERS)
    verdicts = replay.feed_all(records)
    assert summary(verdicts) == [("accepted", 0, 0), ("accepted", 1, 2), ("stale", 4, 4),
                                 ("invalid", 5, 5), ("duplicate", 6, 6), ("malformed", 7, 7)]
    assert replay.streams["f1"].state == {"exists": True, "destroyed": True, "name": "b",
                                          "parent_id": None}


def test_replay_discards_keyless_records_on_their_own() -> None:
    """Keyless records belong to no stream: each is malformed, whatever its partition/offset."""
    headers = event_headers(source="/t", subject="f1", event_type=UPDATED, version=1, token=1,
                            command="c", index=0, count=1)
    replay = Replay(FOLDERS)
    pending = ev(0, 1, CREATED, command="g", index=0, count=2, partition=0)
    assert replay.feed(pending) == []
    v1 = replay.feed(decode(None, b"{}", headers, partition=0, offset=100))
    v2 = replay.feed(decode(None, b"{}", headers, partition=1, offset=5))
    v3 = replay.feed(decode(None, b"{}", headers, partition=1, offset=5))
    assert summary(v1 + v2 + v3) == [("malformed", 100, 100), ("malformed", 5, 5),
                                     ("malformed", 5, 5)]
    assert replay.discards["malformed"] == 3
    assert "" not in replay.streams
    # They interrupt nothing: f1's pending group completes.
    [v] = replay.feed(ev(1, 2, UPDATED, command="g", index=1, count=2, partition=0))
    assert v.accepted


def test_wrong_partition_record_does_not_hide_later_records() -> None:
    partitions = 3
    p = partition_for("f1", partitions)
    q = (p + 1) % partitions

    def record(partition: int, offset: int, version: int, etype: str, command: str) -> Record:
        headers = event_headers(source="/t", subject="f1", event_type=etype, version=version,
                                token=1, command=command, index=0, count=1)
        return decode(b"f1", encode_value({"name": "a", "parent_id": None}), headers,
                      partition, offset, partitions)

    replay = Replay(FOLDERS)
    replay.feed(record(p, 0, 1, CREATED, "c1"))
    stray = record(q, 500, 2, UPDATED, "stray")
    assert stray.kind == "malformed"
    assert summary(replay.feed(stray)) == [("malformed", 500, 500)]
    assert summary(replay.feed(record(p, 1, 2, UPDATED, "c2"))) == [("accepted", 1, 1)]
    assert replay.streams["f1"].version == 2


# --------------------------------------------------------------------------------------------
# Properties over random logs
# --------------------------------------------------------------------------------------------

STREAMS = ("f1", "f2", "f3")
PARTITIONS = 3
EVENT_TYPES = (CREATED, UPDATED, DESTROYED)

# Strategies built once: building them inside the generator costs a validation per draw.
_OPS = st.sampled_from(("event",) * 6 + ("fence", "malformed", "retry"))
_STREAM = st.sampled_from(STREAMS)
_FENCE_DELTA = st.integers(-2, 3)
_COUNT = st.sampled_from((1, 1, 1, 2, 3))
_HOW = st.sampled_from(("keep", "keep", "bump", "bump", "stale"))
_SMALL = st.integers(1, 3)
_ONE_IN_6 = st.integers(0, 5)
_ONE_IN_10 = st.integers(0, 9)
_VERSION_DELTA = st.sampled_from((0, 0, 0, 0, 0, 0, -1, 1, 2))
_AFTER_DESTROY = st.sampled_from((UPDATED, DESTROYED))
_WHILE_ALIVE = st.sampled_from((UPDATED, UPDATED, UPDATED, DESTROYED))
_ANY_TYPE = st.sampled_from((*EVENT_TYPES, "FolderRenamed"))
_SHAPE = st.sampled_from(("ok",) * 6 + ("truncate", "skip", "token", "count", "version"))
_COUNT_DELTA = st.sampled_from((-1, 1))


@st.composite
def logs(draw: st.DrawFn) -> list[Record]:
    """A log of a few streams: mostly plausible commands, with stale tokens, reused command ids,
    fences, version gaps, destroy-then-update, broken groups and malformed records.

    A Replay steers the generator toward the current version and token of each stream so
    that logs stay interesting; the properties below check independent invariants.
    """
    steer = Replay(FOLDERS)
    next_offset = [0] * PARTITIONS
    commands: dict[str, list[str]] = {s: [] for s in STREAMS}
    groups: dict[str, list[list[Record]]] = {s: [] for s in STREAMS}
    out: list[Record] = []
    serial = 0

    def emit(r: Record) -> None:
        out.append(r)
        steer.feed(r)

    for _ in range(draw(st.integers(min_value=1, max_value=30))):
        stream = draw(_STREAM)
        p = partition_for(stream, PARTITIONS)
        s = steer.streams.get(stream) or rule.initial(FOLDERS)
        op = draw(_OPS)

        def take(p: int = p) -> int:
            next_offset[p] += 1
            return next_offset[p] - 1

        if op == "fence":
            emit(Record("fence", stream, p, take(),
                        token=max(0, s.max_token + draw(_FENCE_DELTA))))
            continue
        if op == "malformed":
            emit(Record("malformed", stream, p, take(), problem="unreadable"))
            continue
        if op == "retry" and groups[stream]:
            # The same command's records appended again (a writer retrying after a timeout).
            for r in draw(st.sampled_from(groups[stream])):
                emit(Record(r.kind, r.stream, p, take(), token=r.token, version=r.version,
                            command=r.command, index=r.index, count=r.count,
                            event_type=r.event_type, data=r.data, fingerprint=r.fingerprint))
            continue

        count = draw(_COUNT)
        how = draw(_HOW)
        token = (max(1, s.max_token) if how == "keep"
                 else s.max_token + draw(_SMALL) if how == "bump"
                 else max(0, s.max_token - draw(_SMALL)))
        if commands[stream] and draw(_ONE_IN_6) == 0:
            command = draw(st.sampled_from(commands[stream]))
        else:
            serial += 1
            command = f"{stream}-c{serial}"
            commands[stream].append(command)
        version = max(1, s.version + 1 + draw(_VERSION_DELTA))
        state = s.state
        fields: list[dict[str, Any]] = []
        for i in range(count):
            if not state["exists"]:
                etype = CREATED
            elif state["destroyed"]:
                etype = draw(_AFTER_DESTROY)
            else:
                etype = draw(_WHILE_ALIVE)
            if draw(_ONE_IN_10) == 0:
                etype = draw(_ANY_TYPE)
            data: dict[str, Any] = ({"name": f"n{serial}.{i}", "parent_id": None}
                                    if etype == CREATED else {"name": f"n{serial}.{i}"})
            try:
                state = FOLDERS.evolve(state, etype, data)
            except InvalidEvent:
                pass
            fields.append({"token": token, "version": version + i, "command": command,
                           "index": i, "count": count, "event_type": etype, "data": data,
                           "fingerprint": f"{serial:032x}"})
        if count > 1:
            shape = draw(_SHAPE)
            if shape == "truncate":
                fields = fields[:draw(st.integers(1, count - 1))]
            elif shape == "skip":
                fields[-1]["index"] += 1
            elif shape == "token":
                fields[-1]["token"] = max(0, fields[-1]["token"] + draw(_COUNT_DELTA))
            elif shape == "count":
                fields[-1]["count"] += draw(_COUNT_DELTA)
            elif shape == "version":
                fields[-1]["version"] += draw(_COUNT_DELTA)
        group = [Record("event", stream, p, take(), **f) for f in fields]
        for r in group:
            emit(r)
        groups[stream].append(group)
    return out


def _by_stream(verdicts: Iterable[Verdict]) -> dict[str, list[Verdict]]:
    out: dict[str, list[Verdict]] = defaultdict(list)
    for v in verdicts:
        out[v.stream].append(v)
    return out


def _snapshot(replay: Replay) -> dict[str, StreamState]:
    """Every stream's state through JSON, as the projector keeps it in Redis."""
    out = {}
    for k, s in replay.streams.items():
        back = StreamState.from_json(s.to_json())
        assert back == s
        out[k] = back
    return out


@given(logs())
@FAST
def test_accepted_histories_are_valid(log: list[Record]) -> None:
    replay = Replay(FOLDERS)
    verdicts = replay.feed_all(log)
    by_stream = _by_stream(verdicts)
    records_by_key = {(r.stream, r.partition, r.offset): r for r in log}
    for stream in STREAMS:
        stream_log = [r for r in log if r.stream == stream]
        fences = [(r.offset, r.token) for r in stream_log if r.kind == "fence"]
        history: list[tuple[Verdict, AcceptedEvent]] = [
            (v, e) for v in by_stream.get(stream, []) if v.accepted for e in v.events]
        # Versions 1..n, contiguous.
        assert [e.version for _, e in history] == list(range(1, len(history) + 1))
        # First event FolderCreated, nothing after FolderDestroyed, and the whole history
        # folds through the domain without a refusal.
        types = [e.type for _, e in history]
        if types:
            assert types[0] == CREATED
        if DESTROYED in types:
            assert types.index(DESTROYED) == len(types) - 1
        state: State = FOLDERS.initial
        for _, e in history:
            state = FOLDERS.evolve(state, e.type, e.data)
        assert replay.streams.get(stream, rule.initial(FOLDERS)).state == state
        # Tokens never go down, and no accepted event is below a fence seen before it.
        tokens = [e.token for _, e in history]
        assert tokens == sorted(tokens)
        for v, e in history:
            floor = max((t for o, t in fences if o < v.first_offset), default=0)
            assert e.token >= floor
        # One command, one token: a group's events share both.
        for v, e in history:
            assert (e.command, e.token) == (v.command, v.token)
        # Offsets increase; each accepted event is a record of the log, unchanged.
        offsets = [e.offset for _, e in history]
        assert offsets == sorted(set(offsets))
        for _, e in history:
            r = records_by_key[(stream, e.partition, e.offset)]
            assert (r.kind, r.version, r.token, r.command, r.event_type, r.data) == (
                "event", e.version, e.token, e.command, e.type, e.data)
        # A command is accepted at most once (the log is shorter than the window).
        accepted_commands = [v.command for v in by_stream.get(stream, []) if v.accepted]
        assert len(accepted_commands) == len(set(accepted_commands))
        # Every non-fence record gets exactly one verdict, or is still pending at the end.
        covered: list[int] = []
        for v in by_stream.get(stream, []):
            covered += [r.offset for r in stream_log
                        if r.kind != "fence" and v.first_offset <= r.offset <= v.last_offset]
        final = replay.streams.get(stream)
        covered += [r.offset for r in (final.pending if final else ())]
        assert sorted(covered) == [r.offset for r in stream_log if r.kind != "fence"]
    assert replay.accepted == sum(len(v.events) for v in verdicts if v.accepted)
    assert sum(replay.discards.values()) == sum(1 for v in verdicts if not v.accepted)


@given(logs())
@FAST
def test_replays_agree(log: list[Record]) -> None:
    a, b = Replay(FOLDERS), Replay(FOLDERS)
    va, vb = a.feed_all(log), b.feed_all(log)
    assert va == vb
    assert a.streams == b.streams
    assert a.discards == b.discards
    assert a.accepted == b.accepted


@given(logs(), st.data())
@FAST
def test_split_replay_with_serialised_state_equals_straight_replay(
        log: list[Record], data: st.DataObject) -> None:
    straight = Replay(FOLDERS)
    expected = straight.feed_all(log)

    cuts = sorted(data.draw(st.lists(st.integers(0, len(log)), max_size=6), label="cuts"))
    bounds = [0, *cuts, len(log)]
    streams: dict[str, StreamState] = {}
    verdicts: list[Verdict] = []
    discards: dict[str, int] = dict.fromkeys(REASONS, 0)
    accepted = 0
    for lo, hi in itertools.pairwise(bounds):
        chunk = Replay(FOLDERS, streams=streams)
        # A projector restarted after a crash re-reads some records it already applied.
        back = data.draw(st.integers(0, min(lo, 3)), label="re-read")
        assert chunk.feed_all(log[lo - back:lo]) == []
        verdicts += chunk.feed_all(log[lo:hi])
        for reason, n in chunk.discards.items():
            discards[reason] += n
        accepted += chunk.accepted
        streams = _snapshot(chunk)

    assert verdicts == expected
    assert streams == straight.streams
    assert discards == straight.discards
    assert accepted == straight.accepted


# The generator reaches every branch of the rule (so the properties above are not vacuous).
def _discarded(reason: str) -> Callable[[Replay], bool]:
    return lambda rp: rp.discards[reason] > 0


GENERATOR_REACHES: dict[str, Callable[[Replay], bool]] = {
    **{f"discards {reason}": _discarded(reason) for reason in REASONS},
    "accepts a group": lambda rp: any(
        any(e[2] != e[3] for e in s.recent) for s in rp.streams.values()),
    "accepts a destroy": lambda rp: any(s.state["destroyed"] for s in rp.streams.values()),
}


def test_generator_reaches_every_branch() -> None:
    seen: set[str] = set()

    @given(logs())
    @settings(max_examples=200, deadline=None, database=None, derandomize=True)
    def collect(log: list[Record]) -> None:
        replay = Replay(FOLDERS)
        replay.feed_all(log)
        seen.update(goal for goal, reached in GENERATOR_REACHES.items() if reached(replay))

    collect()
    assert seen == set(GENERATOR_REACHES)


def test_the_recent_window_keeps_the_commands_fingerprint_from_its_first_event() -> None:
    """The writer compares a reused Idempotency-Key with it once the saved answer is gone."""
    headers = event_headers(source="t", subject="folders:f", event_type=CREATED, version=1, token=4,
                            command="k1", index=0, count=1, fingerprint="ab" * 16)
    r = decode(b"folders:f", encode_value({"name": "Inbox", "parent_id": "root"}), headers, 0, 5)
    assert r.kind == "event" and r.fingerprint == "ab" * 16
    s, verdicts = apply(FOLDERS, rule.initial(FOLDERS), r)
    assert verdicts[0].accepted and s.recent_command("k1") == ("k1", 1, 5, 5, "ab" * 8)
    assert StreamState.from_json(s.to_json()) == s
    # events written before the header existed, and states stored then: no fingerprint
    plain = event_headers(source="t", subject="folders:f", event_type=UPDATED, version=2, token=4,
                          command="k2", index=0, count=1)
    assert "ce_fencedfingerprint" not in dict(plain)
    old = decode(b"folders:f", encode_value({"name": "x"}), plain, 0, 6)
    assert old.kind == "event" and old.fingerprint == ""
    s2, [v] = apply(FOLDERS, s, old)
    assert v.accepted and s2.recent_command("k2") == ("k2", 2, 6, 6, "")
    stored = json.loads(s.to_json())
    stored["recent"] = [entry[:4] for entry in stored["recent"]]
    assert StreamState.from_json(json.dumps(stored)).recent_command("k1") == ("k1", 1, 5, 5, "")


@pytest.mark.parametrize("value", [b"\xff" * 32, b"AB" * 16, b"ab" * 15, b"ab" * 17, b"", b"x" * 10_000])
def test_a_bad_fingerprint_header_is_ignored_never_malformed(value: bytes) -> None:
    """The header is informational: the rule's verdict never depends on it."""
    headers = [(k, value if k == "ce_fencedfingerprint" else v)
               for k, v in event_headers(source="t", subject="f", event_type=CREATED, version=1, token=4,
                                         command="k", index=0, count=1, fingerprint="ab" * 16)]
    r = decode(b"f", encode_value({"name": "Inbox", "parent_id": None}), headers, 0, 0)
    assert r.kind == "event" and r.fingerprint == ""


def test_a_pending_record_keeps_its_fingerprint_through_json_and_unknown_fields_are_ignored() -> None:
    first = replace(ev(0, 1, CREATED, command="g", index=0, count=2), fingerprint="cd" * 16)
    s, verdicts = apply(FOLDERS, rule.initial(FOLDERS), first)
    assert not verdicts and s.pending == (first,)
    assert StreamState.from_json(s.to_json()) == s
    stored = json.loads(s.to_json())
    stored["pending"][0]["added_by_a_later_version"] = 1  # a rollback reads what a newer one wrote
    assert StreamState.from_json(json.dumps(stored)) == s


def test_bytes_events_are_invalid_for_a_decided_type_and_accepted_for_an_open_one() -> None:
    from fenced_client.domain.open import open_decider
    headers = event_headers(source="/t", subject="s1", event_type="FolderCreated", version=1, token=1,
                            command="c1", index=0, count=1, content_type="application/octet-stream")
    record = decode(b"s1", b"\x00\x01", headers, 0, 0)
    [decided] = Replay(FOLDERS).feed(record)
    assert (decided.accepted, decided.reason) == (False, "invalid")
    [accepted] = Replay(open_decider("ledger")).feed(record)
    assert accepted.accepted and accepted.events[0].data_bytes == b"\x00\x01"
    assert accepted.events[0].data_fields() == {"data_base64": "AAE=", "datacontenttype": "application/octet-stream"}


def test_a_pending_bytes_event_keeps_its_bytes_through_the_projection_json() -> None:
    """The projector stores pending groups in Redis between fetches: bytes must come back as
    bytes, or a decided type's bytes group would be evolved as JSON and accepted."""
    from fenced_client.domain.open import open_decider
    first = replace(ev(0, 1, "Blob", command="g", index=0, count=2, data={}), data_bytes=b"\x00\xff",
                    datacontenttype="image/png")
    second = ev(1, 2, "Blob", command="g", index=1, count=2, data={})
    for decider, accepted in ((open_decider("ledger"), True), (FOLDERS, False)):
        s, verdicts = apply(decider, rule.initial(decider), first)
        assert verdicts == []
        s = StreamState.from_json(s.to_json())
        assert s.pending == (first,)
        s, [v] = apply(decider, s, second)
        assert v.accepted is accepted
        if accepted:
            assert [e.data_bytes for e in v.events] == [b"\x00\xff", None]
