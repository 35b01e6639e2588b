"""Pages anyone may open: the status page at ``/``, sign-in/out and the language
switch (the public verify page is :func:`api.web.pages.verify_html`).

Public pages show facts only: camera names, recording state, coverage, lock
mode and retain-until dates — never footage, thumbnails or credentials."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from labwitness.clock import utc_ms

from api.deps import (AuditDep, ClockDep, IndexDep, PolicyDep, RegistryAdminDep, RegistryDep, StoreDep,
                      TokensDep)
from api.rate_limit import AUTH_FAILED, RateLimitedError, audit_failure, refuse_if_over
from api.web import i18n
from api.web.pages import redirect
from api.web.render import HOME, render
from api.web.session import (LANG_COOKIE, LOGIN_CSRF_COOKIE, SESSION_COOKIE, UI_ROLES, CsrfRefused, checked_form,
                             client_host, current_user, local_path, page, read_form, same_origin, stores)

router = APIRouter(include_in_schema=False)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


@router.get("/", response_class=HTMLResponse)
def home(request: Request, registry: RegistryDep, admin: RegistryAdminDep, index: IndexDep, store: StoreDep,
         clock: ClockDep, policy: PolicyDep) -> Response:
    now_ms = utc_ms(clock.now())
    cams = []
    for cam in registry.cameras():
        f = index.footage(cam.id, now_ms - 3_600_000, now_ms + 1)
        state = admin.recording_state(cam.id) or ("disabled" if not cam.enabled else "not_recording")
        cams.append({"id": cam.id, "name": cam.name, "area_id": cam.area_id, "state": state,
                     "coverage": f.coverage, "gaps": len(f.gaps),
                     "recent": [{"start_ms": s.start_ms, "duration_s": s.media_duration_ms / 1000, "lock": s.lock_mode,
                                 "retain_until_ms": s.retain_until_ms} for s in f.segments[-6:] if s.retain_until_ms]})
    return render(request, "home.html", cameras=cams, storage=store.info, months=policy.months,
                  margin_days=policy.margin_days, home_url=HOME.get(getattr(current_user(request), "role", ""), ""))


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "") -> Response:
    user = current_user(request)
    if user is not None:
        return redirect(local_path(next, HOME[user.role]))
    return _login_page(request, next)


def _login_page(request: Request, next_url: str, error: str = "", status: int = 200,
                retry_after_s: int | None = None) -> Response:
    pre = secrets.token_urlsafe(24)
    resp = render(request, "login.html", status=status, login_csrf=pre, next_url=local_path(next_url, ""), error=error)
    if retry_after_s is not None:
        resp.headers["Retry-After"] = str(retry_after_s)
    resp.set_cookie(LOGIN_CSRF_COOKIE, pre, max_age=3600, httponly=True, samesite="strict", secure=_secure(request),
                    path="/login")
    return resp


@router.post("/login")
async def login(request: Request, tokens: TokensDep, audit: AuditDep) -> Response:
    form = await read_form(request)
    pre = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = form.get("csrf", "")
    if not pre or not same_origin(request) or not secrets.compare_digest(sent.encode(), pre.encode()):
        raise CsrfRefused()
    token = form.get("token", "").strip()
    next_url = form.get("next", "")
    row, refused = _attempt(request, next_url, "login.invalid", {},
                            lambda: tokens.lookup(token) if token and len(token) <= 200 else None)
    if refused is not None:
        return refused
    host = client_host(request)
    if row.role not in UI_ROLES:
        audit.append(f"{row.role}:{row.name}@{host}", "ui.signin_refused", f"token:{row.id}", {}, row.role)
        return _login_page(request, next_url, "login.no_ui_role", status=403)
    store = stores(request)
    store.drop(request.cookies.get(SESSION_COOKIE))  # never reuse an id from before sign-in (fixation)
    sid, _ = store.create(row.id, row.name, row.role)
    audit.append(f"{row.role}:{row.name}@{host}", "ui.signin", f"token:{row.id}", {}, row.role)
    resp = redirect(local_path(next_url, HOME[row.role]))
    resp.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="lax", secure=_secure(request), path="/")
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return resp


def _attempt(request: Request, next_url: str, failed_key: str, detail: dict, lookup):
    """(token row, None) for a sign-in attempt whose ``lookup`` found a token, else
    (None, the refusing page): 401 audited as ``ui.signin_failed``, or 429 once the
    source has used up its failure budget (api.rate_limit; checked before the lookup)."""
    try:
        refuse_if_over(request, AUTH_FAILED)
        row = lookup()
        if row is None:
            audit_failure(request, "ui.signin_failed", detail)
            return None, _login_page(request, next_url, failed_key, status=401)
        return row, None
    except RateLimitedError as e:
        return None, _login_page(request, next_url, "login.too_many", status=429, retry_after_s=e.retry_after_s)


@router.get("/login/once/{once}")
def login_once(request: Request, tokens: TokensDep, audit: AuditDep, once: str) -> Response:
    """Sign in with a one-time code printed by ``labwitness demo`` (see SessionStore.issue_once)."""
    store = stores(request)
    got: list = []

    def redeem():
        got.extend(store.redeem_once(once) or ())
        row = tokens.by_id(got[0]) if got else None  # the token may have been revoked since
        return row if row is not None and row.role in UI_ROLES else None

    row, refused = _attempt(request, "", "login.once_invalid", {"via": "one-time link"}, redeem)
    if refused is not None:
        return refused
    host = client_host(request)
    store.drop(request.cookies.get(SESSION_COOKIE))
    sid, _ = store.create(got[0], row.name, row.role)
    audit.append(f"{row.role}:{row.name}@{host}", "ui.signin", f"token:{row.id}", {"via": "one-time link"}, row.role)
    resp = redirect(HOME[row.role])
    resp.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="lax", secure=_secure(request), path="/")
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp


@router.post("/logout")
async def logout(request: Request, audit: AuditDep) -> Response:
    user = page("inspector", "operations")(request)
    await checked_form(request, user)
    stores(request).drop(request.cookies.get(SESSION_COOKIE))
    audit.append(user.actor, "ui.signout", f"token:{user.principal.token_id}", {}, user.role)
    resp = redirect("/login")
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


@router.get("/lang/{code}")
def set_language(request: Request, code: str, next: str = "/") -> Response:
    resp = redirect(local_path(next))
    if code in i18n.LANGUAGES:
        resp.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, httponly=True, samesite="lax", secure=_secure(request),
                        path="/")
    return resp
