"""Prometheus metrics of the projector process, served at ``/metrics``.

Everything is read from the projector when scraped, so the apply loop pays nothing but the
few counter increments it keeps anyway: discards by topic and rule reason, records applied,
events accepted, each assigned partition's applied offset and lag behind the log end, and
whether the projection is ready. The endpoint is served by uvicorn on the projector's own
event loop, so a scrape reads the projector's state between two steps of the loop, never
while it changes (no thread, no locks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from locks import META_KEY
from service.api.authn import ApiKeys, principal_of, unauthorized
from service.api.problems import problem
from service.auth import KeyFile
from service.errors import Forbidden, Unauthorized

if TYPE_CHECKING:
    from service.projector import Projector

log = logging.getLogger("fenced.projector")

KEEP_ALIVE_S = 5
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


class _EmbeddedServer(uvicorn.Server):
    """uvicorn on the projector's own loop: the projector handles SIGTERM/SIGINT itself, so the
    server must not take the signals over while it runs."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class MetricsServer:
    """``GET /metrics`` (``HEAD`` too), a Starlette app served by uvicorn on the running event
    loop. With ``keys`` (``FENCED_AUTH=keys``) it needs a key with the ``metrics`` scope, as the
    API replicas' ``/metrics`` does: 401 without a valid key, 403 without the scope."""

    def __init__(self, projector: Projector, port: int, host: str = "0.0.0.0",
                 keys: KeyFile | None = None) -> None:
        # every interface: Prometheus scrapes the projector's pod or host from outside
        self.host = host
        self.port = port
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = ProjectorCollector(projector)
        self.registry.register(self.collector)
        app = Starlette(routes=[Route("/metrics", self._metrics, methods=["GET", "HEAD"])])
        app.add_middleware(AuthenticationMiddleware, backend=ApiKeys(lambda conn: keys), on_error=unauthorized)
        self._server = _EmbeddedServer(uvicorn.Config(app, lifespan="off", log_config=None, access_log=False,
                                                      timeout_keep_alive=KEEP_ALIVE_S))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind the port here, so a port in use is an ``OSError`` for the caller to report."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="projector-metrics")

    async def stop(self) -> None:
        if self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):  # a timeout included: stopping must not fail
                await asyncio.wait_for(self._task, 5)
            self._task = None

    async def render(self) -> bytes:
        await self.collector.refresh()
        return bytes(generate_latest(self.registry))

    async def _metrics(self, request: Request) -> Response:
        principal = principal_of(request)
        if principal is None:  # not authenticated by the middleware: refuse, never open
            return problem(401, Unauthorized.title, "an API key is required: send 'Authorization: Bearer <key>'")
        if not principal.allows("metrics"):
            return problem(403, Forbidden.title, f"the key {principal.name!r} lacks the 'metrics' scope this needs")
        try:
            body = await self.render()
        except Exception:  # a scrape must never take the projector down
            log.exception("projector metrics: scrape failed")
            return Response("scrape failed\n", status_code=500, media_type="text/plain")
        return Response(body, media_type=CONTENT_TYPE_LATEST)
