"""Redis over TLS with an ACL user of least privilege (docs/operations.md): the whole stack
(API replicas, projector, rate limiter) runs on ``rediss://fenced:<password>@...``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from devstack import KafkaBroker, RedisServer
from devstack.proc import free_port
from devstack.stack import Stack, post_body
from devstack.tls import make_certs
from service.auth import create_key

pytestmark = pytest.mark.integration

# the ACL docs/operations.md recommends: fenced's keys and channels only, no admin commands
ACL = "on >{password} ~fenced:* &fenced:* +@all -@admin -@dangerous +info"


@pytest.fixture(scope="module")
def tls_redis(workdir: Path) -> Iterator[tuple[RedisServer, int, str, Path]]:
    certs = make_certs(workdir / "tls")
    password = uuid.uuid4().hex
    tls_port = free_port()
    server = RedisServer(workdir / "redis-tls", port=free_port(), extra_args=[
        "--tls-port", str(tls_port), "--tls-cert-file", str(certs["cert"]), "--tls-key-file", str(certs["key"]),
        "--tls-ca-cert-file", str(certs["ca"]), "--tls-auth-clients", "no",
        "--user", "default", "off", "--user", "fenced", *ACL.format(password=password).split()])
    server.start()
    yield server, tls_port, password, certs["ca"]
    server.stop()


def test_the_stack_runs_on_redis_over_tls_as_a_least_privilege_acl_user(
        workdir: Path, kafka: KafkaBroker, tls_redis: tuple[RedisServer, int, str, Path]) -> None:
    server, tls_port, password, ca = tls_redis
    url = f"rediss://fenced:{password}@127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}"
    plain = redis.Redis(port=server.port)
    with pytest.raises(redis.AuthenticationError):
        plain.ping()  # the default user is off: nobody gets in without the ACL user's password
    keys = workdir / "tls-keys"
    key = create_key(keys, "acme", frozenset({"read", "write"}), "tls")
    # a per-day window too: its counter key outlives the scan for it below (a per-second key expires in 1 s)
    stack = Stack(workdir / "stacks", kafka, server, replicas=1, extra_env={
        "FENCED_REDIS_URL": url, "FENCED_AUTH": "keys", "FENCED_API_KEYS_FILE": str(keys),
        "FENCED_RATE_LIMIT": "100/second;100000/day"}).start()
    try:
        rid = f"tls-{uuid.uuid4().hex[:8]}"
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=stack.urls[0], headers=headers, timeout=20) as http:
            assert http.get("/readyz").status_code == 200
            made = http.post(f"/v1/folders/{rid}/commands", json=post_body("Create", {"name": "over tls"}))
            assert made.status_code == 201, made.text
            assert http.get(f"/v1/folders/{rid}").json()["state"]["name"] == "over tls"
        acl = redis.Redis(host="127.0.0.1", port=tls_port, ssl=True, ssl_ca_certs=str(ca), username="fenced",
                          password=password)
        assert acl.exists(f"fenced:{{folders:acme/{rid}}}:proj") == 1
        assert any(k.startswith(b"fenced:ratelimit") for k in acl.scan_iter(match="fenced:ratelimit*")), \
            "the rate limiter's counters live under fenced:*, inside the ACL"
        with pytest.raises(redis.exceptions.NoPermissionError):
            acl.set("elsewhere", "1")
        with pytest.raises(redis.exceptions.NoPermissionError):
            acl.config_get("*")
        assert "Traceback" not in stack.log("projector") + stack.log("api-0")
    finally:
        stack.stop()
