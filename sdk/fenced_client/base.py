"""What the sync and async clients share: their replicas, retry policy, clock and randomness."""

from __future__ import annotations

import functools
import random
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import ParamSpec, TypeVar

from fenced_client.protocol import Call
from fenced_client.retry import Attempts, RetryPolicy

DEFAULT_URL = "http://127.0.0.1:8000"
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fenced-client")
    except PackageNotFoundError:  # a checkout that was not installed
        return "0+unknown"


USER_AGENT = f"fenced-client/{_version()}"


def base_headers(api_key: str | None, headers: Mapping[str, str] | None) -> dict[str, str]:
    """Headers every request of a client carries: its User-Agent and, given a key, its
    ``Authorization: Bearer`` (``fenced keys create`` makes keys)."""
    out = {"User-Agent": USER_AGENT}
    if api_key is not None:
        out["Authorization"] = f"Bearer {api_key}"
    return {**out, **(headers or {})}

P = ParamSpec("P")
R = TypeVar("R")


def deprecated_folder_helper(method: Callable[P, R]) -> Callable[P, R]:
    """The clients' old folder methods: they still work, with a DeprecationWarning that points
    at :mod:`fenced_client.folders` (an async one warns when called, before it is awaited)."""
    wrapper = "AsyncFolders" if "Async" in method.__qualname__ else "Folders"

    @functools.wraps(method)
    def warn(*args: P.args, **kwargs: P.kwargs) -> R:
        warnings.warn(f"{method.__qualname__} is deprecated: use fenced_client.folders.{wrapper}(client)."
                      f"{method.__name__}, or send(\"folders\", id, ...)", DeprecationWarning, stacklevel=2)
        return method(*args, **kwargs)
    return warn


class BaseClient:
    """Holds the API replicas' base URLs and the retry policy.

    With several base URLs (API replicas without a load balancer in front), calls go to one
    replica until an attempt on it fails without a definite answer (no answer, 503, a
    gateway's 502/504); the retry then goes to the next one, with the same Idempotency-Key.
    """

    def __init__(self, base_url: str | Sequence[str], *, deadline: float, attempt_timeout: float,
                 backoff_base: float, backoff_cap: float, clock: Callable[[], float] | None,
                 rng: random.Random | None) -> None:
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("at least one base URL is needed")
        self.base_urls: tuple[str, ...] = tuple(u.rstrip("/") for u in urls)
        for url in self.base_urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"base URL {url!r} must start with http:// or https://")
        self.policy = RetryPolicy(deadline, attempt_timeout, backoff_base, backoff_cap)
        self._clock = clock or time.monotonic
        self._rng = rng or random.Random()
        self._replica = 0

    def _attempts(self, call: Call) -> Attempts:
        return Attempts(self.policy, self._clock, self._rng, idempotency_key=call.idempotency_key)

    def _url(self, call: Call) -> str:
        return self.base_urls[self._replica % len(self.base_urls)] + call.path

    def _next_replica(self) -> None:
        self._replica = (self._replica + 1) % len(self.base_urls)

    def __repr__(self) -> str:
        urls = ", ".join(self.base_urls)
        return f"{type(self).__name__}([{urls}], deadline={self.policy.deadline})"
