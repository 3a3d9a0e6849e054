"""Per-stream leases with fencing tokens, on Redis.

``Leases.hold(stream, deadline)`` waits in line (fairly, woken on release rather than by
blind polling) until the caller's deadline, then yields a :class:`Lease` with a token
strictly above every token handed out before for that stream, whether the previous holder
released cleanly (``takeover``), and the stream's projected state read in the same round
trip. Tokens are ``epoch * 2**32 + n``: the epoch comes from the log and is raised when
Redis loses its data, and ``raise_floor`` lifts a stream's counter above a token seen in
the log (design.md §4.7).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from locks import scripts
from locks.errors import LeaseBusy, LeaseError, LeaseLost, NotBootstrapped, NotReady, RedisUnavailable

T = TypeVar("T")

EPOCH_SHIFT = 32
META_KEY = "fenced:meta"
WAKE_PREFIX = "fenced:wake:"


def stream_key(stream: str) -> str:
    """The Redis key prefix of a stream; ``stream`` is ``type:id``. The braces are the hash tag."""
    return f"fenced:{{{stream}}}"


def token_epoch(token: int) -> int:
    return token >> EPOCH_SHIFT


@dataclass(frozen=True)
class Lease:
    """A held lease. ``state`` is the projected state bytes read on acquire (or None)."""

    stream: str
    owner: str
    token: int
    takeover: bool
    state: bytes | None
    acquired_at: float


@dataclass
class Leases:
    """Lease manager of one process. ``start()`` before use, ``stop()`` after (or ``async with``)."""

    redis: aioredis.Redis
    ttl_ms: int = 5000
    require_ready: bool = False
    heartbeat_ms: int = 1000
    clock: Callable[[], float] = time.monotonic
    replica: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    _waiters: dict[str, asyncio.Event] = field(default_factory=dict, repr=False)
    _seq: itertools.count[int] = field(default_factory=itertools.count, repr=False)
    _pubsub_task: asyncio.Task[None] | None = field(default=None, repr=False)
    _inflight: set[asyncio.Task[Any]] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        r = self.redis
        self._acquire = r.register_script(scripts.ACQUIRE)
        self._release = r.register_script(scripts.RELEASE)
        self._renew = r.register_script(scripts.RENEW)
        self._floor = r.register_script(scripts.RAISE_FLOOR)
        self._leave = r.register_script(scripts.LEAVE_QUEUE)
        self._set_epoch = r.register_script(scripts.SET_EPOCH)
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        self._pubsub_task = asyncio.create_task(self._listen(), name=f"leases-wake-{self.replica}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), 5)

    async def stop(self) -> None:
        """Stop listening for wake-ups and let requests already sent finish (at most 5 s)."""
        if self._pubsub_task is not None:
            task, self._pubsub_task = self._pubsub_task, None
            await cancel_and_wait(task)
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=5)

    async def __aenter__(self) -> Leases:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _listen(self) -> None:
        """One subscription per process: releases publish the id of the waiter to wake."""
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as ps:
                    await ps.subscribe(WAKE_PREFIX + self.replica)
                    self._subscribed.set()
                    async for msg in ps.listen():
                        waiter = msg["data"].decode() if isinstance(msg["data"], bytes) else ""
                        event = self._waiters.get(waiter)
                        if event is not None:
                            event.set()
            except (RedisError, OSError):
                for event in self._waiters.values():
                    event.set()  # let waiters re-check while we reconnect
                await asyncio.sleep(0.2)

    # -- tokens and epochs -------------------------------------------------------------

    async def epoch(self) -> int | None:
        raw = await self._call(self.redis.hget(META_KEY, "epoch"), "")
        return int(raw) if raw is not None else None

    async def set_epoch(self, candidate: int) -> int:
        """Raise the token epoch to ``candidate`` if higher; returns the epoch in force."""
        return int(await self._call(self._set_epoch(keys=[META_KEY], args=[candidate]), ""))

    async def set_ready(self, epoch: int) -> None:
        await self._call(self.redis.hset(META_KEY, "ready", str(epoch)), "")

    async def raise_floor(self, stream: str, floor: int) -> int:
        """Make every later token of ``stream`` exceed ``floor`` (a token seen in the log)."""
        k = stream_key(stream)
        return int(await self._call(self._floor(keys=[f"{k}:ctr"], args=[floor]), stream))

    # -- acquire / release ---------------------------------------------------------------

    def _send(self, awaitable: Awaitable[T]) -> asyncio.Task[T]:
        """Run one Redis request as its own task, so that cancelling the caller neither aborts
        a request already sent (its outcome stays knowable) nor is swallowed: on Python 3.11,
        redis-py's ``asyncio.wait_for`` around the socket write can return normally from a
        cancelled request, losing the caller's cancellation."""
        task = asyncio.ensure_future(awaitable)
        self._inflight.add(task)
        task.add_done_callback(self._sent)
        return task

    def _sent(self, task: asyncio.Task[Any]) -> None:
        self._inflight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller that was cancelled no longer awaits it

    async def _call(self, awaitable: Awaitable[T], stream: str) -> T:
        try:
            return await asyncio.shield(self._send(awaitable))
        except (RedisError, OSError) as e:
            raise RedisUnavailable(f"redis: {e}", stream=stream) from e

    async def acquire(self, stream: str, deadline: float) -> Lease:
        """Wait in line for ``stream``'s lease until ``deadline`` (a ``clock()`` time)."""
        k = stream_key(stream)
        waiter = f"{self.replica}/{next(self._seq)}"
        owner = uuid.uuid4().hex
        wake = self._waiters[waiter] = asyncio.Event()
        keys = [f"{k}:lease", f"{k}:open", f"{k}:ctr", f"{k}:q", f"{k}:proj", META_KEY,
                f"{k}:w:{waiter}"]
        args: list[str | int] = [owner, self.ttl_ms, waiter, self.heartbeat_ms * 3,
                "1" if self.require_ready else "0", WAKE_PREFIX]
        granted = False
        try:
            while True:
                wake.clear()
                call = self._send(self._acquire(keys=keys, args=args))
                try:
                    res = await asyncio.shield(call)
                except (RedisError, OSError) as e:
                    raise RedisUnavailable(f"redis: {e}", stream=stream) from e
                except asyncio.CancelledError:
                    # the script runs on and may grant the lease: then give it back, dirty
                    await asyncio.shield(self._send(self._give_back(stream, owner, call)))
                    raise
                status = int(res[0])
                if status == 1:
                    granted = True
                    return Lease(stream, owner, int(res[1]), bool(int(res[2])), res[3], self.clock())
                if status == -1:
                    raise NotBootstrapped("redis has no token epoch", stream=stream)
                if status == -2:
                    raise NotReady("projection not caught up", stream=stream)
                remaining = deadline - self.clock()
                if remaining <= 0:
                    raise LeaseBusy(stream, retry_after_ms=max(int(res[1]), 100))
                lease_ms = int(res[1])
                wait = min(remaining, self.heartbeat_ms / 1000)
                if lease_ms > 0:
                    wait = min(wait, lease_ms / 1000 + 0.001)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):  # not wait_for: on 3.11 it can swallow a cancel
                        await wake.wait()
        finally:
            self._waiters.pop(waiter, None)
            if not granted:
                with contextlib.suppress(RedisError, OSError):
                    await asyncio.shield(self._send(self._leave(keys=[f"{k}:q", f"{k}:w:{waiter}"],
                                                                args=[waiter, WAKE_PREFIX])))

    async def _give_back(self, stream: str, owner: str, call: asyncio.Task[Any]) -> None:
        """An acquire was cancelled while its script call was in flight: if the call granted
        the lease, release it dirty. Not clean: the grant consumed the 'open' marker of a
        holder that may not have released cleanly, and only the next holder can fence now."""
        k = stream_key(stream)
        with contextlib.suppress(RedisError, OSError):
            res = await call
            if int(res[0]) == 1:
                await self._release(keys=[f"{k}:lease", f"{k}:open", f"{k}:q"],
                                    args=[owner, int(res[1]), 0, WAKE_PREFIX])

    async def release(self, lease: Lease, *, clean: bool) -> bool:
        """Give the lease back. Clean: the holder's outcome is settled. Returns False if
        the lease was no longer ours (expired or taken over)."""
        k = stream_key(lease.stream)
        res = await self._call(
            self._release(keys=[f"{k}:lease", f"{k}:open", f"{k}:q"],
                          args=[lease.owner, lease.token, 1 if clean else 0, WAKE_PREFIX]),
            lease.stream)
        return bool(res)

    async def renew(self, lease: Lease) -> bool:
        k = stream_key(lease.stream)
        res = await self._call(self._renew(keys=[f"{k}:lease"],
                                           args=[lease.owner, lease.token, self.ttl_ms]),
                               lease.stream)
        return bool(res)

    async def check(self, lease: Lease) -> None:
        """Raise :class:`LeaseLost` unless the lease is still ours."""
        if not await self.renew(lease):
            raise LeaseLost("lease expired or taken over", stream=lease.stream, token=lease.token)

    @contextlib.asynccontextmanager
    async def hold(self, stream: str, deadline: float) -> AsyncIterator[Held]:
        """Acquire, renew in the background, and release: clean when the body returns and
        called ``held.settled()``, dirty otherwise (an exception or an unknown outcome)."""
        lease = await self.acquire(stream, deadline)
        held = Held(self, lease)
        held.start_renewing()
        try:
            yield held
        finally:
            await held.finish()


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it is done. Our own cancellation still propagates
    (``suppress(CancelledError)`` around ``await task`` would swallow it)."""
    task.cancel()
    await asyncio.wait([task])


class Held:
    """A lease being held: renews itself until released; tracks whether it was lost.

    ``released`` turns True only once Redis has answered the release (or the lease was given
    up by another call, such as the writer's write-through)."""

    def __init__(self, leases: Leases, lease: Lease) -> None:
        self.leases = leases
        self.lease = lease
        self.clean = False
        self.lost = False
        self.released = False
        self._renewer: asyncio.Task[None] | None = None
        self._releasing: asyncio.Task[bool] | None = None

    def settled(self) -> None:
        """Mark the outcome as settled: the release will be clean."""
        self.clean = True

    def start_renewing(self) -> None:
        self._renewer = asyncio.create_task(self._renew_loop())

    async def _renew_loop(self) -> None:
        period = self.leases.ttl_ms / 3000
        while True:
            await asyncio.sleep(period)
            try:
                if not await self.leases.renew(self.lease):
                    self.lost = True
                    return
            except LeaseError:
                continue

    async def stop_renewing(self) -> None:
        if self._renewer is not None:
            renewer, self._renewer = self._renewer, None
            await cancel_and_wait(renewer)

    async def finish(self) -> None:
        """Stop renewing and release: clean if settled and not lost. If this is cancelled, the
        release already sent still completes, ``released`` stays False, and a later
        ``finish()`` waits for that same release."""
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()  # waited for below: a cancel while waiting must not skip the release
        try:
            if not self.released:
                if self._releasing is None:
                    self._releasing = self.leases._send(
                        self.leases.release(self.lease, clean=self.clean and not self.lost))
                try:
                    await asyncio.shield(self._releasing)
                except LeaseError:
                    self._releasing = None  # Redis unavailable: the lease lapses; a retry may release it
                else:
                    self.released = True
        finally:
            if renewer is not None:
                await asyncio.wait([renewer])
