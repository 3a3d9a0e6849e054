"""FastAPI dependencies as ``Annotated`` aliases: the runtime, and who is calling."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service import logs
from service.auth import ANONYMOUS, Principal
from service.errors import Forbidden, Unauthorized
from service.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]

bearer = HTTPBearer(auto_error=False, scheme_name="api-key",
                    description="An API key from `fenced keys create`: `Authorization: Bearer fk_...`")


def authorized(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller's :class:`Principal`, if its key has ``scope`` (401 without a
    valid key, 403 without the scope), counted against its tenant's rate limit (429)."""

    async def dependency(rt: RuntimeDep,
                         credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> Principal:
        if rt.keys is None:
            return ANONYMOUS
        if credentials is None:
            raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
        principal = rt.keys.lookup(credentials.credentials)
        if principal is None:
            raise Unauthorized("the API key is not valid (unknown or revoked)")
        ctx = logs.current.get()
        if ctx is not None:
            ctx.tenant = principal.tenant
        if not principal.allows(scope):
            raise Forbidden(f"the key {principal.name!r} lacks the {scope!r} scope this needs")
        if rt.limiter is not None and principal.tenant is not None:
            await rt.limiter.hit(principal.tenant)
        return principal

    return dependency


Reader = Annotated[Principal, Depends(authorized("read"))]
Writer = Annotated[Principal, Depends(authorized("write"))]
MetricsReader = Annotated[Principal, Depends(authorized("metrics"))]
