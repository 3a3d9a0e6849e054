"""Write-path throughput and latency through the HTTP API (issue 4's figures).

Starts its own Kafka broker, redis-server, projector and 2 API replicas, then drives
uniform writes over N folders with C concurrent clients, alternating the acknowledgement
modes in short rounds (the machine is noisy: compare within one run, not across runs).

    python -m bench.writes --folders 10000 --clients 64 --seconds 10 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp

from devstack.stack import Stack, servers


async def drive(urls: list[str], folders: int, clients: int, seconds: float, prefix: str) -> dict[str, Any]:
    """Uniform writes over ``folders`` with ``clients`` concurrent keep-alive connections.

    aiohttp, not httpx: httpx's pool collapses past ~16 concurrent requests on this machine
    (a no-op FastAPI app fell from 335 to 82 requests/s going from 16 to 64 clients), which
    would measure the load generator instead of the service.
    """
    created: set[int] = set()
    latencies: list[float] = []
    status: dict[int, int] = {}
    end = time.monotonic() + seconds
    rng = random.Random(7)
    connector = aiohttp.TCPConnector(limit=clients * 2)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        async def worker(w: int) -> None:
            url = urls[w % len(urls)]
            while time.monotonic() < end:
                f = rng.randrange(folders)
                body = {"name": "Update", "data": {"name": f"n{rng.random()}"}} if f in created else \
                    {"name": "Create", "data": {"name": "new"}}
                t0 = time.perf_counter()
                async with session.post(f"{url}/v1/folders/{prefix}{f}/commands", json=body) as r:
                    await r.read()
                    code = r.status
                latencies.append(time.perf_counter() - t0)
                status[code] = status.get(code, 0) + 1
                if code in (201, 409):
                    created.add(f)
        t0 = time.monotonic()
        await asyncio.gather(*(worker(w) for w in range(clients)))
        elapsed = time.monotonic() - t0
    lat = sorted(latencies)
    return {"accepted_per_s": status.get(201, 0) / elapsed, "requests": len(lat), "status": status,
            "requests_per_s": len(lat) / elapsed,
            "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
            "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folders", type=int, default=10000)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fenced-bench-"))
    with ExitStack() as cleanup:  # stops every process in reverse order, also on failure or Ctrl-C
        kafka, redis = cleanup.enter_context(servers(root))
        stacks: dict[str, Stack] = {}
        for mode in ("verified", "leased"):
            stack = Stack(root / "stacks", kafka, redis, ack_mode=mode,
                          extra_env={"FENCED_LEASE_TTL_MS": "5000", "FENCED_PARTITIONS": "12"})
            cleanup.callback(stack.stop)
            stacks[mode] = stack.start()
        results: dict[str, list[dict[str, Any]]] = {m: [] for m in stacks}
        for rnd in range(args.rounds):
            for mode, stack in stacks.items():
                r = asyncio.run(drive(stack.urls, args.folders, args.clients, args.seconds, f"r{rnd}-"))
                results[mode].append(r)
                print(f"round {rnd} {mode:8}: {r['accepted_per_s']:7.0f} accepted/s  p50 {r['p50_ms']:.1f} ms  "
                      f"p99 {r['p99_ms']:.1f} ms  {r['status']}", flush=True)
    summary = {m: {k: statistics.median(x[k] for x in rs) for k in ("accepted_per_s", "p50_ms", "p99_ms")}
               for m, rs in results.items()}
    ratio = summary["leased"]["accepted_per_s"] / max(summary["verified"]["accepted_per_s"], 1e-9)
    for m, s in summary.items():
        print(f"{m:8}: median {s['accepted_per_s']:.0f} accepted/s, p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms")
    print(f"leased / verified throughput: {ratio:.2f}x")
    print(json.dumps({"args": vars(args), "summary": summary}))


if __name__ == "__main__":
    main()
