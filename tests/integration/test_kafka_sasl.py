"""Kafka with SASL/SCRAM and ACLs (docs/operations.md): fenced runs as its own principal with
the ACLs `fenced kafka-acls` prints, and another principal, allowed to read, cannot forge a
record into an event topic (a forged huge token would fence a stream for ever)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import TopicAuthorizationFailedError

from devstack import KafkaBroker, RedisServer
from devstack.proc import free_port
from devstack.stack import Stack, post_body
from devstack.tls import make_certs
from fenced_client.wire import event_headers, partition_for
from service.infra import kafka_acls

pytestmark = pytest.mark.integration

PASSWORDS = {"fenced": uuid.uuid4().hex, "billing": uuid.uuid4().hex}


@pytest.fixture(scope="module")
def sasl_kafka(workdir: Path) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(workdir / "kafka-sasl", port=free_port(), controller_port=free_port(),
                         sasl_port=free_port(), scram_users=PASSWORDS)
    broker.start()
    yield broker
    broker.stop()


def sasl(user: str) -> dict[str, str]:
    return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": user, "sasl_plain_password": PASSWORDS[user]}


def test_fenced_runs_as_its_own_principal_and_nobody_else_can_write(
        workdir: Path, sasl_kafka: KafkaBroker, redis_server: RedisServer) -> None:
    assert sasl_kafka.sasl_port is not None
    bootstrap = f"127.0.0.1:{sasl_kafka.sasl_port}"
    stack = Stack(workdir / "stacks", sasl_kafka, redis_server, replicas=1, extra_env={
        "FENCED_KAFKA_BOOTSTRAP": bootstrap, "FENCED_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "FENCED_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "FENCED_KAFKA_SASL_USERNAME": "fenced",
        "FENCED_KAFKA_SASL_PASSWORD": PASSWORDS["fenced"]})
    settings = stack.settings
    # the harness's PLAINTEXT listener is the super user that grants the ACLs
    asyncio.run(kafka_acls.apply(sasl_kafka.bootstrap, "User:fenced", kafka_acls.fenced_acls(settings)))
    asyncio.run(kafka_acls.apply(sasl_kafka.bootstrap, "User:billing",
                                 kafka_acls.reader_acls(settings, "billing")))
    stack.start()
    try:
        rid = f"sasl-{uuid.uuid4().hex[:8]}"
        with httpx.Client(base_url=stack.urls[0], timeout=20) as http:
            made = http.post(f"/v1/folders/{rid}/commands", json=post_body("Create", {"name": "over sasl"}))
            assert made.status_code == 201, made.text
        topic = settings.topic("folders")
        tp = TopicPartition(topic, partition_for(rid, settings.partitions))

        async def as_billing() -> tuple[bytes | None, Exception | None]:
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="billing-1", **sasl("billing"))
            await consumer.start()
            try:
                consumer.assign([tp])
                consumer.seek(tp, made.json()["events"][0]["offset"])
                read = (await consumer.getone()).key
            finally:
                await consumer.stop()
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **sasl("billing"))
            await producer.start()
            forged = event_headers(source="/evil", subject=rid, event_type="FolderDestroyed", version=2,
                                   token=2**62, command="forged", index=0, count=1)
            try:
                await producer.send_and_wait(topic, b"{}", key=rid.encode(), partition=tp.partition,
                                             headers=forged)
                refused: Exception | None = None
            except TopicAuthorizationFailedError as e:
                refused = e
            finally:
                await producer.stop()
            return read, refused

        read, refused = asyncio.run(as_billing())
        assert read == rid.encode(), "a reader principal can consume the topic"
        assert isinstance(refused, TopicAuthorizationFailedError), "a reader principal cannot write it"
        history = asyncio.run(stack.replay()).histories()[rid]
        assert [e["type"] for e in history] == ["FolderCreated"]
    finally:
        stack.stop()


def test_fenced_talks_to_kafka_over_tls(workdir: Path, redis_server: RedisServer) -> None:
    """FENCED_KAFKA_SECURITY_PROTOCOL=SSL with FENCED_KAFKA_SSL_CAFILE: every client of the
    service (appender, topic admin, projector) verifies the broker against the given CA."""
    certs = make_certs(workdir / "kafka-tls-certs")
    tls_port = free_port()
    broker = KafkaBroker(workdir / "kafka-tls", port=free_port(), controller_port=free_port(),
                         tls=(tls_port, certs["pem"], certs["ca"]))
    broker.start()
    try:
        stack = Stack(workdir / "stacks", broker, redis_server, replicas=1, extra_env={
            "FENCED_KAFKA_BOOTSTRAP": f"127.0.0.1:{tls_port}", "FENCED_KAFKA_SECURITY_PROTOCOL": "SSL",
            "FENCED_KAFKA_SSL_CAFILE": str(certs["ca"])}).start()
        try:
            rid = f"tls-{uuid.uuid4().hex[:8]}"
            with httpx.Client(base_url=stack.urls[0], timeout=20) as http:
                made = http.post(f"/v1/folders/{rid}/commands", json=post_body("Create", {"name": "over tls"}))
                assert made.status_code == 201, made.text
                assert http.get(f"/v1/folders/{rid}").json()["version"] == 1
        finally:
            stack.stop()
    finally:
        broker.stop()
