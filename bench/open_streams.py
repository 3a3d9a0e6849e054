"""Appends to open streams against commands to a decided type, in the same run (issue #13).

    python -m bench.open_streams [--seconds 5] [--rounds 2] [--tasks 64]

One writer (``Runtime`` in this process, ``verified``) against a private Kafka broker,
redis-server and the stack's projector; ``--tasks`` tasks each write new streams of 10k,
alternated per round: ``commands`` sends the folders decider a Create, ``appends`` appends
one event to a stream of the open type ``ledger`` with ``expected_version="no_stream"``. It
prints accepted/s and p50 / p99 of each, and appends ÷ commands.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.common import first_write, pct, private_stack
from devstack.stack import Stack
from fenced_client.domain.open import APPEND
from fenced_client.domain.plugins import install
from service.errors import FencedError
from service.runtime import Runtime
from service.write.writer import Request, new_command_id


def request(way: str, rid: str) -> Request:
    if way == "commands":
        return Request("folders", rid, "Create", {"name": rid}, None, new_command_id())
    return Request("ledger", rid, APPEND, {"events": [{"type": "Opened", "data": {"name": rid}}]}, "no_stream",
                   new_command_id())


async def one(rt: Runtime, way: str, seconds: float, tasks: int, tag: str) -> tuple[int, list[float]]:
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    counter = 0

    async def task() -> None:
        nonlocal counter
        while time.monotonic() < stop:
            counter += 1
            started = time.monotonic()
            try:
                await rt.writer.execute(request(way, f"{tag}-{counter}"))
            except FencedError:
                continue
            latencies.append(time.monotonic() - started)

    await asyncio.gather(*(task() for _ in range(tasks)))
    return len(latencies), latencies


async def run(stack: Stack, seconds: float, rounds: int, tasks: int) -> None:
    install("", (), stack.settings.open)
    rt = Runtime(stack.settings)
    await rt.start()
    try:
        await first_write(rt, request("commands", f"warm-{new_command_id()[:6]}"))
        got: dict[str, list[float]] = {"commands": [], "appends": []}
        for r in range(rounds):
            for way in got:
                _, lat = await one(rt, way, seconds, tasks, f"{way}-{r}-{new_command_id()[:6]}")
                got[way] += lat
        for way, lat in got.items():
            rate = len(lat) / (rounds * seconds)
            print(f"{way:9s} {rate:7.0f} accepted/s, p50 {1000 * statistics.median(lat):.1f} ms, "
                  f"p99 {1000 * pct(lat, 0.99):.1f} ms")
        print(f"appends / commands: {len(got['appends']) / max(len(got['commands']), 1):.2f}")
    finally:
        await rt.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the comparison; see the module's docstring."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tasks", type=int, default=64)
    args = ap.parse_args(argv)
    with private_stack("open", {"FENCED_PARTITIONS": "12", "FENCED_OPEN_TYPES": "ledger"}) as stack:
        asyncio.run(run(stack, args.seconds, args.rounds, args.tasks))

if __name__ == "__main__":
    main()
