"""Anonymous verify calls and failed sign-ins are limited per source address: a flood gets
429 (Retry-After; problem+json from the API) and leaves one counted summary row per source
and window in the audit log, so it cannot push real events out of view.  Real app, real
HTTP requests from several source addresses, the runtime's clock stepped by hand."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from api.rate_limit import AUTH_FAILED, VERIFY, Flood, Limit, SourceLimiter, source_of
from labwitness.clock import FakeClock
from labwitness.errors import IndexUnavailableError

from conftest import ACCESS, SECRET
from webtools import csrf_of

NO_PACKAGE = "0" * 32


@pytest.fixture
def site(tmp_path, seaweed):
    """A labwitness app (SQLite, SeaweedFS, no recorders) on a clock the test steps; the
    lifespan is the test's to enter (leaving it writes the pending summaries)."""
    from api.app import create_app
    from api.runtime import Runtime
    from api.settings import load_settings

    clock = FakeClock(datetime.now(timezone.utc).replace(microsecond=0))
    settings = load_settings(data_dir=tmp_path / "data", s3_endpoint=seaweed.endpoint, s3_access_key=ACCESS,
                             s3_secret_key=SECRET, s3_bucket="rate-limit", retention_jobs=False)
    with Runtime(settings, clock=clock, recording=False) as rt:
        yield create_app(settings, rt), rt, clock


def source(app, address: str) -> TestClient:
    return TestClient(app, client=(address, 40000), follow_redirects=False)


def rows(rt, action: str, actor: str | None = None) -> list:
    return [e for e in rt.audit.events(1000) if e.action == action and (actor is None or e.actor == actor)]


def _is_429(r, api: bool = True) -> bool:
    wait = int(r.headers.get("retry-after", "0"))
    ok = r.status_code == 429 and 1 <= wait <= 60
    if api:
        ok = ok and r.headers["content-type"] == "application/problem+json" and r.json()["status"] == 429
    return ok


def test_verify_flood_gets_429_and_one_counted_row(site):
    app, rt, clock = site
    with TestClient(app) as admin_client:
        flooder, neighbour = source(app, "192.0.2.10"), source(app, "192.0.2.11")
        answers = [flooder.get(f"/verify/{NO_PACKAGE}").status_code for _ in range(VERIFY.burst)]
        assert answers == [404] * VERIFY.burst  # served (no such package) and audited one by one
        refused = [flooder.get(f"/verify/{NO_PACKAGE}") for _ in range(30)]
        assert all(_is_429(r) for r in refused)
        page = flooder.get(f"/verify/{NO_PACKAGE}", headers={"Accept": "text/html"})  # a browser: a page, not JSON
        assert _is_429(page, api=False) and "text/html" in page.headers["content-type"]
        assert neighbour.get(f"/verify/{NO_PACKAGE}").status_code == 404  # another address is not affected

        _, token = rt.tokens.create("ops", "admin", "test")
        rt.audit.append("admin:ops", "camera.add", "cam-real", {}, "admin")  # a real event during the flood
        assert len(rows(rt, "export.verify", "public@192.0.2.10")) == VERIFY.burst
        assert rows(rt, "verify.flood") == []  # the window is still open

        clock.advance(VERIFY.window_s + 1)  # the window ends: the next request writes its summary
        assert flooder.get(f"/verify/{NO_PACKAGE}").status_code == 404
        (flood,) = rows(rt, "verify.flood")
        assert flood.actor == "public@192.0.2.10" and flood.role == "public"
        assert '"refused": 31' in flood.detail and f'"served": {VERIFY.burst}' in flood.detail
        recent = [e.action for e in rt.audit.events(100)]
        assert "camera.add" in recent and len(recent) < 30  # the real event is still in view
        assert rt.audit.verify().ok


def test_failed_sign_ins_get_429_and_one_counted_row(site):
    app, rt, clock = site
    _, good = rt.tokens.create("insp", "inspector", "test")
    with TestClient(app):
        guesser, colleague = source(app, "198.51.100.7"), source(app, "198.51.100.8")
        bad = {"Authorization": "Bearer lw_guess"}
        assert [guesser.get("/api/v1/areas", headers=bad).status_code for _ in range(AUTH_FAILED.burst)] == \
            [401] * AUTH_FAILED.burst
        assert len(rows(rt, "auth.failed", "public@198.51.100.7")) == AUTH_FAILED.burst
        assert all(_is_429(guesser.get("/api/v1/areas", headers=bad)) for _ in range(20))
        # over its budget, the source learns nothing: a right token is refused too, on the API and the sign-in page
        assert _is_429(guesser.get("/api/v1/areas", headers={"Authorization": f"Bearer {good}"}))
        form = guesser.get("/login")
        r = guesser.post("/login", data={"csrf": csrf_of(form.text), "token": good, "next": ""})
        assert _is_429(r, api=False) and "lw_session" not in r.headers.get("set-cookie", "")
        assert _is_429(guesser.get("/login/once/not-a-code"), api=False)
        assert colleague.get("/api/v1/areas", headers={"Authorization": f"Bearer {good}"}).status_code == 200
        assert len(rows(rt, "auth.failed")) == AUTH_FAILED.burst and rows(rt, "ui.signin_failed") == []

        clock.advance(AUTH_FAILED.window_s + 1)
        assert guesser.get("/api/v1/areas", headers={"Authorization": f"Bearer {good}"}).status_code == 200
        (flood,) = rows(rt, "auth.flood")
        assert flood.actor == "public@198.51.100.7" and '"refused": 23' in flood.detail


def test_web_sign_in_failures_count_with_the_api_ones(site):
    app, rt, clock = site
    with TestClient(app):
        b = source(app, "203.0.113.5")
        csrf = csrf_of(b.get("/login").text)
        for i in range(AUTH_FAILED.burst - 2):
            r = b.post("/login", data={"csrf": csrf, "token": f"lw_wrong{i}", "next": ""})
            assert r.status_code == 401
            csrf = csrf_of(r.text)  # each sign-in page brings a new form token
        r = b.get("/login/once/not-a-code")
        assert r.status_code == 401
        csrf = csrf_of(r.text)
        assert b.get("/api/v1/areas", headers={"Authorization": "Bearer lw_x"}).status_code == 401
        r = b.post("/login", data={"csrf": csrf, "token": "lw_wrong", "next": ""})
        assert _is_429(r, api=False) and "text/html" in r.headers["content-type"]
        assert len(rows(rt, "ui.signin_failed", "public@203.0.113.5")) == AUTH_FAILED.burst - 1
        assert len(rows(rt, "auth.failed", "public@203.0.113.5")) == 1
    # leaving the app writes the summary of the window still open
    (flood,) = rows(rt, "auth.flood")
    assert '"refused": 1' in flood.detail


def test_six_clients_hammering_write_a_bounded_number_of_rows(site):
    app, rt, _ = site
    before = len(rt.audit.events(10_000))
    with TestClient(app):
        codes: dict[int, list[int]] = {}

        def hammer(i: int) -> None:
            c = source(app, f"192.0.2.{100 + i}")
            got = codes.setdefault(i, [])
            for n in range(60):
                if n % 2:
                    got.append(c.get(f"/verify/{NO_PACKAGE}").status_code)
                else:
                    got.append(c.get("/api/v1/areas", headers={"Authorization": "Bearer lw_flood"}).status_code)

        threads = [threading.Thread(target=hammer, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for got in codes.values():  # each source: exactly its budgets served, the rest refused
        assert got.count(404) == VERIFY.burst and got.count(401) == AUTH_FAILED.burst
        assert got.count(429) == 60 - VERIFY.burst - AUTH_FAILED.burst
    written = len(rt.audit.events(10_000)) - before
    assert written == 6 * (VERIFY.burst + AUTH_FAILED.burst + 2)  # + one verify.flood and one auth.flood each
    assert len(rows(rt, "verify.flood")) == 6 and len(rows(rt, "auth.flood")) == 6


# -- the limiter itself ------------------------------------------------------------------------
def test_limiter_windows_budgets_and_summaries():
    clock = FakeClock(datetime(2026, 11, 1, tzinfo=timezone.utc))
    lim = SourceLimiter(clock)
    small = Limit("verify", 2, 10.0)
    assert lim.refuse_if_over(small, "a") is None  # nothing counted yet
    assert [lim.hit(small, "a") for _ in range(2)] == [None, None]
    assert lim.refuse_if_over(small, "a") == 10 and lim.hit(small, "a") == 10  # both count as refused
    clock.advance(4.5)
    assert lim.hit(small, "a") == 6  # Retry-After: the rest of the window, rounded up
    assert lim.hit(small, "b") is None  # per source
    written: list[Flood] = []
    assert lim.drain(written.append) == 0  # a window still open has no summary yet
    clock.advance(6)
    assert lim.hit(small, "a") is None  # a new window
    assert lim.drain(written.append) == 1
    assert [(f.source, f.refused, f.limit.kind) for f in written] == [("a", 3, "verify")]

    # an audit log that cannot write keeps the summary for the next drain
    lim.hit(small, "c"), lim.hit(small, "c"), lim.hit(small, "c")

    def down(_f):
        raise IndexUnavailableError("database down")

    with pytest.raises(IndexUnavailableError):
        lim.drain(down, final=True)
    assert lim.drain(written.append) == 1 and written[-1].source == "c"


def test_limiter_memory_is_bounded_and_keeps_counts():
    clock = FakeClock(datetime(2026, 11, 1, tzinfo=timezone.utc))
    lim = SourceLimiter(clock, max_sources=3)
    one = Limit("auth", 1, 60.0)
    lim.hit(one, "first"), lim.hit(one, "first")  # one refused
    for n, src in enumerate(("s2", "s3", "s4")):
        clock.advance(1)
        lim.hit(one, src)  # "s4" makes room: the oldest window ends early
    written: list[Flood] = []
    lim.drain(written.append)
    assert [(f.source, f.refused) for f in written] == [("first", 1)]


@pytest.mark.parametrize("host, key", [
    ("192.0.2.1", "192.0.2.1"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),  # one host usually owns its whole /64
    ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
    ("::ffff:192.0.2.1", "192.0.2.1"),
    ("testclient", "testclient"),
])
def test_source_address_keys(host, key):
    assert source_of(Request({"type": "http", "client": (host, 1), "headers": []})) == key
