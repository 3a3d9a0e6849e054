"""A whole fenced stack: the projector and API replicas as real processes on a Kafka broker
and a redis-server, isolated by topic prefix and Redis db (tests, benchmarks, chaos runs)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import KafkaBroker, RedisServer
from devstack.proc import free_port
from devstack.services import Services
from fenced_client import domain
from fenced_client.domain import folders  # noqa: F401 - registers the reference type
from service.read.replay import TopicReplay, replay_topic
from service.settings import Settings

_dbs = itertools.count(1)


@contextmanager
def servers(root: Path) -> Iterator[tuple[KafkaBroker, RedisServer]]:
    """A Kafka broker and a redis-server on free ports with data under ``root``; both are
    stopped when the block ends, also on failure or Ctrl-C (benchmarks, load tests)."""
    with ExitStack() as cleanup:
        kafka = KafkaBroker(root / "kafka", port=free_port(), controller_port=free_port())
        redis = RedisServer(root / "redis", port=free_port())
        cleanup.callback(kafka.stop)
        kafka.start()
        cleanup.callback(redis.stop)
        redis.start()
        yield kafka, redis


@dataclass
class Stack:
    root: Path
    kafka: KafkaBroker
    redis: RedisServer
    ack_mode: str = "verified"
    replicas: int = 2
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.db = next(_dbs)
        self.prefix = f"t{uuid.uuid4().hex[:6]}."
        self.env = {
            "FENCED_KAFKA_BOOTSTRAP": self.kafka.bootstrap,
            "FENCED_REDIS_URL": f"redis://127.0.0.1:{self.redis.port}/{self.db}",
            "FENCED_TOPIC_PREFIX": self.prefix, "FENCED_PARTITIONS": "4",
            "FENCED_ACK_MODE": self.ack_mode, "FENCED_LEASE_TTL_MS": "2000",
            "FENCED_REQUEST_DEADLINE_MS": "10000", "FENCED_FAULT_INJECTION": "true",
            "FENCED_LOG_LEVEL": "WARNING", "FENCED_PROJECTOR_GROUP": f"proj-{self.prefix}",
            "FENCED_PROJECTOR_METRICS_PORT": str(free_port()),
            "FENCED_AUTH": "off",  # tests of authentication turn it on through extra_env
            **self.extra_env,
        }
        self.services = Services(self.root / self.prefix.rstrip("."), self.env)
        self.urls: list[str] = []
        self.settings = Settings.model_validate({k.removeprefix("FENCED_").lower(): v for k, v in self.env.items()})

    def start(self) -> Stack:
        try:
            self.services.start_projector()
            for i in range(self.replicas):
                port = free_port()
                self.services.start_api(f"api-{i}", port)
                self.urls.append(f"http://127.0.0.1:{port}")
            for i, url in enumerate(self.urls):
                self.services.wait_ready(url, 90, name=f"api-{i}")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.services.stop_all()

    async def replay(self, *, group: bool = False) -> TopicReplay:
        decider = domain.get("folders")
        assert decider is not None
        return await replay_topic(self.kafka.bootstrap, self.settings.topic("folders"), decider,
                                  self.settings.partitions, group=group)

    def log(self, name: str) -> str:
        return (self.services.root / f"{name}.log").read_text(errors="replace")


def post_body(name: str, data: dict[str, Any] | None = None, expected_version: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "data": data or {}}
    if expected_version is not None:
        body["expected_version"] = expected_version
    return body
