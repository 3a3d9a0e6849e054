"""Prometheus metrics of an API replica, served at ``/metrics``.

Request counts by route and status, command latency by type and status, lease wait time,
and the writer's event counters (takeovers, fences, retries, unknown outcomes), read when
scraped so the write path pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from service.infra.redis_client import AutoPipelineRedis
from service.write.writer import Writer

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _WriterCounters(Collector):
    def __init__(self, writer: Writer) -> None:
        self.writer = writer

    def collect(self) -> Iterator[CounterMetricFamily]:
        for name, value in self.writer.counters.items():
            yield CounterMetricFamily(f"fenced_writer_{name}", f"Writer events: {name.replace('_', ' ')}.",
                                      value=value)
        appender = self.writer.appender
        yield CounterMetricFamily("fenced_kafka_batches", "Record batches produced (each may carry several "
                                  "appends, of several streams of one partition).", value=appender.batches)
        yield CounterMetricFamily("fenced_kafka_appends", "Appends (a batch of one stream's commands, or a "
                                  "fence) sent to Kafka.", value=appender.appends)
        redis = self.writer.leases.redis
        if isinstance(redis, AutoPipelineRedis):
            yield CounterMetricFamily("fenced_redis_pipelines", "Automatic pipelines sent to Redis.",
                                      value=redis.pipelines)
            yield CounterMetricFamily("fenced_redis_pipelined_commands", "Commands sent in automatic pipelines.",
                                      value=redis.pipelined_commands)


class Metrics:
    def __init__(self, writer: Writer) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("fenced_http_requests", "HTTP requests by route and status.",
                                ["method", "route", "status"], registry=self.registry)
        self.commands = Histogram("fenced_command_seconds", "Command latency by resource type and status.",
                                  ["type", "status"], buckets=BUCKETS, registry=self.registry)
        self.lease_wait = Histogram("fenced_lease_wait_seconds", "Time a command waited for its lease.",
                                    buckets=BUCKETS, registry=self.registry)
        self.batch = Histogram("fenced_batch_commands", "Commands per batch (group commit) under one lease.",
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry)
        self.registry.register(_WriterCounters(writer))
        writer.on_lease_wait = self.lease_wait.observe
        writer.on_batch = self.batch.observe

    def observe(self, method: str, route: str, path_params: dict[str, str], status: int, seconds: float) -> None:
        """Count one request by its route template and status (and time it, for commands)."""
        self.requests.labels(method, route, str(status)).inc()
        if route.endswith("/commands"):
            self.commands.labels(path_params.get("resource_type", ""), str(status)).observe(seconds)
