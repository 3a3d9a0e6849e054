"""Builds the conformance vectors (``conformance/*.json``) from the cases below.

A dev tool, not part of the service: ``python conformance/generate.py`` rewrites the files,
``--check`` only compares. Each case lists its records and, written and checked by hand, the
verdict of every command group, the counts and (for the rendering cases) the exact strings the
digest hashes. The generator runs the reference (``fenced_client.wire.decode``, ``fenced_client.rule.Replay``,
``service.read.replay.TopicReplay``) on the records and fails loudly where it disagrees with the
hand-written expectation, so a vector never records merely what the code happens to do.

A case names its decider: ``folders`` (the folders domain, ``fenced_client.domain.folders``) or
``open`` (an open type, ``fenced_client.domain.open.open_decider(resource_type)``: every event,
JSON or bytes, is one ``evolve`` accepts).

Offsets: a record's offset is its index in the case (``gap`` leaves offsets unused, as Kafka's
transaction markers do), so each partition's offsets increase, with gaps, and the expected
offsets can be read off the list.
"""

from __future__ import annotations

import base64
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from fenced_client import wire  # noqa: E402
from fenced_client.domain import Decider, folders  # noqa: E402
from fenced_client.domain.open import open_decider  # noqa: E402
from fenced_client.rule import REASONS, Replay, Verdict  # noqa: E402
from service.read.replay import TopicReplay  # noqa: E402

TOPIC_PREFIX = "fenced."
T0, T1, T2, T3, T4, T5 = ((1 << 32) | n for n in range(6))  # epoch 1, counters 0..5
TIME = "2026-01-01T00:00:00.000000Z"
SOURCE = "/conformance"

Headers = list[tuple[str, bytes | None]]


@dataclass
class Rec:
    """One record of a case. ``partition`` None: the key's murmur2 partition."""

    key: bytes | None
    value: bytes | None
    headers: Headers
    partition: int | None = None
    codec: str = "none"
    note: str = ""
    gap: int = 0
    """Offsets left unused before this record (a transaction marker, say)."""


def data(**fields: Any) -> bytes:
    return wire.encode_value(fields)


NULL = b"<null>"
"""As a header override: the header is present with a null value (aiokafka reads None)."""


def ev(key: str, event_type: str, version: int, command: str, token: int = T1, *, value: bytes | None = None,
       index: int = 0, count: int = 1, note: str = "", codec: str = "none", **override: bytes | None) -> Rec:
    """An event record as fenced's writer builds it; ``override`` replaces headers (None drops
    one, :data:`NULL` makes its value null)."""
    if value is None:
        value = {"FolderCreated": data(name=f"{key} folder", parent_id=None),
                 "FolderUpdated": data(name=f"{key} renamed")}.get(event_type, b"{}")
    headers: Headers = list(wire.event_headers(
        source=SOURCE, subject=key, event_type=event_type, version=version, token=token, command=command,
        index=index, count=count, event_id=f"{command}-{index}", time=TIME))
    for name, raw in override.items():
        headers = [(k, v) for k, v in headers if k != name]
        if raw is not None:
            headers.append((name, None if raw is NULL else raw))
    return Rec(key.encode(), value, headers, note=note, codec=codec)


def typed(key: str, event_type: str, version: int, command: str, content_type: bytes | None,
          value: bytes | None = None, *, index: int = 0, count: int = 1, note: str = "") -> Rec:
    """An event record whose ``content-type`` header is ``content_type`` (None: no such header)."""
    header: dict[str, bytes | None] = {"content-type": content_type}
    return ev(key, event_type, version, command, T1, value=value, index=index, count=count, note=note,
              codec="none", **header)


def fence(key: str, token: int, note: str = "") -> Rec:
    headers: Headers = [
        ("ce_specversion", b"1.0"), ("ce_id", f"fence-{key}-{token}".encode()), ("ce_type", b"fenced.fence"),
        ("ce_source", SOURCE.encode()), ("ce_subject", key.encode()), ("ce_time", TIME.encode()),
        ("content-type", b"application/json"), ("ce_fencedtoken", str(token).encode())]
    return Rec(key.encode(), b"{}", headers, note=note)


@dataclass(frozen=True)
class V:
    """An expected verdict: ``outcome`` is "accepted" or the discard reason; ``command`` None for
    a record that decodes as malformed; ``stream`` None for a record of no stream."""

    stream: str | None
    command: str | None
    first: int
    last: int
    outcome: str
    versions: tuple[int, ...] = ()


def acc(stream: str, command: str, first: int, last: int, *versions: int) -> V:
    return V(stream, command, first, last, "accepted", versions)


@dataclass
class Case:
    name: str
    description: str
    partitions: int
    records: list[Rec]
    verdicts: list[V]
    records_count: int
    accepted: int
    discards: dict[str, int]
    streams: int
    digest_lines: list[str] | None = None
    """The exact strings the digest hashes, written by hand (rendering cases only)."""
    extra: dict[str, Any] = field(default_factory=dict)
    resource_type: str = "folders"
    decider: str = "folders"
    """``folders`` or ``open``: see :func:`decider_for`."""


def decider_for(kind: str, resource_type: str) -> Decider:
    """The decider a vector names: ``folders`` is the folders domain (its type is ``folders``);
    ``open`` is the open type ``resource_type``."""
    if kind == "open":
        return open_decider(resource_type)
    if kind == "folders" and resource_type == folders.FOLDERS.type:
        return folders.FOLDERS
    raise ValueError(f"no decider {kind!r} for resource type {resource_type!r}")


def b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode()


def run(case: Case) -> dict[str, Any]:
    """The vector of a case, after checking the reference against every hand-written expectation."""
    replay, verdicts, records = Replay(decider_for(case.decider, case.resource_type)), list[Verdict](), []
    offset = 0
    for r in case.records:
        offset += r.gap
        partition = r.partition if r.partition is not None else wire.partition_for(r.key.decode(), case.partitions) \
            if r.key else 0
        verdicts += replay.feed(wire.decode(r.key, r.value, r.headers, partition, offset, case.partitions))
        records.append({"partition": partition, "offset": offset, "codec": r.codec, "key": b64(r.key),
                        "headers": [[k, b64(v)] for k, v in r.headers], "value": b64(r.value),
                        **({"note": r.note} if r.note else {})})
        offset += 1
    got = sorted(verdicts, key=lambda v: (v.partition, v.first_offset))
    by_offset = {rec["offset"]: rec["partition"] for rec in records}
    want = sorted(case.verdicts, key=lambda v: (by_offset[v.first], v.first))
    seen = [V(v.stream or None, v.command or None, v.first_offset, v.last_offset,
              "accepted" if v.accepted else str(v.reason), tuple(e.version for e in v.events)) for v in got]
    if seen != want:
        diff = [f"  expected {w}\n  got      {g}" for w, g in zip(want, seen, strict=False) if w != g]
        raise AssertionError(f"{case.name}: the reference disagrees with the case ({len(want)} verdicts expected, "
                             f"{len(seen)} given); first differences:\n" + "\n".join(diff[:5] or [str(seen)]))
    topic = wire.topic_name(TOPIC_PREFIX, case.resource_type)
    tr = TopicReplay(topic, replay, verdicts)
    summary = tr.summary()
    counts = {"records": case.records_count, "accepted": case.accepted,
              "discards": {r: case.discards.get(r, 0) for r in REASONS}, "streams": case.streams}
    if {k: summary[k] for k in counts} != counts:
        raise AssertionError(f"{case.name}: counts differ\n  expected {counts}\n  got      {summary}")
    lines = tr.digest_lines()
    if case.digest_lines is not None and lines != case.digest_lines:
        raise AssertionError(f"{case.name}: digest input differs\n  expected {case.digest_lines}\n  got      {lines}")
    return {
        "name": case.name, "description": case.description, "resource_type": case.resource_type,
        "decider": case.decider, "topic": topic,
        "partitions": case.partitions, "records": records,
        "expected": {
            "verdicts": [{"stream": v.stream, "partition": by_offset[v.first], "command": v.command,
                          "first_offset": v.first, "last_offset": v.last, "accepted": v.outcome == "accepted",
                          "reason": None if v.outcome == "accepted" else v.outcome, "versions": list(v.versions)}
                         for v in want],
            **counts, "digest": summary["digest"], "digest_lines": lines},
    }


# --------------------------------------------------------------------------------------------
# The cases. Offsets are list positions (plus gaps); every expectation below was worked out by
# hand from wire-format.md §6-§8, not copied from the code's output.
# --------------------------------------------------------------------------------------------

CASES: list[Case] = []

CASES.append(Case(
    "accepted", "Ordinary histories of two folders, interleaved on one partition, with a fence.", 1,
    [ev("f1", "FolderCreated", 1, "c1"),                 # 0
     ev("f2", "FolderCreated", 1, "c2"),                 # 1
     ev("f1", "FolderUpdated", 2, "c3"),                 # 2
     fence("f2", T2),                                    # 3: takeover, no verdict
     ev("f2", "FolderUpdated", 2, "c4", T2),             # 4
     ev("f1", "FolderDestroyed", 3, "c5")],              # 5
    [acc("f1", "c1", 0, 0, 1), acc("f2", "c2", 1, 1, 1), acc("f1", "c3", 2, 2, 2), acc("f2", "c4", 4, 4, 2),
     acc("f1", "c5", 5, 5, 3)],
    records_count=6, accepted=5, discards={}, streams=2))

CASES.append(Case(
    "groups", "Commands of several events: accepted or discarded whole; another key's record may sit "
    "between the members of a group, and offsets may have gaps (a transaction marker).", 1,
    [ev("g1", "FolderCreated", 1, "c1", index=0, count=2),   # 0
     ev("g1", "FolderUpdated", 2, "c1", index=1, count=2),   # 1
     ev("g1", "FolderUpdated", 3, "c2", index=0, count=3),   # 2
     ev("g2", "FolderCreated", 1, "c3"),                     # 3: another stream, in between
     ev("g1", "FolderUpdated", 4, "c2", index=1, count=3),   # 4
     Rec(**{**ev("g1", "FolderUpdated", 5, "c2", index=2, count=3).__dict__, "gap": 2}),  # 7 (5, 6 unused)
     ev("g3", "FolderCreated", 1, "c4", index=0, count=2),   # 8
     ev("g3", "FolderUpdated", 3, "c4", index=1, count=2),   # 9: version 3, not 2: the whole group
     ev("g3", "FolderCreated", 1, "c5")],                    # 10
    [acc("g1", "c1", 0, 1, 1, 2), acc("g2", "c3", 3, 3, 1), acc("g1", "c2", 2, 7, 3, 4, 5),
     V("g3", "c4", 8, 9, "conflict"), acc("g3", "c5", 10, 10, 1)],
    records_count=9, accepted=7, discards={"conflict": 1}, streams=3))

CASES.append(Case(
    "fences_and_stale", "Fences raise max_token; an event below it is stale wherever it lands; an accepted "
    "event raises max_token too; a lower fence changes nothing.", 1,
    [ev("s1", "FolderCreated", 1, "c1", T1),       # 0
     fence("s1", T3),                              # 1
     ev("s1", "FolderUpdated", 2, "c2", T1),       # 2: the zombie: stale
     ev("s1", "FolderUpdated", 2, "c3", T3),       # 3
     fence("s1", T2),                              # 4: lower than max_token T3: no effect
     ev("s1", "FolderUpdated", 3, "c4", T2),       # 5: stale
     ev("s1", "FolderUpdated", 3, "c5", T4),       # 6: a higher token needs no fence
     ev("s1", "FolderUpdated", 4, "c6", T3),       # 7: stale (max_token is T4 now)
     fence("s2", T5),                              # 8: a fence on a stream without events
     ev("s2", "FolderCreated", 1, "c7", T4),       # 9: stale
     ev("s2", "FolderCreated", 1, "c8", T5)],      # 10
    [acc("s1", "c1", 0, 0, 1), V("s1", "c2", 2, 2, "stale"), acc("s1", "c3", 3, 3, 2),
     V("s1", "c4", 5, 5, "stale"), acc("s1", "c5", 6, 6, 3), V("s1", "c6", 7, 7, "stale"),
     V("s2", "c7", 9, 9, "stale"), acc("s2", "c8", 10, 10, 1)],
    records_count=11, accepted=4, discards={"stale": 4}, streams=2))

CASES.append(Case(
    "duplicates_and_conflicts", "A command id seen among the recent accepted commands is a duplicate, checked "
    "after stale and before the version; a version that does not follow is a conflict.", 1,
    [ev("d1", "FolderCreated", 1, "c1"),           # 0
     ev("d1", "FolderUpdated", 2, "c2"),           # 1
     ev("d1", "FolderUpdated", 3, "c2"),           # 2: a retry of c2 at the next version: duplicate
     ev("d1", "FolderUpdated", 2, "c3"),           # 3: version 2 again: conflict
     ev("d1", "FolderUpdated", 2, "c1"),           # 4: duplicate (also the wrong version: duplicate wins)
     ev("d1", "FolderUpdated", 4, "c4"),           # 5: skips version 3: conflict
     ev("d1", "FolderUpdated", 3, "c2", T0),       # 6: stale (T0 < T1) wins over duplicate
     ev("d1", "FolderUpdated", 3, "c3")],          # 7: c3 was never accepted: accepted
    [acc("d1", "c1", 0, 0, 1), acc("d1", "c2", 1, 1, 2), V("d1", "c2", 2, 2, "duplicate"),
     V("d1", "c3", 3, 3, "conflict"), V("d1", "c1", 4, 4, "duplicate"), V("d1", "c4", 5, 5, "conflict"),
     V("d1", "c2", 6, 6, "stale"), acc("d1", "c3", 7, 7, 3)],
    records_count=8, accepted=3, discards={"duplicate": 2, "conflict": 2, "stale": 1}, streams=1))

_window = [ev("w1", "FolderCreated", 1, "c0")] + [ev("w1", "FolderUpdated", n + 1, f"c{n}") for n in range(1, 257)]
CASES.append(Case(
    "duplicate_window", "RECENT_WINDOW is 256 accepted commands: after c0..c256 (257 commands), c0 has left "
    "the window and is accepted again; then the window is c2..c256, c0, so c2 is a duplicate and c1 is not.", 1,
    [*_window,                                     # 0..256: c0 v1, c1 v2 ... c256 v257
     ev("w1", "FolderUpdated", 258, "c0"),         # 257: accepted
     ev("w1", "FolderUpdated", 259, "c2"),         # 258: duplicate
     ev("w1", "FolderUpdated", 259, "c1")],        # 259: accepted
    [acc("w1", f"c{n}", n, n, n + 1) for n in range(257)]
    + [acc("w1", "c0", 257, 257, 258), V("w1", "c2", 258, 258, "duplicate"), acc("w1", "c1", 259, 259, 259)],
    records_count=260, accepted=259, discards={"duplicate": 1}, streams=1))

CASES.append(Case(
    "invalid", "The folders domain (sdk/fenced_client/domain/folders.py) refuses events its state does not allow; a "
    "group with one refused event is invalid as a whole.", 1,
    [ev("i1", "FolderUpdated", 1, "c1"),           # 0: before FolderCreated
     ev("i1", "FolderCreated", 1, "c2"),           # 1
     ev("i1", "FolderCreated", 2, "c3"),           # 2: on an existing folder
     ev("i1", "FolderDestroyed", 2, "c4"),         # 3
     ev("i1", "FolderUpdated", 3, "c5"),           # 4: after FolderDestroyed
     ev("i1", "FolderDestroyed", 3, "c6"),         # 5: after FolderDestroyed
     ev("i2", "FolderMoved", 1, "c7"),             # 6: unknown type
     ev("i2", "FolderCreated", 1, "c8"),           # 7
     ev("i3", "FolderCreated", 1, "c9", index=0, count=2),  # 8
     ev("i3", "FolderCreated", 2, "c9", index=1, count=2),  # 9: the second Create is refused
     ev("i3", "FolderCreated", 1, "c10")],         # 10
    [V("i1", "c1", 0, 0, "invalid"), acc("i1", "c2", 1, 1, 1), V("i1", "c3", 2, 2, "invalid"),
     acc("i1", "c4", 3, 3, 2), V("i1", "c5", 4, 4, "invalid"), V("i1", "c6", 5, 5, "invalid"),
     V("i2", "c7", 6, 6, "invalid"), acc("i2", "c8", 7, 7, 1), V("i3", "c9", 8, 9, "invalid"),
     acc("i3", "c10", 10, 10, 1)],
    records_count=11, accepted=4, discards={"invalid": 6}, streams=3))
def _wrong(key: str, partitions: int) -> int:
    return (wire.partition_for(key, partitions) + 1) % partitions


def _with(rec: Rec, *headers: tuple[str, bytes | None]) -> Rec:
    return Rec(rec.key, rec.value, [*rec.headers, *headers], rec.partition, rec.codec, rec.note, rec.gap)


_C = "FolderCreated"
_bad_headers: list[tuple[str, Rec]] = [
    ("keyless", Rec(None, data(name="x"), ev("x", _C, 1, "k0").headers, partition=0)),
    ("empty key", Rec(b"", data(name="x"), ev("x", _C, 1, "k1").headers, partition=1)),
    ("key not UTF-8", Rec(b"\xff\xfe", data(name="x"), ev("x", _C, 1, "k2").headers, partition=2)),
    ("wrong partition", Rec(**{**ev("m-wrong", _C, 1, "k3").__dict__, "partition": _wrong("m-wrong", 4)})),
    ("no headers", Rec(b"m-noheaders", data(name="x"), [])),
    ("ce_type absent", ev("m-type-absent", _C, 1, "k5", ce_type=None)),
    ("ce_type empty", ev("m-type-empty", _C, 1, "k6", ce_type=b"")),
    ("ce_type null", ev("m-type-null", _C, 1, "k7", ce_type=NULL)),
    ("ce_type not UTF-8", ev("m-type-utf8", _C, 1, "k8", ce_type=b"\xc3\x28")),
    ("ce_subject differs", ev("m-subject", _C, 1, "k9", ce_subject=b"m-other")),
    ("ce_subject absent", ev("m-subject-absent", _C, 1, "k10", ce_subject=None)),
    ("token absent", ev("m-notoken", _C, 1, "k11", ce_fencedtoken=None)),
    ("token negative", ev("m-token-neg", _C, 1, "k12", ce_fencedtoken=b"-1")),
    ("token decimal point", ev("m-token-dot", _C, 1, "k13", ce_fencedtoken=b"1.0")),
    ("token plus sign", ev("m-token-plus", _C, 1, "k14", ce_fencedtoken=b"+1")),
    ("token 20 digits", ev("m-token-20", _C, 1, "k15", ce_fencedtoken=b"1" * 20)),
    ("token 2**63", ev("m-token-big", _C, 1, "k16", ce_fencedtoken=b"9223372036854775808")),
    ("token Arabic-Indic digits", ev("m-token-arabic", _C, 1, "k17", ce_fencedtoken="\u0661\u0662".encode())),
    ("version absent", ev("m-version-absent", _C, 1, "k18", ce_fencedversion=None)),
    ("version 0", ev("m-version-0", _C, 0, "k19")),
    ("version text", ev("m-version-text", _C, 1, "k20", ce_fencedversion=b"v1")),
    ("index null", ev("m-index-null", _C, 1, "k21", ce_fencedindex=NULL)),
    ("count 0", ev("m-count-0", _C, 1, "k22", ce_fencedcount=b"0")),
    ("index = count", ev("m-index-count", _C, 1, "k23", ce_fencedindex=b"2", ce_fencedcount=b"2")),
    ("command absent", ev("m-command-absent", _C, 1, "k24", ce_fencedcommand=None)),
    ("command empty", ev("m-command-empty", _C, 1, "k25", ce_fencedcommand=b"")),
    ("command not UTF-8", ev("m-command-utf8", _C, 1, "k26", ce_fencedcommand=b"\x80")),
    ("ce_id not UTF-8", ev("m-id-utf8", _C, 1, "k27", ce_id=b"\xff")),
    ("ce_time not UTF-8", ev("m-time-utf8", _C, 1, "k28", ce_time=b"\xff")),
    ("fence token not an integer", Rec(fence("m-fence-token", T2).key, b"{}",
                                      [(k, b"x" if k == "ce_fencedtoken" else v)
                                       for k, v in fence("m-fence-token", T2).headers])),
    ("fence subject differs", Rec(b"m-fence-subject", b"{}", [(k, b"m-other" if k == "ce_subject" else v)
                                                             for k, v in fence("m-fence-subject", T2).headers])),
]
CASES.append(Case(
    "malformed_records", "Every header and key check of wire-format.md §6, one record each; then records that "
    "look odd but are events: leading zeros, no index/count, a repeated header (the last counts), a garbage "
    "fingerprint (ignored).", 4,
    [*(Rec(**{**r.__dict__, "note": why}) for why, r in _bad_headers),    # 0..30
     ev("m-notoken", _C, 1, "k31"),                                        # 31: the malformed record took no version
     ev("m-zeros", _C, 1, "k32", ce_fencedtoken=b"007", ce_fencedversion=b"01"),   # 32
     ev("m-noindex", _C, 1, "k33", ce_fencedindex=None, ce_fencedcount=None),      # 33
     _with(ev("m-twice", _C, 1, "k34", ce_fencedversion=b"9"), ("ce_fencedversion", b"1")),  # 34
     ev("m-fingerprint", _C, 1, "k35", ce_fencedfingerprint=b"not a fingerprint")],          # 35
    [V(None, None, 0, 0, "malformed"), V(None, None, 1, 1, "malformed"), V(None, None, 2, 2, "malformed"),
     V(None, None, 3, 3, "malformed"),
     *(V(r.key.decode(), None, i, i, "malformed") for i, (_, r) in enumerate(_bad_headers) if i >= 4),  # type: ignore[union-attr]
     acc("m-notoken", "k31", 31, 31, 1), acc("m-zeros", "k32", 32, 32, 1), acc("m-noindex", "k33", 33, 33, 1),
     acc("m-twice", "k34", 34, 34, 1), acc("m-fingerprint", "k35", 35, 35, 1)],
    records_count=36, accepted=5, discards={"malformed": 31}, streams=5))

_bad_values: list[tuple[str, bytes | None]] = [
    ("absent", None), ("empty", b""), ("null", b"null"), ("array", b"[]"), ("string", b'"x"'), ("number", b"42"),
    ("true", b"true"), ("cut short", b'{"name":'), ("trailing text", b'{"name":"x"} {}'),
    ("not UTF-8", b'{"name":"\xff"}'), ("UTF-8 byte order mark", b'\xef\xbb\xbf{"name":"x"}'),
    ("UTF-16 with BOM", '{"name":"x"}'.encode("utf-16")), ("UTF-16LE", '{"name":"x"}'.encode("utf-16-le")),
    ("UTF-32", '{"name":"x"}'.encode("utf-32")), ("encoded surrogate (CESU-8)", b'{"name":"\xed\xa0\x80"}'),
    ("overlong UTF-8", b'{"name":"\xc0\xaf"}'), ("NaN", b'{"name":"x","n":NaN}'),
    ("Infinity", b'{"name":"x","n":Infinity}'), ("-Infinity", b'{"name":"x","n":[-Infinity]}'),
    ("1E400", b'{"name":"x","n":1E400}'),
    ("309-digit integer beyond a double", b'{"name":"x","n":' + b"9" * 309 + b"}"),
    ("duplicate member name", b'{"name":"x","name":"y"}'),
    ("duplicate member name after unescaping", b'{"name":"x","\\u006eame":"y"}'),
    ("lone high surrogate", b'{"name":"\\ud800"}'), ("lone low surrogate", b'{"name":"\\udc00x"}'),
    ("surrogates in the wrong order", b'{"name":"\\ude00\\ud83d"}'),
    ("lone surrogate in a member name", b'{"name":"x","\\ud800":1}'),
    ("raw control character in a string", b'{"name":"a\nb"}'),
    ("1001 levels", b'{"name":"x","d":' + b"[" * 1000 + b"]" * 1000 + b"}"),
    ("single quotes", b"{'name':'x'}"), ("leading zero", b'{"name":"x","n":01}'),
    ("comment", b'{/* c */"name":"x"}'), ("trailing comma", b'{"name":"x",}'),
]
_good_values: list[tuple[str, bytes]] = [
    ("1000 levels: the deepest allowed", b'{"name":"x","d":' + b"[" * 999 + b"]" * 999 + b"}"),
    ("underflow to 0 and a 308-digit integer", b'{"name":"x","u":1e-400,"i":' + b"9" * 308 + b"}"),
    ("whitespace around the object", b' \t\r\n{"name":"x"}\n '),
    ("an escaped backslash before ud800: no surrogate", b'{"name":"\\\\ud800"}'),
    ("a surrogate pair", b'{"name":"\\ud83d\\ude00"}'),
]
CASES.append(Case(
    "malformed_values", "Every value rule of wire-format.md §3, one FolderCreated each (0..32 malformed), the "
    "values at the edge of the rules that are events (33..37), and a fence whose value is not JSON (ignored).", 1,
    [*(Rec(**{**ev(f"v{i}", _C, 1, f"c{i}", note=why).__dict__, "value": v}) for i, (why, v) in enumerate(_bad_values)),
     *(ev(f"v{33 + i}", _C, 1, f"c{33 + i}", value=v, note=why) for i, (why, v) in enumerate(_good_values)),
     Rec(**{**fence("v-fence", T2).__dict__, "value": b"\xff\xfe not JSON", "note": "a fence's value is ignored"})],
    [*(V(f"v{i}", None, i, i, "malformed") for i in range(33)),
     *(acc(f"v{i}", f"c{i}", i, i, 1) for i in range(33, 38))],
    records_count=39, accepted=5, discards={"malformed": 33}, streams=5))

CASES.append(Case(
    "malformed_groups", "Groups that do not hang together: interrupted by a fence, by a malformed record or by "
    "another command; a member without its first; counts or tokens that differ; a skipped index; a group "
    "still open at the end (undecided: no verdict).", 1,
    [ev("a", _C, 1, "c1", index=0, count=2),          # 0
     fence("a", T2),                                  # 1: interrupts c1
     ev("b", _C, 1, "c2", index=0, count=2),          # 2
     ev("b", "FolderUpdated", 2, "c2", index=1, count=2, ce_fencedtoken=None),  # 3: malformed, interrupts c2
     ev("c", _C, 1, "c3", index=0, count=2),          # 4
     ev("c", _C, 1, "c4"),                            # 5: another command interrupts c3; then accepted
     ev("d", "FolderUpdated", 2, "c5", index=1, count=2),  # 6: index 1 with nothing pending
     ev("e", _C, 1, "c6", index=0, count=3),          # 7
     ev("e", "FolderUpdated", 2, "c6", index=1, count=2),  # 8: count 2, not 3
     ev("f", _C, 1, "c7", T1, index=0, count=2),      # 9
     ev("f", "FolderUpdated", 2, "c7", T2, index=1, count=2),  # 10: another token
     ev("g", _C, 1, "c8", index=0, count=3),          # 11
     ev("g", "FolderUpdated", 3, "c8", index=2, count=3),  # 12: index 2 after 0
     ev("j", _C, 1, "c10", index=0, count=2),         # 13
     ev("j", "FolderUpdated", 2, "c11", index=1, count=2),  # 14: another command id at index 1
     ev("h", _C, 1, "c9", index=0, count=2)],         # 15: never completed
    [V("a", "c1", 0, 0, "malformed"), V("b", "c2", 2, 2, "malformed"), V("b", None, 3, 3, "malformed"),
     V("c", "c3", 4, 4, "malformed"), acc("c", "c4", 5, 5, 1), V("d", "c5", 6, 6, "malformed"),
     V("e", "c6", 7, 8, "malformed"), V("f", "c7", 9, 10, "malformed"), V("g", "c8", 11, 11, "malformed"),
     V("g", "c8", 12, 12, "malformed"), V("j", "c10", 13, 13, "malformed"), V("j", "c11", 14, 14, "malformed")],
    records_count=16, accepted=1, discards={"malformed": 11}, streams=1))

_EVENT = ',"offset":{o},"partition":0,"token":4294967297,"type":"{t}","version":{v}}}'
CASES.append(Case(
    "digest_rendering", "Numbers and text in the data, and non-ASCII keys, as the digest renders them "
    "(wire-format.md §8.3). Streams go in UTF-8 byte order (U+FB33 before U+1F600); members in UTF-16 order "
    "(U+1F600 before U+FB33). The codec of each record's batch varies: it changes nothing.", 1,
    [ev("b", _C, 1, "c1", value=b'{"name":"Inbox","parent_id":null,"nums":[9223372036854775807,'
        b"9223372036854775808,18446744073709551617,-9223372036854775809,1e308,5e-324,0.1,-0.0,-0,1.0,1E2,1e21,"
        b'1e-7,0.000001,1e-400,123456789012345678901234567890,1.5e300,123.456e5]}'),
     ev("z", _C, 1, "c2", codec="gzip",
        value=b'{"name":"\\u00e9\\ud83d\\ude00\\u2028\\u0000\\u001f\\u007f\\"\\\\\\/\\t x","parent_id":"\\u0070"}'),
     ev("\u00e9", _C, 1, "c3", codec="snappy",
        value=b'{"name":"k","\\ufb33":1,"\\ud83d\\ude00":2,"a":3,"B":4,"":5}'),
     ev("\U0001f600", _C, 1, "cmd-\u00fc", codec="lz4"),
     ev("\ufb33", _C, 1, "c5", codec="zstd"),
     ev("\ufb33", "FolderUpdated", 2, "c6", codec="zstd")],
    [acc("b", "c1", 0, 0, 1), acc("z", "c2", 1, 1, 1), acc("\u00e9", "c3", 2, 2, 1),
     acc("\U0001f600", "cmd-\u00fc", 3, 3, 1), acc("\ufb33", "c5", 4, 4, 1), acc("\ufb33", "c6", 5, 5, 2)],
    records_count=6, accepted=6, discards={}, streams=5,
    digest_lines=[
        '["b",[{"command":"c1","data":{"name":"Inbox","nums":[9223372036854775807,9223372036854775808,'
        "18446744073709551617,-9223372036854775809,1e+308,5e-324,0.1,0,0,1,100,1e+21,1e-7,0.000001,0,"
        '123456789012345678901234567890,1.5e+300,12345600],"parent_id":null}' + _EVENT.format(o=0, t=_C, v=1) + "]]",
        '["z",[{"command":"c2","data":{"name":"\u00e9\U0001f600\u2028\\u0000\\u001f\x7f\\"\\\\/\\t x",'
        '"parent_id":"p"}' + _EVENT.format(o=1, t=_C, v=1) + "]]",
        '["\u00e9",[{"command":"c3","data":{"":5,"B":4,"a":3,"name":"k","\U0001f600":2,"\ufb33":1}'
        + _EVENT.format(o=2, t=_C, v=1) + "]]",
        '["\ufb33",[{"command":"c5","data":{"name":"\ufb33 folder","parent_id":null}' + _EVENT.format(o=4, t=_C, v=1)
        + ',{"command":"c6","data":{"name":"\ufb33 renamed"}' + _EVENT.format(o=5, t="FolderUpdated", v=2) + "]]",
        '["\U0001f600",[{"command":"cmd-\u00fc","data":{"name":"\U0001f600 folder","parent_id":null}'
        + _EVENT.format(o=3, t=_C, v=1) + "]]",
    ]))


PNG = b"\x89PNG\r\n\x1a\n"
"""The PNG signature: bytes that are not UTF-8."""


def _created(key: str, command: str, offset: int) -> str:
    """The digest's event for ``ev(key, "FolderCreated", 1, command)`` at ``offset``."""
    return f'{{"command":"{command}","data":{{"name":"{key} folder","parent_id":null}}' + _EVENT.format(
        o=offset, t=_C, v=1)


CASES.append(Case(
    "content_types", "The content-type header of a folders event (wire-format.md §3.1): absent, or "
    "application/json in any case with any parameters, is JSON, whose value follows §3; any other media type "
    "holds bytes, which the folders domain refuses (invalid, after the stale, duplicate and conflict checks; the "
    "value is not read as JSON); a content type that is not type/subtype, not printable ASCII or longer than "
    "200 characters makes the record malformed, except on a fence, whose content type is not read.", 1,
    [typed("j-absent", _C, 1, "c0", None, note="no content-type: JSON"),                           # 0
     typed("j-charset", _C, 1, "c1", b"application/json; charset=utf-8"),                        # 1
     typed("j-upper", _C, 1, "c2", b"APPLICATION/JSON"),                                         # 2
     typed("j-upper", "FolderUpdated", 2, "c3", b"Application/Json;charset=UTF-8"),              # 3
     typed("j-long", _C, 1, "c4", b"application/json;p=" + b"x" * 181, note="200 characters"),   # 4
     _with(typed("j-twice", _C, 1, "c5", b"image/png"), ("content-type", b"application/json")),  # 5: the last counts
     typed("j-notjson", _C, 1, "c6", b"APPLICATION/JSON", PNG, note="JSON: the value must be §3's"),  # 6
     typed("b-octet", _C, 1, "c7", b"application/octet-stream", b"\x00\x01\x02"),                 # 7
     typed("b-png", _C, 1, "c8", b"image/png", PNG),                                             # 8
     typed("b-json", _C, 1, "c9", b"application/vnd.api+json", data(name="b-json folder", parent_id=None),
           note="a JSON text, but the media type is not application/json: bytes"),               # 9
     typed("b-long", _C, 1, "c10", b"application/" + b"x" * 188, note="200 characters"),         # 10
     ev("b-png", _C, 1, "c11", note="the invalid group took no version"),                        # 11
     ev("b-group", _C, 1, "c12", index=0, count=2),                                              # 12
     typed("b-group", "FolderUpdated", 2, "c12", b"image/png", PNG, index=1, count=2),           # 13: the whole group
     typed("b-png", "FolderUpdated", 3, "c14", b"image/png", PNG, note="conflict before invalid"),   # 14
     typed("b-png", "FolderUpdated", 2, "c11", b"image/png", PNG, note="duplicate before invalid"),  # 15
     typed("m-png", _C, 1, "c16", b"png"),                                                       # 16
     typed("m-space", _C, 1, "c17", b"a/b c"),                                                   # 17
     typed("m-ascii", _C, 1, "c18", "image/p\u00e9ng".encode(), note="not ASCII"),               # 18
     typed("m-long", _C, 1, "c19", b"application/" + b"x" * 189, note="201 characters"),         # 19
     typed("m-empty", _C, 1, "c20", b""),                                                        # 20
     typed("m-tab", _C, 1, "c21", b"image/png;\tq=1", note="a control character"),               # 21
     typed("m-nosubtype", _C, 1, "c22", b"application/"),                                        # 22
     typed("m-json-junk", _C, 1, "c23", b"application/json x"),                                  # 23
     _with(Rec(**{**fence("b-png", T2).__dict__, "headers": [
         (k, v) for k, v in fence("b-png", T2).headers if k != "content-type"]}),
         ("content-type", b"png")),                                                              # 24: still a fence
     ev("b-png", "FolderUpdated", 2, "c25", T1, note="stale: the fence counted")],               # 25
    [acc("j-absent", "c0", 0, 0, 1), acc("j-charset", "c1", 1, 1, 1), acc("j-upper", "c2", 2, 2, 1),
     acc("j-upper", "c3", 3, 3, 2), acc("j-long", "c4", 4, 4, 1), acc("j-twice", "c5", 5, 5, 1),
     V("j-notjson", None, 6, 6, "malformed"), V("b-octet", "c7", 7, 7, "invalid"), V("b-png", "c8", 8, 8, "invalid"),
     V("b-json", "c9", 9, 9, "invalid"), V("b-long", "c10", 10, 10, "invalid"), acc("b-png", "c11", 11, 11, 1),
     V("b-group", "c12", 12, 13, "invalid"), V("b-png", "c14", 14, 14, "conflict"),
     V("b-png", "c11", 15, 15, "duplicate"),
     *(V(k, None, i, i, "malformed") for i, k in enumerate(
         ["m-png", "m-space", "m-ascii", "m-long", "m-empty", "m-tab", "m-nosubtype", "m-json-junk"], 16)),
     V("b-png", "c25", 25, 25, "stale")],
    records_count=26, accepted=7, discards={"malformed": 9, "invalid": 5, "conflict": 1, "duplicate": 1, "stale": 1},
    streams=6,
    digest_lines=[
        '["b-png",[' + _created("b-png", "c11", 11) + "]]",
        '["j-absent",[' + _created("j-absent", "c0", 0) + "]]",
        '["j-charset",[' + _created("j-charset", "c1", 1) + "]]",
        '["j-long",[' + _created("j-long", "c4", 4) + "]]",
        '["j-twice",[' + _created("j-twice", "c5", 5) + "]]",
        '["j-upper",[' + _created("j-upper", "c2", 2) + ',{"command":"c3","data":{"name":"j-upper renamed"}'
        + _EVENT.format(o=3, t="FolderUpdated", v=2) + "]]",
    ]))


def _bytes(command: str, base64_text: str, content_type: str, offset: int, event_type: str, version: int) -> str:
    """The digest's event for an event that holds bytes: data_base64 and datacontenttype, no data."""
    return (f'{{"command":"{command}","data_base64":"{base64_text}","datacontenttype":"{content_type}"'
            + _EVENT.format(o=offset, t=event_type, v=version))


_OCTETS = b"application/octet-stream"
CASES.append(Case(
    "open_type", "An open type (ledger): its decider accepts every event, so a bytes event (any media type "
    "other than application/json) is accepted, JSON and bytes mixed in one group; the digest has data_base64 "
    "(standard alphabet, padded) and datacontenttype as written for bytes. Stale, duplicate, conflict and "
    "malformed still apply; invalid never does.", 1,
    [ev("acct-1", "Opened", 1, "c1", value=data(owner="ana")),                                     # 0
     typed("acct-1", "Deposited", 2, "c2", None, b'{"amount":5}', index=0, count=4),              # 1: JSON
     typed("acct-1", "ReceiptAttached", 3, "c2", b"image/png", PNG, index=1, count=4),            # 2
     typed("acct-1", "Marked", 4, "c2", _OCTETS, b"", index=2, count=4, note="empty bytes"),      # 3
     typed("acct-1", "NoteAdded", 5, "c2", b"Text/Plain; charset=ISO-8859-1", b"caf\xe9", index=3, count=4,
           note="not UTF-8; the media type as written"),                                        # 4
     typed("acct-1", "Imported", 6, "c3", b"application/vnd.api+json", b'{"a":1}',
           note="a JSON text under another media type: bytes"),                                 # 5
     typed("acct-2", "Chunk", 1, "c4", _OCTETS, b"\xfb\xff\xbf", note="base64 +/+/: the standard alphabet"),  # 6
     typed("acct-2", "Chunk", 2, "c5", _OCTETS, b"\x00", note="base64 AA==: padded"),                # 7
     typed("acct-2", "Chunk", 2, "c6", b"image/png", PNG),                                       # 8: conflict
     typed("acct-2", "Chunk", 3, "c4", _OCTETS, b"\xfb\xff\xbf"),                                # 9: duplicate
     typed("acct-3", "Chunk", 1, "c7", b"png", b"\x00", note="not type/subtype"),                 # 10: malformed
     typed("acct-3", "Chunk", 1, "c8", b"application/json", b"\xff", note="JSON: the value must be §3's"),  # 11
     typed("acct-3", "Chunk", 1, "c9", None, b"{}")],                                            # 12
    [acc("acct-1", "c1", 0, 0, 1), acc("acct-1", "c2", 1, 4, 2, 3, 4, 5), acc("acct-1", "c3", 5, 5, 6),
     acc("acct-2", "c4", 6, 6, 1), acc("acct-2", "c5", 7, 7, 2), V("acct-2", "c6", 8, 8, "conflict"),
     V("acct-2", "c4", 9, 9, "duplicate"), V("acct-3", None, 10, 10, "malformed"),
     V("acct-3", None, 11, 11, "malformed"), acc("acct-3", "c9", 12, 12, 1)],
    records_count=13, accepted=9, discards={"conflict": 1, "duplicate": 1, "malformed": 2}, streams=3,
    digest_lines=[
        '["acct-1",[{"command":"c1","data":{"owner":"ana"}' + _EVENT.format(o=0, t="Opened", v=1)
        + ',{"command":"c2","data":{"amount":5}' + _EVENT.format(o=1, t="Deposited", v=2)
        + "," + _bytes("c2", "iVBORw0KGgo=", "image/png", 2, "ReceiptAttached", 3)
        + "," + _bytes("c2", "", "application/octet-stream", 3, "Marked", 4)
        + "," + _bytes("c2", "Y2Fm6Q==", "Text/Plain; charset=ISO-8859-1", 4, "NoteAdded", 5)
        + "," + _bytes("c3", "eyJhIjoxfQ==", "application/vnd.api+json", 5, "Imported", 6) + "]]",
        '["acct-2",[' + _bytes("c4", "+/+/", "application/octet-stream", 6, "Chunk", 1)
        + "," + _bytes("c5", "AA==", "application/octet-stream", 7, "Chunk", 2) + "]]",
        '["acct-3",[{"command":"c9","data":{}' + _EVENT.format(o=12, t="Chunk", v=1) + "]]",
    ],
    resource_type="ledger", decider="open"))


def dump(vector: dict[str, Any]) -> str:
    """A vector as JSON text (ASCII), one record, verdict or digest line per line, for diffs."""
    def items(values: list[Any], indent: str) -> str:
        return ",\n".join(indent + json.dumps(v) for v in values)
    expected = dict(vector["expected"])
    head = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in vector.items() if k not in ("records", "expected")]
    tail = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in expected.items() if k not in ("verdicts", "digest_lines")]
    return ("{\n" + ",\n".join(head) + ',\n "records": [\n' + items(vector["records"], "  ") + "\n ],\n"
            + ' "expected": {\n  "verdicts": [\n' + items(expected["verdicts"], "   ") + "\n  ],\n"
            + ",\n".join(tail) + ',\n  "digest_lines": [\n' + items(expected["digest_lines"], "   ") + "\n  ]\n }\n}\n")


def build() -> dict[str, str]:
    """File name -> contents of every vector (checked against the hand-written expectations)."""
    out = {}
    for case in CASES:
        text = dump(run(case))
        assert json.loads(text) == run(case)
        out[f"{case.name}.json"] = text
    return out


def main(argv: list[str]) -> int:
    files = build()
    stale = [n for n, text in files.items() if not (ROOT / n).exists() or (ROOT / n).read_text() != text]
    extra = sorted({p.name for p in ROOT.glob("*.json")} - set(files))
    if "--check" in argv:
        for n in stale + extra:
            print(f"conformance/{n} is not what generate.py builds", file=sys.stderr)
        return 1 if stale or extra else 0
    for n in stale:
        (ROOT / n).write_text(files[n])
    for n in extra:
        (ROOT / n).unlink()
    print(f"{len(files)} vectors, {len(stale)} rewritten, {len(extra)} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
