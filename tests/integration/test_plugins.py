"""Deciders as plugins (issue #13): a team's own domain served by an unmodified fenced.

The example domain ``examples/orders`` is loaded by ``FENCED_DECIDERS`` into the API replicas
and the projector of a real stack; bad plugins stop ``fenced serve`` with one clear line.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack import KafkaBroker, RedisServer
from devstack.stack import Stack

pytestmark = pytest.mark.integration

PLUGIN = {"FENCED_RESOURCE_TYPES": "folders,orders", "FENCED_DECIDERS": "examples.orders.domain:ORDERS"}
PLACE = {"lines": [{"sku": "tea", "quantity": 2}], "total": 700}


@pytest.fixture(scope="module")
def orders_stack(workdir: Path, kafka: KafkaBroker, redis_server: RedisServer) -> Iterator[Stack]:
    s = Stack(workdir / "stacks", kafka, redis_server, replicas=1, extra_env=PLUGIN).start()
    yield s
    s.stop()


def test_an_unmodified_fenced_serves_the_orders_example(orders_stack: Stack) -> None:
    url = orders_stack.urls[0]
    oid = f"o-{uuid.uuid4().hex[:8]}"

    def send(name: str, data: dict[str, object] | None = None) -> httpx.Response:
        return httpx.post(f"{url}/v1/orders/{oid}/commands", json={"name": name, "data": data or {}}, timeout=20)

    assert send("Ship").status_code == 404
    assert send("Place", PLACE).status_code == 201
    refused = send("Ship")
    assert (refused.status_code, refused.json()["detail"]) == (409, "an order is shipped only once it is paid")
    assert refused.json()["current_version"] == 1
    assert send("Pay", {"amount": 700}).status_code == 201
    assert send("Pay", {"amount": 700}).status_code == 409
    assert send("Ship").json()["version"] == 3
    assert send("Cancel").status_code == 409
    got = httpx.get(f"{url}/v1/orders/{oid}", timeout=20).json()
    assert (got["version"], got["state"]["shipped"], got["destroyed"]) == (3, True, False)
    events = httpx.get(f"{url}/v1/orders/{oid}/events", timeout=20).json()["events"]
    assert [e["type"] for e in events] == ["OrderPlaced", "OrderPaid", "OrderShipped"]
    # folders are still served beside it
    assert httpx.post(f"{url}/v1/folders/{oid}/commands", json={"name": "Create", "data": {"name": "x"}},
                      timeout=20).status_code == 201


def test_the_sdk_and_its_consumer_find_the_plugin_by_name(orders_stack: Stack,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from fenced_client import FencedClient, Gone
    from fenced_client.consumer import AcceptedEvents

    oid = f"o-{uuid.uuid4().hex[:8]}"
    with FencedClient(orders_stack.urls[0]) as c:
        assert c.send("orders", oid, "Place", PLACE).version == 1
        assert c.send("orders", oid, "Cancel").version == 2
        with pytest.raises(Gone) as refused:
            c.send("orders", oid, "Pay", {"amount": 700})
        assert refused.value.current_version == 2
        assert c.get("orders", oid).state["cancelled"] is True
        assert [e.type for e in c.events("orders", oid)] == ["OrderPlaced", "OrderCancelled"]

    async def consume() -> list[tuple[str, int, str]]:
        got = []
        async with AcceptedEvents(orders_stack.kafka.bootstrap, orders_stack.settings.topic("orders"),
                                  orders_stack.settings.partitions, decider="orders",
                                  stop_at_end=True) as events:
            async for e in events:
                if e.resource_id == oid:
                    got.append((e.resource_id, e.version, e.type))
        return got

    # the consumer finds "orders" as the server does: FENCED_DECIDERS (here from the environment)
    monkeypatch.setenv("FENCED_DECIDERS", PLUGIN["FENCED_DECIDERS"])
    assert asyncio.run(consume()) == [(oid, 1, "OrderPlaced"), (oid, 2, "OrderCancelled")]
    with pytest.raises(LookupError, match="no decider for resource type 'carts'"):
        AcceptedEvents(orders_stack.kafka.bootstrap, "fenced.carts", 1, decider="carts")


def test_fenced_verify_finds_the_plugin_the_same_way(orders_stack: Stack) -> None:
    done = subprocess.run([sys.executable, "-m", "service.cli", "verify"], env={**os.environ, **orders_stack.env},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert orders_stack.settings.topic("orders") in done.stdout


@pytest.mark.parametrize(("deciders", "types", "expected"), [
    ("nope.nothing:ORDERS", "folders", "cannot import 'nope.nothing': ModuleNotFoundError"),
    ("examples.orders.domain:MISSING", "folders", "'examples.orders.domain' has no attribute 'MISSING'"),
    ("examples.orders.domain", "folders", "is not module:attribute"),
    ("tests.integration.plugin_samples:NOT_A_DECIDER", "folders", "is a dict, not a fenced Decider"),
    ("tests.integration.plugin_samples:FOLDERS_AGAIN", "folders", "resource type 'folders' is declared twice"),
    ("", "folders,orders", "no decider for resource type 'orders'"),
])
def test_a_bad_plugin_stops_startup_with_one_line(deciders: str, types: str, expected: str) -> None:
    env = {**os.environ, "FENCED_DECIDERS": deciders, "FENCED_RESOURCE_TYPES": types, "FENCED_AUTH": "off",
           "FENCED_KAFKA_BOOTSTRAP": "127.0.0.1:1"}  # never reached: the plugin check comes first
    done = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--port", "1"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr
