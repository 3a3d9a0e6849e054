"""What holding rejections costs (issue #12): rejection latency, held vs answered early.

    python -m bench.rejections [--seconds 8] [--clients 16]

Starts a private Kafka broker, redis-server and the projector, then runs one writer
(``Runtime`` in this process) three ways, alternated per round, against the same kind of load:
``early`` is the writer before issue #12 (``FENCED_UNSAFE_EARLY_REJECTIONS``: a rejection is
answered as soon as it is decided), ``held`` is today's writer in ``verified`` mode and
``leased`` today's writer in ``leased`` mode. Two loads:

- ``batched``: ``--clients`` clients on one hot folder, each sending an Update that carries an
  expected version one behind (most are refused 409 after a batch predecessor, so they are
  held until the batch's verdict) and a plain Update (accepted, the predecessors);
- ``alone``: the same clients each refused on its own folder (a Create of an existing folder:
  a batch with nothing to append, which in ``verified`` mode passes the log barrier).

It prints p50 / p99 of the rejections' latency and of the accepted commands' latency per way,
and the ratios held ÷ early (1.0 = no cost), measured in the same run.
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

WAYS = {"early": {"unsafe_early_rejections": True, "fault_injection": True},
        "held": {}, "leased": {"ack_mode": "leased"}}


async def _send(rt: Runtime, rid: str, name: str, data: dict[str, str], expected: int | None = None) -> tuple[
        bool, float, int | None]:
    started = time.monotonic()
    try:
        body = await rt.writer.execute(Request("folders", rid, name, data, expected, new_command_id()))
    except FencedError as e:
        return False, time.monotonic() - started, e.current_version
    return True, time.monotonic() - started, int(body["version"])


async def one(stack: Stack, way: str, load: str, seconds: float, clients: int) -> dict[str, list[float]]:
    rt = Runtime(stack.settings.model_copy(update=WAYS[way]))
    await rt.start()
    out: dict[str, list[float]] = {"rejected": [], "accepted": []}
    tag = new_command_id()[:6]
    try:
        folders = [f"{load}-{tag}-{i}" for i in range(1 if load == "batched" else clients)]
        for f in folders:
            await first_write(rt, Request("folders", f, "Create", {"name": "x"}, None, new_command_id()))
        stop = time.monotonic() + seconds
        version = {f: 1 for f in folders}

        async def client(i: int) -> None:
            f = folders[0] if load == "batched" else folders[i]
            while time.monotonic() < stop:
                if load == "batched":
                    name, data, expected = "Update", {"name": f"c{i}"}, (version[f] - 1 if i % 2 else None)
                else:
                    name, data, expected = "Create", {"name": "again"}, None
                ok, took, v = await _send(rt, f, name, data, expected)
                out["accepted" if ok else "rejected"].append(took)
                if v is not None:
                    version[f] = max(version[f], v)

        await asyncio.gather(*(client(i) for i in range(clients)))
    finally:
        await rt.stop()
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the comparison; see the module's docstring."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    with private_stack("rejections", {"FENCED_PARTITIONS": "12"}) as stack:
        asyncio.run(one(stack, "held", "batched", 2, args.clients))  # warm-up
        for load in ("batched", "alone"):
            got: dict[str, dict[str, list[float]]] = {w: {"rejected": [], "accepted": []} for w in WAYS}
            for _ in range(args.rounds):
                for way in WAYS:
                    r = asyncio.run(one(stack, way, load, args.seconds, args.clients))
                    for k, v in r.items():
                        got[way][k] += v
            print(f"{load}: {args.clients} clients, {args.rounds} x {args.seconds:.0f} s per way", flush=True)
            for way, r in got.items():
                line = []
                for k in ("rejected", "accepted"):
                    if r[k]:
                        line.append(f"{k} {len(r[k])}: p50 {1000 * statistics.median(r[k]):.1f} ms, "
                                    f"p99 {1000 * pct(r[k], 0.99):.1f} ms")
                print(f"  {way:7s} " + "; ".join(line))
            base = got["early"]["rejected"]
            for way in ("held", "leased"):
                mine = got[way]["rejected"]
                if base and mine:
                    p50 = statistics.median(mine) / statistics.median(base)
                    print(f"  rejections {way} / early: p50 {p50:.2f}, p99 {pct(mine, 0.99) / pct(base, 0.99):.2f}")


if __name__ == "__main__":
    main()
