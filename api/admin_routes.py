"""Tokens and the audit log (admins only)."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from index.tokens import ROLES
from labwitness.url_secrets import redact_text

from api.auth import Admin
from api.deps import AuditDep, TokensDep

router = APIRouter(prefix="/api/v1")


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: str = Field(pattern="^(" + "|".join(ROLES) + ")$")


class TokenView(BaseModel):
    id: int
    name: str
    role: str
    prefix: str
    created_ms: int
    created_by: str
    revoked: bool


class TokenCreated(TokenView):
    token: str = Field(description="shown once; only its hash is stored")


class AuditView(BaseModel):
    id: int
    at_ms: int
    actor: str
    role: str
    action: str
    target: str
    detail: dict
    hash: str


@router.post("/tokens", status_code=201)
def create_token(tokens: TokensDep, audit: AuditDep, who: Admin, body: TokenIn) -> TokenCreated:
    row, token = tokens.create(body.name, body.role, who.actor)
    audit.append(who.actor, "token.create", f"token:{row.id}", {"name": row.name, "role": row.role}, who.role)
    return TokenCreated(id=row.id, name=row.name, role=row.role, prefix=row.prefix, created_ms=row.created_ms,
                        created_by=row.created_by, revoked=False, token=token)


@router.get("/tokens")
def list_tokens(tokens: TokensDep, who: Admin) -> list[TokenView]:
    return [TokenView(id=t.id, name=t.name, role=t.role, prefix=t.prefix, created_ms=t.created_ms,
                      created_by=t.created_by, revoked=t.revoked_ms is not None) for t in tokens.list()]


@router.delete("/tokens/{token_id}", status_code=200)
def revoke_token(tokens: TokensDep, audit: AuditDep, who: Admin, token_id: Annotated[int, Path(ge=1, le=2**62)]) -> TokenView:
    t = tokens.revoke(token_id)
    audit.append(who.actor, "token.revoke", f"token:{token_id}", {"name": t.name}, who.role)
    return TokenView(id=t.id, name=t.name, role=t.role, prefix=t.prefix, created_ms=t.created_ms,
                     created_by=t.created_by, revoked=True)


@router.get("/audit")
def audit(log: AuditDep, who: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 200,
          before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None) -> list[AuditView]:
    return [AuditView(id=e.id, at_ms=e.at_ms, actor=e.actor, role=e.role, action=e.action, target=e.target,
                      detail=json.loads(redact_text(e.detail) or "{}"), hash=e.hash) for e in log.events(limit, before_id)]
