"""A redis-py asyncio client that pipelines concurrent commands automatically.

Every command issued by any task during one turn of the event loop goes to Redis in one
pipeline (one write, one connection), as ioredis' ``enableAutoPipelining`` does: under load
the writer's many concurrent commands for different streams share round trips and
syscalls instead of each paying its own. Each caller still gets its own result or error
(``NOSCRIPT`` included, so script loading works as before). Commands of one task stay in
order; commands are never reordered across tasks either (first issued, first in the pipe).
Pipelines, pub/sub and blocking commands are not affected.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

BLOCKING = frozenset({"BLPOP", "BRPOP", "BLMOVE", "BZPOPMIN", "BZPOPMAX", "XREAD", "XREADGROUP", "WAIT",
                      "SUBSCRIBE", "PSUBSCRIBE", "MONITOR"})


class AutoPipelineRedis(aioredis.Redis):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queued: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]] = []
        self._flushing: set[asyncio.Task[None]] = set()
        self.pipelines = 0
        self.pipelined_commands = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if str(args[0]).upper() in BLOCKING:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queued.append((args, options, fut))
        if len(self._queued) == 1:
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.create_task(self._send(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], dict[str, Any], asyncio.Future[Any]]]) -> None:
        self.pipelines += 1
        self.pipelined_commands += len(batch)
        try:
            if len(batch) == 1:
                args, options, fut = batch[0]
                results = [await super().execute_command(*args, **options)]  # type: ignore[no-untyped-call]
            else:
                pipe = self.pipeline(transaction=False)
                for args, options, _ in batch:
                    pipe.execute_command(*args, **options)
                results = await pipe.execute(raise_on_error=False)
        except BaseException as e:  # every caller gets the failure
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(e if isinstance(e, Exception) else ConnectionError(repr(e)))
            if not isinstance(e, Exception):
                raise
            return
        for (_, _, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self._flushing:
            await asyncio.wait(set(self._flushing), timeout=5)
        await super().aclose(close_connection_pool)
