"""The wire format (sdk/fenced_client/wire.py): murmur2, partitioning, header round trips, decode()."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fenced_client import wire
from fenced_client.wire import (
    FENCE_TYPE,
    H_COMMAND,
    H_COUNT,
    H_INDEX,
    H_SUBJECT,
    H_TOKEN,
    H_TYPE,
    H_VERSION,
    Headers,
    Record,
    decode,
    encode_value,
    event_headers,
    fence_headers,
    murmur2,
    partition_for,
)

FAST = settings(max_examples=200, deadline=None, database=None)

# --------------------------------------------------------------------------------------------
# murmur2 and partitioning
# --------------------------------------------------------------------------------------------

# org.apache.kafka.common.utils.UtilsTest#testMurmur2 (Java client), verbatim.
KAFKA_MURMUR2_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (bytes([ord("a"), ord("b"), ord("c")]), 479470107),
]

# librdkafka src/rdmurmur2.c unittest_murmurhashneutral2: Java's toPositive(murmur2(key)).
# They add the one-byte tail ("kafka", "giberish123456789") the Java vectors do not cover.
LIBRDKAFKA_POSITIVE_VECTORS = [
    ("kafka", 1348980580),
    ("amqp", 767747138),
    ("giberish123456789", 257239820),
]


@pytest.mark.parametrize(("data", "expected"), KAFKA_MURMUR2_VECTORS)
def test_murmur2_matches_kafka_java_vectors(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


@pytest.mark.parametrize(("key", "positive"), LIBRDKAFKA_POSITIVE_VECTORS)
def test_murmur2_matches_librdkafka_java_compatible_vectors(key: str, positive: int) -> None:
    assert murmur2(key.encode()) & 0x7FFFFFFF == positive


@given(st.binary(max_size=64))
@FAST
def test_murmur2_is_a_signed_int32(data: bytes) -> None:
    h = murmur2(data)
    assert -(2**31) <= h < 2**31
    assert murmur2(data) == h


@pytest.mark.parametrize(("key", "positive"), LIBRDKAFKA_POSITIVE_VECTORS)
@pytest.mark.parametrize("partitions", [1, 2, 3, 7, 12, 50, 64])
def test_partition_for_matches_java_default_partitioner(
        key: str, positive: int, partitions: int) -> None:
    assert partition_for(key, partitions) == positive % partitions


@pytest.mark.parametrize(("data", "expected"), KAFKA_MURMUR2_VECTORS)
def test_partition_for_uses_to_positive_not_abs(data: bytes, expected: int) -> None:
    # Java: Utils.toPositive(murmur2(key)) % n, where toPositive is `& 0x7fffffff` (not abs()).
    for n in (1, 6, 10, 50):
        assert partition_for(data.decode(), n) == (expected & 0x7FFFFFFF) % n
    # "foobar" hashes negative: abs() would pick another partition than Java does.
    assert partition_for("foobar", 50) == 16
    assert abs(-790332482) % 50 != 16


@given(st.text(min_size=1, max_size=40), st.integers(min_value=1, max_value=1000))
@FAST
def test_partition_for_is_in_range_and_hashes_utf8(key: str, partitions: int) -> None:
    p = partition_for(key, partitions)
    assert 0 <= p < partitions
    assert p == (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % partitions


def test_topic_name() -> None:
    assert wire.topic_name("fenced.", "folders") == "fenced.folders"
    assert wire.topic_name("", "folders") == "folders"


def test_encode_value_is_compact_and_sorted() -> None:
    assert encode_value({"b": 1, "a": [1, 2], "c": None}) == b'{"a":[1,2],"b":1,"c":null}'
    assert json.loads(encode_value({"name": "é"})) == {"name": "é"}


def test_now_rfc3339_is_utc_with_z() -> None:
    t = wire.now_rfc3339()
    assert t.endswith("Z")
    parsed = datetime.fromisoformat(t.replace("Z", "+00:00"))
    assert parsed.utcoffset() is not None
    assert parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------
# decode(): round trips
# --------------------------------------------------------------------------------------------

def _event_headers(subject: str = "f1", **overrides: object) -> Headers:
    args: dict[str, object] = {
        "source": "/fenced/test", "subject": subject, "event_type": "FolderCreated",
        "version": 1, "token": 7, "command": "cmd-1", "index": 0, "count": 1,
        "event_id": "evt-1", "time": "2024-01-02T03:04:05.000006Z",
    }
    args.update(overrides)
    return event_headers(**args)  # type: ignore[arg-type]


def _replace_header(headers: Headers, name: str, value: bytes | None) -> Headers:
    """Headers with ``name`` set to ``value`` (dropped when ``value`` is None)."""
    out = [(k, v) for k, v in headers if k != name]
    if value is not None:
        out.append((name, value))
    return out


def test_event_headers_round_trip() -> None:
    data = {"name": "Inbox", "parent_id": None}
    headers = _event_headers(
        subject="folder-1", event_type="FolderUpdated", version=12, token=345,
        command="idem-9", index=1, count=3)
    r = decode(b"folder-1", encode_value(data), headers, partition=4, offset=99)
    assert r == Record(
        kind="event", stream="folder-1", partition=4, offset=99, token=345, version=12,
        command="idem-9", index=1, count=3, event_type="FolderUpdated", data=data,
        event_id="evt-1", time="2024-01-02T03:04:05.000006Z", problem="")


def test_event_headers_carry_the_cloudevents_binding() -> None:
    h = dict(_event_headers())
    assert h["ce_specversion"] == b"1.0"
    assert h["content-type"] == b"application/json"
    assert h["ce_source"] == b"/fenced/test"
    assert h[H_SUBJECT] == b"f1"
    assert h[H_TYPE] == b"FolderCreated"
    assert h[H_VERSION] == b"1"
    assert h[H_TOKEN] == b"7"
    assert h[H_COMMAND] == b"cmd-1"
    assert h[H_INDEX] == b"0"
    assert h[H_COUNT] == b"1"


def test_event_headers_default_id_and_time() -> None:
    headers = event_headers(source="s", subject="k", event_type="FolderCreated", version=1,
                            token=1, command="c", index=0, count=1)
    r = decode(b"k", b"{}", headers, 0, 0)
    assert r.kind == "event"
    assert uuid.UUID(r.event_id)
    assert r.time.endswith("Z")
    datetime.fromisoformat(r.time.replace("Z", "+00:00"))


def test_event_headers_extra_headers_are_appended_and_ignored_by_decode() -> None:
    headers = _event_headers(extra=[("traceparent", b"00-abc-def-01")])
    assert headers[-1] == ("traceparent", b"00-abc-def-01")
    assert decode(b"f1", b"{}", headers, 0, 0).kind == "event"


def test_unicode_key_and_data_round_trip() -> None:
    key = "dossier-é-日本"
    data = {"name": "Ordner ü", "parent_id": "p-ø"}
    r = decode(key.encode(), encode_value(data), _event_headers(subject=key), 0, 5)
    assert r.kind == "event"
    assert r.stream == key
    assert r.data == data


def test_fence_headers_round_trip() -> None:
    headers = fence_headers(source="/fenced/test", subject="folder-1", token=2**40 + 3)
    h = dict(headers)
    assert h[H_TYPE] == FENCE_TYPE.encode()
    assert H_VERSION not in h
    assert H_COMMAND not in h
    r = decode(b"folder-1", None, headers, partition=2, offset=17)
    assert r == Record(kind="fence", stream="folder-1", partition=2, offset=17,
                       token=2**40 + 3)


def test_fence_ignores_its_value() -> None:
    headers = fence_headers(source="s", subject="k", token=5)
    assert decode(b"k", b"not json at all", headers, 0, 0).kind == "fence"


def test_index_and_count_default_to_a_single_event_group() -> None:
    headers = _replace_header(_replace_header(_event_headers(), H_INDEX, None), H_COUNT, None)
    r = decode(b"f1", b"{}", headers, 0, 0)
    assert (r.kind, r.index, r.count) == ("event", 0, 1)


def test_numbers_up_to_int64_max_are_accepted() -> None:
    headers = _event_headers(version=2**63 - 1, token=10**18)
    r = decode(b"f1", b"{}", headers, 0, 0)
    assert r.kind == "event"
    assert r.version == 2**63 - 1
    assert r.token == 10**18


def test_numbers_above_int64_max_are_malformed() -> None:
    r = decode(b"f1", b"{}", _event_headers(version=2**63), 0, 0)
    assert r.kind == "malformed" and "2**63-1" in r.problem
    r = decode(b"f1", b"{}", _event_headers(token=9_999_999_999_999_999_999), 0, 0)
    assert r.kind == "malformed"


def test_token_zero_is_accepted() -> None:
    r = decode(b"f1", b"{}", _event_headers(token=0), 0, 0)
    assert (r.kind, r.token) == ("event", 0)


@given(
    key=st.text(min_size=1, max_size=20),
    version=st.integers(min_value=1, max_value=2**63 - 1),
    token=st.integers(min_value=0, max_value=2**63 - 1),
    count=st.integers(min_value=1, max_value=50),
    data=st.dictionaries(st.text(max_size=8),
                         st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                         max_size=4),
    command=st.text(min_size=1, max_size=20),
    event_type=st.text(min_size=1, max_size=20).filter(lambda t: t != FENCE_TYPE),
    st_data=st.data(),
)
@FAST
def test_event_round_trip_property(key: str, version: int, token: int, count: int,
                                   data: dict[str, object], command: str, event_type: str,
                                   st_data: st.DataObject) -> None:
    index = st_data.draw(st.integers(min_value=0, max_value=count - 1))
    headers = _event_headers(subject=key, event_type=event_type, version=version, token=token,
                             command=command, index=index, count=count)
    r = decode(key.encode(), encode_value(data), headers, 1, 2)
    assert r.kind == "event", r.problem
    assert (r.stream, r.version, r.token, r.command, r.index, r.count, r.event_type) == (
        key, version, token, command, index, count, event_type)
    assert r.data == data


# --------------------------------------------------------------------------------------------
# decode(): malformed inputs never raise
# --------------------------------------------------------------------------------------------

GOOD_VALUE = b'{"name":"x","parent_id":null}'

MALFORMED: list[tuple[str, bytes | None, bytes | None, Headers]] = [
    ("no key", None, GOOD_VALUE, _event_headers()),
    ("empty key", b"", GOOD_VALUE, _event_headers()),
    ("key not utf-8", b"\xff\xfe", GOOD_VALUE, _event_headers()),
    ("no headers", b"f1", GOOD_VALUE, []),
    ("no ce_type", b"f1", GOOD_VALUE, _replace_header(_event_headers(), H_TYPE, None)),
    ("empty ce_type", b"f1", GOOD_VALUE, _replace_header(_event_headers(), H_TYPE, b"")),
    ("ce_type not utf-8", b"f1", GOOD_VALUE,
     _replace_header(_event_headers(), H_TYPE, b"\xc3\x28")),
    ("subject != key", b"f1", GOOD_VALUE, _event_headers(subject="f2")),
    ("no subject", b"f1", GOOD_VALUE, _replace_header(_event_headers(), H_SUBJECT, None)),
    ("subject differs in case", b"f1", GOOD_VALUE, _event_headers(subject="F1")),
    ("no token", b"f1", GOOD_VALUE, _replace_header(_event_headers(), H_TOKEN, None)),
    ("token text", b"f1", GOOD_VALUE, _replace_header(_event_headers(), H_TOKEN, b"seven")),
    ("token empty", b"f1", GOOD_VALUE, _replace_header(_event_headers(), H_TOKEN, b"")),
    ("token negative", b"f1", GOOD_VALUE, _replace_header(_event_headers(), H_TOKEN, b"-1")),
    ("token plus sign", b"f1", GOOD_VALUE, _replace_header(_event_headers(), H_TOKEN, b"+1")),
    ("token spaces", b"f1", GOOD_VALUE, _replace_header(_event_headers(), H_TOKEN, b" 1")),
    ("token underscore", b"f1", GOOD_VALUE,
     _replace_header(_event_headers(), H_TOKEN, b"1_000")),
    ("token float", b"f1", GOOD_VALUE, _replace_header(_event_headers(), H_TOKEN, b"1.0")),
    ("token hex", b"f1", GOOD_VALUE, _replace_header(_event_headers(), H_TOKEN, b"0x10")),
    ("token arabic-indic digits", b"f1", GOOD_VALUE,
     _replace_header(_event_headers(), H_TOKEN, "\u0661\u0662".encode())),
    ("token superscript digit", b"f1", GOOD_VALUE,
     _replace_header(_event_headers(), H_TOKEN, "\u00b2".encode())),
    ("token fullwidth digit", b"f1", GOOD_VALUE,
     _replace_header(_event_headers(), H_TOKEN, "\uff11".encode())),
    ("token 20 digits", b"f1", GOOD_VALUE,
     _replace_header(_event_headers(), H_TOKEN, b"1" * 20)),
    ("version 20 digits", b"f1", GOOD_VALUE,
     _replace_header(_event_headers(), H_VERSION, b"9" * 20)),
    ("version 4000 digits", b"f1", GOOD_VALUE,
     _replace_header(_event_headers(), H_VERSION, b"9" * 4000)),
    ("no version", b"f1", GOOD_VALUE, _replace_header(_event_headers(), H_VERSION, None)),
    ("version zero", b"f1", GOOD_VALUE, _event_headers(version=0)),
    ("version text", b"f1", GOOD_VALUE, _replace_header(_event_headers(), H_VERSION, b"v1")),
    ("index text", b"f1", GOOD_VALUE, _replace_header(_event_headers(), H_INDEX, b"first")),
    ("count text", b"f1", GOOD_VALUE, _replace_header(_event_headers(), H_COUNT, b"two")),
    ("count zero", b"f1", GOOD_VALUE, _event_headers(count=0)),
    ("index == count", b"f1", GOOD_VALUE, _event_headers(index=2, count=2)),
    ("index > count", b"f1", GOOD_VALUE, _event_headers(index=5, count=2)),
    ("index with no count", b"f1", GOOD_VALUE,
     _replace_header(_event_headers(index=1, count=2), H_COUNT, None)),
    ("no command", b"f1", GOOD_VALUE, _replace_header(_event_headers(), H_COMMAND, None)),
    ("empty command", b"f1", GOOD_VALUE, _event_headers(command="")),
    ("command not utf-8", b"f1", GOOD_VALUE,
     _replace_header(_event_headers(), H_COMMAND, b"\x80")),
    ("value None", b"f1", None, _event_headers()),
    ("value empty", b"f1", b"", _event_headers()),
    ("value JSON null", b"f1", b"null", _event_headers()),
    ("value JSON list", b"f1", b'[{"name":"x"}]', _event_headers()),
    ("value JSON number", b"f1", b"42", _event_headers()),
    ("value JSON string", b"f1", b'"name"', _event_headers()),
    ("value JSON true", b"f1", b"true", _event_headers()),
    ("value bad JSON", b"f1", b'{"name":', _event_headers()),
    ("value trailing garbage", b"f1", b'{"name":"x"} extra', _event_headers()),
    ("value not utf-8", b"f1", b'{"name":"\xff"}', _event_headers()),
    ("value huge JSON int", b"f1", b'{"n":' + b"1" * 5000 + b"}", _event_headers()),
    ("value NaN", b"f1", b'{"n":NaN}', _event_headers()),
    ("value Infinity", b"f1", b'{"n":Infinity}', _event_headers()),
    ("value -Infinity", b"f1", b'{"n":[-Infinity]}', _event_headers()),
    ("value 1E400", b"f1", b'{"n":1E400}', _event_headers()),
    ("value -1e400", b"f1", b'{"n":-1e400}', _event_headers()),
    ("value integer beyond a double", b"f1", b'{"n":' + b"9" * 309 + b"}", _event_headers()),
    ("value with a UTF-8 BOM", b"f1", b"\xef\xbb\xbf" + GOOD_VALUE, _event_headers()),
    ("value UTF-16 with BOM", b"f1", '{"name":"x"}'.encode("utf-16"), _event_headers()),
    ("value UTF-16LE", b"f1", '{"name":"x"}'.encode("utf-16-le"), _event_headers()),
    ("value UTF-16BE", b"f1", '{"name":"x"}'.encode("utf-16-be"), _event_headers()),
    ("value UTF-32", b"f1", '{"name":"x"}'.encode("utf-32"), _event_headers()),
    ("value encoded surrogate (CESU-8)", b"f1", b'{"n":"\xed\xa0\x80"}', _event_headers()),
    ("value overlong UTF-8", b"f1", b'{"n":"\xc0\xaf"}', _event_headers()),
    ("value lone high surrogate escape", b"f1", b'{"n":"\\ud800"}', _event_headers()),
    ("value lone low surrogate escape", b"f1", b'{"n":["a\\udfffb"]}', _event_headers()),
    ("value reversed surrogate pair", b"f1", b'{"n":"\\ude00\\ud83d"}', _event_headers()),
    ("member name lone surrogate", b"f1", b'{"\\ud800":1}', _event_headers()),
    ("value duplicate member names", b"f1", b'{"name":"x","name":"y"}', _event_headers()),
    ("value nested duplicate names", b"f1", b'{"a":{"b":1,"b":1}}', _event_headers()),
    ("value control character in a string", b"f1", b'{"n":"a\nb"}', _event_headers()),
    ("value 1001 levels", b"f1", b'{"n":' + b"[" * 1000 + b"]" * 1000 + b"}", _event_headers()),
    ("fence subject != key", b"f1", None, fence_headers(source="s", subject="f2", token=3)),
    ("fence without token", b"f1", None,
     _replace_header(fence_headers(source="s", subject="f1", token=3), H_TOKEN, None)),
    ("fence token text", b"f1", None,
     _replace_header(fence_headers(source="s", subject="f1", token=3), H_TOKEN, b"three")),
    ("fence token 20 digits", b"f1", None,
     _replace_header(fence_headers(source="s", subject="f1", token=3), H_TOKEN, b"9" * 20)),
    ("fence no key", None, None, fence_headers(source="s", subject="f1", token=3)),
]


@pytest.mark.parametrize(("key", "value", "headers"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_decode_malformed(key: bytes | None, value: bytes | None, headers: Headers) -> None:
    r = decode(key, value, headers, partition=3, offset=41)
    assert r.kind == "malformed"
    assert r.problem
    assert (r.partition, r.offset) == (3, 41)
    assert (r.token, r.version, r.command, r.event_type, dict(r.data)) == (0, 0, "", "", {})
    try:
        expected_stream = (key or b"").decode()
    except UnicodeDecodeError:
        expected_stream = ""
    assert r.stream == expected_stream


def test_decode_malformed_problem_says_why() -> None:
    assert decode(None, GOOD_VALUE, _event_headers(), 0, 0).problem == "record has no key"
    subject = decode(b"f1", GOOD_VALUE, _event_headers(subject="f2"), 0, 0).problem
    assert "ce_subject" in subject
    assert "ce_fencedtoken" in decode(
        b"f1", GOOD_VALUE, _replace_header(_event_headers(), H_TOKEN, b"x"), 0, 0).problem
    assert "JSON object" in decode(b"f1", b"[]", _event_headers(), 0, 0).problem


@given(
    key=st.none() | st.binary(max_size=12),
    value=st.none() | st.binary(max_size=64),
    headers=st.lists(
        st.tuples(
            st.sampled_from([H_TYPE, H_SUBJECT, H_TOKEN, H_VERSION, H_COMMAND, H_INDEX, H_COUNT,
                             "ce_id", "ce_time", "other"]),
            st.none() | st.binary(max_size=24) | st.sampled_from(
                [b"1", b"0", b"f1", b"FolderCreated", FENCE_TYPE.encode(), b"9" * 20])),
        max_size=10),
    partitions=st.none() | st.integers(min_value=1, max_value=4),
    partition=st.integers(min_value=0, max_value=3),
)
@FAST
def test_decode_never_raises_on_arbitrary_bytes(
        key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]],
        partitions: int | None, partition: int) -> None:
    r = decode(key, value, headers, partition, 0, partitions)
    assert r.kind in ("event", "fence", "malformed")
    if r.kind == "malformed":
        assert r.problem


@given(st.data())
@FAST
def test_decode_never_raises_when_one_header_is_mutated(data: st.DataObject) -> None:
    headers = _event_headers(index=0, count=2)
    name = data.draw(st.sampled_from([k for k, _ in headers]))
    raw = data.draw(st.binary(max_size=24))
    r = decode(b"f1", GOOD_VALUE, _replace_header(headers, name, raw), 0, 0, 1)
    assert r.kind in ("event", "malformed")
    if r.kind == "malformed":
        assert r.problem


# aiokafka yields None for a Kafka header whose value is null.
_NULLABLE = [k for k, _ in _event_headers()]


@pytest.mark.parametrize("name", [n for n in _NULLABLE if n not in (H_INDEX, H_COUNT)])
def test_null_header_value_reads_as_a_missing_header(name: str) -> None:
    headers = _event_headers(index=0, count=2)
    nulled: list[tuple[str, bytes | None]] = [
        (k, None if k == name else v) for k, v in headers]
    missing = _replace_header(headers, name, None)
    assert decode(b"f1", GOOD_VALUE, nulled, 3, 4) == decode(b"f1", GOOD_VALUE, missing, 3, 4)


@pytest.mark.parametrize("name", [H_INDEX, H_COUNT])
def test_null_index_or_count_is_malformed(name: str) -> None:
    # A missing index/count means a single-event group; a present-but-null one is malformed.
    headers: list[tuple[str, bytes | None]] = [
        (k, None if k == name else v) for k, v in _event_headers()]
    r = decode(b"f1", GOOD_VALUE, headers, 0, 0)
    assert r.kind == "malformed"
    assert name in r.problem


@pytest.mark.parametrize("name", [H_TYPE, H_SUBJECT, H_COMMAND, H_TOKEN, H_VERSION])
def test_null_required_header_is_malformed(name: str) -> None:
    headers: list[tuple[str, bytes | None]] = [
        (k, None if k == name else v) for k, v in _event_headers()]
    r = decode(b"f1", GOOD_VALUE, headers, 0, 0)
    assert r.kind == "malformed"
    assert r.problem


def test_null_fence_token_is_malformed() -> None:
    headers: list[tuple[str, bytes | None]] = [
        (k, None if k == H_TOKEN else v) for k, v in fence_headers(source="s", subject="f1",
                                                                    token=3)]
    assert decode(b"f1", None, headers, 0, 0).kind == "malformed"


@pytest.mark.parametrize("value", [b"[" * 100_000, b'{"a":' * 100_000, b"[" * 5_000 + b"]" * 5_000])
def test_decode_deeply_nested_json_is_malformed(value: bytes) -> None:
    r = decode(b"f1", value, _event_headers(), 0, 0)
    assert r.kind == "malformed"
    assert r.problem


# --------------------------------------------------------------------------------------------
# decode(): the partition check
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("partitions", [1, 3, 12])
@pytest.mark.parametrize("key", ["f1", "folder-42", "kafka", "日本"])
def test_record_on_its_keys_partition_is_read(key: str, partitions: int) -> None:
    p = partition_for(key, partitions)
    event = decode(key.encode(), GOOD_VALUE, _event_headers(subject=key), p, 9, partitions)
    assert (event.kind, event.stream, event.partition) == ("event", key, p)
    fence = decode(key.encode(), None, fence_headers(source="s", subject=key, token=2), p, 10,
                   partitions)
    assert (fence.kind, fence.token) == ("fence", 2)


@pytest.mark.parametrize("partitions", [2, 3, 12])
@pytest.mark.parametrize("key", ["f1", "folder-42", "kafka", "日本"])
def test_record_on_another_partition_is_malformed(key: str, partitions: int) -> None:
    p = (partition_for(key, partitions) + 1) % partitions
    for value, headers in [(GOOD_VALUE, _event_headers(subject=key)),
                           (None, fence_headers(source="s", subject=key, token=2))]:
        r = decode(key.encode(), value, headers, p, 9, partitions)
        # on another partition it belongs to no stream: discarded on its own
        assert (r.kind, r.stream, r.partition, r.offset) == ("malformed", "", p, 9)
        assert str(partition_for(key, partitions)) in r.problem


def test_partition_is_not_checked_without_a_partition_count() -> None:
    p = (partition_for("f1", 3) + 1) % 3
    assert decode(b"f1", GOOD_VALUE, _event_headers(), p, 0).kind == "event"


def test_keyless_record_with_a_partition_count_is_malformed() -> None:
    r = decode(None, GOOD_VALUE, _event_headers(), 0, 0, 3)
    assert (r.kind, r.stream, r.problem) == ("malformed", "", "record has no key")


# --------------------------------------------------------------------------------------------
# decode(): what a value may hold (wire-format.md §3)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    b'{"n":1e308,"m":5e-324,"z":-0.0,"f":0.1,"u":1e-400}',
    b'{"big":18446744073709551617,"neg":-9223372036854775809}',
    b'{"n":' + b"1" * 308 + b"}",  # 308 digits: inside a double's range
    b'{"n":"\\ud83d\\ude00 \\u00e9 \\u0000 \\u2028"}',  # a surrogate pair is one character
    b'{"n":"\\\\ud800"}',  # an escaped backslash, then text: no surrogate
    b' \t\r\n{"n":[]} \n',
    b'{"n":"[[[[' + b"[" * 2000 + b'"}',  # brackets in a string do not nest
])
def test_valid_values_are_events(value: bytes) -> None:
    r = decode(b"f1", value, _event_headers(), 0, 0)
    assert r.kind == "event", r.problem
    assert r.data == json.loads(value)


def test_depth_is_a_protocol_constant_not_the_recursion_limit() -> None:
    """Python's parser alone refused about 985 levels and took 975, depending on the stack and
    the Python version; the limit is now wire.MAX_VALUE_DEPTH, counted without recursion."""
    assert wire.MAX_VALUE_DEPTH == 1000
    inner = wire.MAX_VALUE_DEPTH - 1  # the top-level object is level 1
    deepest = b'{"n":' + b"[" * inner + b"]" * inner + b"}"
    assert decode(b"f1", deepest, _event_headers(), 0, 0).kind == "event"
    objects = b'{"n":' * wire.MAX_VALUE_DEPTH + b"1" + b"}" * wire.MAX_VALUE_DEPTH
    assert decode(b"f1", objects, _event_headers(), 0, 0).kind == "event"
    deeper = b'{"n":' * (wire.MAX_VALUE_DEPTH + 1) + b"1" + b"}" * (wire.MAX_VALUE_DEPTH + 1)
    r = decode(b"f1", deeper, _event_headers(), 0, 0)
    assert (r.kind, r.problem) == ("malformed", "event data nests deeper than 1000 levels")


def test_depth_counts_no_brackets_inside_strings() -> None:
    assert not wire.nesting_exceeds('{"a":"' + "[" * 5000 + '"}', 2)
    assert not wire.nesting_exceeds('{"a":"\\"[[[["}', 2)
    assert wire.nesting_exceeds('{"a":[[1]]}', 2)
    assert not wire.nesting_exceeds('{"a":[[1]]}', 3)


def test_malformed_value_problem_names_the_value() -> None:
    def problem(value: bytes) -> str:
        return decode(b"f1", value, _event_headers(), 0, 0).problem
    assert problem(b'{"n":NaN}') == "NaN is not a JSON number (RFC 8259)"
    assert problem(b'{"n":1E400}') == "number 1E400 is beyond the range of an IEEE 754 double"
    assert problem(b'{"a":1,"a":2}') == 'duplicate member name "a" in a JSON object'
    assert "lone surrogate" in problem(b'{"a":"\\udc00"}')
    assert "byte order mark" in problem(b"\xef\xbb\xbf{}")


def test_encode_value_refuses_what_decode_would_call_malformed() -> None:
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ValueError):
            encode_value({"n": bad})


@pytest.mark.parametrize(("value", "where"), [
    ({"a": [1, {"b": float("nan")}]}, ["a", 1, "b"]),
    ({"a": float("-inf")}, ["a"]),
    ({"a": 10**400}, ["a"]),
    ({"a": ["ok", "x\ud800"]}, ["a", 1]),
    ({"k\udfff": 1}, ["k\udfff"]),
])
def test_non_json_says_where(value: dict[str, object], where: list[object]) -> None:
    bad = wire.non_json(value)
    assert bad is not None and bad[0] == where


def test_non_json_accepts_what_the_log_keeps() -> None:
    assert wire.non_json({"a": [1, 2.5, -0.0, 10**300, "\U0001f600", None, True, {"b": ""}]}) is None


# --------------------------------------------------------------------------------------------
# canonical_json(): the digest's rendering (wire-format.md §7)
# --------------------------------------------------------------------------------------------

# RFC 8785 Appendix B: IEEE 754 bit patterns and their ECMAScript rendering (also checked
# against node's String(x) for 21,000 random doubles when this was written).
RFC8785_NUMBERS = [
    ("0000000000000000", "0"), ("8000000000000000", "0"), ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"), ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"), ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"), ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"), ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"), ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"), ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"), ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"), ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"), ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"), ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), RFC8785_NUMBERS)
def test_canonical_number_matches_rfc8785(bits: str, text: str) -> None:
    import struct
    (x,) = struct.unpack(">d", bytes.fromhex(bits))
    assert wire.canonical_number(x) == text
    assert wire.canonical_json(x) == text


def test_canonical_json_integers_are_exact_and_floats_are_doubles() -> None:
    assert wire.canonical_json([2**64 + 1, -(2**63), 0, 1.0, 100.0, 1e21, 0.1, -0.0, 1e-7]) == \
        "[18446744073709551617,-9223372036854775808,0,1,100,1e+21,0.1,0,1e-7]"


def test_canonical_json_strings_escape_only_what_json_must() -> None:
    s = "\"\\/\b\f\n\r\t\x00\x1f\x7f\u00e9\u2028\U0001f600"
    assert wire.canonical_json(s) == '"\\"\\\\/\\b\\f\\n\\r\\t\\u0000\\u001f\x7f\u00e9\u2028\U0001f600"'


def test_canonical_json_sorts_members_by_utf16_code_units() -> None:
    # U+FB33 sorts after U+1F600 by code point but before it by UTF-16 code units (D83D ...)
    value = {"\ufb33": 1, "\U0001f600": 2, "b": 3, "a": {"y": [], "x": {}}, "": None}
    assert wire.canonical_json(value) == '{"":null,"a":{"x":{},"y":[]},"b":3,"\U0001f600":2,"\ufb33":1}'


def test_canonical_json_has_no_recursion_limit() -> None:
    deep: object = []
    for _ in range(5000):
        deep = [deep]
    assert wire.canonical_json(deep) == "[" * 5001 + "]" * 5001


def test_canonical_json_refuses_what_json_cannot_say() -> None:
    for bad in (float("nan"), float("inf"), object()):
        with pytest.raises((ValueError, TypeError)):
            wire.canonical_json(bad)


# --------------------------------------------------------------------------------------------
# binary data (wire-format.md §3.1)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", [None, b"application/json", b"Application/JSON; charset=utf-8"])
def test_no_content_type_or_application_json_is_a_json_object(content_type: bytes | None) -> None:
    headers = _replace_header(_event_headers(), wire.H_CONTENT_TYPE, content_type)
    r = decode(b"f1", b'{"a":1}', headers, 0, 0)
    assert (r.kind, r.data, r.data_bytes, r.datacontenttype) == ("event", {"a": 1}, None, "application/json")
    assert decode(b"f1", b"\x00", headers, 0, 0).kind == "malformed"


@pytest.mark.parametrize("value", [b"\x00\xff\xc3\x28", b"", None, b'{"a":1}'])
def test_any_other_media_type_holds_the_value_as_bytes(value: bytes | None) -> None:
    headers = _event_headers(content_type="image/png; q=1")
    r = decode(b"f1", value, headers, 0, 0)
    assert (r.kind, r.data, r.data_bytes, r.datacontenttype) == ("event", {}, value or b"", "image/png; q=1")


@pytest.mark.parametrize("content_type", [b"png", b"image/", b"a/b c", b"a/b\xc3\xa9", b"a/" + b"b" * 200])
def test_a_content_type_that_is_not_a_media_type_is_malformed(content_type: bytes) -> None:
    r = decode(b"f1", b"x", _replace_header(_event_headers(), wire.H_CONTENT_TYPE, content_type), 0, 0)
    assert r.kind == "malformed" and "content type" in r.problem


def test_a_new_events_value_is_its_bytes_or_its_json() -> None:
    assert wire.NewEvent("A", data_bytes=b"\x01", datacontenttype="x/y").value() == b"\x01"
    assert wire.NewEvent("A", {"b": 1, "a": 2}).value() == b'{"a":2,"b":1}'


def test_base64_is_taken_only_in_its_one_canonical_form() -> None:
    assert wire.canonical_base64("QQ==") == b"A"
    assert wire.canonical_base64("") == b""
    for bad in ("QR==", "QQ", "QQ==\n", "Q Q==", "-_8=", "QQ=a"):
        with pytest.raises(ValueError):
            wire.canonical_base64(bad)


@pytest.mark.parametrize(("event", "fine"), [
    (wire.NewEvent("A", {"a": 1}), True),
    (wire.NewEvent("A", {"a": 1}, datacontenttype="application/json; charset=utf-8"), True),
    (wire.NewEvent("A", {"a": 1}, datacontenttype="image/png"), False),
    (wire.NewEvent("A", data_bytes=b"x", datacontenttype="image/png"), True),
    (wire.NewEvent("A", data_bytes=b"x"), False),  # bytes with the JSON default
    (wire.NewEvent("A", data_bytes=b"x", datacontenttype="png"), False)])
def test_a_deciders_new_event_is_checked_before_it_is_written(event: wire.NewEvent, fine: bool) -> None:
    assert (wire.new_event_problem(event) is None) == fine
