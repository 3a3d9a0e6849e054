"""Lease throughput (issue 3's figures): acquire + clean release cycles/s of ``locks``
against a raw redis-py baseline, ``SET key val NX PX 5000`` then ``DEL``, with the same
number of concurrent tasks on the same client.

Scenarios: ``uniform`` spreads the cycles over many distinct streams (no contention);
``hot`` sends every task at one stream (they wait in line; the raw baseline spins on
``SET NX`` and counts only the cycles that got the key). Starts its own redis-server on a
free port and alternates system and baseline in short rounds: the machine is noisy, so
compare within one run, not across runs.

    python -m bench.locks --quick
    python -m bench.locks --seconds 5 --rounds 5 --tasks 1,16,64,256
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from devstack import RedisServer
from devstack.proc import free_port
from locks import Leases

Cycle = Callable[[str], Awaitable[bool]]


async def drive(cycle: Cycle, keys: Callable[[], str], tasks: int, seconds: float) -> float:
    """Run ``tasks`` loops of ``cycle`` for ``seconds``; cycles completed per second."""
    done = 0
    end = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < end:
            if await cycle(keys()):
                done += 1

    t0 = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(tasks)))
    return done / (time.monotonic() - t0)


def key_source(scenario: str, prefix: str, streams: int) -> Callable[[], str]:
    if scenario == "hot":
        return lambda: f"{prefix}hot"
    counter = itertools.count()
    return lambda: f"{prefix}{next(counter) % streams}"


async def run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    seconds = 1.0 if args.quick else args.seconds
    tasks = [int(n) for n in args.tasks.split(",")]
    client = aioredis.Redis.from_url(url, max_connections=max(tasks) * 2 + 16)
    results: dict[str, Any] = {}
    try:
        async with Leases(client) as lm:

            async def fenced(stream: str) -> bool:
                lease = await lm.acquire(stream, time.monotonic() + 5)
                return await lm.release(lease, clean=True)

            async def raw(key: str) -> bool:
                if not await client.set(key, uuid.uuid4().hex, nx=True, px=5000):
                    return False  # someone else has it: spin (only the hot scenario gets here)
                await client.delete(key)
                return True

            systems: dict[str, tuple[Cycle, str]] = {"fenced": (fenced, "bench:"), "raw": (raw, "raw:")}

            async def measure(system: str, scenario: str, n: int, secs: float) -> float:
                await client.flushdb()
                await lm.set_epoch(1)
                cycle, prefix = systems[system]
                return await drive(cycle, key_source(scenario, prefix, args.streams), n, secs)

            for system in systems:  # warm up: connections, scripts loaded, allocator
                await measure(system, "uniform", max(tasks), min(seconds, 0.5))

            for scenario in ("uniform", "hot"):
                for n in tasks:
                    rounds: dict[str, list[float]] = {"fenced": [], "raw": []}
                    for rnd in range(args.rounds):
                        order = ("fenced", "raw") if rnd % 2 == 0 else ("raw", "fenced")
                        for system in order:
                            rounds[system].append(await measure(system, scenario, n, seconds))
                    fenced_med, raw_med = (statistics.median(rounds[s]) for s in ("fenced", "raw"))
                    ratio = fenced_med / raw_med if raw_med else float("nan")
                    print(f"locks {scenario} N={n}: {fenced_med:.0f} cycles/s vs raw SET NX+DEL "
                          f"{raw_med:.0f}/s = {ratio:.2f}x", flush=True)
                    results[f"{scenario} N={n}"] = {
                        "scenario": scenario, "tasks": n, "fenced_cycles_per_s": round(fenced_med, 1),
                        "raw_cycles_per_s": round(raw_med, 1), "ratio": round(ratio, 3),
                        "rounds": {s: [round(v, 1) for v in vs] for s, vs in rounds.items()}}
            info = await client.info("server")
    finally:
        await client.aclose()
    return {"seconds_per_round": seconds, "rounds": args.rounds, "streams": args.streams,
            "redis_version": info.get("redis_version"), "results": results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="1 s rounds")
    ap.add_argument("--seconds", type=float, default=2.0, help="length of one round (default 2)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tasks", default="1,16,64", help="comma-separated concurrency levels")
    ap.add_argument("--streams", type=int, default=10_000, help="distinct streams of the uniform scenario")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fenced-bench-locks-"))
    server = RedisServer(root / "redis", port=free_port())
    server.start()
    try:
        report = asyncio.run(run(args, server.url))
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    report.update(python=sys.version.split()[0], platform=platform.platform(), cpus=os.cpu_count(),
                  redis_appendonly="yes (appendfsync everysec)")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
