"""Authentication, tenant isolation, limits and request ids on the real stack (issue #8).

Two API replicas with ``FENCED_AUTH=keys`` and a keys file; every route is called with no
key, a wrong key, a key without the scope, and another tenant's key.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from devstack import KafkaBroker, RedisServer
from devstack.stack import Stack, post_body
from fenced_client.wire import partition_for
from service.auth import create_key

pytestmark = pytest.mark.integration


class Keys:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.acme = create_key(path, "acme", frozenset({"read", "write"}), "acme-app")
        self.acme_reader = create_key(path, "acme", frozenset({"read"}), "acme-reader")
        self.globex = create_key(path, "globex", frozenset({"read", "write"}), "globex-app")
        self.ops = create_key(path, "ops", frozenset({"metrics"}), "prometheus")


@pytest.fixture(scope="module")
def keys(workdir: Path) -> Keys:
    return Keys(workdir / f"keys-{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="module")
def secure(workdir: Path, kafka: KafkaBroker, redis_server: RedisServer, keys: Keys) -> Iterator[Stack]:
    s = Stack(workdir / "stacks", kafka, redis_server, extra_env={
        "FENCED_AUTH": "keys", "FENCED_API_KEYS_FILE": str(keys.path), "FENCED_RATE_LIMIT": "",
        "FENCED_LOG_LEVEL": "INFO", "FENCED_MAX_JSON_DEPTH": "8"}).start()
    yield s
    s.stop()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def fid() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/folders/{id}/commands", post_body("Update", {"name": "x"})),
    ("GET", "/v1/folders/{id}", None),
    ("GET", "/v1/folders/{id}/events", None),
    ("GET", "/metrics", None),
    ("GET", "/openapi.json", None),
    ("GET", "/docs", None),
]


async def test_probes_need_no_key(secure: Stack) -> None:
    async with httpx.AsyncClient(base_url=secure.urls[0]) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200


@pytest.mark.parametrize("credentials", ["none", "wrong", "malformed", "basic"])
async def test_every_other_route_answers_401_without_a_valid_key(secure: Stack, keys: Keys, credentials: str) -> None:
    headers = {"none": {}, "wrong": auth("fk_" + "A" * 43), "malformed": {"Authorization": "Bearer"},
               "basic": {"Authorization": "Basic YWNtZTpzZWNyZXQ="}}[credentials]
    rid = fid()
    async with httpx.AsyncClient(base_url=secure.urls[0]) as http:
        for method, path, body in ROUTES:
            r = await http.request(method, path.format(id=rid), json=body, headers=headers)
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert r.headers["content-type"] == "application/problem+json"
            assert "API key" in r.json()["detail"]
    replay = await secure.replay()
    assert not [s for s in replay.replay.streams if s.endswith(rid)], "a refused write appended nothing"


@pytest.mark.parametrize("request_kind", ["malformed JSON", "wrong schema", "body too large", "unknown path",
                                          "wrong method", "bad id"])
async def test_without_a_key_the_answer_is_401_whatever_else_is_wrong(secure: Stack, request_kind: str) -> None:
    """Authentication comes before body parsing, body limits and routing: a stranger learns
    nothing about what the API would have made of the request."""
    rid = fid()
    method, path, kwargs = {
        "malformed JSON": ("POST", f"/v1/folders/{rid}/commands",
                           {"content": b'{"name": ', "headers": {"content-type": "application/json"}}),
        "wrong schema": ("POST", f"/v1/folders/{rid}/commands", {"json": {"nme": 1}}),
        "body too large": ("POST", f"/v1/folders/{rid}/commands", {"content": b"x" * 600_000}),
        "unknown path": ("GET", "/admin/users", {}),
        "wrong method": ("DELETE", f"/v1/folders/{rid}", {}),
        "bad id": ("GET", "/v1/folders/" + "%00" * 3, {}),
    }[request_kind]
    async with httpx.AsyncClient(base_url=secure.urls[0]) as http:
        r = await http.request(method, path, **kwargs)
    assert r.status_code == 401, (request_kind, r.status_code, r.text)
    assert r.headers["www-authenticate"].startswith("Bearer") and "API key" in r.json()["detail"]


async def test_a_key_without_the_scope_gets_403(secure: Stack, keys: Keys) -> None:
    rid = fid()
    async with httpx.AsyncClient(base_url=secure.urls[0]) as http:
        r = await http.post(f"/v1/folders/{rid}/commands", json=post_body("Create", {"name": "a"}),
                            headers=auth(keys.acme_reader))
        assert r.status_code == 403 and "'write' scope" in r.json()["detail"], r.text
        assert (await http.get(f"/v1/folders/{rid}", headers=auth(keys.acme_reader))).status_code == 404
        assert (await http.get("/metrics", headers=auth(keys.acme))).status_code == 403
        assert (await http.post(f"/v1/folders/{rid}/commands", json=post_body("Create", {"name": "a"}),
                                headers=auth(keys.ops))).status_code == 403
        m = await http.get("/metrics", headers=auth(keys.ops))
        assert m.status_code == 200 and "fenced_http_requests_total" in m.text
        assert (await http.get("/openapi.json", headers=auth(keys.acme_reader))).status_code == 200


async def test_the_projectors_metrics_need_a_key_with_the_metrics_scope(secure: Stack, keys: Keys) -> None:
    """The projector's /metrics (its own port) checks the same keys file as the API replicas,
    before it looks at the method or the path."""
    url = f"http://127.0.0.1:{secure.env['FENCED_PROJECTOR_METRICS_PORT']}"
    async with httpx.AsyncClient(base_url=url) as http:
        for headers in ({}, auth("fk_" + "A" * 43), {"Authorization": "Basic YWNtZTpzZWNyZXQ="}):
            for path in ("/metrics", "/elsewhere"):
                r = await http.get(path, headers=headers)
                assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), r.text
                assert "fenced_projector" not in r.text
        r = await http.get("/metrics", headers=auth(keys.acme))
        assert r.status_code == 403 and "'metrics' scope" in r.json()["detail"], r.text
        r = await http.get("/metrics", headers=auth(keys.ops))
        assert r.status_code == 200 and "fenced_projector_ready" in r.text
        assert r.headers["content-type"].startswith("text/plain")
        assert (await http.head("/metrics", headers=auth(keys.ops))).status_code == 200
        assert (await http.post("/metrics", headers=auth(keys.ops))).status_code == 405
        assert (await http.get("/elsewhere", headers=auth(keys.ops))).status_code == 404
    # a connection that never sends a request is closed (5 s), not held open for ever
    reader, writer = await asyncio.open_connection("127.0.0.1", int(secure.env["FENCED_PROJECTOR_METRICS_PORT"]))
    async with asyncio.timeout(15):
        assert await reader.read() == b""
    writer.close()
    assert secure.services.procs["projector"].poll() is None


async def test_tenants_cannot_read_write_or_learn_of_each_others_resources(secure: Stack, keys: Keys) -> None:
    rid = fid()
    a, b = auth(keys.acme), auth(keys.globex)
    async with httpx.AsyncClient(base_url=secure.urls[0]) as http:
        made = await http.post(f"/v1/folders/{rid}/commands", json=post_body("Create", {"name": "acme's"}),
                               headers={**a, "Idempotency-Key": f"k-{rid}"})
        assert made.status_code == 201, made.text
        # every route, as the other tenant: 404, as if the folder did not exist
        assert (await http.get(f"/v1/folders/{rid}", headers=b)).status_code == 404
        assert (await http.get(f"/v1/folders/{rid}/events", headers=b)).status_code == 404
        for name in ("Update", "Destroy"):
            r = await http.post(f"/v1/folders/{rid}/commands", json=post_body(name, {"name": "x"}), headers=b)
            assert r.status_code == 404, (name, r.text)
        # the same Idempotency-Key with another body is not "already used" across tenants
        own = await http.post(f"/v1/folders/{rid}/commands", json=post_body("Create", {"name": "globex's"}),
                              headers={**b, "Idempotency-Key": f"k-{rid}"})
        assert own.status_code == 201 and own.json()["version"] == 1, own.text
        # ... and acme's folder is untouched
        mine = (await http.get(f"/v1/folders/{rid}", headers=a)).json()
        assert mine["version"] == 1 and mine["state"]["name"] == "acme's" and mine["id"] == rid
        theirs = (await http.get(f"/v1/folders/{rid}", headers=b)).json()
        assert theirs["state"]["name"] == "globex's" and theirs["id"] == rid
        history = (await http.get(f"/v1/folders/{rid}/events", headers=b)).json()
        assert [e["data"]["name"] for e in history["events"]] == ["globex's"]
    histories = (await secure.replay()).histories()
    assert [e["data"]["name"] for e in histories[f"acme/{rid}"]] == ["acme's"]
    assert [e["data"]["name"] for e in histories[f"globex/{rid}"]] == ["globex's"]
    assert rid not in histories, "every stream of a tenant is keyed <tenant>/<id> in Kafka"


async def test_keys_are_hashed_at_rest_and_created_or_revoked_without_a_restart(secure: Stack, keys: Keys) -> None:
    text = keys.path.read_text()
    for key in (keys.acme, keys.globex, keys.ops):
        assert key not in text and key[3:] not in text
    env = {"FENCED_API_KEYS_FILE": str(keys.path), "PATH": "/usr/bin:/bin"}
    made = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "service.cli", "keys", "create", "--tenant", "initech",
                         "--name", f"new-{uuid.uuid4().hex[:6]}"], env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    new_key = made.stdout.strip()
    name = made.stderr.split("'")[1]
    rid = fid()
    async with httpx.AsyncClient(base_url=secure.urls[1]) as http:
        deadline = time.monotonic() + 30
        while True:  # the replicas re-read the file within a second
            r = await http.post(f"/v1/folders/{rid}/commands", json=post_body("Create", {"name": "n"}),
                                headers=auth(new_key))
            if r.status_code == 201 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert r.status_code == 201, r.text
        revoked = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "service.cli", "keys", "revoke",
                                                           name], env=env, capture_output=True, text=True)
        assert revoked.returncode == 0, revoked.stderr
        deadline = time.monotonic() + 30
        while (await http.get(f"/v1/folders/{rid}", headers=auth(new_key))).status_code != 401:
            assert time.monotonic() < deadline, "the revoked key still works"
            await asyncio.sleep(0.2)


async def test_input_limits_answer_422_with_the_reason(secure: Stack, keys: Keys) -> None:
    rid = fid()
    deep: Any = "leaf"
    for _ in range(10):
        deep = {"d": deep}
    async with httpx.AsyncClient(base_url=secure.urls[0], headers=auth(keys.acme)) as http:
        r = await http.post(f"/v1/folders/{rid}/commands", json={"name": "Create", "data": {"name": "a", "x": deep}})
        assert r.status_code == 422 and "FENCED_MAX_JSON_DEPTH" in r.json()["detail"], r.text
        r = await http.post(f"/v1/folders/{'x' * 200}/commands", json=post_body("Create", {"name": "a"}))
        assert r.status_code == 422 and "128 characters" in r.json()["detail"], r.text
        r = await http.post("/v1/folders/a%2Fb/commands", json=post_body("Create", {"name": "a"}))
        assert r.status_code in (404, 422), r.text
        r = await http.post(f"/v1/folders/{rid}/commands", content=b"{" * 5000,
                            headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, r.text
        assert (await http.get(f"/v1/folders/{rid}")).status_code == 404, "nothing was written"


async def test_the_request_id_is_answered_logged_and_carried_by_the_events(secure: Stack, keys: Keys) -> None:
    rid, request_id = fid(), f"req-{uuid.uuid4().hex}"
    traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    async with httpx.AsyncClient(base_url=secure.urls[0], headers=auth(keys.acme)) as http:
        r = await http.post(f"/v1/folders/{rid}/commands", json=post_body("Create", {"name": "a"}),
                            headers={"X-Request-ID": request_id, "traceparent": traceparent})
        assert r.status_code == 201 and r.headers["x-request-id"] == request_id
        offset = r.json()["events"][0]["offset"]
        other = await http.get(f"/v1/folders/{rid}")
        assert len(other.headers["x-request-id"]) == 32, "a request without an id gets one"
    topic = secure.settings.topic("folders")
    tp = TopicPartition(topic, partition_for(f"acme/{rid}", secure.settings.partitions))
    consumer = AIOKafkaConsumer(bootstrap_servers=secure.kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        record = (await consumer.getone())
    finally:
        await consumer.stop()
    headers = dict(record.headers)
    assert headers["ce_fencedrequestid"] == request_id.encode()
    assert headers["ce_traceparent"] == traceparent.encode()
    assert record.key == f"acme/{rid}".encode()
    lines = [json.loads(line) for line in secure.log("api-0").splitlines() if line.startswith("{")]
    access = [entry for entry in lines if entry.get("request_id") == request_id]
    assert access and access[0]["logger"] == "fenced.access" and access[0]["status"] == 201
    assert access[0]["tenant"] == "acme" and access[0]["path"] == f"/v1/folders/{rid}/commands"


def test_a_tenant_over_its_rate_limit_gets_429_with_retry_after_on_every_replica(
        workdir: Path, kafka: KafkaBroker, redis_server: RedisServer, keys: Keys) -> None:
    """The budget is per tenant and shared by the replicas (counted in Redis)."""
    stack = Stack(workdir / "stacks", kafka, redis_server, extra_env={
        "FENCED_AUTH": "keys", "FENCED_API_KEYS_FILE": str(keys.path), "FENCED_RATE_LIMIT": "6/minute"}).start()
    try:
        codes: list[int] = []
        retry_after: list[str] = []
        with httpx.Client() as http:
            for i in range(16):
                r = http.get(f"{stack.urls[i % 2]}/v1/folders/none", headers=auth(keys.acme))
                codes.append(r.status_code)
                if r.status_code == 429:
                    retry_after.append(r.headers["retry-after"])
                    assert "rate limit" in r.json()["detail"]
            other = http.get(f"{stack.urls[0]}/v1/folders/none", headers=auth(keys.globex))
        assert codes.count(404) <= 6 and codes.count(429) >= 10, codes
        assert set(codes) <= {404, 429}
        assert all(30 <= int(v) <= 60 for v in retry_after), retry_after  # the rest of the minute's window
        assert other.status_code == 404, "another tenant has its own budget"
    finally:
        stack.stop()


def test_the_sdk_sends_its_api_key_and_maps_401_and_403(secure: Stack, keys: Keys) -> None:
    from fenced_client import FencedClient, Forbidden, Unauthorized

    rid = fid()
    with FencedClient(secure.urls, api_key=keys.acme, deadline=10) as c:
        assert c.send("folders", rid, "Create", {"name": "via sdk"}).version == 1
        assert c.get("folders", rid).state["name"] == "via sdk"
    with FencedClient(secure.urls, deadline=10) as c, pytest.raises(Unauthorized):
        c.get("folders", rid)
    with FencedClient(secure.urls, api_key=keys.acme_reader, deadline=10) as c:
        assert c.get("folders", rid).version == 1
        with pytest.raises(Forbidden):
            c.send("folders", rid, "Update", {"name": "nope"})
