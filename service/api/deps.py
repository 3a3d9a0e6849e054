"""Who is calling: the authentication middleware's backend, and FastAPI dependencies as
``Annotated`` aliases for the runtime and the caller's scopes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError, BaseUser
from starlette.requests import HTTPConnection
from starlette.responses import Response

from service import logs
from service.api.problems import problem
from service.auth import ANONYMOUS, Principal
from service.errors import Forbidden, Unauthorized
from service.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]

bearer = HTTPBearer(auto_error=False, scheme_name="api-key",
                    description="An API key from `fenced keys create`: `Authorization: Bearer fk_...`")


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
    """Authentication before anything else looks at the request: without a valid key, every
    path but the probes is 401, whatever the body (malformed, too large) or the path (unknown),
    so nothing about the API's routes or a request's validity is told to a stranger."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        if conn.scope["path"].removeprefix(conn.scope.get("root_path", "")) in PUBLIC_PATHS:
            return None
        rt: Runtime = conn.app.state.runtime
        if rt.keys is None:
            return AuthCredentials(), KeyUser(ANONYMOUS)
        scheme, _, key = conn.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise AuthenticationError("an API key is required: send 'Authorization: Bearer <key>'")
        principal = rt.keys.lookup(key.strip())
        if principal is None:
            raise AuthenticationError("the API key is not valid (unknown or revoked)")
        ctx = logs.current.get()
        if ctx is not None:
            ctx.tenant = principal.tenant
        return AuthCredentials(), KeyUser(principal)  # scopes are checked by `authorized`


def unauthorized(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    return problem(401, Unauthorized.title, str(exc))


def authorized(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller's :class:`Principal` (authenticated by :class:`ApiKeys`), if
    its key has ``scope`` (403 without it), counted against its tenant's rate limit (429).
    ``bearer`` only declares the scheme in the OpenAPI schema."""

    async def dependency(request: Request, rt: RuntimeDep,
                         credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> Principal:
        user = request.scope.get("user")
        if not isinstance(user, KeyUser):  # an app built without the middleware: refuse, never open
            raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
        principal = user.principal
        if not principal.allows(scope):
            raise Forbidden(f"the key {principal.name!r} lacks the {scope!r} scope this needs")
        if rt.limiter is not None and principal.tenant is not None:
            await rt.limiter.hit(principal.tenant)
        return principal

    return dependency


Reader = Annotated[Principal, Depends(authorized("read"))]
Writer = Annotated[Principal, Depends(authorized("write"))]
MetricsReader = Annotated[Principal, Depends(authorized("metrics"))]
