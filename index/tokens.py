"""API tokens: stored as SHA-256 only, revocable, each with one role."""

from __future__ import annotations

import hashlib
import secrets
from typing import Callable

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from index.models import ApiToken
from index.queries import db_guarded
from index.web_sessions import end_sessions_of_token
from labwitness.errors import NotFoundError, ValidationError

ROLES = ("admin", "inspector", "operations", "ingest")
#: a token chosen by a person (the bootstrap admin token) must be at least this long:
#: as long as the generated ones' 256 bits in URL-safe base64 would be without "lw_"
MIN_TOKEN_CHARS = 32
#: characters of a token kept in clear to recognise it in lists: a short, fixed part
#: ("lw_" and three random characters) that is useless for guessing the rest
PREFIX_CHARS = 6


def check_token_strength(token: str) -> None:
    if len(token) < MIN_TOKEN_CHARS:
        raise ValidationError(f"令牌过短，至少 {MIN_TOKEN_CHARS} 个字符 / token too short: at least {MIN_TOKEN_CHARS} "
                              f"characters (got {len(token)}); e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, engine: Engine, now_ms: Callable[[], int]) -> None:
        self.engine = engine
        self.now_ms = now_ms

    @db_guarded
    def create(self, name: str, role: str, created_by: str, token: str | None = None) -> tuple[ApiToken, str]:
        """A new token; the plain token is returned once and never stored."""
        if role not in ROLES:
            raise ValidationError(f"未知角色 / unknown role {role!r}; one of {', '.join(ROLES)}")
        if token is not None:
            check_token_strength(token)
        token = token or "lw_" + secrets.token_urlsafe(32)
        row = ApiToken(name=name[:200], role=role, token_hash=token_hash(token), prefix=token[:PREFIX_CHARS],
                       created_ms=self.now_ms(), created_by=created_by[:200])
        with Session(self.engine, expire_on_commit=False) as s:
            s.add(row)
            s.commit()
        return row, token

    @db_guarded
    def lookup(self, token: str) -> ApiToken | None:
        with Session(self.engine, expire_on_commit=False) as s:
            row = s.exec(select(ApiToken).where(ApiToken.token_hash == token_hash(token))).first()
            return row if row is not None and row.revoked_ms is None else None

    @db_guarded
    def by_id(self, token_id: int) -> ApiToken | None:
        """The token row behind a web session (the session keeps the id, never the token); None if revoked."""
        with Session(self.engine, expire_on_commit=False) as s:
            row = s.get(ApiToken, token_id)
            return row if row is not None and row.revoked_ms is None else None

    @db_guarded
    def revoke(self, token_id: int) -> ApiToken:
        with Session(self.engine, expire_on_commit=False) as s:
            row = s.get(ApiToken, token_id)
            if row is None:
                raise NotFoundError(f"令牌不存在 / token {token_id} not found")
            if row.revoked_ms is None:
                row.revoked_ms = self.now_ms()
                s.add(row)
                # its web sessions end on every node with the same commit (index.web_sessions)
                end_sessions_of_token(s.connection(), token_id)
                s.commit()
            return row

    @db_guarded
    def list(self) -> list[ApiToken]:
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.exec(select(ApiToken).order_by(col(ApiToken.id))))

    @db_guarded
    def any(self) -> bool:
        with Session(self.engine) as s:
            return s.exec(select(ApiToken.id).limit(1)).first() is not None
