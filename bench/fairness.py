"""Cross-replica fairness on one hot folder: how long the commands of each replica wait.

    python -m bench.fairness [--seconds 10] [--batch-max 16,64] [--a 56 --b 8]

Starts a private Kafka broker, redis-server and a fenced stack (the projector as a process),
then runs two writer replicas (two ``Runtime`` objects in this process, each with its own
Redis client, lease replica id and Kafka producer) against **one** folder: replica A with
``--a`` concurrent clients, replica B with ``--b``. Group commit lets a replica hold the
lease for a batch of up to ``FENCED_BATCH_MAX`` of its own queued commands; after each batch
it releases, and Redis serves the replicas' waiters in arrival order. Fair means B's few
clients are not starved by A's many: B's latency distribution should stay close to A's.

It prints, per batch size, each replica's command latency p50/p90/p99/max and accepted/s, the
ratios B ÷ A of p50 and p99 (about 1 is fair; a starved B would show ratios far above 1
and few accepted commands), and how many of A's batches ran while one of B's commands
waited (the bound the design promises: about one).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.common import first_write, pct, private_stack
from devstack.stack import Stack
from service.errors import FencedError
from service.runtime import Runtime
from service.write.writer import Request, new_command_id


async def run(stack: Stack, batch_max: int, seconds: float, clients_a: int, clients_b: int,
              quiet: bool = False) -> None:
    settings = stack.settings.model_copy(update={"batch_max": batch_max})
    a, b = Runtime(settings), Runtime(settings)
    await a.start()
    try:
        await b.start()
    except BaseException:
        await a.stop()
        raise
    folder = f"hot-{batch_max}-{new_command_id()[:6]}"
    latencies: dict[str, list[float]] = {"A": [], "B": []}
    a_batches_per_b_wait: list[int] = []
    failed: dict[str, int] = {"A": 0, "B": 0}
    try:
        await first_write(a, Request("folders", folder, "Create", {"name": "hot"}, None, new_command_id()))
        stop = time.monotonic() + seconds

        async def client(rt: Runtime, name: str, i: int) -> None:
            n = 0
            while time.monotonic() < stop:
                started, a_before = time.monotonic(), a.writer.counters["batches"]
                try:
                    await rt.writer.execute(Request("folders", folder, "Update", {"name": f"{name}{i}-{n}"},
                                                    None, new_command_id()))
                except FencedError:
                    failed[name] += 1
                    await asyncio.sleep(0.01)
                    continue
                latencies[name].append(time.monotonic() - started)
                if name == "B":
                    a_batches_per_b_wait.append(a.writer.counters["batches"] - a_before)
                n += 1

        await asyncio.gather(*(client(a, "A", i) for i in range(clients_a)),
                             *(client(b, "B", i) for i in range(clients_b)))
        batches_a, commands_a = a.writer.counters["batches"], a.writer.counters["batched_commands"]
    finally:
        await a.stop()
        await b.stop()
    if quiet:
        return
    la, lb = latencies["A"], latencies["B"]
    for name, lat in latencies.items():
        clients = clients_a if name == "A" else clients_b
        print(f"  replica {name} ({clients:>2} clients): {len(lat) / seconds:7,.0f} accepted/s  "
              f"p50 {pct(lat, .5) * 1000:6.1f} ms  p90 {pct(lat, .9) * 1000:6.1f} ms  "
              f"p99 {pct(lat, .99) * 1000:6.1f} ms  max {max(lat, default=0) * 1000:6.1f} ms  "
              f"failed {failed[name]}")
    print(f"  B / A latency: p50 {pct(lb, .5) / pct(la, .5):.2f}, p99 {pct(lb, .99) / pct(la, .99):.2f}  "
          f"(about 1 is fair); A: {commands_a / max(batches_a, 1):.1f} commands per batch; "
          f"A's batches while one of B's commands waited: median "
          f"{statistics.median(a_batches_per_b_wait) if a_batches_per_b_wait else 0:.0f}, "
          f"max {max(a_batches_per_b_wait, default=0)}")


def main(argv: list[str] | None = None) -> None:
    """Run the comparison; see the module's docstring."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--batch-max", default="16,64", help="comma-separated FENCED_BATCH_MAX values to try")
    ap.add_argument("--a", type=int, default=56, help="clients on replica A")
    ap.add_argument("--b", type=int, default=8, help="clients on replica B")
    args = ap.parse_args(argv)
    with private_stack("fairness", {"FENCED_PARTITIONS": "12", "FENCED_LEASE_TTL_MS": "5000"}) as stack:
        asyncio.run(run(stack, 64, 3, args.a, args.b, quiet=True))  # warm-up: the broker's JIT, connections
        for batch_max in (int(x) for x in args.batch_max.split(",")):
            print(f"FENCED_BATCH_MAX={batch_max}, one folder, {args.seconds:.0f} s:", flush=True)
            asyncio.run(run(stack, batch_max, args.seconds, args.a, args.b))

if __name__ == "__main__":
    main()
