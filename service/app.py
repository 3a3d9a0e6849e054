"""``create_app(settings)``: the FastAPI application of one API replica."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.middleware.authentication import AuthenticationMiddleware

from fenced_client.domain import folders  # noqa: F401 - registers the reference type
from fenced_client.domain.plugins import install
from service import logs
from service.api import problems
from service.api.authn import ApiKeys, unauthorized
from service.api.deps import Reader
from service.api.limits import BodyLimit
from service.api.routes import health, router
from service.runtime import Runtime
from service.settings import Settings, get_settings

log = logging.getLogger("fenced")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logs.configure(settings.log_level, settings.log_format)
    install(settings.deciders, settings.types, settings.open)  # each uvicorn worker imports the app too

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            runtime = Runtime(settings)
        except Exception as e:
            log.error("fenced: cannot start: %s", e)
            raise
        try:
            await runtime.start()
        except Exception as e:
            log.error("fenced: cannot start: %s", e)
            await runtime.stop()
            raise
        app.state.runtime = runtime
        if settings.auth == "off":
            log.warning("FENCED_AUTH=off: no API keys, no tenants; for local use only")
        try:
            yield
        finally:
            await runtime.stop()

    # the schema and its UI need a key like every other route but the probes
    app = FastAPI(title="fenced", version="0.1.0", lifespan=lifespan, openapi_url=None, docs_url=None,
                  redoc_url=None, description="A consistent event store on Apache Kafka.")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(principal: Reader) -> dict[str, Any]:
        return app.openapi()

    @app.get("/docs", include_in_schema=False)
    async def docs(principal: Reader) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="fenced API")

    # the last added runs first: log every request, then authenticate, then limit the body
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AuthenticationMiddleware, backend=ApiKeys(lambda conn: conn.app.state.runtime.keys),
                       on_error=unauthorized)
    app.add_middleware(logs.RequestLog)
    problems.install(app)
    app.include_router(health)
    app.include_router(router)
    return app
