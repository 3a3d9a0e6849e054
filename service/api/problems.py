"""Errors to RFC 9457 ``application/problem+json``: the one place that maps them."""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.errors import FencedError

log = logging.getLogger("fenced.api")
PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, *, problem_type: str = "about:blank", **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": problem_type, "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    headers = {}
    if (retry := extra.get("retry_after")) is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry)))
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="fenced"'

    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def allowed(app: FastAPI, path: str) -> set[str]:
    """Every method the API declares for ``path`` (from its OpenAPI paths, compiled once)."""
    table: list[tuple[re.Pattern[str], set[str]]] | None = getattr(app.state, "allowed_methods", None)
    if table is None:
        table = [(re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"),
                  {m.upper() for m in item})
                 for template, item in app.openapi().get("paths", {}).items()]
        app.state.allowed_methods = table
    return {m for pattern, methods in table if pattern.match(path) for m in methods}


def install(app: FastAPI) -> None:
    @app.exception_handler(FencedError)
    async def fenced_error(request: Request, exc: FencedError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, problem_type=exc.type,
                       current_version=exc.current_version, retry_after=exc.retry_after_s)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
                  for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid request"
        return problem(422, "Invalid input", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = problem(exc.status_code, "HTTP error", str(exc.detail))
        response.headers.update(exc.headers or {})  # e.g. the Allow of a 405 (RFC 9110)
        if exc.status_code == 405:  # Starlette names the first route of the path only; a path may have several
            methods = allowed(app, request.url.path)
            if methods:
                response.headers["Allow"] = ", ".join(sorted(methods))
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem(500, "Internal error", "unexpected error; the request may be retried with the "
                       "same Idempotency-Key")
