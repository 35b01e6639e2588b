"""The report page's player with paged clips (decision 57), in a real browser
(headless Debian Chromium via Playwright) against uvicorn over a real Runtime
(SeaweedFS, SQLite, no recorders).

A long test has hundreds of clips per camera window: the page lists only the
first ones, and the player fetches the rest from the report's clips API through
the signed-in session: the page after the listed clips when it plays on, the
page playing at an instant when the timeline is clicked anywhere.  The segments
here are index rows only (no media), so what is checked is which clip the
player asks for, not the pictures."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlmodel import Session

from index.models import Area, Segment
from labwitness.clock import utc_ms

from conftest import ACCESS, SECRET, free_port
from webtools import served

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.browser, pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                                     reason=f"{CHROMIUM} is missing (deploy/dev.sh installs Debian's chromium)")]
REPORT = "JC-PAGES-1"
SEG_MS = 10_000


@pytest.fixture
def player_site(tmp_path, seaweed):
    """uvicorn over a Runtime with one camera, 3 h of 10 s segments (with a hole) and a report
    over 2 h of them; the page lists 3 clips per window.  (base, runtime, tokens, clips)."""
    from api.app import create_app
    from api.runtime import Runtime
    from api.settings import load_settings

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = load_settings(
        data_dir=tmp_path / "data", s3_endpoint=seaweed.endpoint, s3_access_key=ACCESS, s3_secret_key=SECRET,
        s3_bucket="player-footage", retention_jobs=False, public_base_url=base, report_clip_page=3,
        discovery_port=free_port(), discovery_interfaces="127.0.0.1", host="127.0.0.1", port=port)
    with Runtime(settings, recording=False) as rt:
        rt.registry.put_area(Area(id="lixue", name="力学室", created_ms=0), actor="test")
        rt.registry.add_camera(rt.new_camera("cam-p", "rtsp://127.0.0.1:9/none", name="UTM", area_id="lixue"),
                               actor="test")
        now = datetime.now(timezone.utc).replace(microsecond=0)
        t0 = utc_ms(now - timedelta(hours=4))
        with Session(rt.index.engine) as s:  # 3 h of footage, but for a 5-minute hole after the first hour
            s.add_all([Segment(camera_id="cam-p", start_ms=t, end_ms=t + SEG_MS, media_duration_ms=SEG_MS,
                               key=f"v1/cam-p/{t}.mp4", version_id="v", size=1, sha256="0" * 64, codec="h264",
                               retain_until_ms=t + 200 * 86_400_000, lock_mode="COMPLIANCE")
                       for t in range(t0, t0 + 3 * 3_600_000, SEG_MS) if not t0 + 3_600_000 <= t < t0 + 3_900_000])
            s.commit()
        rt.records.upsert("REC-P-1", {
            "report_no": REPORT, "commission_no": "WT-P-1", "project_name": "分页", "test_item": "钢筋拉伸",
            "sample_ids": ["GX-P-1"], "area_ids": ["lixue"], "equipment_ids": [], "operator": "张三",
            "started_ms": t0 + 1_800_000, "ended_ms": t0 + 9_000_000}, actor="test")
        token = rt.tokens.create("player-inspector", "inspector", "test")[1]
        clips = rt.records.report_footage(REPORT, settings.report_margin_s * 1000).windows[0].clips
        with served(create_app(settings, rt), port):
            yield base, rt, token, clips


def test_the_player_fetches_the_clips_it_plays_and_seeks_to(player_site):
    from playwright.sync_api import expect, sync_playwright

    base, rt, token, clips = player_site
    assert len(clips) > 600  # 2 h 10 min of 10 s clips, less the hole
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai").new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        thrown: list[str] = []  # uncaught exceptions in the page's scripts (not console messages)
        page.on("pageerror", lambda e: thrown.append(str(e)))
        page.goto(base + "/login")
        page.fill("#token", token)
        page.click("#login-submit")
        page.wait_for_load_state()
        page.goto(base + f"/ui/report?no={REPORT}")
        video = page.locator("video#player-1")
        # the first page only, not every clip (the 4th URL: the <video>'s src, the first clip)
        assert len(json.loads(video.get_attribute("data-playlist"))) == 3
        assert page.content().count("/api/v1/segments/") == 4
        expect(page.locator("section.camera-footage p.small").first).to_contain_text(f"{len(clips)} 个录像段")
        assert video.evaluate("v => v.player.list.length") == 3
        assert video.evaluate("v => v.src").endswith(f"/api/v1/segments/{clips[0][0]}/media")

        # playing on past the listed clips: the next page is fetched and its first clip loaded
        video.evaluate("v => { v.player.load(2, 0, false); v.player.forward(); }")
        page.wait_for_function("() => document.querySelector('#player-1').dataset.clip === '3'", timeout=10_000)
        assert video.evaluate("v => v.src").endswith(f"/api/v1/segments/{clips[3][0]}/media")
        assert video.evaluate("v => v.player.list.length") == 3 + 100

        # a click far along the timeline: the page playing at that instant (a pixel is ~10 s here)
        svg = page.locator("svg.timeline").first
        lo, hi = int(svg.get_attribute("data-start")), int(svg.get_attribute("data-end"))
        box = svg.bounding_box()
        tol = (hi - lo) / box["width"] * 2
        for share in (0.8, 0.05, 0.5):
            asked = video.evaluate("v => v.player.asked")
            svg.click(position={"x": box["width"] * share, "y": box["height"] / 2})  # scrolled into view first
            page.wait_for_function("n => document.querySelector('#player-1').player.asked > n", arg=asked)
            at = lo + (hi - lo) * share
            playing = [c for c in clips if c[2] > at - tol and c[1] <= at + tol]
            page.wait_for_function("ok => ok.includes(document.querySelector('#player-1').dataset.clipStart)",
                                   arg=[str(c[1]) for c in playing], timeout=10_000)
        # exactly: an instant inside a clip plays that clip, from the right offset
        for c in (clips[400], clips[-2]):
            at = c[1] + 4_000
            video.evaluate(f"v => v.player.seekTo({at})")
            page.wait_for_function("want => document.querySelector('#player-1').dataset.clipStart === want",
                                   arg=str(c[1]), timeout=10_000)
            assert video.evaluate("v => v.src").endswith(f"/api/v1/segments/{c[0]}/media")
        # in the hole: the first clip after it
        hole = rt.records.report_footage(REPORT, rt.settings.report_margin_s * 1000).windows[0].runs[0][1] + 60_000
        video.evaluate(f"v => v.player.seekTo({hole})")
        want = next(c for c in clips if c[2] > hole)
        page.wait_for_function("want => document.querySelector('#player-1').dataset.clipStart === want",
                               arg=str(want[1]), timeout=10_000)
        browser.close()
    # every page the player read is in the audit log, as the inspector's report reads
    pages = [e for e in rt.audit.events(500) if e.action == "report.footage" and e.target == REPORT]
    assert len(pages) >= 1 + 1 + 4 and {e.actor for e in pages} == {"inspector:player-inspector"}
    # (no media exists for these index rows: the only console errors are the <video>'s failed loads)
    assert not [e for e in errors if "Content Security Policy" in e], errors
    assert not thrown, thrown
