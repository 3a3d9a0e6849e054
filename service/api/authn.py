"""Who is calling: the backend of Starlette's ``AuthenticationMiddleware`` for API keys.

It runs before anything else looks at a request in the API replicas: without a valid key
every path but the probes is 401, whatever the body (malformed, too large) or the path
(unknown), so a stranger learns nothing about the routes or about what the service would
have made of the request. Which scope a path needs is checked later, by the route (403).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError, BaseUser
from starlette.requests import HTTPConnection
from starlette.responses import Response

from service import logs
from service.api.problems import problem
from service.auth import ANONYMOUS, KeyFile, NotAuthenticated, Principal
from service.errors import Unauthorized

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
"""The probes: the only paths answered without a key."""


class KeyUser(BaseUser):
    """The authenticated caller, as Starlette's ``request.user``."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.principal.name


class ApiKeys(AuthenticationBackend):
    """``keys(conn)`` gives the keys file in force, or None when authentication is off (then
    every caller is :data:`ANONYMOUS`, with every scope and no tenant)."""

    def __init__(self, keys: Callable[[HTTPConnection], KeyFile | None]) -> None:
        self.keys = keys

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        if conn.scope["path"].removeprefix(conn.scope.get("root_path", "")) in PUBLIC_PATHS:
            return None
        keys = self.keys(conn)
        if keys is None:
            return AuthCredentials(), KeyUser(ANONYMOUS)
        try:
            principal = keys.authenticate(conn.headers.get("authorization", ""))
        except NotAuthenticated as e:
            raise AuthenticationError(str(e)) from e
        ctx = logs.current.get()
        if ctx is not None:
            ctx.tenant = principal.tenant
        return AuthCredentials(), KeyUser(principal)  # scopes are checked by the route


def unauthorized(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    return problem(401, Unauthorized.title, str(exc))


def principal_of(conn: HTTPConnection) -> Principal | None:
    """The caller :class:`ApiKeys` authenticated, or None if it did not run or let a probe through."""
    user = conn.scope.get("user")
    return user.principal if isinstance(user, KeyUser) else None
