"""Web sign-in: server-side sessions, CSRF tokens, role gates, and the session relay.

Sign-in takes an API token (``lw_...``) and maps it to its role, exactly as the
API does; there are no passwords.  Sessions are kept **in server memory**, not in
a signed cookie:

* the cookie carries only a random 256-bit session id (HttpOnly, SameSite=Lax,
  Secure over https), so nothing about the user or the token is on the client;
* sign-out and token revocation end a session at once (a signed cookie stays
  valid until it expires unless a server-side deny list is kept anyway);
* labwitness is one process per data directory (docs/decisions.md, 17), so one
  in-memory table serves every request; a restart signs everyone out, which is
  acceptable for a handful of lab staff and avoids managing a signing secret.

Every request re-checks the token behind the session (``TokenStore.lookup``): a
revoked token or a changed role takes effect on the next click.  Sessions end
after ``idle_s`` without a request and at most ``absolute_s`` after sign-in.

**Session relay.**  The browser cannot put a bearer token on ``<video src>``,
``<img src>`` or a download link, so :class:`SessionRelay` lets a signed-in
browser's ``GET``/``HEAD`` requests under ``/api/v1/`` through as the session's
own token.  Every role check stays the API's own (``api.auth.require``); state
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

from api import deps
from api.auth import Principal

SESSION_COOKIE = "lw_session"
LOGIN_CSRF_COOKIE = "lw_login_csrf"
LANG_COOKIE = "lw_lang"
UI_ROLES = frozenset({"admin", "inspector", "operations"})  # ingest tokens have no UI
MAX_FORM = 64 * 1024


@dataclass
class WebSession:
    id_hash: str
    token: str  # the API token, in server memory only: the relay presents it to the API
    name: str
    role: str
    csrf: str
    created: float
    last_seen: float
    flash: list[tuple[str, str]] = field(default_factory=list)  # (level, message) shown once


class SessionStore:
    """Sessions by the SHA-256 of their id (the id itself is never stored)."""

    def __init__(self, idle_s: float = 3600.0, absolute_s: float = 12 * 3600.0, max_sessions: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s, self.absolute_s, self.max_sessions, self.clock = idle_s, absolute_s, max_sessions, clock
        self._lock = threading.Lock()
        self._sessions: dict[str, WebSession] = {}
        self._once: dict[str, tuple[str, str, str, float]] = {}  # code hash -> (token, name, role, expires)

    @staticmethod
    def _h(sid: str) -> str:
        return hashlib.sha256(sid.encode()).hexdigest()

    def create(self, token: str, name: str, role: str) -> tuple[str, WebSession]:
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        sess = WebSession(self._h(sid), token, name, role, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._expire(now)
            if len(self._sessions) >= self.max_sessions:  # bounded memory: the least recently used goes
                oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
                del self._sessions[oldest.id_hash]
            self._sessions[sess.id_hash] = sess
        return sid, sess

    def get(self, sid: str | None, touch: bool = True) -> WebSession | None:
        if not sid or len(sid) > 100:
            return None
        now = self.clock()
        with self._lock:
            sess = self._sessions.get(self._h(sid))
            if sess is None:
                return None
            if now - sess.last_seen > self.idle_s or now - sess.created > self.absolute_s:
                del self._sessions[sess.id_hash]
                return None
            if touch:
                sess.last_seen = now
            return sess

    def issue_once(self, token: str, name: str, role: str, ttl_s: float = 600.0) -> str:
        """A one-time sign-in code (``/login/once/{code}``) for a token, valid ``ttl_s``:
        how ``labwitness demo`` opens a newcomer straight into the UI without putting
        the token itself in a URL (URLs end up in histories and logs; the code dies on use)."""
        code = secrets.token_urlsafe(16)  # 128 bits, single use, short-lived
        with self._lock:
            self._once[self._h(code)] = (token, name, role, self.clock() + ttl_s)
        return code

    def redeem_once(self, code: str) -> tuple[str, str, str] | None:
        if not code or len(code) > 100:
            return None
        with self._lock:
            got = self._once.pop(self._h(code), None)
        if got is None or self.clock() > got[3]:
            return None
        return got[:3]

    def drop(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._sessions.pop(self._h(sid), None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _expire(self, now: float) -> None:
        dead = [k for k, s in self._sessions.items()
                if now - s.last_seen > self.idle_s or now - s.created > self.absolute_s]
        for k in dead:
            del self._sessions[k]


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
    row = deps.tokens(request).lookup(sess.token)
    if row is None or row.role not in UI_ROLES:  # revoked since sign-in
        store.drop(sid)
        return None
    sess.role, sess.name = row.role, row.name
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
    ``Authorization`` header is presented to the API with the session's token."""

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
                if sess is not None:
                    scope = dict(scope, headers=[*headers, (b"authorization", f"Bearer {sess.token}".encode())])
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
