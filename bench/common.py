"""What the in-process benchmarks share: a private stack, the first write, percentiles."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from devstack.stack import Stack, servers
from service.errors import FencedError
from service.runtime import Runtime
from service.write.writer import Request


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@contextmanager
def private_stack(name: str, extra_env: dict[str, str]) -> Iterator[Stack]:
    """A Kafka broker, a redis-server and a stack with its projector only (the benchmark runs its
    writers in process), on free ports and in a temporary folder; all stopped and removed after."""
    root = Path(tempfile.mkdtemp(prefix=f"fenced-{name}-"))
    try:
        with ExitStack() as cleanup:
            kafka, redis_server = cleanup.enter_context(servers(root))
            stack = Stack(root / "stacks", kafka, redis_server, replicas=0, extra_env=extra_env)
            cleanup.callback(stack.stop)
            stack.start()
            yield stack
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def first_write(rt: Runtime, req: Request, timeout: float = 60) -> dict[str, Any]:
    """Send ``req`` until it is answered 201: the projector may still be joining its group, and
    the writers answer 503 until it is ready."""
    until = time.monotonic() + timeout
    while True:
        try:
            return await rt.writer.execute(req)
        except FencedError:
            if time.monotonic() > until:
                raise
            await asyncio.sleep(0.5)
