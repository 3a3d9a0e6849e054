"""The wire format: one Kafka record per event, CloudEvents Kafka binding in binary mode.

This module is a public contract. Topic ``<prefix><type>``, key = resource id (UTF-8),
partition = murmur2(key) exactly as the Java client computes it, value = event data as
JSON, headers ``ce_*`` plus the fenced extensions. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

SPECVERSION = "1.0"
FENCE_TYPE = "fenced.fence"
CONTENT_TYPE = "application/json"

H_SPECVERSION = "ce_specversion"
H_ID = "ce_id"
H_TYPE = "ce_type"
H_SOURCE = "ce_source"
H_SUBJECT = "ce_subject"
H_TIME = "ce_time"
H_CONTENT_TYPE = "content-type"
H_VERSION = "ce_fencedversion"
H_TOKEN = "ce_fencedtoken"
H_COMMAND = "ce_fencedcommand"
H_INDEX = "ce_fencedindex"
H_COUNT = "ce_fencedcount"
H_FINGERPRINT = "ce_fencedfingerprint"
"""A digest of the command that wrote the event (its name, data and expected version), so that
a writer can tell a retry from a reused Idempotency-Key with another body, also when only the
log remembers the command. Absent on events written before it existed."""
H_REQUEST_ID = "ce_fencedrequestid"
"""The id of the HTTP request that wrote the event (informational; the rule ignores it)."""
H_TRACEPARENT = "ce_traceparent"
"""W3C trace context of the client's request (CloudEvents distributed-tracing extension)."""

Headers = list[tuple[str, bytes]]


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as a signed int32."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = (data[i4] | (data[i4 + 1] << 8) | (data[i4 + 2] << 16) | (data[i4 + 3] << 24))
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    base = length & ~3
    if rest == 3:
        h ^= data[base + 2] << 16
    if rest >= 2:
        h ^= data[base + 1] << 8
    if rest >= 1:
        h ^= data[base]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: str, partitions: int) -> int:
    """The partition the Java client's default partitioner picks for a keyed record."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def topic_name(prefix: str, resource_type: str) -> str:
    return f"{prefix}{resource_type}"


@dataclass(frozen=True)
class NewEvent:
    """An event a decider produced, before it has a version, token or offset."""

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def event_headers(*, source: str, subject: str, event_type: str, version: int, token: int,
                  command: str, index: int, count: int, event_id: str | None = None,
                  time: str | None = None, fingerprint: str = "",
                  extra: Sequence[tuple[str, bytes]] = ()) -> Headers:
    return [
        (H_SPECVERSION, SPECVERSION.encode()),
        (H_ID, (event_id or str(uuid.uuid4())).encode()),
        (H_TYPE, event_type.encode()),
        (H_SOURCE, source.encode()),
        (H_SUBJECT, subject.encode()),
        (H_TIME, (time or now_rfc3339()).encode()),
        (H_CONTENT_TYPE, CONTENT_TYPE.encode()),
        (H_VERSION, str(version).encode()),
        (H_TOKEN, str(token).encode()),
        (H_COMMAND, command.encode()),
        (H_INDEX, str(index).encode()),
        (H_COUNT, str(count).encode()),
        *([(H_FINGERPRINT, fingerprint.encode())] if fingerprint else []),
        *extra,
    ]


def fence_headers(*, source: str, subject: str, token: int) -> Headers:
    return [
        (H_SPECVERSION, SPECVERSION.encode()),
        (H_ID, str(uuid.uuid4()).encode()),
        (H_TYPE, FENCE_TYPE.encode()),
        (H_SOURCE, source.encode()),
        (H_SUBJECT, subject.encode()),
        (H_TIME, now_rfc3339().encode()),
        (H_CONTENT_TYPE, CONTENT_TYPE.encode()),
        (H_TOKEN, str(token).encode()),
    ]


def encode_value(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Record:
    """One decoded record of an event topic, as the consumer rule sees it.

    ``kind`` is ``event``, ``fence`` or ``malformed`` (``problem`` then says why); the
    stream of a malformed record is its key when it has one.
    """

    kind: Literal["event", "fence", "malformed"]
    stream: str
    partition: int
    offset: int
    token: int = 0
    version: int = 0
    command: str = ""
    index: int = 0
    count: int = 1
    event_type: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)
    event_id: str = ""
    time: str = ""
    problem: str = ""
    fingerprint: str = ""


MAX_DECIMAL_DIGITS = 19
MAX_INT64 = 2**63 - 1


def _text(headers: Mapping[str, bytes | None], name: str) -> str:
    raw = headers.get(name)
    return raw.decode() if raw is not None else ""


FINGERPRINT = re.compile(rb"[0-9a-f]{32}")


def _fingerprint(headers: Mapping[str, bytes | None]) -> str:
    """``ce_fencedfingerprint`` if it is one (32 lowercase hex digits), else "": the header is
    informational, so a bad value never makes a record malformed."""
    raw = headers.get(H_FINGERPRINT)
    return raw.decode("ascii") if raw is not None and FINGERPRINT.fullmatch(raw) else ""


def _int(headers: Mapping[str, bytes | None], name: str) -> int:
    raw = headers.get(name)
    if raw is None:
        raise ValueError(f"missing header {name}")
    text = raw.decode("ascii")
    if not text.isdigit() or len(text) > MAX_DECIMAL_DIGITS or int(text) > MAX_INT64:
        raise ValueError(f"header {name} is not a decimal integer from 0 to 2**63-1")
    return int(text)


def decode(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]],
           partition: int, offset: int, partitions: int | None = None) -> Record:
    """Decode a record; never raises: anything unreadable is ``malformed`` with a reason.

    With ``partitions`` (the topic's partition count), a record on another partition than
    its key's murmur2 partition is malformed too: it was not written by a fenced writer, and
    reading it would mix two partitions' orders into one stream.
    """
    stream = ""
    try:
        stream = (key or b"").decode()
        if not stream:
            raise ValueError("record has no key")
        if partitions is not None and partition_for(stream, partitions) != partition:
            wrong = f"key {stream!r} belongs to partition {partition_for(stream, partitions)}"
            stream = ""  # belongs to no stream of this partition: discarded on its own
            raise ValueError(wrong)
        h = dict(headers)
        ce_type = _text(h, H_TYPE)
        subject = _text(h, H_SUBJECT)
        if not ce_type:
            raise ValueError("missing header ce_type")
        if subject != stream:
            raise ValueError("ce_subject differs from the record key")
        token = _int(h, H_TOKEN)
        if ce_type == FENCE_TYPE:
            return Record("fence", stream, partition, offset, token=token)
        version = _int(h, H_VERSION)
        index = _int(h, H_INDEX) if H_INDEX in h else 0
        count = _int(h, H_COUNT) if H_COUNT in h else 1
        command = _text(h, H_COMMAND)
        if not command:
            raise ValueError("missing header ce_fencedcommand")
        if version < 1 or count < 1 or index >= count:
            raise ValueError("version, index or count out of range")
        data = json.loads(value or b"null")
        if not isinstance(data, dict):
            raise ValueError("event data is not a JSON object")
        return Record("event", stream, partition, offset, token=token, version=version,
                      command=command, index=index, count=count, event_type=ce_type,
                      data=data, event_id=_text(h, H_ID), time=_text(h, H_TIME),
                      fingerprint=_fingerprint(h))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        return Record("malformed", stream, partition, offset, problem=str(e))
