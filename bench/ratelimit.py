"""What one per-tenant rate-limit check costs, per ``limits`` strategy, against a plain INCR.

    python -m bench.ratelimit [--hits 20000] [--tasks 64] [--limit 100000/second]

Starts a private redis-server and runs ``--hits`` checks of one tenant from ``--tasks``
concurrent tasks through fenced's ``TenantLimiter`` (the ``limits`` library, counted in
Redis), once per strategy, and the same number of plain ``INCR`` calls (the cheapest shared
counter) as the baseline. For each it prints the client's CPU time and redis-server's CPU time
per check, and their ratios to the baseline: the limiter runs on every authenticated request
of every API replica, so its cost is paid per request. Each strategy is measured twice, in
alternating order.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import redis
import redis.asyncio as aioredis
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)

from devstack import RedisServer
from devstack.proc import free_port
from service.api.ratelimit import TenantLimiter

STRATEGIES: dict[str, type[RateLimiter]] = {
    "moving window (fenced's)": MovingWindowRateLimiter,
    "sliding window counter": SlidingWindowCounterRateLimiter,
    "fixed window": FixedWindowRateLimiter,
}


def redis_cpu(port: int) -> float:
    info = redis.Redis(port=port).info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def measure(port: int, hits: int, tasks: int, check: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """(client CPU s, redis-server CPU s) per check."""
    for _ in range(200):  # warm-up: connections, script loading
        await check()
    per_task = hits // tasks

    async def worker() -> None:
        for _ in range(per_task):
            await check()

    server0, client0 = redis_cpu(port), time.process_time()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    client, server = time.process_time() - client0, redis_cpu(port) - server0
    n = per_task * tasks
    return client / n, server / n


async def run(port: int, hits: int, tasks: int, limit: str) -> None:
    url = f"redis://127.0.0.1:{port}/0"
    plain = aioredis.Redis.from_url(url)
    results: dict[str, list[tuple[float, float]]] = {"INCR (baseline)": []}
    for name in STRATEGIES:
        results[name] = []
    for round_ in range(2):
        order = list(results) if round_ == 0 else list(reversed(results))
        for name in order:
            if name == "INCR (baseline)":
                results[name].append(await measure(port, hits, tasks, lambda: plain.incr("bench:incr")))
                continue
            limiter = TenantLimiter(limit, url, STRATEGIES[name])
            results[name].append(await measure(port, hits, tasks, partial(limiter.hit, f"t-{name[:6]}-{round_}")))
    await plain.aclose()
    base_client = min(c for c, _ in results["INCR (baseline)"])
    base_server = min(s for _, s in results["INCR (baseline)"])
    print(f"{hits:,} checks of one tenant, {tasks} tasks, limit {limit} (never reached); best of 2 runs")
    for name, runs in results.items():
        client, server = min(c for c, _ in runs), min(s for _, s in runs)
        print(f"  {name:26} client {client * 1e6:6.1f} us ({client / base_client:4.2f}x)  "
              f"redis-server {server * 1e6:5.1f} us ({server / base_server:4.2f}x) per check")


def main(argv: list[str] | None = None) -> None:
    """Run the comparison; see the module's docstring."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hits", type=int, default=20_000)
    ap.add_argument("--tasks", type=int, default=64)
    ap.add_argument("--limit", default="100000/second")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="fenced-ratelimit-"))
    server = RedisServer(root / "redis", port=free_port())
    try:
        server.start()
        asyncio.run(run(server.port, args.hits, args.tasks, args.limit))
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
