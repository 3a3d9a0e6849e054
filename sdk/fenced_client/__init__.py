"""The Python SDK of fenced: HTTP clients with safe retries, typed errors, and a consumer
that reads a fenced topic with the consumer rule.

    from fenced_client import FencedClient, AsyncFencedClient, EventData
    from fenced_client.consumer import AcceptedEvents      # reads Kafka directly (aiokafka)
    from fenced_client.folders import Folders              # the folders type's commands, an example
    PERSISTENCE_MODULE=fenced_client.eventsourcing         # pyeventsourcing on fenced

See sdk/README.md and docs/client.md.
"""

from fenced_client.aio import AsyncFencedClient
from fenced_client.client import FencedClient
from fenced_client.errors import (
    Busy,
    Conflict,
    FencedError,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    Unauthorized,
)
from fenced_client.models import CommandResult, Event, EventData, EventRef, Resource
from fenced_client.retry import RetryPolicy

__all__ = [
    "AsyncFencedClient",
    "Busy",
    "CommandResult",
    "Conflict",
    "Event",
    "EventData",
    "EventRef",
    "FencedClient",
    "FencedError",
    "Forbidden",
    "Gone",
    "InvalidInput",
    "NotFound",
    "OutcomeUnknown",
    "RateLimited",
    "Resource",
    "RetryPolicy",
    "Unauthorized",
]
