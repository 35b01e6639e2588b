"""Web UI building blocks: message catalogs, sessions (expiry, sign-out, revocation),
CSRF refusal, the session relay to the API, the thumbnail endpoint, timelines."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from api.web import i18n, timeline
from api.web.session import SESSION_COOKIE, SessionStore, local_path

from webtools import CAMERA_PASSWORD, REPORT, browser, csrf_of, sign_in, web_runtime

WEB = Path(__file__).resolve().parents[1] / "api" / "web"


# -- i18n ------------------------------------------------------------------------------
def test_every_message_in_both_languages_with_the_same_placeholders():
    assert i18n.DEFAULT == "zh-CN" and set(i18n.LANGUAGES) == {"zh-CN", "en"}
    keys = set(i18n.CATALOGS["zh-CN"])
    assert keys == set(i18n.CATALOGS["en"])
    for key in keys:
        zh, en = i18n.CATALOGS["zh-CN"][key], i18n.CATALOGS["en"][key]
        assert zh.strip() and en.strip(), key
        assert i18n.placeholders(zh) == i18n.placeholders(en), key
    # a key written twice in the table would silently lose one of its texts
    tree = ast.parse((WEB / "i18n.py").read_text(encoding="utf-8"))
    table = next(n.value for n in ast.walk(tree) if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "_MESSAGES")
    literal = [k.value for k in table.keys]
    assert len(literal) == len(set(literal)), [k for k in literal if literal.count(k) > 1]


def test_every_key_the_ui_uses_exists():
    used: set[str] = set()
    for tpl in (WEB / "templates").glob("*.html"):
        found = re.findall(r"""\bt\(\s*["']([a-z0-9_.-]+)["']""", tpl.read_text(encoding="utf-8"))
        used |= {k for k in found if not k.endswith((".", "_"))}  # "prefix." ~ value: listed below
    for py in WEB.glob("*.py"):
        src = py.read_text(encoding="utf-8")
        used |= set(re.findall(r'message_key="([a-z_.]+)"', src))
        used |= set(re.findall(r'_login_page\([^)]*"(login\.[a-z_]+)"', src))
        used |= {f"flash.{k}" for k in re.findall(r'attempt\(user, "([a-z_.]+)"', src)}
    # keys built from values: every value the code can produce
    from api.ingest import TestRecordIn
    from api.web.render import NAV

    used |= {f"lang.{c}" for c in i18n.LANGUAGES} | {f"role.{r}" for r in ("admin", "inspector", "operations", "ingest")}
    used |= {f"timeline.{k}" for k in timeline.KINDS} | {"timeline.mark_start", "timeline.mark_end"}
    used |= {key for _, key, _ in NAV}
    content = TestRecordIn.model_fields.keys() - {"started_at", "ended_at"} | {"started_ms", "ended_ms"}
    used |= {f"record.f.{f}" for f in content}
    used |= {f"state.{s}" for s in ("starting", "recording", "reconnecting", "spool_full", "stopped", "stalled", "disabled")}
    used |= {f"reason.{r}" for r in ("timeout", "refused", "auth_failed", "no_video", "unsupported_codec", "unreachable",
                                     "decode_error", "spool_full", "recorder_down", "recorder_stopped", "stream_ended",
                                     "not_rtsp", "unknown", "not_found", "stream_error", "spool_error")}
    from index.tiling import REASONS

    used |= {f"reason.{r}" for r in REASONS}  # what index.tiling says of uncovered time
    used |= {f"level.{x}" for x in ("ok", "info", "warning", "critical")} | {f"pkg.{x}" for x in ("running", "done", "failed")}
    missing = sorted(k for k in used if not i18n.has(k))
    assert not missing, missing
    assert len(used) > 150


def test_translation_falls_back_and_formats():
    assert i18n.t("en", "report.title", no="JC-1") == "Report JC-1"
    assert i18n.t("zh-CN", "report.title", no="JC-1") == "报告 JC-1"
    assert i18n.t("xx", "verify.genuine") == "真实有效"  # unknown language: zh-CN
    assert i18n.t("en", "no.such.key") == "no.such.key"


# -- sessions --------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def session_engine(tmp_path):
    from index.db import make_engine
    from index.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'sessions.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def test_session_idle_and_absolute_expiry(session_engine):
    clock = FakeClock()
    store = SessionStore(session_engine, idle_s=60, absolute_s=300, clock=clock)
    sid, sess = store.create(7, "n", "inspector")
    got = store.get(sid)
    assert got.id_hash == sess.id_hash and got.token_id == 7 and got.csrf == sess.csrf
    assert store.get("other") is None and store.get(None) is None
    clock.t += 59
    assert store.get(sid) is not None  # touched: idle time starts again
    clock.t += 59
    assert store.get(sid) is not None
    clock.t += 61
    assert store.get(sid) is None  # idle too long, and gone for good
    assert len(store) == 0  # the expired row was deleted, not just ignored
    clock.t = 1000.0
    sid, _ = store.create(8, "n", "admin")
    for _ in range(6):
        clock.t += 55
        store.get(sid)
    assert store.get(sid) is None  # active all along, but past the absolute lifetime
    # only hashes of ids are kept, and no token at all: the table has no column for one
    from index.models import WebSession

    sid, _ = store.create(9, "n", "admin")
    with session_engine.connect() as c:
        dump = repr(c.execute(WebSession.__table__.select()).all())
    assert sid not in dump and "lw_" not in dump and "token_id" in WebSession.__table__.c


def test_expired_sessions_are_purged(session_engine):
    clock = FakeClock()
    store = SessionStore(session_engine, idle_s=60, absolute_s=300, clock=clock)
    for i in range(3):
        store.create(i, "n", "admin")
    store.issue_once(1, "n", "admin", ttl_s=30)
    clock.t += 120  # idle past the limit, and the code past its expiry
    assert store.rows().purge(60_000) == 4
    assert store.rows().count("session") == 0 and store.rows().count("once") == 0


def test_session_store_is_bounded(session_engine):
    clock = FakeClock()
    store = SessionStore(session_engine, max_sessions=3, clock=clock)
    ids = []
    for i in range(5):
        clock.t += 1  # least recently used is the first
        ids.append(store.create(i, "n", "admin")[0])
    assert len(store) == 3 and store.get(ids[0]) is None and store.get(ids[-1]) is not None


@pytest.mark.parametrize("url, ok", [("/ui/search?x=1", True), ("//evil.example/x", False), ("https://evil.example", False),
                                     ("/\\evil", False), ("ui/x", False), ("", False), ("/x\n", False)])
def test_next_is_only_a_local_path(url, ok):
    assert (local_path(url, "DEFAULT") == url) is ok


@pytest.fixture
def web(tmp_path, seaweed):
    with web_runtime(tmp_path, seaweed) as w:
        yield w


def test_sign_in_cookie_sign_out_and_revocation(web):
    client, rt, tokens = web
    b = sign_in(client.app, tokens["inspector"])
    r = b.last_login
    assert r.status_code == 303 and r.headers["location"] == "/ui/search"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax") and "Secure" not in cookie  # http here
    sid = b.cookies.get(SESSION_COOKIE)
    assert sid and len(sid) >= 40 and tokens["inspector"] not in cookie
    assert b.get("/ui/search").status_code == 200
    # sign-out ends the session on the server: the old cookie no longer works
    page = b.get("/ui/search")
    out = b.post("/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    stale = browser(client.app)
    stale.cookies.set(SESSION_COOKIE, sid)
    r = stale.get("/ui/search")
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=/ui/search")
    # revoking the token ends its sessions at the next request
    b2 = sign_in(client.app, tokens["operations"])
    assert b2.get("/ui/health").status_code == 200
    tid = next(t.id for t in rt.tokens.list() if t.name == "web-operations")
    rt.tokens.revoke(tid)
    assert b2.get("/ui/health").status_code == 303
    # an ingest token has no UI; a wrong token is refused; both are audited
    assert sign_in(client.app, tokens["ingest"]).last_login.status_code == 403
    assert sign_in(client.app, "lw_wrong").last_login.status_code == 401
    actions = [e.action for e in rt.audit.events(50)]
    assert {"ui.signin", "ui.signout", "ui.signin_refused", "ui.signin_failed"} <= set(actions)


def test_session_expiry_redirects_pages_and_htmx(web):
    client, rt, tokens = web
    clock = FakeClock()
    store = client.app.state.web_sessions
    old_clock, store.clock = store.clock, clock
    try:
        b = sign_in(client.app, tokens["admin"])
        assert b.get("/ui/areas").status_code == 200
        clock.t += store.idle_s + 1
        r = b.get("/ui/areas")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/ui/areas"
        r = b.get("/ui/cameras/rows", headers={"HX-Request": "true"})
        assert r.status_code == 401 and r.headers["hx-redirect"] == "/login"
        # back to the page the browser showed after signing in, never to the bare table fragment
        r = b.get("/ui/cameras/rows", headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/ui/cameras?area=a1"})
        assert r.status_code == 401 and r.headers["hx-redirect"] == "/login?next=/ui/cameras%3Farea%3Da1"
        for foreign in ("http://evil.example/ui/cameras", "//evil.example/x", "javascript:alert(1)"):
            r = b.get("/ui/cameras/rows", headers={"HX-Request": "true", "HX-Current-URL": foreign})
            assert r.headers["hx-redirect"] == "/login", foreign
    finally:
        store.clock = old_clock


def test_csrf_is_checked_on_every_post(web):
    client, rt, tokens = web
    b = sign_in(client.app, tokens["admin"])
    token = csrf_of(b.get("/ui/areas").text)
    area = {"id": "hunningtu", "name": "混凝土室", "description": ""}
    for bad in ({}, {"csrf": ""}, {"csrf": "x" * 43}):
        r = b.post("/ui/areas", data={**area, **bad})
        assert r.status_code == 403 and "表单已失效" in r.text
    r = b.post("/ui/areas", data={**area, "csrf": token}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    r = b.post("/ui/areas", json={**area, "csrf": token})  # only urlencoded forms are accepted
    assert r.status_code == 403
    assert "hunningtu" not in {a.id for a in rt.registry.areas()}
    # another session's token does not work either
    other = sign_in(client.app, tokens["admin"])
    assert other.post("/ui/areas", data={**area, "csrf": token}).status_code == 403
    r = b.post("/ui/areas", data={**area, "csrf": token}, headers={"Origin": "http://testserver"})
    assert r.status_code == 303 and "hunningtu" in {a.id for a in rt.registry.areas()}
    # sign-out needs it too, and so does sign-in (double-submit cookie: no login CSRF)
    assert b.post("/logout", data={}).status_code == 403
    fresh = browser(client.app)
    r = fresh.post("/login", data={"csrf": "made-up", "token": tokens["admin"]})
    assert r.status_code == 403 and SESSION_COOKIE not in fresh.cookies
    page = fresh.get("/login")
    fresh.cookies.delete("lw_login_csrf")
    assert fresh.post("/login", data={"csrf": csrf_of(page.text), "token": tokens["admin"]}).status_code == 403


def test_changes_through_the_forms_are_the_apis(web):
    client, rt, tokens = web
    b = sign_in(client.app, tokens["admin"])
    token = csrf_of(b.get("/ui/equipment").text)
    r = b.post("/ui/equipment", data={"csrf": token, "id": "UTM-02", "name": "压力试验机", "area_id": "lixue", "kind": "",
                                      "camera_ids": ["cam-web"]})
    assert r.status_code == 303
    assert dict((e.id, cams) for e, cams in rt.registry.equipment())["UTM-02"] == ["cam-web"]
    # refused input comes back as a message, nothing is written
    r = b.post("/ui/cameras/add", data={"csrf": token, "id": "../x", "rtsp_url": "rtsp://127.0.0.1/x"})
    assert r.status_code == 303
    page = b.get("/ui/cameras").text
    assert "flash error" in page and "../x" not in {c.id for c in rt.registry.cameras()}
    r = b.post("/ui/cameras/cam-web/update", data={"csrf": token, "name": "改名", "area_id": "lixue"})  # unchecked: disabled
    assert r.status_code == 303 and rt.registry.camera("cam-web").enabled is False
    assert rt.registry.camera("cam-web").name == "改名"
    revs = [v.actor for v in rt.registry.revisions("camera", "cam-web")]
    assert any(a.startswith("admin:web-admin@") for a in revs)
    assert any(e.action == "camera.update" for e in rt.audit.events(20))


def test_session_relay_lets_the_browser_reach_the_api_with_its_role(web):
    client, rt, tokens = web
    anon = browser(client.app)
    assert anon.get("/api/v1/areas").status_code == 401
    insp = sign_in(client.app, tokens["inspector"])
    assert insp.get("/api/v1/areas").status_code == 200
    assert insp.get("/api/v1/audit").status_code == 403  # the API's own role check
    ops = sign_in(client.app, tokens["operations"])
    assert ops.get("/api/v1/segments/1/media").status_code == 403
    assert ops.get(f"/api/v1/reports/{REPORT}/footage").status_code == 403
    # state changes never ride on the cookie
    admin = sign_in(client.app, tokens["admin"])
    assert admin.post("/api/v1/areas", json={"id": "x", "name": "x"}).status_code == 401
    assert admin.delete("/api/v1/cameras/cam-web").status_code == 401
    # not for requests another site started
    assert insp.get("/api/v1/areas", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 401
    assert insp.get("/api/v1/areas", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    # an explicit Authorization header is never replaced
    assert insp.get("/api/v1/areas", headers={"Authorization": "Bearer lw_bad"}).status_code == 401


def test_thumbnail_endpoint(web):
    from sqlmodel import Session

    from index.models import CameraContentState

    client, rt, tokens = web
    auth = {r: {"Authorization": f"Bearer {t}"} for r, t in tokens.items()}
    assert client.get("/api/v1/cameras/cam-web/thumbnail", headers=auth["inspector"]).status_code == 404
    jpeg = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"
    with Session(rt.index.engine) as s:
        s.add(CameraContentState(camera_id="cam-web", thumbnail_jpeg=jpeg))
        s.commit()
    for role in ("admin", "inspector", "operations"):
        r = client.get("/api/v1/cameras/cam-web/thumbnail", headers=auth[role])
        assert r.status_code == 200 and r.content == jpeg and r.headers["content-type"] == "image/jpeg"
    assert client.get("/api/v1/cameras/cam-web/thumbnail", headers=auth["ingest"]).status_code == 403
    assert browser(client.app).get("/api/v1/cameras/cam-web/thumbnail").status_code == 401
    page = sign_in(client.app, tokens["operations"]).get("/ui/cameras").text
    assert 'src="/api/v1/cameras/cam-web/thumbnail"' in page


def test_verify_page_html_for_browsers_json_for_clients(web):
    client, rt, tokens = web
    pid = "0" * 32
    anon = browser(client.app)
    r = anon.get(f"/verify/{pid}", headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "查无此证据包" in r.text and 'lang="zh-CN"' in r.text
    anon.cookies.set("lw_lang", "en")
    assert "No such evidence package" in anon.get(f"/verify/{pid}", headers={"Accept": "text/html"}).text
    r = anon.get(f"/verify/{pid}")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


def test_public_pages_show_no_footage_or_secrets(web):
    client, rt, tokens = web
    anon = browser(client.app)
    home = anon.get("/")
    assert home.status_code == 200 and "万能试验机" in home.text and "COMPLIANCE" in home.text
    for text in (home.text, anon.get("/login").text):
        assert "/media" not in text and "thumbnail" not in text and CAMERA_PASSWORD not in text
    assert home.headers["content-security-policy"].startswith("default-src 'self'")
    assert home.headers["x-frame-options"] == "DENY"


def test_templates_escape(web):
    client, rt, tokens = web
    from index.models import Area

    rt.registry.put_area(Area(id="xss", name="<script>alert(1)</script>", created_ms=0), actor="test")
    page = sign_in(client.app, tokens["admin"]).get("/ui/areas").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# -- timeline ---------------------------------------------------------------------------
def test_timeline_bars_merge_clips_and_mark_gaps():
    lo, hi = 0, 100_000
    clips = [(1, 10_000, 20_000, "a"), (2, 20_000, 30_000, "b"), (3, 30_500, 40_000, "c"), (4, 60_000, 70_000, "d")]
    gaps = [(40_000, 55_000, "timeout"), (65_000, 80_000, "refused")]
    bars = timeline.bars(lo, hi, clips, gaps)
    got = [(b.kind, b.start_ms, b.end_ms, b.reason) for b in bars]
    assert got == [("missing", 0, 10_000, ""), ("footage", 10_000, 40_000, ""), ("gap", 40_000, 55_000, "timeout"),
                   ("missing", 55_000, 60_000, ""), ("footage", 60_000, 70_000, ""), ("gap", 70_000, 80_000, "refused"),
                   ("missing", 80_000, 100_000, "")]
    assert bars[1].x == 10.0 and bars[1].w == 30.0
    assert sum(b.w for b in bars) == pytest.approx(100.0)


def test_timeline_edges():
    assert timeline.bars(0, 0, [], []) == []
    only_gap = timeline.bars(0, 1000, [], [(-500, 2000, "timeout")])
    assert [(b.kind, b.start_ms, b.end_ms) for b in only_gap] == [("gap", 0, 1000)]
    week = [(i, i * 60_000, (i + 1) * 60_000, "") for i in range(7 * 24 * 60)]
    assert len(timeline.bars(0, 7 * 86_400_000, week, [])) == 1  # ten thousand clips, one bar
    assert timeline.marker(0, 100, 50) == 50.0 and timeline.marker(0, 100, 150) is None
    assert [t.x for t in timeline.ticks(0, 1000)] == [0.0, 25.0, 50.0, 75.0, 100.0]


def test_one_time_sign_in_link_works_once_and_expires(web):
    """What `labwitness demo` prints: a code that signs in once, never the token in a URL."""
    client, rt, tokens = web
    store = client.app.state.web_sessions
    tid = {t.name: t.id for t in rt.tokens.list()}
    code = store.issue_once(tid["web-admin"], "web-admin", "admin", ttl_s=60)
    assert tokens["admin"] not in code
    b = browser(client.app)
    r = b.get(f"/login/once/{code}")
    assert r.status_code == 303 and r.headers["location"] == "/ui/cameras"
    assert "HttpOnly" in r.headers["set-cookie"] and b.get("/ui/cameras").status_code == 200
    again = browser(client.app).get(f"/login/once/{code}")  # used up
    assert again.status_code == 401 and SESSION_COOKIE not in again.headers.get("set-cookie", "")
    clock = FakeClock()
    old, store.clock = store.clock, clock
    try:
        late = store.issue_once(tid["web-admin"], "web-admin", "admin", ttl_s=60)
        clock.t += 61
        assert browser(client.app).get(f"/login/once/{late}").status_code == 401
    finally:
        store.clock = old
    # a revoked token's code signs nobody in
    code = store.issue_once(tid["web-operations"], "web-operations", "operations")
    rt.tokens.revoke(next(t.id for t in rt.tokens.list() if t.name == "web-operations"))
    assert browser(client.app).get(f"/login/once/{code}").status_code == 401
    assert [e.detail for e in rt.audit.events(50) if e.action == "ui.signin" and "one-time" in e.detail]
