"""Web sessions live in the database (api.web.session, index.web_sessions): two API processes on
one PostgreSQL share them; a restart keeps them; sign-out and token revocation end them on
every node at once; the database holds no token and no session id.  Real processes, real HTTP."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text

from conftest import free_port
from test_export_queue import Node, _settings_env
from webtools import csrf_of
from api.web.session import SESSION_COOKIE


class Api:
    def __init__(self, env: dict) -> None:
        self.port = free_port()
        self.env = env
        self.node = Node(env, "api", str(self.port))
        self.url = f"http://127.0.0.1:{self.port}"

    def restart(self) -> None:
        self.node.stop()
        self.node = Node(self.env, "api", str(self.port))

    def browser(self, sid: str | None = None) -> httpx.Client:
        c = httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)
        if sid:
            c.cookies.set(SESSION_COOKIE, sid)
        return c


def _sign_in(api: Api, token: str) -> str:
    with api.browser() as b:
        page = b.get("/login")
        r = b.post("/login", data={"csrf": csrf_of(page.text), "token": token, "next": ""})
        assert r.status_code == 303, r.text
        return b.cookies.get(SESSION_COOKIE)


def _page(api: Api, sid: str) -> int:
    with api.browser(sid) as b:
        return b.get("/ui/search").status_code


def _relay(api: Api, sid: str) -> int:
    """A <video>/download-style GET under /api/v1 with the cookie only (the session relay)."""
    with api.browser(sid) as b:
        return b.get("/api/v1/exports/no-such-package").status_code  # 404 once authenticated, 401 without


@pytest.fixture
def two_api_nodes(tmp_path, seaweed, pg_url):
    from api.runtime import Runtime
    from api.settings import load_settings

    env = _settings_env(tmp_path, seaweed, pg_url, "session-footage")
    settings = load_settings(**{k[len("LABWITNESS_"):].lower(): v for k, v in env.items() if k.startswith("LABWITNESS_")})
    with Runtime(settings, recording=False) as rt:  # migrates, makes the lab's keys: both nodes share them
        tokens = {r: rt.tokens.create(f"s-{r}", r, "test") for r in ("inspector", "admin")}
    nodes = [Api(env), Api(env)]
    try:
        yield nodes, tokens, pg_url
    finally:
        for n in nodes:
            n.node.stop()


def test_sessions_are_shared_survive_restarts_and_end_everywhere(two_api_nodes):
    (a, b), tokens, pg_url = two_api_nodes
    (insp_row, insp), (admin_row, admin) = tokens["inspector"], tokens["admin"]
    sid = _sign_in(a, insp)
    assert _page(a, sid) == 200 and _page(b, sid) == 200  # signed in on A, used on B
    assert _relay(b, sid) == 404 and _relay(a, "not-a-session") == 401  # the relay acts as the token on B too
    a.restart()
    assert _page(a, sid) == 200  # a restart keeps it
    # nothing in the database signs anyone in: no token, no session id
    from sqlalchemy import create_engine

    engine = create_engine(pg_url)
    with engine.connect() as c:
        dump = repr(c.execute(text("SELECT * FROM web_session")).all())
    engine.dispose()
    assert sid not in dump and insp not in dump and str(insp_row.id) in dump
    # sign-out on B ends it on A
    with b.browser(sid) as br:
        page = br.get("/ui/search")
        assert br.post("/logout", data={"csrf": csrf_of(page.text)}).status_code == 303
    assert _page(a, sid) == 303 and _page(b, sid) == 303 and _relay(a, sid) == 401
    # revocation (through the API on B) ends a session made on A, on both, at once
    sid2 = _sign_in(a, insp)
    assert _page(b, sid2) == 200
    with b.browser() as api:
        r = api.delete(f"/api/v1/tokens/{insp_row.id}", headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 200, r.text
    assert _relay(a, sid2) == 401 and _page(a, sid2) == 303 and _page(b, sid2) == 303


def test_a_session_survives_a_restart_on_sqlite(tmp_path, seaweed):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.runtime import Runtime
    from api.settings import load_settings
    from conftest import ACCESS, SECRET
    from webtools import browser, sign_in

    settings = load_settings(data_dir=tmp_path / "data", s3_endpoint=seaweed.endpoint, s3_access_key=ACCESS,
                             s3_secret_key=SECRET, s3_bucket="session-sqlite", retention_jobs=False)
    with Runtime(settings, recording=False) as rt:
        _, token = rt.tokens.create("s-inspector", "inspector", "test")
        with TestClient(create_app(settings, rt)) as client:
            sid = sign_in(client.app, token).cookies.get(SESSION_COOKIE)
            assert sid
    with Runtime(settings, recording=False) as rt:  # the service started again on the same SQLite index
        with TestClient(create_app(settings, rt)) as client:
            b = browser(client.app)
            b.cookies.set(SESSION_COOKIE, sid)
            assert b.get("/ui/search").status_code == 200
            b.cookies.set(SESSION_COOKIE, sid[:-2] + "xx")
            assert b.get("/ui/search").status_code == 303


def test_sessions_are_judged_on_the_database_clock(pg_url):
    """A session row written on one API node is judged on another by the database's clock (index.dbclock):
    a node whose clock runs two hours ahead keeps a fresh session made on a node two hours behind, and the
    slow node does not honour a session that has expired."""
    import time

    from index.db import make_engine
    from index.migrate import upgrade
    from index.web_sessions import WebSessionStore

    engine = make_engine(pg_url)
    upgrade(engine)
    wall = lambda: int(time.time() * 1000)  # noqa: E731
    fast, slow = WebSessionStore(engine, lambda: wall() + 7_200_000), WebSessionStore(engine, lambda: wall() - 7_200_000)
    try:
        slow.add("fresh", "session", 1, "n", "inspector", "c", 3_600_000)
        assert fast.get("fresh", "session", 60_000) is not None  # with node clocks: expired an hour ago, deleted
        assert fast.purge(60_000) == 0 and fast.count() == 1
        fast.add("short", "session", 1, "n", "inspector", "c", 300)
        fast.add("code", "once", 1, "n", "inspector", "", 300)
        time.sleep(0.5)
        assert slow.get("short", "session", 60_000) is None  # with node clocks: honoured for two more hours
        assert slow.take("code", "once") is None
        assert slow.get("fresh", "session", 60_000) is not None
    finally:
        engine.dispose()
