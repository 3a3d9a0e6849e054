"""The retry policy of both clients, without I/O: deadline, backoff, what a failure means.

A call is attempted until it gets an answer that is not retriable or its deadline passes.
Between attempts the client sleeps a full-jitter exponential backoff
(``uniform(0, min(cap, base * 2**n))``), never less than the server's ``Retry-After``,
and never past the deadline: when the next attempt could not start before it, the client
gives up at once. A write is always resent with the *same* Idempotency-Key, so the API
applies it at most once however often it was sent.

Giving up on a write after an attempt whose answer was lost (a timeout or a reset
connection after the request went out, a 503 "Outcome unknown", a gateway's 502/504)
raises :class:`OutcomeUnknown`: that attempt may have landed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from fenced_client.errors import Busy, FencedError, OutcomeUnknown

NOT_SENT: tuple[type[httpx.TransportError], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Transport errors raised before the request left: such an attempt cannot have landed."""


@dataclass(frozen=True)
class RetryPolicy:
    """``deadline``: seconds a call may take, all attempts and sleeps included.
    ``attempt_timeout``: seconds one attempt may take (capped by what remains of the deadline);
    keep it above the server's request deadline (10 s by default), or slow writes time out
    as "outcome unknown". ``backoff_base``/``backoff_cap``: the full-jitter backoff."""

    deadline: float = 30.0
    attempt_timeout: float = 15.0
    backoff_base: float = 0.05
    backoff_cap: float = 2.0

    def __post_init__(self) -> None:
        if self.deadline <= 0 or self.attempt_timeout <= 0 or self.backoff_base < 0 or self.backoff_cap < 0:
            raise ValueError("deadline and attempt_timeout must be positive, backoff_base/cap non-negative")


class Attempts:
    """The bookkeeping of one call: how long its next attempt may take, and after a
    failure either how long to sleep before the next one or the error to raise."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float], rng: random.Random, *,
                 idempotency_key: str | None) -> None:
        self.policy = policy
        self.clock = clock
        self.rng = rng
        self.idempotency_key = idempotency_key
        self.started = clock()
        self.deadline_at = self.started + policy.deadline
        self.count = 0
        self.maybe_landed = False

    @property
    def write(self) -> bool:
        return self.idempotency_key is not None

    def timeout(self) -> float:
        """Seconds the next attempt may take."""
        return max(min(self.policy.attempt_timeout, self.deadline_at - self.clock()), 0.001)

    def after_transport_error(self, exc: httpx.TransportError, url: str) -> float:
        """The attempt got no answer; returns the seconds to sleep or raises (from ``exc``)."""
        self.count += 1
        if self.write and not isinstance(exc, NOT_SENT):
            self.maybe_landed = True
        what = f"no answer from {url}: {type(exc).__name__}: {exc}".rstrip(": ")
        if self.maybe_landed:
            err: FencedError = OutcomeUnknown(None, "Outcome unknown", what, idempotency_key=self.idempotency_key)
        else:
            err = Busy(None, "Unavailable", what, idempotency_key=self.idempotency_key)
        try:
            return self._backoff(err)
        except FencedError as final:
            raise final from exc

    def after_error(self, err: FencedError) -> float:
        """The API answered ``err``; returns the seconds to sleep or raises."""
        self.count += 1
        if not err.retriable:
            raise err
        if self.write and isinstance(err, OutcomeUnknown):
            self.maybe_landed = True
        return self._backoff(err)

    def _backoff(self, err: FencedError) -> float:
        p = self.policy
        delay = self.rng.uniform(0, min(p.backoff_cap, p.backoff_base * 2 ** (self.count - 1)))
        if err.retry_after is not None:
            delay = max(delay, err.retry_after)
        if self.clock() + delay >= self.deadline_at:
            raise self._give_up(err)
        return delay

    def _give_up(self, err: FencedError) -> FencedError:
        elapsed = self.clock() - self.started
        tail = f" (gave up after {self.count} attempt{'s' if self.count != 1 else ''} in {elapsed:.1f} s)"
        if self.maybe_landed:
            detail = err.detail + tail
            if not isinstance(err, OutcomeUnknown):
                detail = (f"an earlier attempt may have been applied; the last answer was {err.status} "
                          f"{err.title}: {err.detail}{tail}")
            return OutcomeUnknown(err.status, "Outcome unknown", detail, err.current_version,
                                  retry_after=err.retry_after, idempotency_key=self.idempotency_key)
        cls = Busy if isinstance(err, OutcomeUnknown) else type(err)  # a read cannot have landed
        return cls(err.status, err.title, err.detail + tail, err.current_version, retry_after=err.retry_after,
                   idempotency_key=err.idempotency_key)
