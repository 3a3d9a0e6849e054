"""Typed errors of the SDK, mapped from the API's RFC 9457 ``application/problem+json``.

One root, :class:`FencedError`, with one subclass per thing a caller may want to catch.
``retriable`` says whether sending the *same* request again (same Idempotency-Key) can
succeed; the clients already did that until their deadline before raising one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

PROBLEM_UNKNOWN_RESOURCE_TYPE = "urn:fenced:problem:unknown-resource-type"
"""404: the server does not serve this resource type."""
PROBLEM_NO_SUCH_RESOURCE = "urn:fenced:problem:no-such-resource"
"""404: the type is served, and the resource has no accepted event."""
PROBLEM_OPEN_TYPE = "urn:fenced:problem:open-type"
"""422: a command to an open type (append events instead)."""
PROBLEM_DECIDED_TYPE = "urn:fenced:problem:decided-type"
"""422: an append to a decided type (send commands instead)."""


class FencedError(Exception):
    """Root of the SDK's errors: a problem the API answered, or a call that got no answer.

    ``status`` is the HTTP status, or ``None`` when no answer came at all (connection
    refused, reset, timed out). ``current_version`` is the resource's version when the API
    said it (409, and the domain's 404/410). ``idempotency_key`` is the key a write was
    sent with: send the same command with it again to learn its outcome.
    """

    retriable: ClassVar[bool] = False

    def __init__(self, status: int | None, title: str, detail: str, current_version: int | None = None, *,
                 retry_after: float | None = None, idempotency_key: str | None = None,
                 type: str = "about:blank") -> None:
        super().__init__(f"{status if status is not None else 'no answer'} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.current_version = current_version
        self.retry_after = retry_after
        self.idempotency_key = idempotency_key
        self.type = type
        """The problem's ``type``: ``about:blank``, or one of the ``PROBLEM_*`` of this module."""

    def __repr__(self) -> str:
        parts = [f"status={self.status!r}", f"title={self.title!r}", f"detail={self.detail!r}"]
        if self.current_version is not None:
            parts.append(f"current_version={self.current_version!r}")
        if self.retry_after is not None:
            parts.append(f"retry_after={self.retry_after!r}")
        if self.idempotency_key is not None:
            parts.append(f"idempotency_key={self.idempotency_key!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


class NotFound(FencedError):
    """404: the resource type is not served, or the resource does not exist."""


class Gone(FencedError):
    """410: the resource was destroyed; no command applies to it any more."""


class Conflict(FencedError):
    """409: ``expected_version`` differs from ``current_version``, or the command cannot
    apply in the resource's state (Create on an existing resource)."""


class InvalidInput(FencedError):
    """422 (the command, its data, the id or the Idempotency-Key is invalid) and 413 (body
    too large). Sending the same request again cannot succeed."""


class Unauthorized(FencedError):
    """401: no API key, or one that is unknown or revoked. Pass ``api_key=`` to the client."""


class Forbidden(FencedError):
    """403: the API key lacks the scope (read, write, metrics) the call needs."""


class RateLimited(FencedError):
    """429: the tenant is over its rate limit. Retried after the answer's Retry-After."""

    retriable = True


class Busy(FencedError):
    """503 "Busy" or "Unavailable": the command was not applied (the resource is
    contended, or Redis/Kafka/the projection is not available). Safe to retry."""

    retriable = True


class OutcomeUnknown(FencedError):
    """The command may or may not have been applied: the API answered 503 "Outcome
    unknown", or the client gave up after an attempt whose answer never came. Send it again
    with ``idempotency_key`` to learn the outcome: it is never applied twice."""

    retriable = True


_BY_STATUS: Mapping[int, type[FencedError]] = {401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
                                               410: Gone, 413: InvalidInput, 422: InvalidInput, 429: RateLimited}


GATEWAY_LOST = frozenset({502, 504})
"""A gateway's "bad gateway"/"gateway timeout": the request may have reached a replica."""


def error_class(status: int, title: str) -> type[FencedError]:
    if status == 503:
        return OutcomeUnknown if title.strip().lower() == "outcome unknown" else Busy
    if status in GATEWAY_LOST:
        return OutcomeUnknown
    return _BY_STATUS.get(status, FencedError)


def from_problem(status: int, body: Any, text: str, *, retry_after: float | None = None,
                 idempotency_key: str | None = None) -> FencedError:
    """The error for an answer with a non-2xx ``status``; ``body`` is its parsed JSON or None.

    Tolerates answers that are not problem+json (a proxy's HTML 502, an empty 503): a
    gateway's 502/504 may have passed the request on, so it maps to :class:`OutcomeUnknown`.
    """
    problem: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
    title = problem.get("title")
    if not isinstance(title, str):
        title = "Unavailable" if status == 503 else f"HTTP {status}"
    detail = problem.get("detail")
    if not isinstance(detail, str):
        detail = text.strip()[:500] or title
    current = problem.get("current_version")
    if not isinstance(current, int) or isinstance(current, bool):
        current = None
    if retry_after is None:
        raw = problem.get("retry_after")
        if isinstance(raw, int | float) and not isinstance(raw, bool) and raw >= 0:
            retry_after = float(raw)
    kind = problem.get("type")
    return error_class(status, title)(status, title, detail, current, retry_after=retry_after,
                                      idempotency_key=idempotency_key,
                                      type=kind if isinstance(kind, str) else "about:blank")
