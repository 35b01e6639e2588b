"""What a new user meets first: the API docs offline, the favicon, the lab's published
public key, the public base URL shared by the service and the CLI (issue 12, "Front door")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import free_port, wait_for
from webtools import served, web_runtime

CHROMIUM = "/usr/bin/chromium"


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


@pytest.mark.browser
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


def test_public_base_url_configured_beats_announced_beats_default(tmp_path):
    from api.installation import DEFAULT_PUBLIC_BASE_URL, announce_served_url, public_base_url
    from api.settings import load_settings

    cli = load_settings(data_dir=tmp_path / "d")
    assert public_base_url(cli) == DEFAULT_PUBLIC_BASE_URL  # nothing served yet
    assert announce_served_url(load_settings(data_dir=tmp_path / "d", host="0.0.0.0", port=8123)) == "http://127.0.0.1:8123"
    assert public_base_url(cli) == "http://127.0.0.1:8123"  # another process on the same data dir agrees
    configured = load_settings(data_dir=tmp_path / "d", public_base_url="https://lab.example.cn/lw/")
    assert announce_served_url(configured.model_copy(update={"port": 9000})) == "https://lab.example.cn/lw"
    assert public_base_url(configured) == "https://lab.example.cn/lw"
    assert public_base_url(cli) == "http://127.0.0.1:8123"  # a configured URL is not written over the served one


def test_serve_announces_its_url_and_publishes_the_key_the_cli_exports(tmp_path, seaweed):
    import signal
    import subprocess
    import sys

    import httpx

    from api.installation import public_base_url
    from api.settings import load_settings
    from clitools import ROOT, env_for, lw

    env = env_for(tmp_path, seaweed, bucket="serve-footage", LABWITNESS_RETENTION_JOBS="false")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port)], env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def keys():
            try:
                return httpx.get(f"{base}/.well-known/labwitness-keys.json", timeout=2)
            except httpx.TransportError:
                return None

        published = wait_for(lambda: serve.poll() is None and keys(), 60, what="labwitness serve")
        assert published.status_code == 200 and "public" in published.headers["cache-control"]  # no token asked
        [key] = published.json()["keys"]
        exported = lw(["key", "export"], env)
        assert exported.returncode == 0, exported.stderr
        assert key["public_key_pem"] == exported.stdout and key["algorithm"] == "Ed25519" and key["valid_until"] is None
        assert key["key_id"].startswith("SHA256:") and key["valid_from"].endswith("Z")
        # a CLI beside it on the same data directory puts the same URL into packages
        assert public_base_url(load_settings(data_dir=tmp_path / "data")) == base
    finally:
        serve.send_signal(signal.SIGINT)
        _, err = serve.communicate(timeout=90)
    assert serve.returncode == 0, err[-3000:]
    assert "the spool is empty" in err and str(tmp_path / "data" / "spool") in err  # the stop message


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cli_export_beside_the_service_uses_its_url_and_verifies_with_the_exported_key(running, tmp_path, seaweed):
    import json
    import zipfile
    from datetime import datetime, timedelta, timezone

    from api.evidence import SigningKey
    from api.installation import announce_served_url
    from labwitness.clock import utc_ms
    from clitools import env_for, lw

    client, rt = running
    served = announce_served_url(rt.settings.model_copy(update={"port": 18123}))  # as `serve --port 18123` does
    now = datetime.now(timezone.utc)
    rt.records.upsert("REC-KEY", {
        "report_no": "JC-KEY-1", "commission_no": "WT-KEY-1", "project_name": "p", "test_item": "t", "sample_ids": ["S-1"],
        "area_ids": ["lixue"], "equipment_ids": [], "operator": "张三",
        "started_ms": utc_ms(now - timedelta(seconds=4)), "ended_ms": utc_ms(now)}, actor="test")
    wait_for(lambda: rt.index.footage("cam-api", 0, 2**62).segments[-1].end_ms > utc_ms(now) + 500, 30,
             what="footage past the record's end")
    # the service's data directory, index and store
    env = env_for(tmp_path, seaweed, bucket="api-footage", LABWITNESS_DATABASE_URL=rt.settings.db_url)
    pkg, lab_pub = tmp_path / "evidence.zip", tmp_path / "lab.pub"
    exported = lw(["export", "JC-KEY-1", "--out", str(pkg)], env)
    assert exported.returncode == 0, exported.stderr[-3000:]
    with zipfile.ZipFile(pkg) as zf:
        verify_url = json.loads(zf.read("manifest.json"))["verify_url"]
    assert verify_url.startswith(f"{served}/verify/") and verify_url in exported.stderr.replace("\n", "")

    assert lw(["key", "export", "--out", str(lab_pub)], env).returncode == 0
    ok = lw(["verify", str(pkg), "--public-key", str(lab_pub)], env)
    assert ok.returncode == 0 and "genuine" in ok.stderr, ok.stderr
    # the well-known document (public) serves the same key the CLI exported
    doc = TestClient(client.app).get("/.well-known/labwitness-keys.json").json()
    assert [k["public_key_pem"] for k in doc["keys"]] == [lab_pub.read_text()]
    # and a key that is not the lab's is refused
    (tmp_path / "other.pub").write_bytes(SigningKey.load(tmp_path / "other-lab").public_pem())
    assert lw(["verify", str(pkg), "--public-key", str(tmp_path / "other.pub")], env).returncode == 1


def test_the_stop_message_says_what_was_uploaded_and_what_is_left_where(tmp_path, rtsp):
    from conftest import ACCESS, SECRET, make_store
    from index.db import make_engine, sqlite_url
    from index.migrate import upgrade
    from index.queries import IndexStore
    from recorder.service import CameraSpec, RecorderService
    from recorder.worker import RecorderConfig
    from retention.policy import RetentionPolicy
    from storage.seaweed import EmbeddedSeaweed

    sw = EmbeddedSeaweed(tmp_path / "seaweed", ACCESS, SECRET).start()  # our own: this test stops it
    try:
        engine = make_engine(sqlite_url(tmp_path / "index.sqlite3"))
        upgrade(engine)
        index = IndexStore(engine)
        svc = RecorderService(tmp_path / "spool", make_store(sw), index, RetentionPolicy(),
                              RecorderConfig(segment_seconds=1.0, backoff_cap_s=1.0)).start()
        svc.sync([CameraSpec("cam-stop", rtsp.url("/live"))])
        wait_for(lambda: len(list(index.iter_segments("cam-stop"))) >= 2, 60, what="uploaded segments")
        sw.pause()  # storage gone: what is recorded from now on stays in the spool
        spool = tmp_path / "spool" / "cam-stop"
        wait_for(lambda: len(list(spool.glob("*.mp4"))) >= 2, 60, what="segments waiting in the spool")
        assert svc.stop(drain_timeout=1.0) is False
        report = svc.stop_report
        uploaded = len(list(index.iter_segments("cam-stop")))
        assert report.uploaded_segments == uploaded and report.uploaded_bytes > 0
        assert report.remaining_segments == len(list(spool.glob("*.mp4"))) >= 2 and not report.spool_empty
        said = report.message()
        assert f"uploaded and locked {uploaded} segments" in said
        assert f"{report.remaining_segments} segments" in said and str(tmp_path / "spool") in said
        assert "uploaded at the next start" in said and "仍有" in said  # zh-CN first
        engine.dispose()
    finally:
        sw.stop()
