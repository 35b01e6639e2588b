"""What a new user meets first: the API docs offline, the favicon, the lab's published
public key, the public base URL shared by the service and the CLI (issue 12, "Front door")."""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import free_port, wait_for
from webtools import web_runtime

CHROMIUM = "/usr/bin/chromium"


@contextmanager
def served(app):
    """``app`` on a free loopback port (uvicorn in a thread); yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="front-door-uvicorn", daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), 20, what="uvicorn")
    assert thread.is_alive(), "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _asset_refs(html: str) -> list[str]:
    """Every URL the page makes the browser load: src/href attributes and Swagger's spec url."""
    return re.findall(r'(?:src|href)="([^"]*)"', html) + re.findall(r"\burl: '([^']*)'", html)


def test_docs_load_only_same_origin_assets_and_they_are_served(tmp_path, seaweed):
    expected_type = {".js": "javascript", ".css": "text/css", ".ico": "image/x-icon", ".json": "application/json"}
    with web_runtime(tmp_path, seaweed) as (client, rt, tokens):
        anon = TestClient(client.app)  # the docs are public, as FastAPI's are
        page = anon.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        refs = _asset_refs(page.text)
        assert len(refs) == 4, refs  # CSS, favicon, Swagger UI's JS, the OpenAPI document
        for ref in refs:
            assert ref.startswith("/") and not ref.startswith("//"), f"{ref} is not on this server"
            r = anon.get(ref)
            assert r.status_code == 200, ref
            assert expected_type[Path(ref).suffix] in r.headers["content-type"], (ref, r.headers["content-type"])
            assert len(r.content) > 500, ref
        assert "SwaggerUIBundle" in anon.get("/static/swagger-ui/swagger-ui-bundle.js").text
        # the browser is told the same: nothing but this origin (and Swagger's one inline script, by hash)
        csp = page.headers["content-security-policy"]
        assert "connect-src 'self'" in csp and "http" not in csp and "'unsafe-inline'" not in csp.split("style-src")[0]
        assert '"validatorUrl": null' in page.text  # no schema posted to validator.swagger.io
        assert anon.get("/redoc").status_code == 404  # not offered: it would load from a CDN
        icon = anon.get("/favicon.ico")
        assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
        assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
        # the licence travels with the vendored code
        licence_dir = Path(__file__).resolve().parents[1] / "api" / "web" / "static" / "swagger-ui"
        assert "Apache License" in (licence_dir / "LICENSE").read_text() and (licence_dir / "NOTICE").exists()


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (deploy/dev.sh test installs it)")
def test_docs_render_in_a_browser_that_cannot_leave_the_machine(tmp_path, seaweed):
    from playwright.sync_api import expect, sync_playwright

    with web_runtime(tmp_path, seaweed) as (client, rt, tokens), served(client.app) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            outside: list[str] = []
            problems: list[str] = []

            def only_here(route):
                if route.request.url.startswith(base + "/"):
                    route.continue_()
                else:  # as in a lab without internet access
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", only_here)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(base + "/docs")
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("labwitness", timeout=20_000)
            expect(page.locator(".opblock-tag-section").first).to_be_visible()
            assert outside == [] and problems == [], (outside, problems)
        finally:
            browser.close()
