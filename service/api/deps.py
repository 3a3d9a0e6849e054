"""FastAPI dependencies as ``Annotated`` aliases: the runtime, and the caller's scopes (who the
caller is was settled by :mod:`service.api.authn` before routing)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.authn import principal_of
from service.auth import Principal
from service.errors import Forbidden, Unauthorized
from service.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]

bearer = HTTPBearer(auto_error=False, scheme_name="api-key",
                    description="An API key from `fenced keys create`: `Authorization: Bearer fk_...`")


def authorized(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller's :class:`Principal` (authenticated by :class:`service.api.authn.ApiKeys`), if
    its key has ``scope`` (403 without it), counted against its tenant's rate limit (429).
    ``bearer`` only declares the scheme in the OpenAPI schema."""

    async def dependency(request: Request, rt: RuntimeDep,
                         credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> Principal:
        principal = principal_of(request)
        if principal is None:  # an app built without the middleware: refuse, never open
            raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
        if refusal := principal.refusal(scope):
            raise Forbidden(refusal)
        if rt.limiter is not None and principal.tenant is not None:
            await rt.limiter.hit(principal.tenant)
        return principal

    return dependency


Reader = Annotated[Principal, Depends(authorized("read"))]
Writer = Annotated[Principal, Depends(authorized("write"))]
MetricsReader = Annotated[Principal, Depends(authorized("metrics"))]
