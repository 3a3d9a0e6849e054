"""The write path (design.md §4): acquire, fence on takeover, decide, append, confirm,
with per-stream group commit.

Commands for one stream that are queued at this replica are run as a batch under one
lease: each is decided against the state its predecessors in the batch leave, the events
of all of them are appended as one record batch under the same token with consecutive
versions, and each command gets its own verdict (a rejected command simply produces no
event). A batch is bounded by ``FENCED_BATCH_MAX`` commands and ``FENCED_BATCH_WAIT_MS``;
after each batch the lease is released, so waiters on other replicas, queued fairly in
Redis, are served before this replica's next batch.

``verified`` (default) answers from the projection's verdicts on the appended offsets, so
acceptance is decided by the log alone; ``leased`` answers once a Lua call confirms the
lease is still ours and writes the new state through. Either way a retry with the same
Idempotency-Key never appends twice.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from fenced_client import domain
from fenced_client.domain import Command, Decider, InvalidEvent, Rejection
from fenced_client.domain.open import expectation_fails
from fenced_client.rule import StreamState, Verdict, apply, initial
from fenced_client.wire import (
    H_REQUEST_ID,
    H_TRACEPARENT,
    Headers,
    decode,
    event_headers,
    fence_headers,
    new_event_problem,
)
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
from service.infra.kafka import BATCH_BYTES, Appended, Appender, AppendOutcomeUnknown, KafkaUnavailable, batch_bytes
from service.read.barrier import Barrier
from service.read.projection import WRITE_THROUGH, AppliedWatcher, Projection, event_json
from service.settings import Settings
from service.write.epochs import Epochs

log = logging.getLogger("fenced.writer")
Body = dict[str, Any]
RecordOut = tuple[bytes, Headers]

@dataclass(frozen=True)
class Request:
    resource_type: str
    resource_id: str
    name: str
    data: Mapping[str, Any]
    expected_version: int | str | None
    """An exact version, or (open streams) ``any``, ``no_stream`` or ``exists``; None: any."""
    command_id: str
    fault: str | None = None
    """A fault to inject (honoured only with FENCED_FAULT_INJECTION=true)."""
    request_id: str | None = None
    """The HTTP request's id, carried by the events as ``ce_fencedrequestid``."""
    traceparent: str | None = None
    """The client's W3C trace context, carried as ``ce_traceparent``."""

    def trace_headers(self) -> list[tuple[str, bytes]]:
        out = []
        if self.request_id:
            out.append((H_REQUEST_ID, self.request_id.encode()))
        if self.traceparent:
            out.append((H_TRACEPARENT, self.traceparent.encode()))
        return out

    @property
    def stream(self) -> str:
        return f"{self.resource_type}:{self.resource_id}"

    @functools.cached_property
    def fingerprint(self) -> str:
        """What a reused Idempotency-Key is compared by: the command's name, data and expected
        version (carried by its events as ``ce_fencedfingerprint`` and kept with its answer)."""
        raw = json.dumps([self.name, self.data, self.expected_version], sort_keys=True)
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


def new_command_id() -> str:
    return uuid.uuid4().hex


@dataclass(eq=False)
class _Pending:
    """A command waiting in its stream's queue at this replica."""

    req: Request
    deadline: float
    future: asyncio.Future[Body]
    queued_at: float
    attempts: int = 0
    stale_retried: bool = False

    def resolve(self, body: Body) -> None:
        if not self.future.done():
            self.future.set_result(body)

    def fail(self, err: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(err)


@dataclass(eq=False)
class _Planned:
    """A command of a batch that produced events: its records and their place in the batch."""

    pending: _Pending
    records: list[RecordOut]
    first_version: int
    start: int
    """Index of its first record in the batch."""

    @property
    def req(self) -> Request:
        return self.pending.req


@dataclass(frozen=True, eq=False)
class _Held:
    """An answer of a batch, held until what it was decided after has a verdict."""

    pending: _Pending
    answer: Body | FencedError
    after: int
    """How many of the batch's planned commands it was decided after."""


@dataclass(eq=False)
class _StreamQueue:
    decider: Decider
    commands: collections.deque[_Pending] = field(default_factory=collections.deque)


class Writer:
    def __init__(self, settings: Settings, leases: Leases, projection: Projection,
                 watcher: AppliedWatcher, appender: Appender, epochs: Epochs, barrier: Barrier) -> None:
        self.settings = settings
        self.leases = leases
        self.projection = projection
        self.watcher = watcher
        self.appender = appender
        self.epochs = epochs
        self.barrier = barrier
        self._write_through = leases.redis.register_script(WRITE_THROUGH)
        self.counters = {"takeovers": 0, "fences": 0, "conflict_retries": 0, "stale_retries": 0,
                         "outcome_unknown": 0, "batches": 0, "batched_commands": 0,
                         "barriers": 0, "held_redecided": 0}
        self.on_lease_wait: Callable[[float], None] = lambda seconds: None
        self.on_batch: Callable[[int], None] = lambda commands: None
        self._queues: dict[str, _StreamQueue] = {}
        self._runners: set[asyncio.Task[None]] = set()

    async def execute(self, req: Request) -> Body:
        """Run one command; returns the 201 body or raises a :class:`FencedError`."""
        decider = domain.get(req.resource_type)
        if decider is None or req.resource_type not in self.settings.types:
            raise NotFound(f"unknown resource type {req.resource_type!r}")
        if req.name not in decider.commands:
            raise InvalidInput(f"unknown command {req.name!r}: use one of {sorted(decider.commands)}")
        now = time.monotonic()
        pending = _Pending(req, now + self.settings.request_deadline_ms / 1000,
                           asyncio.get_running_loop().create_future(), now)
        queue = self._queues.get(req.stream)
        if queue is None:
            queue = self._queues[req.stream] = _StreamQueue(decider)
            runner = asyncio.create_task(self._run_stream(req.stream, queue), name=f"writer-{req.stream}")
            self._runners.add(runner)
            runner.add_done_callback(self._runners.discard)
        queue.commands.append(pending)
        # a caller that goes away before its command is taken into a batch cancels the future,
        # and the command is never appended
        return await pending.future

    async def stop(self) -> None:
        """Let the queued commands finish (at most the request deadline), then stop."""
        if self._runners:
            _, late = await asyncio.wait(set(self._runners), timeout=self.settings.request_deadline_ms / 1000)
            for task in late:
                task.cancel()

    # -- one stream's queue ----------------------------------------------------------------

    async def _run_stream(self, stream: str, queue: _StreamQueue) -> None:
        """Serve a stream's queue one batch per lease hold until it is empty."""
        try:
            while self._drop_settled(queue):
                await self._hold_and_run(stream, queue)
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                err: FencedError = Unavailable("the replica is shutting down", retry_after_s=1)
            else:
                err = e if isinstance(e, FencedError) else Unavailable(f"internal error: {e!r}", retry_after_s=1)
            for p in queue.commands:
                p.fail(err)
            queue.commands.clear()
            if not isinstance(e, Exception):
                raise
            log.exception("writer queue of %s failed", stream)
        finally:
            # no await since the loop saw an empty queue: nothing can have been added
            if self._queues.get(stream) is queue:
                del self._queues[stream]

    def _drop_settled(self, queue: _StreamQueue) -> bool:
        """Drop cancelled commands and answer expired ones; True if any are left."""
        now = time.monotonic()
        kept = collections.deque[_Pending]()
        for p in queue.commands:
            if p.future.done():
                continue
            if p.deadline <= now:
                p.fail(Busy(f"another writer holds {p.req.stream}", retry_after_s=0.1))
                continue
            kept.append(p)
        queue.commands = kept
        return bool(kept)

    async def _hold_and_run(self, stream: str, queue: _StreamQueue) -> None:
        batch: list[_Pending] = []
        try:
            async with self.leases.hold(stream, queue.commands[0].deadline) as held:
                if self.settings.batch_wait_ms and len(queue.commands) < self.settings.batch_max:
                    await asyncio.sleep(self.settings.batch_wait_ms / 1000)
                now = time.monotonic()
                while queue.commands and len(batch) < self.settings.batch_max:
                    p = queue.commands.popleft()
                    if not p.future.done():
                        batch.append(p)
                        self.on_lease_wait(now - p.queued_at)
                if not batch:
                    held.settled()
                    return
                self.counters["batches"] += 1
                self.counters["batched_commands"] += len(batch)
                self.on_batch(len(batch))
                again = await self._run_batch(queue.decider, batch, held)
            queue.commands.extendleft(reversed(again))
        except LeaseBusy as e:  # from the acquire: the head's deadline passed, later ones try again
            now = time.monotonic()
            for p in queue.commands:
                if p.deadline <= now + 0.001:
                    p.fail(Busy(f"another writer holds {stream}",
                                retry_after_s=max(e.retry_after_ms, 100) / 1000))
        except (FencedError, LeaseError, KafkaUnavailable, RedisError, OSError) as e:
            # before a batch is taken (the acquire) every queued command hears it, else the batch
            self._fail_all(batch or list(queue.commands), await self._answer_for(e))
        except asyncio.CancelledError:  # the replica stops: the batch taken hears it too
            self._fail_all(batch, OutcomeUnknown("the replica is shutting down: retry with the same "
                                                 "Idempotency-Key", retry_after_s=1))
            raise

    async def _answer_for(self, e: Exception) -> FencedError:
        """What the clients hear when Redis, Kafka or the lease fails under them."""
        if isinstance(e, FencedError):
            return e
        if isinstance(e, NotBootstrapped):
            await self._bootstrap()
            return Unavailable("redis lost its data: the projection is being rebuilt from the log", retry_after_s=1)
        if isinstance(e, NotReady):
            return Unavailable("the projection is catching up with the log", retry_after_s=1)
        if isinstance(e, (RedisUnavailable, RedisError, OSError)):
            return Unavailable(f"redis is unavailable: {e}", retry_after_s=1)
        if isinstance(e, KafkaUnavailable):
            return Unavailable(f"kafka is unavailable: {e}", retry_after_s=1)
        return Unavailable(f"lease: {e}", retry_after_s=1)

    @staticmethod
    def _fail_all(pendings: list[_Pending], err: FencedError) -> None:
        for p in pendings:
            p.fail(err)

    async def _bootstrap(self) -> None:
        try:
            await self.epochs.bootstrap()
            self.watcher.forget()
        except (KafkaUnavailable, RedisUnavailable) as e:
            log.warning("could not start a new epoch: %s", e)

    def _remaining(self, deadline: float) -> float:
        return max(deadline - time.monotonic(), 0.001)

    # -- one batch under one lease -----------------------------------------------------------

    async def _run_batch(self, decider: Decider, batch: list[_Pending], held: Held) -> list[_Pending]:
        """Decide, append and confirm a batch; answers every command or returns it to be tried
        again under a new lease (conflict or stale verdicts, a repeated Idempotency-Key)."""
        lease = held.lease
        rtype, rid = batch[0].req.resource_type, batch[0].req.resource_id
        topic = self.settings.topic(rtype)
        deadline = min(p.deadline for p in batch)
        previous = await self.projection.answers(lease.stream, [p.req.command_id for p in batch])
        todo: list[_Pending] = []
        for p, prev in zip(batch, previous, strict=True):
            if prev is None:
                todo.append(p)
            else:
                try:
                    p.resolve(self._replay(prev, p.req))
                except FencedError as e:
                    p.fail(e)
        if not todo:
            held.settled()
            return []
        state = StreamState.from_json(lease.state) if lease.state is not None else initial(decider)
        if lease.takeover:
            self.counters["takeovers"] += 1
            state = await self._fence(decider, lease.stream, rid, topic, lease.token, deadline)
        before = state
        again: list[_Pending] = []
        planned: list[_Planned] = []
        records: list[RecordOut] = []
        # each answer with the number of planned commands it was decided after: it rests on their
        # verdicts and is given only once they are accepted (S7)
        answers: list[_Held] = []
        seen: set[str] = set()
        size = 0
        for p in todo:
            req = p.req
            if req.command_id in seen or size >= BATCH_BYTES:
                again.append(p)  # a repeated key: next round (the first one's answer or the window)
                continue
            seen.add(req.command_id)
            try:
                done = await self._already_applied(req, state)
            except InvalidInput as err:  # not saved: the key's answer is the first request's
                p.fail(err)
                continue
            if done is not None:  # from the window of accepted commands: rests on nothing planned
                p.resolve(done)
                continue
            answer: Body | FencedError
            try:
                events = decider.decide(Command(req.name, req.data), state.state)
                if (mismatch := expectation_fails(req.expected_version, state.version)) is not None:
                    raise Conflict(mismatch, current_version=state.version)
                if not decider.binary and any(e.data_bytes is not None for e in events):
                    raise InvalidEvent(f"{req.resource_type} events are JSON objects; bytes are for open types")
                if (bad := next(filter(None, map(new_event_problem, events)), None)) is not None:
                    raise InvalidEvent(bad)
                evolved = state.state
                for ev in events:
                    evolved = decider.evolve(evolved, ev.type, ev.data)
                if len(events) > self.settings.max_events_per_command:
                    raise InvalidInput(
                        f"the command would record {len(events)} events; at most "
                        f"{self.settings.max_events_per_command} are allowed (FENCED_MAX_EVENTS_PER_COMMAND)",
                        current_version=state.version)
            except Rejection as r:
                answer = BY_STATUS[r.status](r.detail, current_version=state.version)
            except (Conflict, InvalidInput) as err:
                answer = err
            except InvalidEvent as err:
                answer = InvalidInput(f"the command's events are invalid: {err}", current_version=state.version)
            else:
                if events:
                    recs = [
                        (e.value(),
                         event_headers(source=self.settings.source, subject=rid, event_type=e.type,
                                       version=state.version + 1 + i, token=lease.token, command=req.command_id,
                                       index=i, count=len(events), event_id=e.id, fingerprint=req.fingerprint,
                                       content_type=e.datacontenttype, extra=req.trace_headers()))
                        for i, e in enumerate(events)]
                    planned.append(_Planned(p, recs, state.version + 1, len(records)))
                    records += recs
                    size += batch_bytes(rid.encode(), recs)
                    state = StreamState(version=state.version + len(events), max_token=lease.token,
                                        recent=state.recent, state=evolved, offset=state.offset)
                    continue
                answer = self._body(req, state.version, [])  # accepted, but nothing to record
            answers.append(_Held(p, answer, len(planned)))
        if self.settings.unsafe_early_rejections and self.settings.fault_injection:
            await self._give(answers)  # deliberately wrong: these rest on appends with no verdict yet
            answers = []
        if not planned:
            if answers and self.settings.ack_mode == "verified":
                answers, stale = await self._confirm_base(decider, lease.stream, before, answers, deadline)
                again += stale
            await self._give(answers)
            held.settled()
            return again
        if self.settings.fault_injection:
            for pl in planned:
                if pl.req.fault == "pause-before-append":
                    await self._announce_pause(pl.req, deadline)
        try:
            appended = await self.appender.append(topic, rid, records, self._remaining(deadline))
        except AppendOutcomeUnknown:
            self.counters["outcome_unknown"] += 1
            await self._each_unknown(decider, topic, planned)
            return again + [a.pending for a in answers]
        if self.settings.unsafe_ack_on_append and self.settings.fault_injection:
            held.settled()  # deliberately wrong: "sent" is not "accepted"
            for pl in planned:
                last = pl.first_version + len(pl.records) - 1
                pl.pending.resolve(self._body(pl.req, last, self._event_refs(pl, appended)))
            await self._give(answers)
            return again
        try:
            if self.settings.ack_mode == "leased" and await self._leased_confirm(
                    decider, held, before, planned, appended):
                accepted = len(planned)
            else:
                retry, accepted = await self._verified_confirm(decider, held, topic, planned, appended, deadline)
                again += retry
        except (RedisError, OSError, LeaseError) as e:  # once records may be in the log
            self.counters["outcome_unknown"] += 1
            unknown = OutcomeUnknown(f"outcome unknown ({e}): retry with the same Idempotency-Key",
                                     retry_after_s=1)
            for pl in planned:
                pl.pending.fail(unknown)
            return again + [a.pending for a in answers]
        # an answer decided after k planned commands stands if the first max(k, 1) were accepted (the
        # first one's acceptance at its planned version confirms the state the batch began from)
        await self._give([a for a in answers if max(a.after, 1) <= accepted])
        self.counters["held_redecided"] += sum(max(a.after, 1) > accepted for a in answers)
        return again + [a.pending for a in answers if max(a.after, 1) > accepted]

    async def _give(self, answers: list[_Held]) -> None:
        """Save the answers for Idempotency-Key replays, then answer."""
        await self._save_answers([(a.pending.req, a.answer) for a in answers])
        for a in answers:
            if isinstance(a.answer, FencedError):
                a.pending.fail(a.answer)
            else:
                a.pending.resolve(a.answer)

    async def _confirm_base(self, decider: Decider, stream: str, before: StreamState, answers: list[_Held],
                            deadline: float) -> tuple[list[_Held], list[_Pending]]:
        """Answers decided on the state read at the acquire, with nothing appended to confirm them:
        they stand if the log barrier shows the same version (Redis may have lost the newest
        events in a failover); else they are decided again."""
        self.counters["barriers"] += 1
        rid = answers[0].pending.req.resource_id
        topic = self.settings.topic(answers[0].pending.req.resource_type)
        try:
            state = await self.barrier.state(decider, stream, topic, self.appender.partition(rid), deadline)
        except Unavailable as e:
            for a in answers:
                a.pending.fail(e)
            return [], []
        if state.version == before.version:
            return answers, []
        self.counters["held_redecided"] += len(answers)
        return [], [a.pending for a in answers]

    async def _announce_pause(self, req: Request, deadline: float) -> None:
        """Fault injection: say "lease held, about to append", then wait until the test deletes the
        key (it does so after SIGSTOP, before SIGCONT) or the command's deadline passes: a
        handshake, not a sleep the test must beat on a slow machine."""
        key = f"fenced:fault:{req.command_id}"
        await self.leases.redis.set(key, str(os.getpid()), ex=60)
        while time.monotonic() < deadline and await self.leases.redis.exists(key):  # noqa: ASYNC110 -- polls Redis
            await asyncio.sleep(0.01)
        await self.leases.redis.delete(key)

    async def _fence(self, decider: Decider, stream: str, rid: str, topic: str, token: int,
                     deadline: float) -> StreamState:
        """Append a fence with our token and wait until the projection applied it."""
        try:
            fenced = await self.appender.append(
                topic, rid, [(b"{}", fence_headers(source=self.settings.source, subject=rid, token=token))],
                self._remaining(deadline))
        except AppendOutcomeUnknown as e:
            raise Unavailable(f"could not append the takeover fence: {e}", retry_after_s=1) from e
        self.counters["fences"] += 1
        if not await self.watcher.wait(topic, fenced.partition, fenced.offsets[-1], self._remaining(deadline)):
            raise Unavailable("the projection did not apply the takeover fence in time", retry_after_s=1)
        return await self.projection.load(decider, stream)

    async def _already_applied(self, req: Request, state: StreamState) -> Body | None:
        entry = state.recent_command(req.command_id)
        if entry is None:
            return None
        _, last_version, first_offset, last_offset, fingerprint = entry
        if fingerprint and not req.fingerprint.startswith(fingerprint):  # a prefix; "" before it existed
            raise InvalidInput("this Idempotency-Key was used for a different request")
        # the command's events are among the last (offset span) versions: read only those
        first = max(1, last_version - (last_offset - first_offset))
        stored = await self.projection.events(req.stream, first, last_version - first + 1)
        mine = [e for e in stored if e["command"] == req.command_id]
        body = self._body(req, last_version, [(e["type"], e["version"], e["partition"], e["offset"])
                                              for e in mine])
        await self._save_answers([(req, body)])
        return body

    def _body(self, req: Request, version: int, events: list[tuple[str, int, int, int]]) -> Body:
        return {"command_id": req.command_id, "version": version,
                "events": [{"type": t, "version": v, "partition": p, "offset": o} for t, v, p, o in events]}

    def _answer(self, req: Request, result: Body | FencedError) -> dict[str, Any]:
        if isinstance(result, FencedError):
            return {"fingerprint": req.fingerprint, "status": result.status, "detail": result.detail,
                    "current_version": result.current_version}
        return {"fingerprint": req.fingerprint, "status": 201, "body": result}

    async def _save_answers(self, results: list[tuple[Request, Body | FencedError]]) -> None:
        """Keep the answers for Idempotency-Key replays, all in one round trip."""
        if results:
            await self.projection.save_answers(results[0][0].stream,
                                               [(r.command_id, self._answer(r, a)) for r, a in results],
                                               self.settings.idempotency_ttl_s)

    def _replay(self, previous: dict[str, Any], req: Request) -> Body:
        if previous.get("fingerprint") != req.fingerprint:
            raise InvalidInput("this Idempotency-Key was used for a different request")
        if previous["status"] == 201:
            return dict(previous["body"])
        cls = BY_STATUS.get(int(previous["status"]), InvalidInput)
        raise cls(str(previous["detail"]), current_version=previous.get("current_version"))

    def _event_refs(self, pl: _Planned, appended: Appended,
                    first_version: int | None = None) -> list[tuple[str, int, int, int]]:
        first = pl.first_version if first_version is None else first_version
        return [(dict(headers)["ce_type"].decode(), first + i, appended.partition, appended.offsets[pl.start + i])
                for i, (_, headers) in enumerate(pl.records)]

    async def _verified_confirm(self, decider: Decider, held: Held, topic: str, planned: list[_Planned],
                                appended: Appended, deadline: float) -> tuple[list[_Pending], int]:
        """Wait until the projection applied the batch, then answer each command from its verdict;
        returns the commands to try again, and how many of the batch's first commands were accepted."""
        if not await self.watcher.wait(topic, appended.partition, appended.offsets[-1],
                                       self._remaining(deadline)):
            self.counters["outcome_unknown"] += 1
            err = OutcomeUnknown("outcome unknown: the projection did not confirm in time; retry "
                                 "with the same Idempotency-Key", retry_after_s=1)
            for pl in planned:
                pl.pending.fail(err)
            return [], 0
        stream = planned[0].req.stream
        verdicts = await self.projection.verdicts(stream, [appended.offsets[pl.start] for pl in planned])
        held.settled()
        again: list[_Pending] = []
        answers: list[tuple[_Planned, Body]] = []
        unknown: list[_Planned] = []
        stale = False
        accepted = 0
        for i, (pl, verdict) in enumerate(zip(planned, verdicts, strict=True)):
            p = pl.pending
            if accepted == i and verdict is not None and verdict.accepted and \
                    verdict.version == pl.first_version + len(pl.records) - 1:
                accepted += 1  # the batch's first commands, accepted at the versions they were planned at
            if verdict is None:
                unknown.append(pl)
            elif verdict.accepted:
                assert verdict.version is not None
                first = verdict.version - len(pl.records) + 1
                answers.append((pl, self._body(pl.req, verdict.version, self._event_refs(pl, appended, first))))
            elif verdict.reason == "duplicate":
                try:
                    done = await self._already_applied(pl.req, await self.projection.load(decider, stream))
                except InvalidInput as err:  # its key was used by another request: that one's answer
                    p.fail(err)
                    continue
                if done is not None:
                    p.resolve(done)
                else:
                    again.append(p)
            elif verdict.reason == "stale":
                stale = True
                if p.stale_retried:
                    p.fail(self._lost_every_race())
                else:
                    p.stale_retried = True
                    self.counters["stale_retries"] += 1
                    again.append(p)
            else:  # conflict (another append won the race), or anything else the rule refused
                p.attempts += 1
                if p.attempts > self.settings.conflict_retries:
                    p.fail(self._lost_every_race())
                else:
                    self.counters["conflict_retries"] += 1
                    again.append(p)
        if stale:
            state = await self.projection.load(decider, stream)
            await self.leases.raise_floor(stream, state.max_token)
        await self._save_answers([(pl.req, body) for pl, body in answers])
        for pl, body in answers:
            pl.pending.resolve(body)
        if unknown:
            await self._each_unknown(decider, topic, unknown)
        return again, accepted

    @staticmethod
    def _lost_every_race() -> Busy:
        return Busy("the resource is contended: the command lost every race; retry with the same "
                    "Idempotency-Key", retry_after_s=1)

    async def _leased_confirm(self, decider: Decider, held: Held, before: StreamState, planned: list[_Planned],
                              appended: Appended) -> bool:
        """Check the lease and write the batch's new state through in one Lua call; False if
        that cannot be done (the lease is lost, or the projection moved): then the caller
        waits for the projector's verdicts instead."""
        state = before
        accepted: list[Verdict] = []
        token = held.lease.token
        for pl in planned:
            verdicts: list[Verdict] = []
            for i, (value, headers) in enumerate(pl.records):
                # the record exactly as the projector will decode it from the log
                rec = decode(pl.req.resource_id.encode(), value, headers, appended.partition,
                             appended.offsets[pl.start + i])
                state, vs = apply(decider, state, rec)
                verdicts += vs
            if not verdicts or not verdicts[-1].accepted:
                return False
            accepted.append(verdicts[-1])
        bodies = [self._body(pl.req, pl.first_version + len(pl.records) - 1, self._event_refs(pl, appended))
                  for pl in planned]
        args: list[str | int] = [held.lease.owner, token, before.version, state.offset, state.version,
                                 state.to_json(), self.settings.idempotency_ttl_s, WAKE_PREFIX, len(planned)]
        args += [json.dumps(self._answer(pl.req, body)) for pl, body in zip(planned, bodies, strict=True)]
        for v in accepted:
            for e in v.events:
                args += [e.version, event_json(e)]
        k = stream_key(planned[0].req.stream)
        keys = [f"{k}:lease", f"{k}:open", f"{k}:proj", f"{k}:ev", f"{k}:q", META_KEY]
        keys += [f"{k}:k:{pl.req.command_id}" for pl in planned]
        if int(await self._write_through(keys=keys, args=args)) != 1:
            return False
        held.settled()
        held.released = True
        for pl, body in zip(planned, bodies, strict=True):
            pl.pending.resolve(body)
        return True

    async def _each_unknown(self, decider: Decider, topic: str, planned: list[_Planned]) -> None:
        async def one(pl: _Planned) -> None:
            try:
                pl.pending.resolve(await self._resolve_unknown(decider, pl.req, topic, pl.pending.deadline))
            except FencedError as e:
                pl.pending.fail(e)
            except (RedisError, OSError, LeaseError) as e:
                pl.pending.fail(OutcomeUnknown(f"outcome unknown ({e}): retry with the same Idempotency-Key",
                                               retry_after_s=1))
        await asyncio.gather(*(one(pl) for pl in planned))

    async def _resolve_unknown(self, decider: Decider, req: Request, topic: str,
                               deadline: float) -> Body:
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
