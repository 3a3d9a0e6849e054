"""Real servers for the integration tests: started once per session on private ports.

A server that cannot start fails the tests that need it (never a skip): CI must run them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from devstack import KafkaBroker, RedisServer
from devstack.proc import free_port


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="fenced-tests-"))
    yield root
    if not os.environ.get("FENCED_KEEP_TEST_DATA"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka(workdir: Path) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(workdir / "kafka", port=free_port(), controller_port=free_port())
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir / "redis", port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url, max_connections=400)
    await client.flushdb()
    yield client
    await client.aclose()
