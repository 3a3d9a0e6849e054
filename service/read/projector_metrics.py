"""Prometheus metrics of the projector process, served at ``/metrics``.

Everything is read from the projector when scraped, so the apply loop pays nothing but the
few counter increments it keeps anyway: discards by topic and rule reason, records applied,
events accepted, record batches skipped as undecodable (by cause), each assigned
partition's applied offset and lag behind the log end, and whether the projection is ready.
The endpoint is a small asyncio HTTP server on the projector's own event loop, so a scrape
reads the projector's state between two steps of the loop, never while it changes (no
thread, no locks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from locks import META_KEY
from service.auth import KeyFile, NotAuthenticated


class Projector(Protocol):
    """What the metrics read of the projector (service.read.projector.Projector), so that
    this module does not import the projector that imports it."""

    @property
    def redis(self) -> Any: ...
    @property
    def consumer(self) -> Any: ...
    @property
    def epoch(self) -> int: ...
    @property
    def discards_by_topic(self) -> Mapping[str, Mapping[str, int]]: ...
    @property
    def records_by_topic(self) -> Mapping[str, int]: ...
    @property
    def accepted_by_topic(self) -> Mapping[str, int]: ...
    @property
    def skipped_by_topic(self) -> Mapping[str, Mapping[Any, int]]: ...

    def positions(self) -> list[Any]: ...

    def caught_up_all(self) -> bool: ...

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
        skipped = CounterMetricFamily(
            "fenced_projector_skipped_batches",
            "Record batches that could not be decoded (cause: crc, codec, corrupt, too_large, framing) and were "
            "skipped whole; each is also one malformed discard.", labels=["topic", "cause"])
        for topic, by_cause in sorted(p.skipped_by_topic.items()):
            for cause, n in by_cause.items():
                skipped.add_metric([topic, cause], n)
        yield skipped
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
    """``GET /metrics`` on the running event loop (``HEAD`` too), one request per connection,
    each bounded in size (16 KiB) and time (5 s): a small asyncio server rather than uvicorn,
    which sets no deadline on a connection that never sends a request, on a port that shares
    the projector's process. With ``keys`` (``FENCED_AUTH=keys``) every request needs a key
    with the ``metrics`` scope, checked first, as on the API replicas: 401 without a valid
    key (whatever the method or path), 403 without the scope; then 405 or 404."""

    def __init__(self, projector: Projector, port: int, host: str = "0.0.0.0",
                 keys: KeyFile | None = None) -> None:
        # every interface: Prometheus scrapes the projector's pod or host from outside
        self.host = host
        self.port = port
        self.keys = keys
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

    def _refusal(self, authorization: str) -> tuple[str, bytes, list[str]] | None:
        """401 or 403 as problem+json (status line, body, extra headers), or None to go on."""
        if self.keys is None:
            return None
        try:
            principal = self.keys.authenticate(authorization)
        except NotAuthenticated as e:
            challenge = 'WWW-Authenticate: Bearer realm="fenced"'
            return "401 Unauthorized", _problem(401, "Unauthorized", str(e)), [challenge]
        if refusal := principal.refusal("metrics"):
            return "403 Forbidden", _problem(403, "Forbidden", refusal), []
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, _, rest = request_line.partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            authorization = next((value.strip() for name, _, value in (line.partition(":") for line in lines)
                                  if name.strip().lower() == "authorization"), "")
            extra: list[str] = []
            if refused := self._refusal(authorization):
                status, body, extra = refused
                ctype = "application/problem+json"
            elif method not in ("GET", "HEAD"):
                status, ctype, body = "405 Method Not Allowed", "text/plain; charset=utf-8", b"GET /metrics\n"
                extra = ["Allow: GET, HEAD"]
            elif path in ("/metrics", "/metrics/"):
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, await self.render()
            else:
                status, ctype, body = "404 Not Found", "text/plain; charset=utf-8", b"GET /metrics\n"
            writer.write("".join(f"{line}\r\n" for line in [
                f"HTTP/1.1 {status}", f"Content-Type: {ctype}", f"Content-Length: {len(body)}", *extra,
                "Connection: close", ""]).encode("latin-1"))
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


def _problem(status: int, title: str, detail: str) -> bytes:
    return json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail}).encode()
