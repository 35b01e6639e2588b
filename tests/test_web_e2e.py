"""The web UI in a real browser (headless Debian Chromium via Playwright) against a
real server: uvicorn on a free loopback port over a real Runtime (SeaweedFS with
Object Lock, SQLite, GStreamer RTSP source, a simulated ONVIF camera).

Walks what the lab does: sign in, scan for cameras, add the discovered one,
watch it record, open a report's footage (timeline, player), export it, verify
the package on the public page, switch language.  A screenshot of every step
goes to ``test-artifacts/screenshots/`` (``LABWITNESS_TEST_ARTIFACTS`` moves it).
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from index.models import Area
from simulator.onvif import OnvifCameraSimulator

from conftest import ACCESS, SECRET, free_port, wait_for
from webtools import served

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.browser, pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                                     reason=f"{CHROMIUM} is missing (deploy/dev.sh installs Debian's chromium)")]
ARTIFACTS = Path(os.environ.get("LABWITNESS_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
REPORT = "JC-E2E-0001"


@pytest.fixture
def live(tmp_path, seaweed, rtsp):
    """A labwitness served by uvicorn in a thread: (base URL, runtime, tokens by role)."""
    from api.app import create_app
    from api.runtime import Runtime
    from api.settings import load_settings

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = load_settings(
        data_dir=tmp_path / "data", s3_endpoint=seaweed.endpoint, s3_access_key=ACCESS, s3_secret_key=SECRET,
        s3_bucket="e2e-footage", segment_seconds=1.0, retention_jobs=False, public_base_url=base,
        discovery_port=free_port(), discovery_interfaces="127.0.0.1", host="127.0.0.1", port=port)
    with Runtime(settings) as rt:
        rt.registry.put_area(Area(id="lixue", name="力学室", created_ms=0), actor="test")
        app = create_app(settings, rt, sync_interval_s=0.5)
        tokens = {r: rt.tokens.create(f"e2e-{r}", r, "test")[1] for r in ("admin", "inspector", "operations", "ingest")}
        with served(app, port):
            yield base, rt, tokens


class Steps:
    """Numbered screenshots of one walk through the UI."""

    def __init__(self, page, directory: Path) -> None:
        self.page, self.dir, self.n = page, directory, 0
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("e2e-*.png"):
            old.unlink()

    def shot(self, name: str) -> None:
        self.n += 1
        self.page.screenshot(path=str(self.dir / f"e2e-{self.n:02d}-{name}.png"), full_page=True)


def sign_in(page, base: str, token: str) -> None:
    page.goto(base + "/login")
    page.fill("#token", token)
    page.click("#login-submit")
    page.wait_for_load_state()


def test_browser_walkthrough(live, rtsp):
    from playwright.sync_api import expect, sync_playwright

    base, rt, tokens = live
    started = time.monotonic()
    with OnvifCameraSimulator(name="UTM-E2E", rtsp_url=rtsp.url("/live"), username="onvif", password="0nvif-E2E",
                              discovery_port=rt.settings.discovery_port, serial="SN-E2E-1", clock_offset_s=1.5,
                              location="力学室") as cam, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        ctx = browser.new_context(viewport={"width": 1280, "height": 860}, locale="zh-CN", timezone_id="Asia/Shanghai")
        page = ctx.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        thrown: list[str] = []  # uncaught exceptions in the page's scripts (not console messages)
        page.on("pageerror", lambda e: thrown.append(str(e)))
        steps = Steps(page, ARTIFACTS / "screenshots")
        expect.set_options(timeout=15_000)

        # 1. the public status page, then sign in as admin (lands on the cameras page)
        page.goto(base + "/")
        expect(page.locator("h1")).to_contain_text("检测区域录像留存状态")
        steps.shot("public-status")
        sign_in(page, base, tokens["admin"])
        expect(page).to_have_url(base + "/ui/cameras")
        steps.shot("signed-in-admin")

        # 2. scan: runs in the background, the page polls its progress
        page.goto(base + "/ui/discovery")
        page.fill("#scan-form input[name=timeout]", "1.5")
        page.fill("#scan-form input[name=username]", "onvif")
        page.fill("#scan-form input[name=password]", "0nvif-E2E")
        page.click("#scan-button")
        expect(page.locator("#scan-status")).to_have_attribute("data-state", "done", timeout=30_000)
        row = page.locator(f'tr[data-endpoint="{cam.endpoint}"]')
        expect(row).to_contain_text("SN-E2E-1")
        steps.shot("discovered")
        assert "0nvif-E2E" not in page.content()  # the scan's password is never rendered

        # 3. add the discovered camera into 力学室; it starts recording
        row.locator("input[name=id]").fill("utm-cam")
        row.locator("select[name=area_id]").select_option("lixue")
        row.locator("button[type=submit]").click()
        expect(page).to_have_url(base + "/ui/cameras")
        expect(page.locator('tr[data-camera="utm-cam"]')).to_have_attribute("data-status", "recording", timeout=30_000)
        assert abs(rt.registry.camera("utm-cam").clock_offset_ms - 1500) < 500
        # the content job samples it: the camera list then shows its snapshot (GET /api/v1/cameras/{id}/thumbnail)
        from retention.content_detect import ContentConfig
        from retention.content_job import ContentJobConfig, run_content_check

        wait_for(lambda: len(list(rt.index.iter_segments("utm-cam"))) >= 3, 30, what="segments of utm-cam")
        run_content_check(rt.index.engine, rt.store, rt.clock, ContentJobConfig(content=ContentConfig(sample_seconds=1.0)))
        page.reload()
        thumb = page.locator('tr[data-camera="utm-cam"] td.thumb img')
        expect(thumb).to_have_count(1)
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle(), timeout=10_000)
        steps.shot("camera-recording")
        # its clock drifts: the admin syncs it to the server's time from its edit panel (ONVIF SetSystemDateAndTime)
        cam.clock_offset_s = 30.0
        page.locator("#edit-utm-cam summary").click()
        page.locator("#edit-utm-cam .camera-time button", has_text="同步为服务器当前时间").click()
        expect(page.locator("p.flash.ok")).to_contain_text("摄像机时间已设为本服务器当前时间")
        assert abs(cam.clock_offset_s) < 0.6
        steps.shot("camera-time-synced")

        # 4. the lab's core data module uploads a test record (REST, ingest token)
        now = datetime.now(timezone.utc)
        rec = {"report_no": REPORT, "commission_no": "WT-E2E-001", "project_name": "端到端测试工程", "test_item": "钢筋拉伸",
               "sample_ids": ["GX-E2E-00001"], "area_ids": ["lixue"], "operator": "张三",
               "started_at": (now - timedelta(seconds=3)).isoformat(), "ended_at": (now + timedelta(seconds=3)).isoformat()}
        r = httpx.put(f"{base}/api/v1/test-records/REC-E2E-1", json=rec,
                      headers={"Authorization": f"Bearer {tokens['ingest']}"})
        assert r.status_code == 201, r.text
        end_ms = (now + timedelta(seconds=4)).timestamp() * 1000
        wait_for(lambda: (s := rt.index.latest_segment("utm-cam")) is not None and s.end_ms > end_ms, 30,
                 what="footage past the record's end")

        # 5. sign out; an inspector finds the report by number and opens it
        page.click("#signout")
        # the cameras table refreshes itself: a refresh that lands after the sign-out is sent to
        # sign-in too, remembering the page (never the bare table fragment)
        expect(page).to_have_url(re.compile(re.escape(base) + r"/login(\?next=/ui/cameras)?$"))
        sign_in(page, base, tokens["inspector"])
        expect(page).to_have_url(base + "/ui/search")
        page.fill("#q-report", "E2E")
        page.click("#search-submit")
        page.click(f"a.report-link:has-text('{REPORT}')")
        expect(page.locator("h1")).to_contain_text(REPORT)
        expect(page.locator("svg.timeline rect.footage").first).to_be_visible()
        steps.shot("report")

        # 6. play: the segment list plays through /api/v1/segments/{id}/media (Range), the timeline seeks
        video = page.locator("video#player-1")
        page.evaluate("document.querySelector('#player-1').play()")
        page.wait_for_function("() => { const v = document.querySelector('#player-1');"
                               " return v.readyState >= 2 && v.currentTime > 0.3; }", timeout=20_000)
        first_start = int(video.evaluate("v => v.dataset.clipStart"))
        box = page.locator("svg.timeline").first.bounding_box()
        footage = page.locator("svg.timeline rect.footage").first.bounding_box()
        page.mouse.click(footage["x"] + footage["width"] * 0.7, box["y"] + box["height"] / 2)
        # a later clip plays (the page lists the first clips; a seek past them fetches the page
        # playing then: test_report_player)
        page.wait_for_function("first => { const v = document.querySelector('#player-1');"
                               " return Number(v.dataset.clipStart) > first && v.readyState >= 2; }",
                               arg=first_start, timeout=20_000)
        assert video.evaluate("v => v.src").startswith(base + "/api/v1/segments/")
        expect(page.locator("[data-clock-for=player-1]")).not_to_have_text("—")
        steps.shot("playing")

        # 7. export with progress; download and QR code
        page.click("#export-button")
        expect(page.locator(".export-job")).to_have_attribute("data-status", "done", timeout=90_000)
        page.wait_for_function("() => { const q = document.querySelector('img.qr'); return q && q.complete && q.naturalWidth > 0; }")
        steps.shot("exported")
        href = page.locator("#download-link").get_attribute("href")
        z = page.request.get(base + href)
        assert z.status == 200 and z.headers["content-type"] == "application/zip" and z.body()[:2] == b"PK"

        # 8. the public verify page (what the QR code opens): genuine, in Chinese first
        verify_href = page.locator("#verify-link").get_attribute("href")
        page.goto(base + verify_href)
        expect(page.locator("#verdict")).to_have_attribute("data-genuine", "1")
        expect(page.locator("#verdict")).to_contain_text("真实有效")
        steps.shot("verify-zh")

        # 9. switch language: the choice is kept in a cookie for every page
        page.click("#lang-en")
        expect(page.locator("#verdict")).to_contain_text("Genuine")
        steps.shot("verify-en")
        page.goto(base + f"/ui/report?no={REPORT}")
        expect(page.locator("h1")).to_contain_text(f"Report {REPORT}")
        steps.shot("report-en")

        # 10. operations: the retention health dashboard, without footage links
        page.click("#signout")
        sign_in(page, base, tokens["operations"])
        expect(page).to_have_url(base + "/ui/health")
        expect(page.locator("table.health-cams")).to_contain_text("utm-cam")
        assert "/media" not in page.content()
        page.set_viewport_size({"width": 820, "height": 1100})  # tablet width
        steps.shot("health-tablet")

        browser.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors
    assert not thrown, thrown
    assert time.monotonic() - started < 150
