"""Per-tenant rate limiting with the ``limits`` library, counted in Redis so every replica
shares one budget per tenant (moving window). Above it: 429 with Retry-After."""

from __future__ import annotations

import logging
import time

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter, RateLimiter

from service.errors import TooManyRequests

log = logging.getLogger("fenced.ratelimit")


class TenantLimiter:
    def __init__(self, spec: str, redis_url: str,
                 strategy: type[RateLimiter] = MovingWindowRateLimiter) -> None:
        """``strategy``: the moving window is exact; ``bench/ratelimit.py`` measures the others."""
        self.items: list[RateLimitItem] = parse_many(spec) if spec.strip() else []
        self._limiter: RateLimiter | None = None
        if self.items:
            url = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
            storage = RedisStorage(url, implementation="redispy", key_prefix="fenced:ratelimit")
            self._limiter = strategy(storage)

    async def hit(self, tenant: str) -> None:
        """Count one request of ``tenant``; raise :class:`TooManyRequests` above any limit.
        If Redis cannot count, let the request through (the write path reports Redis itself)."""
        if self._limiter is None:
            return
        for item in self.items:
            try:
                allowed = await self._limiter.hit(item, tenant)
            except Exception as e:  # noqa: BLE001 - storage errors must not turn into 500s
                log.warning("rate limiter unavailable: %r", e)
                return
            if not allowed:
                stats = await self._limiter.get_window_stats(item, tenant)
                retry = max(stats.reset_time - time.time(), 0.001)
                raise TooManyRequests(f"tenant {tenant!r} is over its rate limit of {item}", retry_after_s=retry)
