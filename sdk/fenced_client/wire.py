"""The wire format: one Kafka record per event, CloudEvents Kafka binding in binary mode.

This module is a public contract. Topic ``<prefix><type>``, key = resource id (UTF-8),
partition = murmur2(key) exactly as the Java client computes it, value = event data as
JSON, headers ``ce_*`` plus the fenced extensions. Pure: no I/O.
"""

from __future__ import annotations

import base64
import json
import math
import re
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any, Literal

SPECVERSION = "1.0"
FENCE_TYPE = "fenced.fence"
CONTENT_TYPE = "application/json"
OCTET_STREAM = "application/octet-stream"
"""The media type of bytes whose client named none (CloudEvents' default for data_base64)."""

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
    """An event a decider produced, before it has a version, token or offset.

    Its data is a JSON object (``data``), or bytes (``data_bytes``, with their
    ``datacontenttype``), which only open types take (wire-format.md §3.1)."""

    type: str
    data: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None
    """``ce_id`` of the event (the client's, for an open stream); None: a new UUID."""
    data_bytes: bytes | None = None
    datacontenttype: str = CONTENT_TYPE

    def value(self) -> bytes:
        """The record value: the bytes as they are, or the JSON object by :func:`encode_value`."""
        return self.data_bytes if self.data_bytes is not None else encode_value(self.data)


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def event_headers(*, source: str, subject: str, event_type: str, version: int, token: int,
                  command: str, index: int, count: int, event_id: str | None = None,
                  time: str | None = None, fingerprint: str = "", content_type: str = CONTENT_TYPE,
                  extra: Sequence[tuple[str, bytes]] = ()) -> Headers:
    return [
        (H_SPECVERSION, SPECVERSION.encode()),
        (H_ID, (event_id or str(uuid.uuid4())).encode()),
        (H_TYPE, event_type.encode()),
        (H_SOURCE, source.encode()),
        (H_SUBJECT, subject.encode()),
        (H_TIME, (time or now_rfc3339()).encode()),
        (H_CONTENT_TYPE, content_type.encode()),
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


MAX_CONTENT_TYPE = 200
_MEDIA_TYPE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def media_type_problem(content_type: str) -> str | None:
    """Why ``content_type`` is not a media type fenced writes or reads (None: it is one).

    RFC 9110's ``type/subtype``, optionally followed by ``;`` parameters, printable ASCII, at
    most :data:`MAX_CONTENT_TYPE` characters."""
    if len(content_type) > MAX_CONTENT_TYPE:
        return f"content type is longer than {MAX_CONTENT_TYPE} characters"
    if not content_type.isascii() or not content_type.isprintable():
        return "content type is not printable ASCII"
    if not _MEDIA_TYPE.fullmatch(content_type.split(";", 1)[0].strip()):
        return f"content type {_short(content_type)!r} is not type/subtype"
    return None


def is_json(content_type: str | None) -> bool:
    """Whether an event with this ``content-type`` header holds a JSON object (§3): no header,
    or the media type ``application/json`` (any case, any parameters). Any other media type
    holds bytes (§3.1)."""
    return content_type is None or content_type.split(";", 1)[0].strip().lower() == CONTENT_TYPE


def new_event_problem(e: NewEvent) -> str | None:
    """Why a decider's event cannot be written as it is (None: it can): bytes need a media type
    other than JSON, JSON data has the JSON one."""
    if e.data_bytes is None:
        return None if is_json(e.datacontenttype) else (
            f"event {e.type!r} has JSON data but datacontenttype {e.datacontenttype!r}")
    if (problem := media_type_problem(e.datacontenttype)) is not None:
        return f"event {e.type!r}: {problem}"
    return f"event {e.type!r} holds bytes, so its datacontenttype cannot be JSON" if is_json(e.datacontenttype) \
        else None


def canonical_base64(text: str) -> bytes:
    """The bytes of RFC 4648 base64 with padding; ``ValueError`` unless ``text`` is the one way
    to write them (no other alphabet, no whitespace, zero padding bits), so what the API takes
    is what it answers."""
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("is not canonical base64 (the padding bits must be zero)")
    return raw


def encode_value(data: Mapping[str, Any]) -> bytes:
    """The record value fenced writes: compact, sorted keys, ASCII (non-ASCII as ``\\u`` escapes).

    ``NaN`` and infinities raise ``ValueError`` here rather than reach the log, where the rule
    would read them as malformed (wire-format.md §3)."""
    return json.dumps(data, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


# --------------------------------------------------------------------------------------------
# JSON values: what a record value (and a command's data) may hold (wire-format.md §3)
# --------------------------------------------------------------------------------------------

MAX_VALUE_DEPTH = 1000
"""Deepest nesting of a record value, part of the protocol: the top-level object is depth 1,
each array or object inside another adds one. Deeper values are malformed. At least the
API's largest ``FENCED_MAX_JSON_DEPTH`` (1000), so everything the API takes can be read."""
MAX_DOUBLE = sys.float_info.max
_MAX_INT_DIGITS = len(str(int(MAX_DOUBLE)))  # 309: an integer with more digits overflows a double
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
_NEST = {"[": 1, "{": 1, "]": -1, "}": -1}


def _short(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:20]}...{text[-12:]} ({len(text)} characters)"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (RFC 8259)")


def _finite_float(text: str) -> float:
    f = float(text)
    if math.isinf(f):
        raise ValueError(f"number {_short(text)} is beyond the range of an IEEE 754 double")
    return f


def _finite_int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > _MAX_INT_DIGITS:  # checked before int(): Python refuses > 4300 digits its own way
        raise ValueError(f"number {_short(text)} is beyond the range of an IEEE 754 double")
    n = int(text)
    if digits == _MAX_INT_DIGITS:
        try:
            float(n)  # rounds to the nearest double, or overflows
        except OverflowError:
            raise ValueError(f"number {_short(text)} is beyond the range of an IEEE 754 double") from None
    return n


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"duplicate member name {json.dumps(dup)} in a JSON object")
    return d


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_object, parse_float=_finite_float,
                            parse_int=_finite_int, parse_constant=_no_constant)


def nesting_exceeds(text: str, limit: int) -> bool:
    """Whether JSON ``text`` nests deeper than ``limit``, without parsing it (no recursion):
    brackets outside strings, counted as the parser would meet them."""
    return _opening(text) > limit and _nesting(text) > limit


def _opening(text: str) -> int:
    return text.count("[") + text.count("{")  # an upper bound: brackets in strings count too


def _nesting(text: str) -> int:
    brackets = _BRACKETS.findall(_JSON_STRING.sub('""', text))
    return max(accumulate(map(_NEST.__getitem__, brackets)), default=0)


def _recursion_headroom(depth: int) -> None:
    """Let Python's C parser nest ``depth`` levels below this frame (it recurses once per level,
    counted against the interpreter's recursion limit in Python 3.11)."""
    frames, f = 0, sys._getframe()
    while f is not None:
        frames, f = frames + 1, f.f_back  # type: ignore[assignment]
    needed = frames + depth + 100
    if sys.getrecursionlimit() < needed:
        sys.setrecursionlimit(needed)


def non_json(value: Any) -> tuple[list[str | int], str] | None:
    """Where a parsed JSON value holds something the protocol refuses, and what: a number that
    is not a finite IEEE 754 double (``NaN``, ``Infinity``, ``1E400``) or a string or member
    name with a lone surrogate. ``None`` if it holds none (iterative: any depth)."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        v, path = stack.pop()
        if isinstance(v, dict):
            for k, x in reversed(v.items()):
                if _SURROGATE.search(k):
                    return [*path, k], f"member name {json.dumps(k)} holds a lone surrogate (not Unicode text)"
                stack.append((x, [*path, k]))
        elif isinstance(v, list):
            stack.extend((x, [*path, i]) for i, x in reversed(list(enumerate(v))))
        elif isinstance(v, str):
            if _SURROGATE.search(v):
                return path, f"string {_short(json.dumps(v))} holds a lone surrogate (not Unicode text)"
        elif isinstance(v, float):
            if not math.isfinite(v):
                name = "NaN" if math.isnan(v) else "Infinity" if v > 0 else "-Infinity"
                return path, f"{name} is not a JSON number (numbers must be finite IEEE 754 doubles)"
        elif isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 1023 and abs(v) > MAX_DOUBLE:
            try:
                float(v)
            except OverflowError:
                return path, f"number {_short(str(v))} is beyond the range of an IEEE 754 double"
    return None


def loads_value(value: bytes | None) -> dict[str, Any]:
    """An event's data from a record value, by wire-format.md §3; ``ValueError`` says why not.

    Strict UTF-8 without a byte order mark (never UTF-16/32), RFC 8259 JSON, an object, at most
    :data:`MAX_VALUE_DEPTH` levels, no duplicate member names, finite numbers, no lone
    surrogates."""
    if not value:
        raise ValueError("event data is not a JSON object (the value is empty)")
    if value.startswith(b"\xef\xbb\xbf"):
        raise ValueError("the value starts with a byte order mark")
    text = value.decode("utf-8")  # strict: no UTF-16/32, no encoded surrogates, no overlongs
    if _opening(text) > 100:
        if _nesting(text) > MAX_VALUE_DEPTH:
            raise ValueError(f"event data nests deeper than {MAX_VALUE_DEPTH} levels")
        _recursion_headroom(MAX_VALUE_DEPTH)
    data = _DECODER.decode(text)
    if not isinstance(data, dict):
        raise ValueError("event data is not a JSON object")
    if _SURROGATE_ESCAPE.search(text) and (bad := non_json(data)) is not None:
        raise ValueError(bad[1])
    return data


def canonical_number(x: float) -> str:
    """A double as ECMAScript's ``Number.prototype.toString`` writes it (RFC 8785 §3.2.2.3):
    the shortest digits that round-trip (``repr``), placed by ECMAScript's rules."""
    if x == 0:
        return "0"  # also -0.0
    if x < 0:
        return "-" + canonical_number(-x)
    mantissa, _, exp = repr(x).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    n = len(whole) + int(exp or 0)  # x = 0.digits * 10**n
    stripped = digits.lstrip("0")
    n -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return f"0.{'0' * -n}{digits}"
    e = n - 1
    return f"{digits[0]}{'.' + digits[1:] if k > 1 else ''}e{'+' if e >= 0 else '-'}{abs(e)}"


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be")


def canonical_json(value: Any) -> str:
    """The canonical JSON the history digest hashes (wire-format.md §7): RFC 8785 (JCS), except
    that an integer (a JSON number with no fraction and no exponent) is written exactly, in
    decimal. Objects sorted by UTF-16 code units, no whitespace, strings escaped only where
    JSON must (``"``, ``\\``, U+0000..U+001F), everything else as UTF-8. Iterative: any depth."""
    out: list[str] = []
    stack: list[tuple[bool, Any]] = [(False, value)]  # (True, text to write) or (False, value)
    while stack:
        literal, v = stack.pop()
        if literal:
            out.append(v)
        elif v is None:
            out.append("null")
        elif v is True:
            out.append("true")
        elif v is False:
            out.append("false")
        elif isinstance(v, int):
            out.append(str(v))
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError(f"{v} has no JSON form")
            out.append(canonical_number(v))
        elif isinstance(v, str):
            out.append(json.dumps(v, ensure_ascii=False))
        elif isinstance(v, Mapping):
            items: list[tuple[bool, Any]] = []
            for i, k in enumerate(sorted(v, key=_utf16)):
                items += [(True, ("," if i else "") + json.dumps(k, ensure_ascii=False) + ":"), (False, v[k])]
            stack += [(True, "}"), *reversed(items), (True, "{")]
        elif isinstance(v, list | tuple):
            items = [(True, ",") if j % 2 else (False, v[j // 2]) for j in range(2 * len(v) - 1)]
            stack += [(True, "]"), *reversed(items), (True, "[")]
        else:
            raise TypeError(f"{type(v).__name__} has no JSON form")
    return "".join(out)


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
    data_bytes: bytes | None = None
    """The data of an event whose content type is not JSON (§3.1); ``data`` is then empty."""
    datacontenttype: str = CONTENT_TYPE


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
        raw_type = h.get(H_CONTENT_TYPE)
        content_type = raw_type.decode("ascii", "replace") if raw_type is not None else None
        if content_type is not None and (bad := media_type_problem(content_type)) is not None:
            raise ValueError(bad)
        binary = not is_json(content_type)
        return Record("event", stream, partition, offset, token=token, version=version,
                      command=command, index=index, count=count, event_type=ce_type,
                      data={} if binary else loads_value(value), event_id=_text(h, H_ID), time=_text(h, H_TIME),
                      fingerprint=_fingerprint(h), data_bytes=(value or b"") if binary else None,
                      datacontenttype=content_type if binary and content_type else CONTENT_TYPE)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        return Record("malformed", stream, partition, offset, problem=str(e))
