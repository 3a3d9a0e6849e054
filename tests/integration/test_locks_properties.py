"""Stateful property test of ``locks`` against the real redis-server.

A hypothesis state machine drives two lease managers (two "replicas") over a few streams
with acquire (non-blocking), clean and dirty release, renew, expiry, crash, raised floors
and epochs, and checks a plain model after every step: one live holder per stream at most,
tokens strictly increasing per stream and above every floor raised, and ``takeover``
reported exactly when the previous holder did not release cleanly.

The rules are synchronous (hypothesis drives them): they run the coroutines on an event
loop the test owns. The loop, the client and the lease managers are made once per test and
the database is flushed per example, which keeps an example (and shrinking) cheap.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from devstack import RedisServer
from locks import Lease, LeaseBusy, LeaseLost, Leases, stream_key, token_epoch

pytestmark = pytest.mark.integration

T = TypeVar("T")
STREAMS = ("folders:1", "folders:2", "files:x")


@dataclass
class Handle:
    """A lease as the test holds it; ``forgotten`` after a simulated crash."""

    lease: Lease
    replica: int
    forgotten: bool = False


@dataclass
class StreamModel:
    current: Handle | None = None
    prev_clean: bool = True  # no holder yet counts as clean: the first grant is no takeover
    tokens: list[int] = field(default_factory=list)
    floor: int = 0
    counter_at_least: int = 0


class LeaseMachine(RuleBasedStateMachine):
    loop: ClassVar[asyncio.AbstractEventLoop]
    redis: ClassVar[aioredis.Redis]
    replicas: ClassVar[list[Leases]]

    def __init__(self) -> None:
        super().__init__()
        self.model = {s: StreamModel() for s in STREAMS}
        self.handles: list[Handle] = []
        self.epoch = 1

    @classmethod
    def run(cls, awaitable: Awaitable[T]) -> T:
        return cls.loop.run_until_complete(awaitable)

    @initialize()
    def start(self) -> None:
        self.run(self.redis.flushdb())
        assert self.run(self.replicas[0].set_epoch(self.epoch)) == self.epoch

    def _pick(self, index: int, *, live: bool = False) -> Handle:
        pool = [h for h in self.handles if not h.forgotten and (not live or self._is_current(h))]
        return pool[index % len(pool)]

    def _is_current(self, h: Handle) -> bool:
        return self.model[h.lease.stream].current is h

    def _has_handles(self) -> bool:
        return any(not h.forgotten for h in self.handles)

    def _has_live(self) -> bool:
        return any(m.current is not None for m in self.model.values())

    # -- rules ------------------------------------------------------------------------------

    @rule(stream=st.sampled_from(STREAMS), replica=st.integers(0, 1))
    def acquire(self, stream: str, replica: int) -> None:
        m = self.model[stream]
        lm = self.replicas[replica]
        if m.current is not None:
            with pytest.raises(LeaseBusy) as busy:
                self.run(lm.acquire(stream, lm.clock()))
            assert busy.value.retriable and busy.value.retry_after_ms > 0 and busy.value.stream == stream
            return
        lease = self.run(lm.acquire(stream, lm.clock() + 1))
        assert lease.stream == stream
        if m.tokens:
            assert lease.token > m.tokens[-1], "tokens strictly increase per stream"
        assert lease.token > m.floor, "every token exceeds every floor raised"
        assert token_epoch(lease.token) >= self.epoch, "a token is at least in the epoch in force"
        assert lease.takeover == (not m.prev_clean), "takeover exactly when the previous holder was not clean"
        m.tokens.append(lease.token)
        m.counter_at_least = max(m.counter_at_least, lease.token)
        h = Handle(lease, replica)
        m.current = h
        self.handles.append(h)

    @precondition(lambda self: self._has_handles())
    @rule(index=st.integers(0, 1000), clean=st.booleans())
    def release(self, index: int, clean: bool) -> None:
        h = self._pick(index)
        m = self.model[h.lease.stream]
        ours = self._is_current(h)
        assert self.run(self.replicas[h.replica].release(h.lease, clean=clean)) == ours
        if ours:
            m.current = None
            m.prev_clean = clean

    @precondition(lambda self: self._has_handles())
    @rule(index=st.integers(0, 1000))
    def renew_and_check(self, index: int) -> None:
        h = self._pick(index)
        lm = self.replicas[h.replica]
        ours = self._is_current(h)
        assert self.run(lm.renew(h.lease)) == ours
        if ours:
            self.run(lm.check(h.lease))
        else:
            with pytest.raises(LeaseLost):
                self.run(lm.check(h.lease))

    def _lapse(self, h: Handle) -> None:
        key = f"{stream_key(h.lease.stream)}:lease"
        assert self.run(self.redis.pexpire(key, 1))
        deadline = time.monotonic() + 5
        while self.run(self.redis.exists(key)):
            assert time.monotonic() < deadline, "lease key outlived its 1 ms TTL"
            time.sleep(0.002)
        m = self.model[h.lease.stream]
        m.current = None
        m.prev_clean = False

    @precondition(lambda self: self._has_live())
    @rule(index=st.integers(0, 1000))
    def expire(self, index: int) -> None:
        """The holder pauses past its TTL; it keeps its handle and may try to use it later."""
        self._lapse(self._pick(index, live=True))

    @precondition(lambda self: self._has_live())
    @rule(index=st.integers(0, 1000))
    def crash(self, index: int) -> None:
        """The holder dies without releasing: nobody will ever release it; the lease lapses."""
        h = self._pick(index, live=True)
        h.forgotten = True
        self._lapse(h)

    @rule(stream=st.sampled_from(STREAMS), delta=st.integers(-3, 1 << 20), replica=st.integers(0, 1))
    def raise_floor(self, stream: str, delta: int, replica: int) -> None:
        m = self.model[stream]
        floor = max(0, m.counter_at_least + delta)
        counter = self.run(self.replicas[replica].raise_floor(stream, floor))
        assert counter >= floor and counter >= m.counter_at_least, "the counter is never lowered"
        m.floor = max(m.floor, floor)
        m.counter_at_least = counter

    @rule(delta=st.integers(-1, 1))
    def set_epoch(self, delta: int) -> None:
        got = self.run(self.replicas[0].set_epoch(self.epoch + delta))
        assert got == max(self.epoch, self.epoch + delta), "the epoch is never lowered"
        self.epoch = got

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def redis_agrees_with_the_model(self) -> None:
        async def read() -> list[Any]:
            async with self.redis.pipeline(transaction=False) as p:
                for stream in STREAMS:
                    k = stream_key(stream)
                    p.get(f"{k}:lease")
                    p.exists(f"{k}:open")
                    p.llen(f"{k}:q")
                p.keys("fenced:*:w:*")
                return await p.execute()

        got = self.run(read())
        for i, stream in enumerate(STREAMS):
            m = self.model[stream]
            lease_value, opened, queued = got[3 * i: 3 * i + 3]
            if m.current is None:
                assert lease_value is None, f"{stream}: a lease nobody holds: {lease_value!r}"
            else:
                lease = m.current.lease
                assert lease_value == f"{lease.owner} {lease.token}".encode(), "only the model's holder holds it"
            assert bool(opened) == (m.current is not None or not m.prev_clean), "the takeover marker"
            assert queued == 0, "a non-blocking acquirer left the queue"
            assert m.tokens == sorted(set(m.tokens))
        assert not got[-1], "no waiter heartbeat outlives its acquire"


def test_leases_state_machine(redis_server: RedisServer) -> None:
    loop = asyncio.new_event_loop()
    client = aioredis.Redis.from_url(redis_server.url)
    replicas = [Leases(client, ttl_ms=60_000, heartbeat_ms=1000) for _ in range(2)]
    LeaseMachine.loop, LeaseMachine.redis, LeaseMachine.replicas = loop, client, replicas
    try:
        for lm in replicas:
            LeaseMachine.run(lm.start())
        run_state_machine_as_test(LeaseMachine, settings=settings(
            max_examples=50, stateful_step_count=30, deadline=None, database=None,
            # no explain phase: its tracing makes a failing run take minutes
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
            suppress_health_check=[HealthCheck.too_slow]))
    finally:
        try:
            for lm in replicas:
                LeaseMachine.run(lm.stop())
            LeaseMachine.run(client.aclose())
            LeaseMachine.run(loop.shutdown_asyncgens())
        finally:
            loop.close()
