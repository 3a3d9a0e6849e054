"""The Python SDK of fenced: HTTP clients with safe retries, typed errors, and a consumer
that reads a fenced topic with the consumer rule.

    from sdk import FencedClient, AsyncFencedClient
    from sdk.consumer import AcceptedEvents   # reads Kafka directly (aiokafka)

See sdk/README.md.
"""

from sdk.aio import AsyncFencedClient
from sdk.client import FencedClient
from sdk.errors import (
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
from sdk.models import CommandResult, Event, EventRef, Resource
from sdk.retry import RetryPolicy

__all__ = [
    "AsyncFencedClient",
    "Busy",
    "CommandResult",
    "Conflict",
    "Event",
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
