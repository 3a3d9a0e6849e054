"""Errors the API answers with: one root carrying its HTTP status, mapped in one place.

``retriable`` errors answer 503 with Retry-After: the same request (same Idempotency-Key)
may be sent again and will never append twice.
"""

from __future__ import annotations

PROBLEM_TYPE = "urn:fenced:problem:"
"""Prefix of the problem ``type`` of the answers a client may need to tell apart by more than
their status (wire-format.md §9); every other answer's is ``about:blank``."""


class FencedError(Exception):
    """Root of the service's errors; ``status``/``title`` become RFC 9457 problem+json."""

    status = 500
    title = "Internal error"
    retriable = False

    def __init__(self, detail: str, *, current_version: int | None = None,
                 retry_after_s: float | None = None, kind: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.type = PROBLEM_TYPE + kind if kind else "about:blank"
        self.current_version = current_version
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.detail!r}, current_version={self.current_version})"


class NotFound(FencedError):
    status = 404
    title = "Not found"


class Conflict(FencedError):
    status = 409
    title = "Conflict"


class Gone(FencedError):
    status = 410
    title = "Gone"


class InvalidInput(FencedError):
    status = 422
    title = "Invalid input"


class PayloadTooLarge(FencedError):
    status = 413
    title = "Payload too large"


class Unauthorized(FencedError):
    """No API key, or one that is unknown or revoked (answered with WWW-Authenticate: Bearer)."""

    status = 401
    title = "Unauthorized"


class Forbidden(FencedError):
    """A valid key without the scope the route needs."""

    status = 403
    title = "Forbidden"


class TooManyRequests(FencedError):
    status = 429
    title = "Too many requests"
    retriable = True


class Busy(FencedError):
    status = 503
    title = "Busy"
    retriable = True


class OutcomeUnknown(FencedError):
    status = 503
    title = "Outcome unknown"
    retriable = True


class Unavailable(FencedError):
    status = 503
    title = "Unavailable"
    retriable = True


BY_STATUS: dict[int, type[FencedError]] = {404: NotFound, 409: Conflict, 410: Gone, 422: InvalidInput}
