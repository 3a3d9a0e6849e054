"""The projection in Redis: what the projector writes and what writers and readers read.

Per stream S (all keys under the hash tag of S, see ``locks.stream_key``):
``proj`` hash {epoch, offset, version, data (the rule's StreamState as JSON)};
``ev`` hash version -> accepted event (history reads); ``o:<offset>`` the verdict of the
command group whose first record is at that offset (writers wait for it); ``k:<key>`` the
answer given to an Idempotency-Key. Per topic: ``fenced:applied:<topic>`` hash partition ->
last applied offset, announced on the ``fenced:applied`` channel.

A projection is a cache of the log: every key can be rebuilt from offset 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from fenced_client.domain import Decider
from fenced_client.rule import AcceptedEvent, StreamState, Verdict, initial
from locks import META_KEY, stream_key

APPLIED_CHANNEL = "fenced:applied"
VERDICT_TTL_S = 3600

APPLY_STREAM = """
-- KEYS: 1 proj, 2 ev, 3 meta, 4 applied hash of the topic
-- ARGV: 1 epoch, 2 offset, 3 version, 4 state JSON, 5 verdict TTL s,
--       6 number n of verdict pairs, 7 partition, 8 applied offset the caller read from (-1: none),
--       then n verdicts as pairs (first offset, JSON), then events as pairs (version, JSON).
-- Compare-and-set on (epoch, offset): a stream is only moved forward, so a zombie
-- projector cannot take it back. Returns 1 applied, 0 already newer, -1 epoch changed
-- (Redis lost its data: the caller must rebuild), -2 the partition's applied offset is not
-- the one the caller built on (Redis lost recent writes: the caller must re-read).
if redis.call('HGET', KEYS[3], 'epoch') ~= ARGV[1] then return -1 end
if (redis.call('HGET', KEYS[4], ARGV[7]) or '-1') ~= ARGV[8] then return -2 end
local cur = redis.call('HMGET', KEYS[1], 'epoch', 'offset')
if cur[1] == ARGV[1] and cur[2] and tonumber(cur[2]) >= tonumber(ARGV[2]) then return 0 end
if cur[1] and cur[1] ~= ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'offset', ARGV[2], 'version', ARGV[3], 'data', ARGV[4])
local nv = tonumber(ARGV[6])
local prefix = string.gsub(KEYS[1], 'proj$', 'o:')
for i = 0, nv - 1 do
  redis.call('SET', prefix .. ARGV[9 + 2 * i], ARGV[10 + 2 * i], 'EX', ARGV[5])
end
for i = 9 + 2 * nv, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
return 1
"""

ADVANCE_PARTITION = """
-- KEYS: 1 applied hash of the topic, 2 meta
-- ARGV: 1 epoch, 2 partition, 3 offset, 4 channel, 5 topic, 6 applied offset built on (-1: none)
-- Moves the partition's applied offset from ARGV[6] to ARGV[3] and announces it.
-- Returns 1; -1 if the epoch changed; -2 if the stored offset is not ARGV[6] (nothing written).
if redis.call('HGET', KEYS[2], 'epoch') ~= ARGV[1] then return -1 end
local cur = redis.call('HGET', KEYS[1], ARGV[2]) or '-1'
if cur ~= ARGV[6] then return -2 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5] .. '|' .. ARGV[2] .. '|' .. ARGV[3])
return 1
"""


READ_WITH_APPLIED = """
-- KEYS: 1 applied hash of the topic, 2 proj of the stream
-- ARGV: 1 partition
-- Returns {applied offset of the partition or false, the stream's state JSON or false}, read at
-- one instant (the log barrier, service/read/barrier.py).
return {redis.call('HGET', KEYS[1], ARGV[1]), redis.call('HGET', KEYS[2], 'data')}
"""


def applied_key(topic: str) -> str:
    return f"fenced:applied:{topic}"


def event_json(e: AcceptedEvent) -> str:
    # the fields in declaration order, as dataclasses.asdict gave them, without its deep copy
    # of ``data`` (a tenth of the projector's rebuild time under py-spy)
    return json.dumps({"version": e.version, "type": e.type, **e.data_fields(), "partition": e.partition,
                       "offset": e.offset, "token": e.token, "command": e.command, "event_id": e.event_id,
                       "time": e.time}, separators=(",", ":"))


def verdict_json(v: Verdict) -> str:
    return json.dumps({"command": v.command, "accepted": v.accepted, "reason": v.reason,
                       "first_offset": v.first_offset, "last_offset": v.last_offset,
                       "version": v.version, "token": v.token}, separators=(",", ":"))


@dataclass(frozen=True)
class PartitionWrite:
    """What one projector batch changed in one partition."""

    topic: str
    partition: int
    base: int
    """The partition's applied offset the states were built on (-1: none)."""
    last_offset: int
    changed: Mapping[str, StreamState]
    verdicts: Mapping[str, list[Verdict]]


@dataclass(frozen=True)
class StoredVerdict:
    command: str
    accepted: bool
    reason: str | None
    first_offset: int
    last_offset: int
    version: int | None
    token: int


class EpochChanged(Exception):
    """Redis lost its data (or a newer epoch began): the projection must be rebuilt."""


class Regressed(Exception):
    """Redis lost recent projection writes (a failover): re-read the partition from Redis."""


class Projection:
    """Reads and writes of the projection; one instance per process."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._apply = redis.register_script(APPLY_STREAM)
        self._advance = redis.register_script(ADVANCE_PARTITION)
        self._read_applied = redis.register_script(READ_WITH_APPLIED)

    async def load_many(self, streams: Mapping[str, Decider], epoch: int) -> dict[str, StreamState]:
        """The rule states of many streams in one round trip (initial if from another epoch)."""
        pipe = self.redis.pipeline(transaction=False)
        names = list(streams)
        for s in names:
            pipe.hmget(f"{stream_key(s)}:proj", "epoch", "data")
        rows = await pipe.execute()
        out: dict[str, StreamState] = {}
        for s, (ep, data) in zip(names, rows, strict=True):
            fresh = data is None or ep is None or int(ep) != epoch
            out[s] = initial(streams[s]) if fresh else StreamState.from_json(data)
        return out

    async def load(self, decider: Decider, stream: str) -> StreamState:
        data = await self.redis.hget(f"{stream_key(stream)}:proj", "data")
        return initial(decider) if data is None else StreamState.from_json(data)

    async def load_with_applied(self, decider: Decider, stream: str, topic: str,
                                partition: int) -> tuple[int, StreamState]:
        """The partition's applied offset and the stream's state, read at one instant (one script,
        so an auto-pipelining client sends it with whatever else is pending)."""
        applied, data = await self._read_applied(keys=[applied_key(topic), f"{stream_key(stream)}:proj"],
                                                 args=[partition])
        return (-1 if applied is None else int(applied),
                initial(decider) if data is None else StreamState.from_json(data))

    async def write_batch(self, epoch: int, parts: Sequence[PartitionWrite]) -> None:
        """Write the changed streams of several partitions (CAS on offset) and raise the
        partitions' applied offsets, in one pipeline."""
        pipe = self.redis.pipeline(transaction=False)
        for part in parts:
            applied = applied_key(part.topic)
            for s, st in part.changed.items():
                k = stream_key(s)
                vs = part.verdicts.get(s, [])
                args: list[str | int] = [epoch, st.offset, st.version, st.to_json(), VERDICT_TTL_S, len(vs),
                                         part.partition, part.base]
                for v in vs:
                    args += [v.first_offset, verdict_json(v)]
                for v in vs:
                    for e in v.events:
                        args += [e.version, event_json(e)]
                await self._apply(keys=[f"{k}:proj", f"{k}:ev", META_KEY, applied], args=args, client=pipe)
            await self._advance(keys=[applied, META_KEY],
                                args=[epoch, part.partition, part.last_offset, APPLIED_CHANNEL, part.topic,
                                      part.base], client=pipe)
        results = await pipe.execute()
        if any(int(r) == -1 for r in results):
            raise EpochChanged("the token epoch in Redis changed while projecting")
        if any(int(r) == -2 for r in results):
            raise Regressed("a partition's applied offset in Redis is behind what this projector wrote")

    async def applied(self, topic: str) -> dict[int, int]:
        raw = await self.redis.hgetall(applied_key(topic))
        return {int(k): int(v) for k, v in raw.items()}

    async def verdicts(self, stream: str, first_offsets: Sequence[int]) -> list[StoredVerdict | None]:
        """The rule's verdicts on command groups of ``stream`` starting at these offsets, in one round trip."""
        raws = await self.redis.mget([f"{stream_key(stream)}:o:{o}" for o in first_offsets])
        out: list[StoredVerdict | None] = []
        for raw in raws:
            if raw is None:
                out.append(None)
                continue
            d = json.loads(raw)
            out.append(StoredVerdict(d["command"], d["accepted"], d["reason"], d["first_offset"],
                                     d["last_offset"], d["version"], d["token"]))
        return out

    async def events(self, stream: str, from_version: int, limit: int) -> list[dict[str, Any]]:
        versions = list(range(from_version, from_version + limit))
        if not versions:
            return []
        raw = await self.redis.hmget(f"{stream_key(stream)}:ev", versions)
        return [json.loads(r) for r in raw if r is not None]

    async def answers(self, stream: str, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        """The saved answers of these Idempotency-Keys of ``stream``, in one round trip."""
        raws = await self.redis.mget([f"{stream_key(stream)}:k:{key}" for key in keys])
        return [None if raw is None else dict(json.loads(raw)) for raw in raws]

    async def save_answers(self, stream: str, answers: Sequence[tuple[str, Mapping[str, Any]]], ttl_s: int) -> None:
        """Issued together, so an auto-pipelining client sends them with whatever else is pending."""
        await asyncio.gather(*(self.redis.set(f"{stream_key(stream)}:k:{key}", json.dumps(answer), ex=ttl_s)
                               for key, answer in answers))


class AppliedWatcher:
    """Wakes writers when the projector announces a partition's applied offset.

    One subscription per process; ``wait`` re-reads the hash when it starts and whenever
    the subscription reconnects, so a missed announcement costs at most the safety period.
    """

    SAFETY_PERIOD_S = 1.0

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._offsets: dict[tuple[str, int], int] = {}
        self._events: dict[tuple[str, int], asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="applied-watcher")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _set(self, topic: str, partition: int, offset: int) -> None:
        key = (topic, partition)
        if offset > self._offsets.get(key, -1):
            self._offsets[key] = offset
            ev = self._events.pop(key, None)
            if ev is not None:
                ev.set()

    async def _listen(self) -> None:
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as ps:
                    await ps.subscribe(APPLIED_CHANNEL)
                    self._subscribed.set()
                    async for msg in ps.listen():
                        topic, p, off = msg["data"].decode().rsplit("|", 2)
                        self._set(topic, int(p), int(off))
            except (RedisError, OSError):
                for ev in self._events.values():
                    ev.set()
                self._events.clear()
                await asyncio.sleep(0.2)

    def cached(self, topic: str, partition: int) -> int:
        """The highest applied offset this process has seen announced (-1: none)."""
        return self._offsets.get((topic, partition), -1)

    def forget(self) -> None:
        """Drop cached offsets (Redis lost its data: offsets may start again lower)."""
        self._offsets.clear()

    async def wait(self, topic: str, partition: int, offset: int, timeout: float) -> bool:
        """Wait until the projector applied ``offset`` of the partition; False on timeout."""
        key = (topic, partition)
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        refreshed = False
        while True:
            if self._offsets.get(key, -1) >= offset:
                return True
            remaining = end - loop.time()
            if remaining <= 0:
                return False
            ev = self._events.setdefault(key, asyncio.Event())
            if not refreshed:
                raw = await self.redis.hget(applied_key(topic), str(partition))
                refreshed = True
                if raw is not None:
                    self._set(topic, partition, int(raw))
                continue
            try:
                await asyncio.wait_for(ev.wait(), min(remaining, self.SAFETY_PERIOD_S))
            except TimeoutError:
                refreshed = False


WRITE_THROUGH = """
-- The 'leased' acknowledgement (design.md §4.5): check the lease is still ours, write the
-- new state through to the projection (compare-and-set on version), save the answers of
-- the batch's commands and release cleanly, all at once.
-- KEYS: 1 lease, 2 open, 3 proj, 4 ev, 5 q, 6 meta, then one answer key per command
-- ARGV: 1 owner, 2 token, 3 version read, 4 last offset, 5 new version, 6 state JSON,
--       7 answer TTL s, 8 wake channel prefix, 9 n answers, then n answer JSONs (in the
--       order of the answer keys), then (version, event JSON) pairs
-- Returns 1 done, 0 the lease is not ours any more, -1 the projection moved (the caller then
-- waits for the projector's verdicts instead).
if redis.call('GET', KEYS[1]) ~= ARGV[1] .. ' ' .. ARGV[2] then return 0 end
local cur = redis.call('HGET', KEYS[3], 'version') or '0'
if cur ~= ARGV[3] then return -1 end
local epoch = redis.call('HGET', KEYS[6], 'epoch')
redis.call('HSET', KEYS[3], 'epoch', epoch, 'offset', ARGV[4], 'version', ARGV[5], 'data', ARGV[6])
local n = tonumber(ARGV[9])
for i = 10 + n, #ARGV, 2 do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]) end
for i = 1, n do redis.call('SET', KEYS[6 + i], ARGV[9 + i], 'EX', ARGV[7]) end
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
local head = redis.call('LINDEX', KEYS[5], 0)
if head then redis.call('PUBLISH', ARGV[8] .. string.match(head, '^[^/]*'), head) end
return 1
"""
