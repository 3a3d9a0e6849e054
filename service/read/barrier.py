"""The log barrier: a projected state known to hold every record acknowledged before the call.

Redis is a cache of the log, and a failover can take it back in time: a replica that missed
the last writes becomes the primary, and with it the projection forgets the newest events.
Answers that read the projection (a ``GET``, a rejection) must not show such a past, or they
stop being linearizable (S7). The barrier makes them independent of what Redis lost, the
way a Raft read index does:

1. ask Kafka for the partition's end offset ``E`` (ListOffsets), in a request *sent after
   the call began*, so every record acknowledged before the call is below ``E``;
2. read, in one Lua script (atomic), the projector's applied offset of the partition and the
   stream's state; the projector writes a stream's state before it moves the applied offset, and
   Redis replicates both in that order, so a state read with an applied offset ``>= E - 1``
   includes every record of the stream below ``E``, whatever Redis lost before;
3. else wait for the projector and read again, until the deadline.

Concurrent callers share ListOffsets requests (one for every partition wanted at the time):
each one gets the answer of a request that started after it asked.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from fenced_client.domain import Decider
from fenced_client.rule import StreamState
from service.errors import Unavailable
from service.infra.kafka import KafkaUnavailable, client_options
from service.read.projection import AppliedWatcher, Projection
from service.settings import Settings

REQUEST_TIMEOUT_MS = 2000
"""How long one ListOffsets request may take before its callers hear Kafka is unavailable."""
POLL_S = 0.01
"""How often a barrier re-reads Redis while the watcher's cached offset already claims enough
(the cache can be ahead of a Redis that went back in time)."""


class LogEnds:
    """End offsets of partitions, from Kafka, with at most one ListOffsets request in flight.

    Callers that arrive while a request is in flight wait for the next one, which asks for every
    partition they want at once (one round trip for all of them, sent after each of them asked).
    """

    def __init__(self, settings: Settings) -> None:
        # short: every caller waits for the request after the one in flight, so a request that
        # hangs (a broker restarting) must end well before the callers' deadlines
        self.consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False, group_id=None,
                                         request_timeout_ms=REQUEST_TIMEOUT_MS)
        self._next: dict[TopicPartition, asyncio.Future[int]] = {}
        self._running: asyncio.Task[None] | None = None
        self._stopping = False
        self.requests = 0

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        self._stopping = True
        if self._running is not None:
            self._running.cancel()
            await asyncio.wait([self._running])
        self._fail(self._next, KafkaUnavailable("the replica is shutting down"))
        self._next = {}
        await self.consumer.stop()

    @staticmethod
    def _fail(wanted: dict[TopicPartition, asyncio.Future[int]], err: Exception) -> None:
        for fut in wanted.values():
            if not fut.done():
                fut.set_exception(err)
                fut.exception()  # retrieved: a caller that went away leaves no warning

    async def end(self, topic: str, partition: int) -> int:
        """The partition's end offset (the offset its next record will get), from a request
        sent after this call began."""
        if self._stopping:
            raise KafkaUnavailable("the replica is shutting down")
        tp = TopicPartition(topic, partition)
        fut = self._next.get(tp)
        if fut is None:
            fut = self._next[tp] = asyncio.get_running_loop().create_future()
        if self._running is None:
            self._launch()
        return await asyncio.shield(fut)

    def _launch(self) -> None:
        wanted, self._next = self._next, {}
        self._running = asyncio.create_task(self._request(wanted), name="log-ends")

    async def _request(self, wanted: dict[TopicPartition, asyncio.Future[int]]) -> None:
        self.requests += 1
        try:
            ends = await self.consumer.end_offsets(list(wanted))
            for tp, fut in wanted.items():
                if not fut.done():
                    fut.set_result(int(ends[tp]))
        except asyncio.CancelledError:
            self._fail(wanted, KafkaUnavailable("the replica is shutting down"))
            raise
        except Exception as e:  # noqa: BLE001 - every caller hears why, and the next request is tried
            self._fail(wanted, KafkaUnavailable(f"cannot read the partitions' end offsets: {e!r}"))
        finally:
            self._running = None
            if self._next and not self._stopping:
                self._launch()


class Barrier:
    """Reads of the projection that reflect the log (see the module's docstring)."""

    def __init__(self, ends: LogEnds, projection: Projection, watcher: AppliedWatcher) -> None:
        self.ends = ends
        self.projection = projection
        self.watcher = watcher

    async def state(self, decider: Decider, stream: str, topic: str, partition: int,
                    deadline: float) -> StreamState:
        """The stream's state, including every record acknowledged before this call; raises
        :class:`Unavailable` if the projector does not get there before ``deadline`` (monotonic)."""
        try:
            end = await asyncio.wait_for(self.ends.end(topic, partition), max(deadline - time.monotonic(), 0.001))
        except (KafkaUnavailable, TimeoutError) as e:
            raise Unavailable(f"kafka is unavailable: {e}", retry_after_s=1) from e
        need = end - 1
        while True:
            applied, state = await self.projection.load_with_applied(decider, stream, topic, partition)
            if applied >= need:
                return state
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable("the projection is catching up with the log", retry_after_s=1)
            if self.watcher.cached(topic, partition) >= need:
                # this process saw the projector get there, yet Redis says otherwise: it went back
                # in time (a failover), and the projector will apply those records again
                await asyncio.sleep(min(POLL_S, remaining))
            else:
                await self.watcher.wait(topic, partition, need, remaining)
