"""Who may open which web UI page (every UI route x anonymous and every role), and
what pages never show: camera passwords anywhere, footage links to operations."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from fastapi.routing import APIRoute

from index.models import ExportPackage
from labwitness.clock import utc_ms

from api.web.session import SESSION_COOKIE
from webtools import CAMERA_PASSWORD, REPORT, browser, csrf_of, sign_in, web_runtime

PUBLIC = "public"
UI_ROLES = ("admin", "inspector", "operations")
# (method, path) -> roles besides admin that may use it
PAGES: dict[tuple[str, str], set[str] | str] = {
    ("GET", "/"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("GET", "/login/once/{once}"): PUBLIC,
    ("GET", "/lang/{code}"): PUBLIC,
    ("POST", "/logout"): {"inspector", "operations"},
    ("GET", "/ui/cameras"): {"inspector", "operations"},
    ("GET", "/ui/cameras/rows"): {"inspector", "operations"},
    ("POST", "/ui/cameras/add"): set(),
    ("POST", "/ui/cameras/{camera_id}/update"): set(),
    ("POST", "/ui/cameras/{camera_id}/remove"): set(),
    ("POST", "/ui/cameras/{camera_id}/time/ntp"): set(),
    ("POST", "/ui/cameras/{camera_id}/time/sync"): set(),
    ("GET", "/ui/discovery"): set(),
    ("GET", "/ui/discovery/status"): set(),
    ("POST", "/ui/discovery/scan"): set(),
    ("POST", "/ui/discovery/add"): set(),
    ("GET", "/ui/areas"): set(),
    ("POST", "/ui/areas"): set(),
    ("GET", "/ui/equipment"): set(),
    ("POST", "/ui/equipment"): set(),
    ("GET", "/ui/audit"): set(),
    ("GET", "/ui/search"): {"inspector"},
    ("GET", "/ui/report"): {"inspector"},
    ("POST", "/ui/report/export"): {"inspector"},
    ("GET", "/ui/exports/{package_id}"): {"inspector"},
    ("GET", "/ui/exports/{package_id}/qr.png"): {"inspector"},
    ("GET", "/ui/health"): {"operations"},
    ("GET", "/ui/compliance"): {"operations"},
}
FORBIDDEN = ("无权访问此页面", "You may not open this page")  # the 403 page, in either language (/lang/en is in the matrix)


def forbidden(text: str) -> bool:
    return any(f in text for f in FORBIDDEN)


QUERY = {"/ui/report": f"?no={REPORT}", "/lang/{code}": "?next=/", "/ui/search": f"?report_no={REPORT}"}


@pytest.fixture
def web(tmp_path, seaweed):
    with web_runtime(tmp_path, seaweed) as w:
        yield w


def _fake_package(rt) -> str:
    pid = uuid.uuid4().hex
    from sqlmodel import Session

    with Session(rt.index.engine) as s:
        s.add(ExportPackage(id=pid, report_no=REPORT, created_ms=utc_ms(rt.clock.now()), actor="inspector:x", status="done",
                            progress=1.0, manifest=json.dumps({"verify_url": f"http://127.0.0.1:8000/verify/{pid}"}),
                            package_sha256="1" * 64))
        s.commit()
    return pid


def test_every_ui_route_every_role(web):
    client, rt, tokens = web
    app = client.app
    from api.web import PAGE_ROUTERS

    ui_routes = {(m, r.path) for router in PAGE_ROUTERS for r in router.routes if isinstance(r, APIRoute) for m in r.methods}
    assert ui_routes == set(PAGES), f"UI routes without an expectation: {ui_routes ^ set(PAGES)}"
    pid = _fake_package(rt)
    params = {"camera_id": "cam-web", "package_id": pid, "code": "en", "once": "not-a-code"}
    seg_id = next(rt.index.iter_segments("cam-web")).id

    browsers = {"anonymous": browser(app)}
    for role in UI_ROLES:
        browsers[role] = sign_in(app, tokens[role])
        assert browsers[role].last_login.status_code == 303
    ingest = sign_in(app, tokens["ingest"])  # an ingest token cannot sign in at all
    assert ingest.last_login.status_code == 403
    browsers["ingest"] = ingest
    csrf = {role: csrf_of(b.get("/ui/cameras" if role != "inspector" else "/ui/search").text)
            for role, b in browsers.items() if role in UI_ROLES}
    cameras_before = [(c.id, c.enabled, c.area_id) for c in rt.registry.cameras()]

    for (method, path), allowed in sorted(PAGES.items()):
        url = re.sub(r"\{(\w+)\}", lambda m: params[m.group(1)], path) + QUERY.get(path, "")
        for who, b in browsers.items():
            ok = allowed == PUBLIC or who == "admin" or (isinstance(allowed, set) and who in allowed)
            if method == "GET":
                r = b.get(url, headers={"Accept": "text/html"})
                if path == "/login/once/{once}":  # a made-up one-time code signs nobody in
                    assert r.status_code == 401 and SESSION_COOKIE not in r.headers.get("set-cookie", ""), (who, r.status_code)
                elif allowed == PUBLIC:
                    assert r.status_code in (200, 303), (path, who, r.status_code)
                elif ok:
                    assert r.status_code == 200, (path, who, r.status_code, r.text[:300])
                elif who in ("anonymous", "ingest"):
                    assert r.status_code == 303 and r.headers["location"].startswith("/login"), (path, who, r.status_code)
                else:
                    assert r.status_code == 403 and forbidden(r.text), (path, who, r.status_code)
                if r.status_code == 200 and r.headers["content-type"].startswith("text/html"):
                    assert CAMERA_PASSWORD not in r.text, (path, who)
                    if who == "operations" or allowed == PUBLIC:
                        assert "/media" not in r.text and "/segments/" not in r.text, (path, who)
                    if who in ("anonymous", "ingest"):
                        assert "/thumbnail" not in r.text, (path, who)
                    if path == "/ui/report":
                        assert f"/api/v1/segments/{seg_id}/media" in r.text  # the player's segment list (sanity)
            else:
                # refused by role with the caller's own valid CSRF token; allowed roles get as far as
                # the CSRF check (sent without one here, so that the matrix changes nothing)
                r = b.post(url, data={} if ok else {"csrf": csrf.get(who, "x")})
                if path == "/login" or ok:
                    assert r.status_code == 403 and ("表单已失效" in r.text or "form expired" in r.text), (path, who, r.status_code)
                elif who in ("anonymous", "ingest"):
                    assert r.status_code == 303 and r.headers["location"] == "/login", (path, who, r.status_code)
                else:
                    assert r.status_code == 403 and forbidden(r.text), (path, who, r.status_code)
    # nothing was changed by any of it
    assert [(c.id, c.enabled, c.area_id) for c in rt.registry.cameras()] == cameras_before


def test_no_page_shows_a_camera_password_even_in_english(web):
    client, rt, tokens = web
    admin = sign_in(client.app, tokens["admin"])
    admin.get("/lang/en")
    for url in ("/", "/ui/cameras", "/ui/cameras/rows", "/ui/discovery", "/ui/areas", "/ui/equipment", "/ui/audit",
                "/ui/search", f"/ui/report?no={REPORT}", "/ui/health", "/ui/compliance"):
        r = admin.get(url)
        assert r.status_code == 200 and CAMERA_PASSWORD not in r.text, url
    assert 'lang="en"' in admin.get("/ui/cameras").text
    # the API that serves the camera list does not either
    assert CAMERA_PASSWORD not in admin.get("/api/v1/cameras").text


def test_operations_pages_have_no_footage_links(web):
    client, rt, tokens = web
    ops = sign_in(client.app, tokens["operations"])
    for url in ("/ui/health", "/ui/compliance", "/ui/cameras", "/ui/cameras/rows", "/"):
        text = ops.get(url).text
        assert "/media" not in text and "/segments/" not in text and "/exports/" not in text, url
    nav = ops.get("/ui/health").text
    assert 'href="/ui/search"' not in nav and 'href="/ui/audit"' not in nav and 'href="/ui/health"' in nav
    assert "证据包导出" in nav and "排队 0 个 · 生成中 0 个" in nav  # the export queue (zh-CN first)
    ops.get("/lang/en")
    assert "Evidence exports" in ops.get("/ui/health").text and "0 queued · 0 being built" in ops.get("/ui/health").text
