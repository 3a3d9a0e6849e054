"""Routes of the public HTTP API (``/v1``) and the health probes."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fenced_client import domain, wire
from fenced_client.domain.open import APPEND, is_open
from fenced_client.rule import StreamState
from locks import META_KEY
from service import logs
from service.api.deps import MetricsReader, Reader, RuntimeDep, Writer
from service.auth import Principal
from service.errors import InvalidInput, NotFound
from service.runtime import Runtime
from service.write.writer import Request as WriteRequest
from service.write.writer import new_command_id

ID_CHARS = re.compile(r"^[A-Za-z0-9._~-]+$")
KEY_CHARS = re.compile(r"^[\x21-\x7e]{1,200}$")

router = APIRouter(prefix="/v1", tags=["resources"])
health = APIRouter(tags=["health"])


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=64, description="Command name, e.g. Create, Update, Destroy.")
    data: dict[str, Any] = Field(default_factory=dict, description="The command's arguments.")
    expected_version: int | None = Field(default=None, ge=0, description="Refuse (409) unless the "
                                         "resource is at this version.")


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str = Field(min_length=1, max_length=200, description="The event's type (its ce_type).")
    data: dict[str, Any] | None = Field(default=None, description="The event's data: a JSON object "
                                        "(default {}).")
    data_base64: str | None = Field(default=None, description="Or bytes, base64 (RFC 4648): the record "
                                    "value holds them as they are (CloudEvents' data_base64).")
    datacontenttype: str | None = Field(default=None, description="The media type of data_base64 "
                                        "(default application/octet-stream); with data, application/json.")
    id: str | None = Field(default=None, min_length=1, max_length=200,
                           description="The event's ce_id (default: a new UUID).")

    @field_validator("type", "id")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        if v is not None and (wire.non_json(v) is not None or not v.isprintable()):
            raise ValueError("must be printable text (no control characters, no lone surrogates)")
        if v == wire.FENCE_TYPE:
            raise ValueError(f"{wire.FENCE_TYPE!r} is reserved for fence records")
        return v

    @field_validator("data_base64")
    @classmethod
    def _base64(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                wire.canonical_base64(v)
            except ValueError as e:  # binascii.Error is one
                raise ValueError(f"is not base64 (RFC 4648, with padding): {e}") from None
        return v

    @field_validator("datacontenttype")
    @classmethod
    def _media_type(cls, v: str | None) -> str | None:
        if v is not None and (problem := wire.media_type_problem(v)) is not None:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _one_data(self) -> EventIn:
        if self.data is not None and self.data_base64 is not None:
            raise ValueError("an event has data (JSON) or data_base64 (bytes), not both")
        if self.data_base64 is None and self.datacontenttype is not None and not wire.is_json(self.datacontenttype):
            raise ValueError(f"datacontenttype {self.datacontenttype!r} needs data_base64: data is JSON "
                             "(application/json)")
        if self.data_base64 is not None and self.datacontenttype is not None and wire.is_json(self.datacontenttype):
            raise ValueError("JSON data goes in data, not data_base64")
        return self


class AppendIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    events: list[EventIn] = Field(min_length=1, description="The events, appended together or not at all.")
    expected_version: Annotated[int, Field(ge=0)] | Literal["any", "no_stream", "exists"] = Field(
        "any", description="Refuse (409) unless the stream is at this version; no_stream: it has no event; "
        "exists: it has one at least; any: no check.")


class EventRef(BaseModel):
    type: str
    version: int
    partition: int
    offset: int


class CommandOut(BaseModel):
    command_id: str
    version: int
    events: list[EventRef]


class ResourceOut(BaseModel):
    type: str
    id: str
    version: int
    destroyed: bool
    state: dict[str, Any]


class HistoryEvent(BaseModel):
    version: int
    type: str
    datacontenttype: str = Field(wire.CONTENT_TYPE, description="application/json: the event has data; "
                                 "any other media type: data_base64.")
    data: dict[str, Any] | None = Field(None, exclude_if=lambda v: v is None, description="A JSON event's data.")
    data_base64: str | None = Field(None, exclude_if=lambda v: v is None,
                                    description="The bytes of any other event, base64.")
    partition: int
    offset: int
    command: str
    time: str


class HistoryOut(BaseModel):
    type: str
    id: str
    events: list[HistoryEvent]
    next_from_version: int | None
    """Oldest first: the next page's ``from_version`` (None: no more)."""
    next_to_version: int | None = None
    """Newest first (``order=desc``): the next page's ``to_version`` (None: no more)."""


def _check(rt: RuntimeDep, resource_type: str, resource_id: str) -> domain.Decider:
    decider = domain.get(resource_type)
    if decider is None or resource_type not in rt.settings.types:
        raise NotFound(f"unknown resource type {resource_type!r}", kind="unknown-resource-type")
    if len(resource_id) > rt.settings.max_id_length or not ID_CHARS.match(resource_id) or not resource_id.strip("."):
        raise InvalidInput(f"resource id must be 1 to {rt.settings.max_id_length} characters of "
                           "A-Z a-z 0-9 . _ ~ -, and not only dots")
    return decider


def stream_id(principal: Principal, resource_id: str) -> str:
    """The stream's key in Kafka and Redis: the id, namespaced ``<tenant>/<id>`` when the API
    serves tenants (ids cannot contain '/', so the two never collide)."""
    return resource_id if principal.tenant is None else f"{principal.tenant}/{resource_id}"


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)
    return False


async def _read(rt: RuntimeDep, decider: domain.Decider, resource_type: str, key: str) -> StreamState:
    """A read that reflects every write acknowledged before it (linearizable, S7): the log
    barrier of :mod:`service.read.barrier`, whatever Redis lost."""
    return await rt.barrier.state(decider, f"{resource_type}:{key}", rt.settings.topic(resource_type),
                                  rt.appender.partition(key),
                                  time.monotonic() + rt.settings.request_deadline_ms / 1000)


class _Literal(str):
    """A number's text as the client sent it, for a 422 that names it (``1E400``)."""


def _number_literal(text: str) -> float | _Literal:
    f = float(text)
    return _Literal(text) if math.isinf(f) else f


def _sent_as(raw: bytes, path: Sequence[str | int]) -> str | None:
    """The literal the body holds at ``path``, if it is a number that is not finite."""
    try:
        v: Any = json.loads(raw, parse_float=_number_literal, parse_constant=_Literal)
        for step in path:
            v = v[step]
    except (ValueError, LookupError, TypeError):
        return None
    return v if isinstance(v, _Literal) else None


async def refuse_non_json(request: Request, data: dict[str, Any], where: tuple[str | int, ...] = ("data",)) -> None:
    """422 for data the log could not keep as JSON (wire-format.md §3): ``NaN``, ``Infinity``,
    numbers beyond a double (``1E400``), lone surrogates. Python's parser takes them, so the
    API would otherwise append them and answer ``null`` (or fail) where the log holds them."""
    bad = wire.non_json(data)
    if bad is None:
        return
    path, msg = bad
    v: Any = data
    for step in path:
        v = v[step]
    if isinstance(v, float) and math.isinf(v):
        sent = _sent_as(await request.body(), [*where, *path]) or ("Infinity" if v > 0 else "-Infinity")
        msg = f"{sent} is not a JSON number the log can keep: numbers must be finite IEEE 754 doubles"
    # a member name with a lone surrogate has no UTF-8 form: the answer names it escaped
    loc = [json.dumps(p)[1:-1] if isinstance(p, str) and not p.isascii() and wire.non_json(p) else p for p in path]
    raise RequestValidationError([{"type": "value_error", "loc": ("body", *where, *loc), "msg": msg,
                                   "input": None}])


TypePath = Annotated[str, Path(description="Resource type, e.g. folders.")]
IdPath = Annotated[str, Path(description="Resource id (A-Z a-z 0-9 . _ ~ -).")]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/problem+json": {}}}
    for code, text in [(401, "No valid API key"), (403, "The key lacks the scope"),
                       (404, "Unknown type or resource"), (409, "Conflict"), (410, "Destroyed"),
                       (413, "Body too large"), (422, "Invalid input"), (429, "Over the tenant's rate limit"),
                       (503, "Busy or outcome unknown")]}
# FastAPI's own answer to a body it cannot decode (not UTF-8), before any route code runs
BAD_BODY: dict[int | str, dict[str, Any]] = {
    400: {"description": "Body cannot be decoded", "content": {"application/problem+json": {}}}}


async def _write(rt: Runtime, principal: Principal, request: Request, resource_type: str, resource_id: str,
                 name: str, data: dict[str, Any], expected_version: int | str | None, idempotency_key: str | None,
                 fault: str | None, values: Sequence[tuple[dict[str, Any], tuple[str | int, ...]]]) -> dict[str, Any]:
    """What the write routes share: the Idempotency-Key's form, the limits of each JSON value of
    the body (named by its place in it), and the writer."""
    if idempotency_key is not None and not KEY_CHARS.match(idempotency_key):
        raise InvalidInput("Idempotency-Key must be 1 to 200 visible ASCII characters")
    for value, where in values:
        if json_depth_exceeds(value, rt.settings.max_json_depth - 1):
            raise InvalidInput(f"'{'.'.join(map(str, where))}' nests deeper than {rt.settings.max_json_depth} "
                               "levels (FENCED_MAX_JSON_DEPTH)")
        await refuse_non_json(request, value, where)
    ctx = logs.current.get()
    req = WriteRequest(resource_type, stream_id(principal, resource_id), name, data, expected_version,
                       idempotency_key or new_command_id(), fault,
                       request_id=ctx.request_id if ctx else None, traceparent=ctx.traceparent if ctx else None)
    return await rt.writer.execute(req)


@router.post("/{resource_type}/{resource_id}/commands", status_code=201, response_model=CommandOut,
             responses={**BAD_BODY, **ERRORS})
async def send_command(rt: RuntimeDep, principal: Writer, resource_type: TypePath, resource_id: IdPath,
                       body: CommandIn, request: Request, idempotency_key: Annotated[str | None, Header()] = None,
                       x_fenced_fault: Annotated[str | None, Header(include_in_schema=False)] = None,
                       ) -> dict[str, Any]:
    if is_open(_check(rt, resource_type, resource_id)):
        raise InvalidInput(f"{resource_type} is an open type: append events at "
                           f"/v1/{resource_type}/{{id}}/events", kind="open-type")
    return await _write(rt, principal, request, resource_type, resource_id, body.name, body.data,
                        body.expected_version, idempotency_key, x_fenced_fault, [(body.data, ("data",))])


@router.post("/{resource_type}/{resource_id}/events", status_code=201, response_model=CommandOut,
             responses={**BAD_BODY, **ERRORS})
async def append_events(rt: RuntimeDep, principal: Writer, resource_type: TypePath, resource_id: IdPath,
                        body: AppendIn, request: Request, idempotency_key: Annotated[str | None, Header()] = None,
                        x_fenced_fault: Annotated[str | None, Header(include_in_schema=False)] = None,
                        ) -> dict[str, Any]:
    """Append events the client decided to an open stream, atomically, if the stream is at the
    expected version (409 with ``current_version`` if not)."""
    if not is_open(_check(rt, resource_type, resource_id)):
        raise InvalidInput(f"{resource_type} is a decided type: send commands to "
                           f"/v1/{resource_type}/{{id}}/commands", kind="decided-type")
    # an event without data has data {} (as before data_base64, so a retry's fingerprint is the same)
    data = {"events": [{"data": {}, **e.model_dump(exclude_none=True)} if e.data_base64 is None
                       else e.model_dump(exclude_none=True) for e in body.events]}
    return await _write(rt, principal, request, resource_type, resource_id, APPEND, data, body.expected_version,
                        idempotency_key, x_fenced_fault,
                        [(e.data, ("events", n, "data")) for n, e in enumerate(body.events) if e.data is not None])


@router.get("/{resource_type}/{resource_id}", response_model=ResourceOut, responses=ERRORS)
async def get_resource(rt: RuntimeDep, principal: Reader, resource_type: TypePath, resource_id: IdPath,
                       response: Response) -> dict[str, Any]:
    decider = _check(rt, resource_type, resource_id)
    st = await _read(rt, decider, resource_type, stream_id(principal, resource_id))
    if st.version == 0:
        raise NotFound(f"{resource_type} {resource_id!r} does not exist", kind="no-such-resource")
    response.headers["ETag"] = f'"{st.version}"'
    return {"type": resource_type, "id": resource_id, "version": st.version,
            "destroyed": decider.destroyed(st.state), "state": dict(st.state)}


@router.get("/{resource_type}/{resource_id}/events", response_model=HistoryOut, responses=ERRORS)
async def get_events(rt: RuntimeDep, principal: Reader, resource_type: TypePath, resource_id: IdPath,
                     from_version: Annotated[int, Query(ge=1, description="The lowest version to list.")] = 1,
                     to_version: Annotated[int | None, Query(ge=1, description="The highest version to list "
                                                             "(default: the stream's).")] = None,
                     order: Annotated[Literal["asc", "desc"], Query(description="asc: oldest first; desc: "
                                                                    "newest first.")] = "asc",
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    decider = _check(rt, resource_type, resource_id)
    stream = f"{resource_type}:{stream_id(principal, resource_id)}"
    st = await _read(rt, decider, resource_type, stream_id(principal, resource_id))
    if st.version == 0:
        raise NotFound(f"{resource_type} {resource_id!r} does not exist", kind="no-such-resource")
    top = st.version if to_version is None else min(to_version, st.version)
    if order == "asc":
        low, high = from_version, min(top, from_version + limit - 1)
    else:
        low, high = max(from_version, top - limit + 1), top
    events = await rt.projection.events(stream, low, max(high - low + 1, 0))
    if order == "desc":
        events.reverse()
    return {"type": resource_type, "id": resource_id, "events": events,
            "next_from_version": high + 1 if order == "asc" and high < top else None,
            "next_to_version": low - 1 if order == "desc" and low > from_version else None}


@health.get("/metrics", include_in_schema=False)
async def metrics(rt: RuntimeDep, principal: MetricsReader) -> Response:
    """Prometheus metrics of this replica."""
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@health.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get("/readyz", responses={503: {"description": "Not ready"}})
async def readyz(rt: RuntimeDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(rt.redis.ping(), 2)
        checks["redis"] = "ok"
    except Exception as e:  # noqa: BLE001 - any failure is the reason to report
        checks["redis"] = f"unreachable: {e}"
    try:
        for t in rt.settings.types:
            parts = await asyncio.wait_for(rt.appender.producer.partitions_for(rt.settings.topic(t)), 3)
            if not parts:
                raise RuntimeError(f"topic {rt.settings.topic(t)} is missing")
        checks["kafka"] = "ok"
    except Exception as e:  # noqa: BLE001
        checks["kafka"] = f"unreachable or topic missing: {e!r}"
    if checks["redis"] == "ok":
        meta = await rt.redis.hmget(META_KEY, ["epoch", "ready"])
        checks["projection"] = "ok" if meta[0] is not None and meta[0] == meta[1] else \
            "catching up with the log (is the projector running?)"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks},
                        status_code=200 if ok else 503)
