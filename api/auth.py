"""Bearer tokens and roles.

Roles: ``admin`` configures (and may do everything the others may),
``inspector`` reads footage and exports it, ``operations`` reads health,
``ingest`` only writes test records.  No role can delete footage or shorten
its retention: no endpoint does either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from labwitness.errors import LabwitnessError

from api.deps import TokensDep
from api.rate_limit import AUTH_FAILED, audit_failure, refuse_if_over

_bearer = HTTPBearer(auto_error=False, description="API token: `Authorization: Bearer lw_...`")
#: request state key set only by the web session relay (api.web.session.SessionRelay): the
#: row id of the signed-in session's token, which the API then acts for
RELAY_TOKEN_ID = "relay_token_id"


class AuthError(LabwitnessError):
    code = "unauthorized"
    status = 401


class ForbiddenError(LabwitnessError):
    code = "forbidden"
    status = 403


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    token_id: int | None = None

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.name}"


def require(*roles: str) -> Callable[..., Principal]:
    allowed = set(roles) | {"admin"}

    def dependency(request: Request, tokens: TokensDep,
                   creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
        relayed = getattr(request.state, RELAY_TOKEN_ID, None) if creds is None else None
        if relayed is None and (creds is None or creds.scheme.lower() != "bearer" or not creds.credentials):
            raise AuthError("需要登录令牌 / an API token is required (Authorization: Bearer ...)")
        refuse_if_over(request, AUTH_FAILED)  # a source that used up its failures learns nothing more
        # a signed-in browser through the session relay: its token by row id (revoked: None)
        row = tokens.by_id(relayed) if relayed is not None else tokens.lookup(creds.credentials)
        if row is None:
            audit_failure(request, "auth.failed", {"path": request.url.path[:200]})
            raise AuthError("令牌无效或已吊销 / the API token is invalid or revoked")
        if row.role not in allowed:
            raise ForbiddenError(f"角色 {row.role} 无权执行此操作 / role {row.role!r} may not do this "
                                 f"(needs {' or '.join(sorted(allowed))})")
        p = Principal(row.name, row.role, row.id)
        request.state.principal = p
        return p

    return dependency


Admin = Annotated[Principal, Depends(require("admin"))]
Inspector = Annotated[Principal, Depends(require("inspector"))]
Operations = Annotated[Principal, Depends(require("operations"))]
Ingest = Annotated[Principal, Depends(require("ingest"))]
Reader = Annotated[Principal, Depends(require("inspector", "operations"))]
