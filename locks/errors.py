"""Lease errors: one root, specific subclasses carrying the stream and tokens.

``retriable`` says whether the same request may simply be tried again later; the API
maps retriable errors to 503 with Retry-After.
"""

from __future__ import annotations


class LeaseError(Exception):
    """Root of every error of the ``locks`` package."""

    retriable = False

    def __init__(self, message: str, *, stream: str = "", token: int | None = None) -> None:
        super().__init__(message)
        self.stream = stream
        self.token = token

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.args[0]!r}, stream={self.stream!r}, token={self.token})"


class LeaseBusy(LeaseError):
    """Another holder kept the lease until the caller's deadline."""

    retriable = True

    def __init__(self, stream: str, *, retry_after_ms: int) -> None:
        super().__init__(f"lease of {stream} is busy", stream=stream)
        self.retry_after_ms = retry_after_ms


class LeaseLost(LeaseError):
    """The lease expired or was taken over while we held it."""

    retriable = True


class NotBootstrapped(LeaseError):
    """Redis has no token epoch (it is new or lost its data): tokens cannot be handed out."""

    retriable = True


class NotReady(LeaseError):
    """The projection has not caught up with the log in this epoch yet."""

    retriable = True


class RedisUnavailable(LeaseError):
    """Redis could not be reached; the driver's error is the ``__cause__``."""

    retriable = True
