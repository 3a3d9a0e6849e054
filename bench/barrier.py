"""What the log barrier costs a read (issue #12): ``Barrier.state`` vs ``Projection.load``.

    python -m bench.barrier [--seconds 5] [--readers 16] [--writers 16]

A ``GET`` used to read the stream's state from Redis (``Projection.load``); now it passes the
log barrier (``Barrier.state``: the partition's end offset from Kafka, then the applied offset
read with the state, waiting for the projector if it is behind). Both are run in this process
against a private Kafka broker, redis-server and the stack's projector, by ``--readers`` tasks
reading folders that exist, alternated per round, twice: with the topic idle, and while
``--writers`` tasks write other folders (so the projector is always a little behind the log
end). It prints reads/s and p50 / p99 per way and the ratios barrier ÷ plain, measured in the
same run, and the ListOffsets requests the barrier sent per read.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.common import first_write, pct, private_stack
from devstack.stack import Stack
from fenced_client.domain.folders import FOLDERS
from service.errors import FencedError
from service.runtime import Runtime
from service.write.writer import Request, new_command_id


async def measure(rt: Runtime, way: str, folders: list[str], seconds: float, writers: int) -> tuple[
        list[float], int, int]:
    topic = rt.settings.topic("folders")
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    requests = rt.ends.requests

    async def reader(f: str) -> None:
        stream, partition = f"folders:{f}", rt.appender.partition(f)
        while time.monotonic() < stop:
            started = time.monotonic()
            if way == "plain":
                await rt.projection.load(FOLDERS, stream)
            else:
                await rt.barrier.state(FOLDERS, stream, topic, partition, time.monotonic() + 10)
            latencies.append(time.monotonic() - started)

    async def writer(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            n += 1
            try:
                await rt.writer.execute(Request("folders", f"w-{i}-{n}", "Create", {"name": "w"}, None,
                                                new_command_id()))
            except FencedError:
                await asyncio.sleep(0.01)

    await asyncio.gather(*(reader(f) for f in folders), *(writer(i) for i in range(writers)))
    return latencies, len(latencies), rt.ends.requests - requests


async def run(stack: Stack, seconds: float, readers: int, writers: int, rounds: int) -> None:
    rt = Runtime(stack.settings)
    await rt.start()
    try:
        folders = [f"read-{new_command_id()[:6]}-{i}" for i in range(readers)]
        for f in folders:
            await first_write(rt, Request("folders", f, "Create", {"name": "x"}, None, new_command_id()))
        await measure(rt, "barrier", folders, 1, 0)  # warm-up
        for load, w in (("idle topic", 0), (f"{writers} writers on other folders", writers)):
            got: dict[str, list[float]] = {"plain": [], "barrier": []}
            requests = 0
            for _ in range(rounds):
                for way in ("plain", "barrier"):
                    lat, _, req = await measure(rt, way, folders, seconds, w)
                    got[way] += lat
                    requests += req if way == "barrier" else 0
            print(f"{load}: {readers} readers, {rounds} x {seconds:.0f} s per way", flush=True)
            for way, lat in got.items():
                rate = len(lat) / (rounds * seconds)
                print(f"  {way:8s} {rate:8.0f} reads/s, p50 {1000 * statistics.median(lat):.2f} ms, "
                      f"p99 {1000 * pct(lat, 0.99):.2f} ms")
            plain, barrier = got["plain"], got["barrier"]
            print(f"  barrier / plain: reads/s {len(barrier) / len(plain):.2f}, "
                  f"p50 {statistics.median(barrier) / statistics.median(plain):.2f}, "
                  f"p99 {pct(barrier, 0.99) / pct(plain, 0.99):.2f}; "
                  f"{requests / max(len(barrier), 1):.2f} ListOffsets requests per read")
    finally:
        await rt.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the comparison; see the module's docstring."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--readers", type=int, default=16)
    ap.add_argument("--writers", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    with private_stack("barrier", {"FENCED_PARTITIONS": "12"}) as stack:
        asyncio.run(run(stack, args.seconds, args.readers, args.writers, args.rounds))

if __name__ == "__main__":
    main()
