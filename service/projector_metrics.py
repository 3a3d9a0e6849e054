"""Prometheus metrics of the projector process, served at ``/metrics``.

Everything is read from the projector when scraped, so the apply loop pays nothing but the
few counter increments it keeps anyway: discards by topic and rule reason, records applied,
events accepted, each assigned partition's applied offset and lag behind the log end, and
whether the projection is ready. The endpoint is a small asyncio HTTP server on the
projector's own event loop, so a scrape reads the projector's state between two steps of
the loop, never while it changes (no thread, no locks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from locks import META_KEY

if TYPE_CHECKING:
    from service.projector import Projector

log = logging.getLogger("fenced.projector")

MAX_REQUEST_BYTES = 16 * 1024
REQUEST_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 1.0


class ProjectorCollector(Collector):
    """Reads the projector's counters and positions at scrape time."""

    def __init__(self, projector: Projector) -> None:
        self.projector = projector
        self.ready_epoch: int | None = None
        """``fenced:meta.ready`` as last read by :meth:`refresh` (None: unknown)."""

    async def refresh(self) -> None:
        """Read what :meth:`collect` cannot read synchronously (the ready epoch in Redis)."""
        try:
            raw = await asyncio.wait_for(self.projector.redis.hget(META_KEY, "ready"), READY_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError):
            self.ready_epoch = None
            return
        try:
            self.ready_epoch = None if raw is None else int(raw)
        except ValueError:
            self.ready_epoch = None

    def collect(self) -> Iterator[Metric]:
        p = self.projector
        discards = CounterMetricFamily(
            "fenced_projector_discards", "Command groups (or records) the consumer rule discarded, by reason.",
            labels=["topic", "reason"])
        for topic, by_reason in sorted(p.discards_by_topic.items()):
            for reason, n in by_reason.items():
                discards.add_metric([topic, reason], n)
        yield discards
        records = CounterMetricFamily("fenced_projector_records", "Records applied to the projection.",
                                      labels=["topic"])
        for topic, n in sorted(p.records_by_topic.items()):
            records.add_metric([topic], n)
        yield records
        accepted = CounterMetricFamily("fenced_projector_accepted", "Events the consumer rule accepted.",
                                       labels=["topic"])
        for topic, n in sorted(p.accepted_by_topic.items()):
            accepted.add_metric([topic], n)
        yield accepted
        applied = GaugeMetricFamily(
            "fenced_projector_applied_offset",
            "Last offset applied to the projection, per assigned partition (-1: none yet).",
            labels=["topic", "partition"])
        lag = GaugeMetricFamily(
            "fenced_projector_lag_records", "Log end offset minus the next offset to apply, per assigned partition.",
            labels=["topic", "partition"])
        for tp, last, behind in p.positions():
            applied.add_metric([tp.topic, str(tp.partition)], last)
            lag.add_metric([tp.topic, str(tp.partition)], behind)
        yield applied
        yield lag
        yield GaugeMetricFamily("fenced_projector_assigned_partitions", "Partitions assigned to this projector.",
                                value=len(p.consumer.assignment()))
        yield GaugeMetricFamily("fenced_projector_epoch", "Token epoch the projector applies in.", value=p.epoch)
        ready = p.epoch > 0 and self.ready_epoch == p.epoch and p.caught_up_all()
        yield GaugeMetricFamily(
            "fenced_projector_ready",
            "1 when the projection is ready in the projector's epoch and every partition assigned to this "
            "projector has caught up with the log end it had when assigned; 0 otherwise.",
            value=1 if ready else 0)


class MetricsServer:
    """``GET /metrics`` on the running event loop (``HEAD`` too); anything else is 404/405."""

    def __init__(self, projector: Projector, port: int, host: str = "0.0.0.0") -> None:
        # every interface: Prometheus scrapes the projector's pod or host from outside
        self.host = host
        self.port = port
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = ProjectorCollector(projector)
        self.registry.register(self.collector)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, limit=MAX_REQUEST_BYTES)
        sockets = self._server.sockets or ()
        if sockets and self.port == 0:
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def render(self) -> bytes:
        await self.collector.refresh()
        return bytes(generate_latest(self.registry))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                status, ctype, body = "405 Method Not Allowed", "text/plain; charset=utf-8", b"GET /metrics\n"
            elif path in ("/metrics", "/metrics/"):
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, await self.render()
            else:
                status, ctype, body = "404 Not Found", "text/plain; charset=utf-8", b"GET /metrics\n"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         f"Connection: close\r\n\r\n".encode("latin-1"))
            if method != "HEAD":
                writer.write(body)
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT_S)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        except Exception:  # a scrape must never take the projector down
            log.exception("projector metrics: scrape failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
