"""Profile the writer's hot path: ``Writer.execute`` in this process, 64 tasks, for a while.

    python -m bench.profile --seconds 15 [--hot] [--mode verified|leased] [--pyinstrument]
    py-spy record -o out/profile/writer.svg -- .venv/bin/python -m bench.profile --seconds 15

Starts a private Kafka broker, redis-server and a fenced stack (the projector as a process),
then drives the writer core uniformly over 10k folders (or ``--hot``: 3 folders). With
``--pyinstrument`` it prints where the event loop's wall time goes (asyncio-aware); run it
under ``py-spy`` for the CPU view of this process. It also prints how many Redis commands
and Kafka produce requests each accepted command cost, from the servers' own counters.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis

from devstack.stack import Stack, servers
from service.errors import FencedError
from service.runtime import Runtime
from service.write.writer import Request, new_command_id


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processes(stack: Stack) -> dict[str, int]:
    pids = {"writer (this process)": os.getpid(), "projector": stack.services.pid("projector")}
    if stack.kafka.pid is not None:
        pids["kafka broker"] = stack.kafka.pid
    if stack.redis.pid is not None:
        pids["redis-server"] = stack.redis.pid
    return pids


def redis_calls(port: int) -> dict[str, int]:
    info = redis.Redis(port=port).info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


async def drive(stack: Stack, seconds: float, hot: bool, profiler: Any) -> None:
    rt = Runtime(stack.settings)
    await rt.start()
    folders = [f"p-{i}" for i in range(3 if hot else 10_000)]
    created: set[str] = set()
    statuses: dict[str, int] = {}
    stop = time.monotonic() + seconds

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop:
            f = rng.choice(folders)
            name, data = ("Update", {"name": f"n{rng.random()}"}) if f in created else ("Create", {"name": "x"})
            try:
                await rt.writer.execute(Request("folders", f, name, data, None, new_command_id()))
                created.add(f)
                statuses["201"] = statuses.get("201", 0) + 1
            except FencedError as e:
                if e.status == 409:
                    created.add(f)
                statuses[str(e.status)] = statuses.get(str(e.status), 0) + 1

    pids = processes(stack)
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    before = redis_calls(stack.redis.port)
    batches0 = rt.writer.counters["batches"]
    kafka0 = (rt.appender.batches, rt.appender.appends)
    redis0 = (rt.redis.pipelines, rt.redis.pipelined_commands)
    if profiler is not None:
        profiler.start()
    started = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(64)))
    elapsed = time.monotonic() - started
    if profiler is not None:
        profiler.stop()
    after = redis_calls(stack.redis.port)
    cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
    batches = rt.writer.counters["batches"] - batches0
    kafka = (rt.appender.batches - kafka0[0], rt.appender.appends - kafka0[1])
    pipes = (rt.redis.pipelines - redis0[0], rt.redis.pipelined_commands - redis0[1])
    await rt.stop()
    ok = statuses.get("201", 0)
    print(f"{ok / elapsed:,.0f} accepted/s over {elapsed:.1f} s {statuses}; {batches} batches "
          f"({ok / max(batches, 1):.2f} commands per batch); {kafka[1] / max(kafka[0], 1):.2f} appends per "
          f"record batch; {pipes[1] / max(pipes[0], 1):.2f} writer Redis commands per round trip")
    calls = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    total = sum(calls.values())
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:10]
    print("CPU per accepted command: " + ", ".join(
        f"{name} {1000 * secs / max(ok, 1):.2f} ms" for name, secs in sorted(cpu.items(), key=lambda kv: -kv[1]))
        + f"; total {1000 * sum(cpu.values()) / max(ok, 1):.2f} ms ({sum(cpu.values()) / elapsed:.2f} cores busy)")
    print(f"redis commands per accepted command (the projector's included): {total / max(ok, 1):.1f}: "
          + ", ".join(f"{k} {v / max(ok, 1):.2f}" for k, v in top))


def main(argv: list[str] | None = None) -> None:
    """Run the profile; see the module's docstring."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--hot", action="store_true", help="every task on 3 folders")
    ap.add_argument("--mode", choices=["verified", "leased"], default="verified")
    ap.add_argument("--pyinstrument", action="store_true", help="print pyinstrument's asyncio wall-time profile")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="fenced-profile-"))
    profiler = None
    if args.pyinstrument:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="enabled")
    try:
        with ExitStack() as cleanup:
            kafka, redis_server = cleanup.enter_context(servers(root))
            stack = Stack(root / "stacks", kafka, redis_server, ack_mode=args.mode, replicas=0,
                          extra_env={"FENCED_PARTITIONS": "12", "FENCED_LEASE_TTL_MS": "5000"})
            cleanup.callback(stack.stop)
            stack.start()
            asyncio.run(drive(stack, 3, args.hot, None))  # warm-up: JIT, connections
            asyncio.run(drive(stack, args.seconds, args.hot, profiler))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if profiler is not None:
        print(profiler.output_text(unicode=True, color=False, show_all=False))


if __name__ == "__main__":
    main()
