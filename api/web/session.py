"""Web sign-in: server-side sessions, CSRF tokens, role gates, and the session relay.

Sign-in takes an API token (``lw_...``) and maps it to its role, exactly as the
API does; there are no passwords.  Sessions are kept **in the index database**
(``web_session``, :mod:`index.web_sessions`), not in a signed cookie:

* the cookie carries only a random 256-bit session id (HttpOnly, SameSite=Lax,
  Secure over https), so nothing about the user or the token is on the client;
* the row keeps only the id's SHA-256 and the token's row id, never the token: a
  copy of the database signs nobody in;
* every API node on the same database serves the same sessions, and a restart keeps
  them; sign-out and token revocation delete the rows, which ends them on every node
  at once (a signed cookie stays valid until it expires unless a deny list is kept).

Every request re-checks the token behind the session (``TokenStore.lookup``): a
revoked token or a changed role takes effect on the next click.  Sessions end
after ``idle_s`` without a request and at most ``absolute_s`` after sign-in.

**Session relay.**  The browser cannot put a bearer token on ``<video src>``,
``<img src>`` or a download link, so :class:`SessionRelay` lets a signed-in
browser's ``GET``/``HEAD`` requests under ``/api/v1/`` through as the session's
own token (as its principal, by the token's row id: the raw token is not kept).  Every role check stays the API's own (``api.auth.require``); state
changes never go through the relay (only safe methods), and SameSite=Lax plus a
``Sec-Fetch-Site`` check keep other sites' pages from using it.

**CSRF.**  Every POST form carries the session's CSRF token in a hidden field,
compared in constant time; the sign-in form (no session yet) uses a
double-submit cookie.  A present ``Origin`` header must be our own.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Callable
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import Request
from sqlalchemy.engine import Engine

from index.web_sessions import SessionRow, WebSessionStore

from api import deps
from api.auth import RELAY_TOKEN_ID, Principal

SESSION_COOKIE = "lw_session"
LOGIN_CSRF_COOKIE = "lw_login_csrf"
LANG_COOKIE = "lw_lang"
UI_ROLES = frozenset({"admin", "inspector", "operations"})  # ingest tokens have no UI
MAX_FORM = 64 * 1024


@dataclass
class WebSession:
    """A live session as the database has it (``index.web_sessions``): no token, its row id."""

    id_hash: str
    token_id: int  # the API token's row: the relay acts as its principal (api.auth) without the token itself
    name: str
    role: str
    csrf: str
    created: float
    last_seen: float
    store: "SessionStore | None" = field(default=None, repr=False, compare=False)

    def add_flash(self, level: str, message: str) -> None:
        """A message shown once, on the next page this browser gets (from any node)."""
        if self.store is not None:
            self.store.rows().add_flash(self.id_hash, level, message)

    def take_flash(self) -> list[tuple[str, str]]:
        return self.store.rows().take_flash(self.id_hash) if self.store is not None else []


class SessionStore:
    """Sessions by the SHA-256 of their id (the id itself is never stored), in the database
    (``web_session``, via :class:`index.web_sessions.WebSessionStore`), so every API node
    serves them and a restart keeps them.  ``engine``: the index's engine, or a callable
    giving it (the app builds this store before its runtime starts)."""

    def __init__(self, engine: Engine | Callable[[], Engine], idle_s: float = 3600.0, absolute_s: float = 12 * 3600.0,
                 max_sessions: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self.idle_s, self.absolute_s, self.max_sessions, self.clock = idle_s, absolute_s, max_sessions, clock
        self._engine = engine
        self._rows: WebSessionStore | None = None
        self._lock = threading.Lock()

    def rows(self) -> WebSessionStore:
        with self._lock:
            if self._rows is None:
                engine = self._engine if isinstance(self._engine, Engine) else self._engine()
                self._rows = WebSessionStore(engine, lambda: int(self.clock() * 1000))
            return self._rows

    @staticmethod
    def _h(sid: str) -> str:
        return hashlib.sha256(sid.encode()).hexdigest()

    def _session(self, row: SessionRow) -> WebSession:
        return WebSession(row.id_hash, row.token_id, row.name, row.role, row.csrf, row.created_ms / 1000,
                          row.last_seen_ms / 1000, self)

    def create(self, token_id: int, name: str, role: str) -> tuple[str, WebSession]:
        sid = secrets.token_urlsafe(32)
        rows = self.rows()
        rows.purge(int(self.idle_s * 1000))  # expired rows go (every node purges as it signs people in)
        excess = rows.count() - self.max_sessions + 1
        for old in rows.oldest_first(limit=excess) if excess > 0 else []:  # bounded: the least recently used goes
            rows.drop(old)
        row = rows.add(self._h(sid), "session", token_id, name, role, secrets.token_urlsafe(32), int(self.absolute_s * 1000))
        return sid, self._session(row)

    def get(self, sid: str | None, touch: bool = True) -> WebSession | None:
        if not sid or len(sid) > 100:
            return None
        row = self.rows().get(self._h(sid), "session", int(self.idle_s * 1000), touch=touch)
        return self._session(row) if row is not None else None

    def issue_once(self, token_id: int, name: str, role: str, ttl_s: float = 600.0) -> str:
        """A one-time sign-in code (``/login/once/{code}``) for a token, valid ``ttl_s``:
        how ``labwitness demo`` opens a newcomer straight into the UI without putting
        the token itself in a URL (URLs end up in histories and logs; the code dies on use)."""
        code = secrets.token_urlsafe(16)  # 128 bits, single use, short-lived
        self.rows().add(self._h(code), "once", token_id, name, role, "", int(ttl_s * 1000))
        return code

    def redeem_once(self, code: str) -> tuple[int, str, str] | None:
        """(token id, name, role) of a live code, used up now; None otherwise."""
        if not code or len(code) > 100:
            return None
        row = self.rows().take(self._h(code), "once")
        return (row.token_id, row.name, row.role) if row is not None else None

    def drop(self, sid: str | None) -> None:
        if sid:
            self.rows().drop(self._h(sid))

    def update_identity(self, sess: WebSession, name: str, role: str) -> None:
        if (sess.name, sess.role) != (name, role):
            self.rows().update_identity(sess.id_hash, name, role)
            sess.name, sess.role = name, role

    def __len__(self) -> int:
        return self.rows().count()


@dataclass(frozen=True)
class WebUser:
    principal: Principal
    session: WebSession
    host: str

    @property
    def role(self) -> str:
        return self.principal.role

    @property
    def actor(self) -> str:
        """As the API writes it for admins (``api.registry_routes._actor``): role:name@host."""
        return f"{self.principal.actor}@{self.host}"

    def may(self, *roles: str) -> bool:
        return self.role == "admin" or self.role in roles


class SignInRequired(Exception):
    """No valid session: pages redirect to sign-in, htmx fragments ask the browser to."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class PageForbidden(Exception):
    """Signed in, but the role may not see this page (403)."""


class CsrfRefused(Exception):
    """A POST without the right CSRF token, or from another origin (403)."""


def stores(request: Request) -> SessionStore:
    return request.app.state.web_sessions


def client_host(request: Request) -> str:
    return request.client.host if request.client else "?"


def current_user(request: Request) -> WebUser | None:
    """The signed-in user of this request, re-checked against the token store."""
    store = stores(request)
    sid = request.cookies.get(SESSION_COOKIE)
    sess = store.get(sid)
    if sess is None:
        return None
    row = deps.tokens(request).by_id(sess.token_id)
    if row is None or row.role not in UI_ROLES:  # revoked since sign-in
        store.drop(sid)
        return None
    store.update_identity(sess, row.name, row.role)
    return WebUser(Principal(row.name, row.role, row.id), sess, client_host(request))


def local_path(url: str | None, default: str = "/") -> str:
    """Only same-site paths for ``next`` redirects (no ``//host``, no scheme, no backslash tricks)."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url or any(ord(c) < 32 for c in url):
        return default
    return url


def htmx_page(request: Request) -> str:
    """The page an htmx request came from (``HX-Current-URL``), as a same-site path, or ""."""
    page = urlsplit(request.headers.get("hx-current-url", ""))
    if page.netloc and page.netloc != request.url.netloc:
        return ""
    return local_path(page.path + (f"?{page.query}" if page.query else ""), "")


def requested_path(request: Request) -> str:
    q = request.url.query
    return request.url.path + (f"?{q}" if q else "")


def page(*roles: str):
    """Dependency for a UI route: the signed-in user, with one of ``roles`` (admin always)."""

    def dependency(request: Request) -> WebUser:
        user = current_user(request)
        if user is None:
            raise SignInRequired(requested_path(request))
        if not user.may(*roles):
            raise PageForbidden()
        request.state.principal = user.principal
        return user

    return dependency


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:  # browsers send Origin on every POST; other clients have no cookie to abuse
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


class Form(dict):
    """A posted form: the last value of each field, and :meth:`getlist` for repeated ones."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self._pairs = pairs

    def getlist(self, name: str) -> list[str]:
        return [v for k, v in self._pairs if k == name]


async def read_form(request: Request) -> Form:
    """A urlencoded form body (the UI posts nothing else; no multipart parser needed)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise CsrfRefused()
    body = await request.body()
    if len(body) > MAX_FORM:
        raise CsrfRefused()
    try:
        return Form(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=300))
    except ValueError:  # too many fields
        raise CsrfRefused() from None


async def checked_form(request: Request, user: WebUser) -> Form:
    """The POSTed form, after the CSRF check against the session's token."""
    form = await read_form(request)
    sent = form.get("csrf") or request.headers.get("x-csrf-token") or ""
    if not same_origin(request) or not secrets.compare_digest(sent.encode(), user.session.csrf.encode()):
        raise CsrfRefused()
    return form


def login_url(next_url: str) -> str:
    return "/login" + (f"?next={quote(next_url, safe='/')}" if next_url and next_url != "/" else "")


class SessionRelay:
    """ASGI middleware: a signed-in browser's GET/HEAD to ``/api/v1/...`` without an
    ``Authorization`` header is presented to the API as the session's token: the
    request's state carries the token's row id, which :func:`api.auth.require` checks
    (not revoked, role allowed) exactly as it checks a bearer token."""

    def __init__(self, app, store: SessionStore) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and scope["path"].startswith("/api/v1/"):
            headers = scope["headers"]
            # not for requests another site's page started (Sec-Fetch-Site: cross-site/same-site),
            # on top of SameSite=Lax: a link elsewhere cannot make a signed-in browser stitch a day of video
            site = next((v for k, v in headers if k == b"sec-fetch-site"), None)
            if site in (None, b"same-origin", b"none") and not any(k == b"authorization" for k, _ in headers):
                sid = _cookie(headers, SESSION_COOKIE)
                sess = self.store.get(sid) if sid else None
                if sess is not None:  # api.auth.require then acts as this token's principal (looked up by id)
                    scope = dict(scope, state={**scope.get("state", {}), RELAY_TOKEN_ID: sess.token_id})
        await self.app(scope, receive, send)


def _cookie(headers, name: str) -> str | None:
    for k, v in headers:
        if k == b"cookie":
            c = SimpleCookie()
            try:
                c.load(v.decode("latin-1"))
            except Exception:  # a malformed Cookie header is simply no session
                return None
            if name in c:
                return c[name].value
    return None
