from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import KafkaBroker, RedisServer
from devstack.stack import Stack


@pytest.fixture(scope="module")
def stack(workdir: Path, kafka: KafkaBroker, redis_server: RedisServer) -> Iterator[Stack]:
    s = Stack(workdir / "stacks", kafka, redis_server).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def leased_stack(workdir: Path, kafka: KafkaBroker, redis_server: RedisServer) -> Iterator[Stack]:
    s = Stack(workdir / "stacks", kafka, redis_server, ack_mode="leased").start()
    yield s
    s.stop()
