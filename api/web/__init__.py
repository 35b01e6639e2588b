"""The web UI (server-rendered: FastAPI + Jinja2 + vendored htmx), zh-CN first.

``install(app)`` is all ``api.app.create_app`` needs: it includes the UI pages
(``router``, kept out of the OpenAPI schema), the REST thumbnail endpoint
(``api_router``), the static files (``/static``, no CDN: labs may be offline),
the session store and relay (see :mod:`api.web.session`) and the handlers that
turn "not signed in" into a redirect and "not your role" into a 403 page.

Modules: ``session`` (sign-in sessions, CSRF, role gates), ``i18n`` (zh-CN and
en catalogs), ``render`` (Jinja2, security headers), ``pages`` (redirects, error
pages, the verify page), ``timeline`` (report timelines), ``public`` (status
page, sign-in, language), ``admin``, ``inspector``, ``ops`` (pages by role).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Path as PathParam, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from labwitness.errors import NotFoundError

from api.auth import Reader
from api.deps import AuditDep, IndexDep
from api.web import admin, inspector, ops, pages, public
from api.web.session import (
    CsrfRefused, PageForbidden, SessionRelay, SessionStore, SignInRequired, htmx_page, login_url,
)

STATIC = Path(__file__).parent / "static"

PAGE_ROUTERS = (public.router, admin.router, inspector.router, ops.router)
router = APIRouter(include_in_schema=False)
for _r in PAGE_ROUTERS:
    router.include_router(_r)

api_router = APIRouter(prefix="/api/v1")


@api_router.get("/cameras/{camera_id}/thumbnail", responses={200: {"content": {"image/jpeg": {}}}, 404: {}})
def camera_thumbnail(index: IndexDep, audit: AuditDep, who: Reader,
                     camera_id: Annotated[str, PathParam(max_length=64)]) -> Response:
    """The camera's latest content sample as a small JPEG (the content-health job's
    thumbnail); 404 when the camera has none yet.  ``X-Labwitness-Sample-Source`` says where
    it came from: ``sub`` (the camera's sub stream) or ``main`` (the recorded main stream)."""
    thumb = index.thumbnail(camera_id)
    if thumb is None:
        raise NotFoundError(f"该摄像机暂无缩略图 / no thumbnail for camera {camera_id!r} yet")
    # a picture from the footage is a footage read: audited, once per person, camera and ten
    # minutes (the cameras page refreshes it every few seconds)
    audit.append_once(who.actor, "footage.thumbnail", f"camera:{camera_id}", {"sample_ms": thumb.sample_ms}, who.role)
    return Response(thumb.jpeg, media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=30", "X-Content-Type-Options": "nosniff",
                             "X-Labwitness-Sample-Source": thumb.source or "unknown"})


def install(app: FastAPI, *, idle_s: float = 3600.0, absolute_s: float = 12 * 3600.0) -> None:
    # rows in the index (every API node shares them); the engine exists once the runtime started
    store = SessionStore(lambda: app.state.runtime.index.engine, idle_s=idle_s, absolute_s=absolute_s)
    app.state.web_sessions = store
    app.state.web_scan = admin.ScanJob()
    app.state.web_scan_lock = threading.Lock()
    app.include_router(router)
    app.include_router(api_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(SessionRelay, store=store)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        if request.headers.get("hx-request"):
            # an htmx fragment (a table refreshing itself): send the whole page to sign-in, and
            # back afterwards to the page the browser showed, not to the bare fragment
            return Response(status_code=401, headers={"HX-Redirect": login_url(htmx_page(request))})
        url = login_url(exc.next_url if request.method == "GET" else "")
        return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})

    @app.exception_handler(PageForbidden)
    async def _forbidden(request: Request, exc: PageForbidden) -> Response:
        return pages.forbidden_page(request)

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, exc: CsrfRefused) -> Response:
        return pages.csrf_page(request)
