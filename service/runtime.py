"""The process-wide clients of an API replica, started and stopped by the app's lifespan."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import cast

from locks import Leases
from service.api.ratelimit import TenantLimiter
from service.auth import KeyFile
from service.infra.kafka import Appender, ensure_topics
from service.infra.redis_client import AutoPipelineRedis
from service.metrics import Metrics
from service.read.barrier import Barrier, LogEnds
from service.read.projection import AppliedWatcher, Projection
from service.settings import Settings
from service.write.epochs import Epochs
from service.write.writer import Writer

log = logging.getLogger("fenced")


@dataclass
class Runtime:
    settings: Settings
    replica: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self) -> None:
        s = self.settings
        self.redis = cast(AutoPipelineRedis, AutoPipelineRedis.from_url(s.redis_url, max_connections=512,
                                             socket_timeout=max(s.request_deadline_ms / 1000, 5)))
        self.leases = Leases(self.redis, ttl_ms=s.lease_ttl_ms, require_ready=True, replica=self.replica)
        self.projection = Projection(self.redis)
        self.watcher = AppliedWatcher(self.redis)
        self.appender = Appender(s)
        self.epochs = Epochs(self.leases, self.appender)
        self.ends = LogEnds(s)
        self.barrier = Barrier(self.ends, self.projection, self.watcher)
        self.writer = Writer(s, self.leases, self.projection, self.watcher, self.appender, self.epochs,
                             self.barrier)
        self.metrics = Metrics(self.writer)
        self.keys = KeyFile(s.api_keys_file) if s.auth == "keys" else None
        self.limiter = TenantLimiter(s.rate_limit, s.redis_url) if s.auth == "keys" else None

    async def start(self) -> None:
        await ensure_topics(self.settings)
        await self.appender.start()
        await self.leases.start()
        await self.watcher.start()
        await self.ends.start()
        await self.epochs.current()

    async def stop(self) -> None:
        await self.writer.stop()
        await self.watcher.stop()
        await self.ends.stop()
        await self.leases.stop()
        await self.appender.stop()
        await self.redis.aclose()
