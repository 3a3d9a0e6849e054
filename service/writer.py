"""The write path (design.md §4): acquire, fence on takeover, decide, append, confirm.

``verified`` (default) answers from the projection's verdict on the appended offsets, so
acceptance is decided by the log alone; ``leased`` answers once a Lua call confirms the
lease is still ours and writes the new state through. Either way a retry with the same
Idempotency-Key never appends twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.exceptions import RedisError

from locks import (
    META_KEY,
    LeaseBusy,
    LeaseError,
    Leases,
    NotBootstrapped,
    NotReady,
    RedisUnavailable,
    stream_key,
)
from locks.leases import WAKE_PREFIX, Held
from service import domain
from service.domain import Command, Decider, Rejection
from service.epochs import Epochs
from service.errors import (
    BY_STATUS,
    Busy,
    Conflict,
    FencedError,
    InvalidInput,
    NotFound,
    OutcomeUnknown,
    Unavailable,
)
from service.kafka import Appended, Appender, AppendOutcomeUnknown, KafkaUnavailable
from service.projection import WRITE_THROUGH, AppliedWatcher, Projection, event_json
from service.rule import StreamState, apply, initial
from service.settings import Settings
from service.wire import Record, encode_value, event_headers, fence_headers

log = logging.getLogger("fenced.writer")
T = TypeVar("T")


class _Retry(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Request:
    resource_type: str
    resource_id: str
    name: str
    data: Mapping[str, Any]
    expected_version: int | None
    command_id: str
    fault: str | None = None
    """A fault to inject (honoured only with FENCED_FAULT_INJECTION=true)."""

    @property
    def stream(self) -> str:
        return f"{self.resource_type}:{self.resource_id}"

    @property
    def fingerprint(self) -> str:
        raw = json.dumps([self.name, self.data, self.expected_version], sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


def new_command_id() -> str:
    return uuid.uuid4().hex


class Writer:
    def __init__(self, settings: Settings, leases: Leases, projection: Projection,
                 watcher: AppliedWatcher, appender: Appender, epochs: Epochs) -> None:
        self.settings = settings
        self.leases = leases
        self.projection = projection
        self.watcher = watcher
        self.appender = appender
        self.epochs = epochs
        self._write_through = leases.redis.register_script(WRITE_THROUGH)
        self.counters = {"takeovers": 0, "fences": 0, "conflict_retries": 0, "stale_retries": 0,
                         "outcome_unknown": 0}
        self.on_lease_wait: Callable[[float], None] = lambda seconds: None

    async def execute(self, req: Request) -> dict[str, Any]:
        """Run one command; returns the 201 body or raises a :class:`FencedError`."""
        decider = domain.get(req.resource_type)
        if decider is None or req.resource_type not in self.settings.types:
            raise NotFound(f"unknown resource type {req.resource_type!r}")
        if req.name not in decider.commands:
            raise InvalidInput(f"unknown command {req.name!r}: use one of {sorted(decider.commands)}")
        deadline = time.monotonic() + self.settings.request_deadline_ms / 1000
        stale_retried = False
        for _ in range(self.settings.conflict_retries + 2):
            try:
                return await self._attempt(decider, req, deadline)
            except _Retry as r:
                if r.reason == "stale":
                    if stale_retried:
                        break
                    stale_retried = True
                    self.counters["stale_retries"] += 1
                else:
                    self.counters["conflict_retries"] += 1
        raise Busy("the resource is contended: the command lost every race; retry with the same "
                   "Idempotency-Key", retry_after_s=1)

    async def _attempt(self, decider: Decider, req: Request, deadline: float) -> dict[str, Any]:
        try:
            asked = time.monotonic()
            async with self.leases.hold(req.stream, deadline) as held:
                self.on_lease_wait(time.monotonic() - asked)
                return await self._under_lease(decider, req, held, deadline)
        except LeaseBusy as e:
            raise Busy(f"another writer holds {req.stream}", retry_after_s=max(e.retry_after_ms, 100) / 1000) from e
        except NotBootstrapped as e:
            await self._bootstrap()
            raise Unavailable("redis lost its data: the projection is being rebuilt from the log",
                              retry_after_s=1) from e
        except NotReady as e:
            raise Unavailable("the projection is catching up with the log", retry_after_s=1) from e
        except (RedisUnavailable, RedisError, OSError) as e:
            raise Unavailable(f"redis is unavailable: {e}", retry_after_s=1) from e
        except KafkaUnavailable as e:
            raise Unavailable(f"kafka is unavailable: {e}", retry_after_s=1) from e

    async def _bootstrap(self) -> None:
        try:
            await self.epochs.bootstrap()
            self.watcher.forget()
        except (KafkaUnavailable, RedisUnavailable) as e:
            log.warning("could not start a new epoch: %s", e)

    def _remaining(self, deadline: float) -> float:
        return max(deadline - time.monotonic(), 0.001)

    async def _under_lease(self, decider: Decider, req: Request, held: Held,
                           deadline: float) -> dict[str, Any]:
        lease = held.lease
        topic = self.settings.topic(req.resource_type)
        previous = await self.projection.answer(req.stream, req.command_id)
        if previous is not None:
            held.settled()
            return self._replay(previous, req)
        state = StreamState.from_json(lease.state) if lease.state is not None else initial(decider)
        if lease.takeover:
            self.counters["takeovers"] += 1
            state = await self._fence(decider, req, topic, lease.token, deadline)
        done = await self._already_applied(req, state)
        if done is not None:
            held.settled()
            return done
        try:
            events = decider.decide(Command(req.name, req.data), state.state)
            if req.expected_version is not None and req.expected_version != state.version:
                raise Conflict(f"expected version {req.expected_version}, the resource is at "
                               f"{state.version}", current_version=state.version)
        except Rejection as r:
            err = BY_STATUS[r.status](r.detail, current_version=state.version)
            await self._save_error(req, err)
            held.settled()
            raise err from None
        except Conflict as err:
            await self._save_error(req, err)
            held.settled()
            raise
        if not events:  # the decider accepts the command but has nothing to record
            held.settled()
            body = self._body(req, state.version, [])
            await self._save_ok(req, body)
            return body
        records = [
            (encode_value(e.data),
             event_headers(source=self.settings.source, subject=req.resource_id, event_type=e.type,
                           version=state.version + 1 + i, token=lease.token, command=req.command_id,
                           index=i, count=len(events)))
            for i, e in enumerate(events)]
        if req.fault == "pause-before-append" and self.settings.fault_injection:
            await self._announce_pause(req)
        try:
            appended = await self.appender.append(topic, req.resource_id, records,
                                                  self._remaining(deadline))
        except AppendOutcomeUnknown:
            self.counters["outcome_unknown"] += 1
            return await self._after_append(self._resolve_unknown(decider, req, topic, deadline))
        if self.settings.unsafe_ack_on_append and self.settings.fault_injection:
            held.settled()  # deliberately wrong: "sent" is not "accepted"
            return self._body(req, state.version + len(events), self._event_refs(records, appended, state.version + 1))
        if self.settings.ack_mode == "leased":
            leased = await self._after_append(self._leased_confirm(decider, req, held, state, appended, records))
            if leased is not None:
                return leased
        return await self._after_append(self._verified_confirm(decider, req, held, topic, appended, records, deadline))

    async def _after_append(self, confirm: Awaitable[T]) -> T:
        """Once records may be in the log, any failure to learn the verdict is an unknown outcome."""
        try:
            return await confirm
        except (RedisError, OSError, LeaseError) as e:
            self.counters["outcome_unknown"] += 1
            raise OutcomeUnknown(f"outcome unknown ({e}): retry with the same Idempotency-Key",
                                 retry_after_s=1) from e

    async def _announce_pause(self, req: Request) -> None:
        """Fault injection: say "lease held, about to append" and give the test time to SIGSTOP us."""
        await self.leases.redis.set(f"fenced:fault:{req.command_id}", str(os.getpid()), ex=60)
        await asyncio.sleep(0.5)

    async def _fence(self, decider: Decider, req: Request, topic: str, token: int,
                     deadline: float) -> StreamState:
        """Append a fence with our token and wait until the projection applied it."""
        try:
            fenced = await self.appender.append(
                topic, req.resource_id,
                [(b"{}", fence_headers(source=self.settings.source, subject=req.resource_id, token=token))],
                self._remaining(deadline))
        except AppendOutcomeUnknown as e:
            raise Unavailable(f"could not append the takeover fence: {e}", retry_after_s=1) from e
        self.counters["fences"] += 1
        if not await self.watcher.wait(topic, fenced.partition, fenced.offsets[-1], self._remaining(deadline)):
            raise Unavailable("the projection did not apply the takeover fence in time", retry_after_s=1)
        return await self.projection.load(decider, req.stream)

    async def _already_applied(self, req: Request, state: StreamState) -> dict[str, Any] | None:
        entry = state.recent_command(req.command_id)
        if entry is None:
            return None
        _, last_version, first_offset, last_offset = entry
        # the command's events are among the last (offset span) versions: read only those
        first = max(1, last_version - (last_offset - first_offset))
        stored = await self.projection.events(req.stream, first, last_version - first + 1)
        mine = [e for e in stored if e["command"] == req.command_id]
        body = self._body(req, last_version, [(e["type"], e["version"], e["partition"], e["offset"])
                                              for e in mine])
        await self._save_ok(req, body)
        return body

    def _body(self, req: Request, version: int, events: list[tuple[str, int, int, int]]) -> dict[str, Any]:
        return {"command_id": req.command_id, "version": version,
                "events": [{"type": t, "version": v, "partition": p, "offset": o} for t, v, p, o in events]}

    async def _save_ok(self, req: Request, body: dict[str, Any]) -> None:
        await self.projection.save_answer(req.stream, req.command_id,
                                          {"fingerprint": req.fingerprint, "status": 201, "body": body},
                                          self.settings.idempotency_ttl_s)

    async def _save_error(self, req: Request, err: FencedError) -> None:
        await self.projection.save_answer(
            req.stream, req.command_id,
            {"fingerprint": req.fingerprint, "status": err.status, "detail": err.detail,
             "current_version": err.current_version}, self.settings.idempotency_ttl_s)

    def _replay(self, previous: dict[str, Any], req: Request) -> dict[str, Any]:
        if previous.get("fingerprint") != req.fingerprint:
            raise InvalidInput("this Idempotency-Key was used for a different request")
        if previous["status"] == 201:
            return dict(previous["body"])
        cls = BY_STATUS.get(int(previous["status"]), InvalidInput)
        raise cls(str(previous["detail"]), current_version=previous.get("current_version"))

    def _event_refs(self, records: list[tuple[bytes, Any]], appended: Appended,
                    first_version: int) -> list[tuple[str, int, int, int]]:
        out = []
        for i, (_, headers) in enumerate(records):
            etype = dict(headers)["ce_type"].decode()
            out.append((etype, first_version + i, appended.partition, appended.offsets[i]))
        return out

    async def _verified_confirm(self, decider: Decider, req: Request, held: Held, topic: str,
                                appended: Appended, records: list[tuple[bytes, Any]],
                                deadline: float) -> dict[str, Any]:
        if not await self.watcher.wait(topic, appended.partition, appended.offsets[-1],
                                       self._remaining(deadline)):
            self.counters["outcome_unknown"] += 1
            raise OutcomeUnknown("outcome unknown: the projection did not confirm in time; retry "
                                 "with the same Idempotency-Key", retry_after_s=1)
        verdict = await self.projection.verdict(req.stream, appended.offsets[0])
        if verdict is None:
            return await self._resolve_unknown(decider, req, topic, deadline)
        held.settled()
        if verdict.accepted:
            assert verdict.version is not None
            first = verdict.version - len(appended.offsets) + 1
            body = self._body(req, verdict.version, self._event_refs(records, appended, first))
            await self._save_ok(req, body)
            return body
        if verdict.reason == "duplicate":
            state = await self.projection.load(decider, req.stream)
            done = await self._already_applied(req, state)
            if done is not None:
                return done
        if verdict.reason == "stale":
            state = await self.projection.load(decider, req.stream)
            await self.leases.raise_floor(req.stream, state.max_token)
            raise _Retry("stale")
        raise _Retry(verdict.reason or "conflict")

    async def _leased_confirm(self, decider: Decider, req: Request, held: Held, state: StreamState,
                              appended: Appended, records: list[tuple[bytes, Any]]) -> dict[str, Any] | None:
        """Check the lease and write the new state through in one Lua call; None if lost."""
        new_state = state
        for i, (value, headers) in enumerate(records):
            h = dict(headers)
            rec = Record("event", req.resource_id, appended.partition, appended.offsets[i],
                         token=held.lease.token, version=int(h["ce_fencedversion"]), command=req.command_id,
                         index=i, count=len(records), event_type=h["ce_type"].decode(),
                         data=json.loads(value), event_id=h["ce_id"].decode(), time=h["ce_time"].decode())
            new_state, verdicts = apply(decider, new_state, rec)
        if not verdicts or not verdicts[-1].accepted:
            return None
        body = self._body(req, new_state.version, self._event_refs(records, appended, state.version + 1))
        answer = json.dumps({"fingerprint": req.fingerprint, "status": 201, "body": body})
        args: list[str | int] = [held.lease.owner, held.lease.token, state.version, new_state.offset,
                                 new_state.version, new_state.to_json(), answer, self.settings.idempotency_ttl_s,
                                 WAKE_PREFIX]
        for e in verdicts[-1].events:
            args += [e.version, event_json(e)]
        k = stream_key(req.stream)
        res = await self._write_through(
            keys=[f"{k}:lease", f"{k}:open", f"{k}:proj", f"{k}:ev", f"{k}:k:{req.command_id}", f"{k}:q",
                  META_KEY], args=args)
        if int(res) == 1:
            held.settled()
            held.released = True
            return body
        return None

    async def _resolve_unknown(self, decider: Decider, req: Request, topic: str,
                               deadline: float) -> dict[str, Any]:
        """The append's outcome is unknown: wait for the projection to show the command."""
        partition = self.appender.partition(req.resource_id)
        while True:
            state = await self.projection.load(decider, req.stream)
            done = await self._already_applied(req, state)
            if done is not None:
                return done
            applied = (await self.projection.applied(topic)).get(partition, -1)
            if not await self.watcher.wait(topic, partition, applied + 1, self._remaining(deadline)):
                raise OutcomeUnknown("outcome unknown: retry with the same Idempotency-Key",
                                     retry_after_s=1)
