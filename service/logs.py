"""Structured logs: one JSON object per line (python-json-logger), each carrying the request
id and tenant of the request it was logged in, plus one access line per request.

The request id is the client's ``X-Request-ID`` when it is sane, else a new one; it is sent
back in the response, and travels with the command's events as the Kafka header
``ce_fencedrequestid`` (a client's W3C ``traceparent`` travels as ``ce_traceparent``, the
CloudEvents distributed-tracing extension), so a record in the log leads back to the
request that wrote it.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from dataclasses import dataclass

from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
access_log = logging.getLogger("fenced.access")


@dataclass
class RequestContext:
    request_id: str
    traceparent: str | None = None
    tenant: str | None = None


current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("fenced_request", default=None)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)  # uvicorn's ANSI-coloured copy of the message
        ctx = current.get()
        if ctx is not None:
            record.request_id = ctx.request_id
            if ctx.tenant is not None:
                record.tenant = ctx.tenant
        return True


def configure(level: str, fmt: str) -> None:
    """Configure the root logger (and uvicorn's) once per process."""
    handler = logging.StreamHandler()
    handler.addFilter(_ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter("{asctime}{levelname}{name}{message}", style="{",
                                           rename_fields={"asctime": "time", "levelname": "level",
                                                          "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # replaced by fenced.access


class RequestLog:
    """Pure ASGI middleware: request id in and out, one access log line per request, and the
    request counted in the replica's metrics by its route template and status (the metrics
    live on the app's runtime, which the lifespan creates)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        parent = headers.get(b"traceparent", b"").decode("latin-1")
        ctx = RequestContext(given if REQUEST_ID.match(given) else uuid.uuid4().hex,
                             parent if TRACEPARENT.match(parent) else None)
        token = current.set(ctx)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", ctx.request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            path, method = scope.get("path", ""), scope.get("method", "")
            runtime = getattr(scope["app"].state, "runtime", None) if "app" in scope else None
            if runtime is not None:
                runtime.metrics.observe(method, getattr(scope.get("route"), "path", "unmatched"),
                                        scope.get("path_params", {}), status, seconds)
            if path not in ("/healthz", "/readyz", "/metrics"):
                access_log.info("%s %s %d", method, path, status, extra={
                    "method": method, "path": path, "status": status, "duration_ms": round(seconds * 1000, 2)})
            current.reset(token)
