"""The Kafka ACLs a fenced deployment needs (docs/operations.md).

Only fenced's principal may write the event topics: the consumer rule trusts every token it
reads, so a record forged with a huge token would fence its stream for ever (every later
write is stale). Other services get read access only. ``fenced kafka-acls`` prints the
``kafka-acls.sh`` commands; :func:`apply` sends them with aiokafka (tests, development).
"""

from __future__ import annotations

from dataclasses import dataclass

from service.settings import Settings

# Kafka's protocol codes (org.apache.kafka.common.acl / resource)
TOPIC, GROUP, CLUSTER = 2, 3, 4
LITERAL, PREFIXED = 3, 4
OPERATIONS = {"Read": 3, "Write": 4, "Create": 5, "Describe": 8, "DescribeConfigs": 10}
ALLOW = 3


@dataclass(frozen=True)
class Acl:
    resource_type: int
    name: str
    pattern: int
    operation: str

    def command(self, principal: str, bootstrap: str) -> str:
        resource = {TOPIC: f"--topic '{self.name}'", GROUP: f"--group '{self.name}'", CLUSTER: "--cluster"}
        pattern = "--resource-pattern-type prefixed " if self.pattern == PREFIXED else ""
        return (f"kafka-acls.sh --bootstrap-server {bootstrap} --add --allow-principal {principal} "
                f"--operation {self.operation} {pattern}{resource[self.resource_type]}")


def fenced_acls(settings: Settings) -> list[Acl]:
    """What the API replicas and the projector need: everything on the topics under the
    prefix (write, read, create, describe), and their consumer group."""
    topics = [Acl(TOPIC, settings.topic_prefix, PREFIXED, op) for op in ("Create", "Describe", "Write", "Read")]
    return [*topics, Acl(GROUP, settings.projector_group, LITERAL, "Read")]


def reader_acls(settings: Settings, group: str) -> list[Acl]:
    """What another service reading the event topics needs (for example with fenced_client.consumer)."""
    return [Acl(TOPIC, settings.topic_prefix, PREFIXED, "Read"), Acl(TOPIC, settings.topic_prefix, PREFIXED,
                                                                     "Describe"),
            Acl(GROUP, group, PREFIXED, "Read")]


async def apply(bootstrap: str, principal: str, acls: list[Acl]) -> None:
    """Create ``acls`` for ``principal`` through an admin connection allowed to (a super user)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.admin import CreateAclsRequest

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for acl in acls:
            response = await admin._send_request(CreateAclsRequest(  # aiokafka has no public create_acls
                acl.resource_type, acl.name, acl.pattern, principal, "*", OPERATIONS[acl.operation], ALLOW))
            for error_code, message in response.creation_responses:
                if error_code:
                    raise RuntimeError(f"creating {acl} for {principal} failed: {error_code} {message}")
    finally:
        await admin.close()
