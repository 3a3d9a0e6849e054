"""Real servers for development and tests: an Apache Kafka broker (KRaft) and redis-server.

Nothing here is mocked: the broker runs from the Apache Kafka jars fetched from Maven
Central, and Redis is Debian's ``redis-server``. Each server gets its own ports and data
directory, so a test session never disturbs a running ``make up``.
"""

from devstack.errors import StackError
from devstack.kafka import KafkaBroker, ensure_kafka_jars
from devstack.redis import RedisServer, ensure_redis_server

__all__ = ["KafkaBroker", "RedisServer", "StackError", "ensure_kafka_jars", "ensure_redis_server"]
