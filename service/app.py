"""``create_app(settings)``: the FastAPI application of one API replica."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.api import problems
from service.api.limits import BodyLimit
from service.api.routes import health, router
from service.domain import folders  # noqa: F401 - registers the reference type
from service.metrics import RequestMetrics
from service.runtime import Runtime
from service.settings import Settings, get_settings

log = logging.getLogger("fenced")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(settings)
        try:
            await runtime.start()
        except Exception as e:
            log.error("fenced: cannot start: %s", e)
            await runtime.stop()
            raise
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="fenced", version="0.1.0", lifespan=lifespan,
                  description="A consistent event store on Apache Kafka.")
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics)
    problems.install(app)
    app.include_router(health)
    app.include_router(router)
    return app
