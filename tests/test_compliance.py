"""Monthly compliance report (retention.compliance): planted index rows, expected
numbers worked out by hand here; SQLite and PostgreSQL; HTML/CSV renderers, the
API route and the CLI command; the verdict rules (retention.compliance_rules) as tables."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from html.parser import HTMLParser
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from typer.testing import CliRunner

from index.audit import AuditLog
from index.models import Area, AuditEvent, Camera, ContentEvent, Gap, IntegrityFinding, JobRun, Segment
from index.queries import IndexStore
from index.tiling import merged_runs
from index.tokens import TokenStore
from labwitness.clock import FakeClock, SystemClock, from_ms, utc_ms
from retention.compliance import compliance_report
from retention.compliance_model import (
    COMPLIANT, NOT_COMPLIANT, PARTIAL, AreaReport, CameraReport, ComplianceThresholds, GapItem, GapStats,
    IntegrityStats, JobStatus, LockStats, ReasonStat, Verdict,
)
from retention.compliance_queries import overlap_ms
from retention.compliance_render import render_csv, render_html
from retention.compliance_rules import area_verdict, camera_verdict, report_verdict
from retention.months import month_bounds, parse_month, previous_month
from retention.policy import RetentionPolicy

from conftest import migrated

TZ = ZoneInfo("Asia/Shanghai")
M = 60_000
H = 60 * M
D = 24 * H
POLICY = RetentionPolicy()


def local_ms(text: str) -> int:
    return utc_ms(datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=TZ))


LO = local_ms("2026-10-01 00:00")  # = 2026-09-30T16:00Z
HI = local_ms("2026-11-01 00:00")
MONTH_H = 31 * 24  # 744
NOW = HI + 2 * D
LONG_AGO = NOW - 300 * D
OLD = NOW - 190 * D  # an old segment: the oldest footage is 190 days old


@pytest.fixture
def engine(db_url):
    yield from migrated(db_url)


_n = iter(range(10**9))


def seg(cam: str, start: int, end: int, **kw) -> Segment:
    n = next(_n)
    fields = dict(retain_until_ms=utc_ms(POLICY(from_ms(end))), lock_mode="COMPLIANCE")
    fields.update(kw)
    return Segment(camera_id=cam, start_ms=start, end_ms=end, media_duration_ms=end - start, key=f"v1/{cam}/{n}.mp4",
                   version_id=f"v{n}", size=1000, sha256="0" * 64, **fields)


def hourly(cam: str, start: int, end: int, skip=(), **kw) -> list[Segment]:
    """30-minute segments (the recorder never writes longer ones, see MAX_SEGMENT_MS) from start
    to end, leaving out the hours (counted from start) in ``skip``."""
    return [seg(cam, t, t + 30 * M, **kw) for t in range(start, end, 30 * M) if (t - start) // H not in skip]


def cam(id: str, area: str | None, created: int = LONG_AGO, **kw) -> Camera:
    return Camera(id=id, rtsp_url=f"rtsp://127.0.0.1/{id}", area_id=area, created_ms=created, **kw)


def plant(engine, rows) -> None:
    with Session(engine) as s:
        s.add_all(rows)
        s.commit()


C_NEW_CREATED = LO + 20 * D + 6 * H  # 2026-10-21 06:00 local


def plant_month(engine) -> None:
    """The scenario of the table below (areas 力学室 lixue, 混凝土室 hunningtu, 养护室 yanghu)."""
    rows: list = [
        Area(id="lixue", name="力学室", created_ms=0), Area(id="hunningtu", name="混凝土室", created_ms=0),
        Area(id="yanghu", name="养护室", created_ms=0),  # no camera at all
        cam("c-full", "lixue", name="万能试验机 UTM-01"), cam("c-gappy", "lixue"), cam("c-off", "lixue", enabled=False),
        cam("c-new", "hunningtu", created=C_NEW_CREATED), cam("c-dark", "hunningtu"), cam("c-lock", "hunningtu"),
    ]
    # c-full: every half hour, the first and last segments crossing local midnight at the month's edges
    full = hourly("c-full", LO - 15 * M, HI + 15 * M)
    for s in full[:100]:
        s.lock_verified_ms = NOW - D
    rows += full + [seg("c-full", OLD, OLD + 30 * M)]
    # c-gappy: hours 0, 50-54, 220-221, 400 missing; gaps recorded for all but hour 400
    rows += hourly("c-gappy", LO, HI, skip={0, 50, 51, 52, 53, 54, 220, 221, 400}) + [seg("c-gappy", OLD, OLD + 30 * M)]
    rows += [Gap(camera_id="c-gappy", start_ms=LO - H, end_ms=LO + H, reason="recorder_down"),  # 1 h in the month
             Gap(camera_id="c-gappy", start_ms=LO + 50 * H, end_ms=LO + 55 * H, reason="timeout"),
             Gap(camera_id="c-gappy", start_ms=LO + 220 * H, end_ms=LO + 222 * H, reason="stream_ended"),
             Gap(camera_id="c-gappy", start_ms=LO - 5 * H, end_ms=LO, reason="timeout")]  # before the month
    rows += [ContentEvent(camera_id="c-gappy", kind="blackout", start_ms=LO + 100 * H, end_ms=LO + 103 * H, ongoing=False),
             ContentEvent(camera_id="c-gappy", kind="frozen", start_ms=LO + 102 * H, end_ms=LO + 104 * H, ongoing=False),
             # 3 h, of which only hour 49 was recorded (50, 51 are the timeout gap)
             ContentEvent(camera_id="c-gappy", kind="obscured", start_ms=LO + 49 * H, end_ms=LO + 52 * H, ongoing=False)]
    # c-new: registered 2026-10-21 06:00, recording every hour since
    rows += hourly("c-new", C_NEW_CREATED, HI)
    # c-dark: recorded throughout but the camera was turned away for 20 days; integrity findings
    rows += hourly("c-dark", LO, HI) + [seg("c-dark", OLD, OLD + 30 * M)]
    rows += [ContentEvent(camera_id="c-dark", kind="moved", start_ms=LO + 5 * D, end_ms=LO + 25 * D),
             IntegrityFinding(found_ms=LO + 3 * D, kind="altered", camera_id="c-dark"),
             IntegrityFinding(found_ms=LO + 4 * D, kind="missing", camera_id="c-dark", resolved_ms=LO + 5 * D),
             IntegrityFinding(found_ms=LO + 6 * D, kind="orphan_object", severity="warning", camera_id="c-dark"),
             IntegrityFinding(found_ms=LO - D, kind="altered", camera_id="c-dark")]  # last month's
    # c-lock: three segments with a bad lock, and an open lock_mismatch finding
    lock = hourly("c-lock", LO, HI)
    short = lock[10]
    short.retain_until_ms = utc_ms(POLICY.minimum(from_ms(short.end_ms))) - D  # a day short of end + 6 months
    lock[20].lock_mode = "GOVERNANCE"
    lock[30].lock_mode, lock[30].retain_until_ms = None, None
    rows += lock + [seg("c-lock", OLD, OLD + 30 * M),
                    IntegrityFinding(found_ms=LO + 2 * D, kind="lock_mismatch", camera_id="c-lock")]
    # c-gone: removed from the registry, its footage kept
    rows += hourly("c-gone", LO, LO + 24 * H)
    # bucket-level finding and the jobs
    rows += [IntegrityFinding(found_ms=LO + 7 * D, kind="lock_missing", camera_id=""),
             JobRun(job="verify", started_ms=LO + D, finished_ms=LO + D + M, status="ok"),
             JobRun(job="integrity", started_ms=LO + 2 * D, finished_ms=LO + 2 * D + M, status="critical"),
             JobRun(job="integrity", started_ms=HI + D, finished_ms=HI + D + M, status="failed")]
    plant(engine, rows)


@dataclass(frozen=True)
class Expect:
    camera: str
    verdict: str
    counted: bool
    start: int
    end: int
    recorded_h: float
    unusable_h: float
    gaps: int
    gap_h: float
    unaccounted_h: float
    reasons: tuple[str, ...] = ()  # substrings of the English part of the reasons


EXPECTED = [
    Expect("c-full", COMPLIANT, True, LO, HI, MONTH_H, 0, 0, 0, 0),
    # 744 - 9 missing hours; usable 735 - (blackout+frozen merged 4 h + 1 recorded obscured hour) = 730 h = 98.12 %
    Expect("c-gappy", PARTIAL, True, LO, HI, 735, 5, 3, 8, 1, ("coverage 98.79% below 99.00%", "longest gap 5.00 h")),
    Expect("c-off", NOT_COMPLIANT, False, LO, HI, 0, 0, 0, 0, MONTH_H, ("no stored footage",)),
    Expect("c-new", COMPLIANT, True, C_NEW_CREATED, HI, 258, 0, 0, 0, 0),
    Expect("c-dark", NOT_COMPLIANT, True, LO, HI, MONTH_H, 20 * 24, 0, 0, 0,
           ("usable coverage 35.48%", "1 open critical integrity findings (altered)", "1 open integrity warnings")),
    Expect("c-lock", NOT_COMPLIANT, True, LO, HI, MONTH_H, 0, 0, 0, 0,
           ("1 segments have no retain-until", "2 segments are not locked in COMPLIANCE mode",
            "segments of 1 days are locked for less than end + 6 months", "1 open lock verification findings")),
    Expect("c-gone", NOT_COMPLIANT, False, LO, HI, 24, 0, 0, 0, MONTH_H - 24, ("coverage 3.23%",)),
]


@pytest.mark.slow
def test_month_report_per_camera(engine):
    plant_month(engine)
    r = compliance_report(engine, "2026-10", TZ, NOW)
    assert (r.start_ms, r.end_ms, r.until_ms, r.partial_month) == (LO, HI, HI, False)
    assert r.local(r.start_ms) == "2026-10-01 00:00:00" and r.timezone == "Asia/Shanghai"
    cams = {c.camera_id: c for c in r.cameras}
    assert sorted(cams) == sorted(e.camera for e in EXPECTED)
    for e in EXPECTED:
        c = cams[e.camera]
        got = (c.verdict.level, c.counted, c.start_ms, c.end_ms, c.recorded_ms, c.unusable_ms, c.gaps.count,
               c.gaps.total_ms, c.unaccounted_ms)
        assert got == (e.verdict, e.counted, e.start, e.end, e.recorded_h * H, e.unusable_h * H, e.gaps, e.gap_h * H,
                       e.unaccounted_h * H), e.camera
        for text in e.reasons:
            assert any(text in x for x in c.verdict.reasons), (e.camera, text, c.verdict.reasons)
        if e.verdict == COMPLIANT:
            assert c.verdict.reasons == ()

    g = cams["c-gappy"]
    assert g.coverage == pytest.approx(735 / 744) and g.usable_coverage == pytest.approx(730 / 744)
    assert g.unusable_by_kind == {"blackout": 3 * H, "frozen": 2 * H, "obscured": 1 * H}
    assert {k: (v.count, v.duration_ms) for k, v in g.gaps.by_reason.items()} == {
        "recorder_down": (1, H), "stream_ended": (1, 2 * H), "timeout": (1, 5 * H)}
    assert [(x.reason, x.start_ms, x.end_ms, x.duration_ms) for x in g.gaps.longest] == [
        ("timeout", LO + 50 * H, LO + 55 * H, 5 * H), ("stream_ended", LO + 220 * H, LO + 222 * H, 2 * H),
        ("recorder_down", LO - H, LO + H, H)]  # the listed start is the real one; the duration is the month's part

    full = cams["c-full"]
    assert full.name == "万能试验机 UTM-01"
    # 1489 segments touch the month (both edge segments); 100 have had their lock read back
    assert (full.lock.segments, full.lock.verified, full.lock.ok) == (2 * MONTH_H + 1, 100, True)
    assert full.lock.min_margin_days == 7.0  # the 7-day margin over end + 6 calendar months
    assert full.oldest_start_ms == OLD and full.oldest_age_days == 190.0 and full.expected_days == 183.0

    new = cams["c-new"]
    assert new.oldest_age_days == new.expected_days == 12.75  # registered 12.75 days before NOW: nothing older to keep
    assert any("added during the month" in n for n in new.notes)
    assert any("disabled" in n for n in cams["c-off"].notes)
    assert not cams["c-gone"].in_registry and any("removed from the registry" in n for n in cams["c-gone"].notes)

    dark = cams["c-dark"]
    assert dark.unusable_by_kind == {"moved": 20 * D}
    assert (dark.integrity.open_by_kind, dark.integrity.resolved_by_kind) == ({"altered": 1, "orphan_object": 1},
                                                                              {"missing": 1})
    assert (dark.integrity.open_critical, dark.integrity.open_warning) == (1, 1)

    lock = cams["c-lock"].lock
    assert (lock.segments, lock.missing_retain_until, lock.not_compliance_mode, lock.below_legal_days,
            lock.open_lock_findings) == (2 * MONTH_H, 1, 2, 1, 1)
    assert lock.min_margin_days == -1.0


@pytest.mark.slow
def test_month_report_areas_jobs_overall(engine):
    plant_month(engine)
    r = compliance_report(engine, "2026-10", TZ, NOW)
    areas = {a.area_id: a for a in r.areas}
    assert [a.area_id for a in r.areas] == ["hunningtu", "lixue", "yanghu"]  # c-gone (no area) is not counted
    lixue = areas["lixue"]
    assert (lixue.camera_ids, lixue.counted_ids) == (("c-full", "c-gappy", "c-off"), ("c-full", "c-gappy"))
    assert lixue.verdict.level == PARTIAL and lixue.coverage == pytest.approx((744 + 735) / (2 * 744))
    assert (lixue.gap_count, lixue.gap_ms, lixue.lock_segments, lixue.lock_verified) == (3, 8 * H, 2 * MONTH_H + 1 + 2 * 735, 100)
    assert all(x.startswith("c-gappy: ") for x in lixue.verdict.reasons)
    assert areas["hunningtu"].verdict.level == NOT_COMPLIANT
    assert areas["hunningtu"].period_ms == 258 * H + 2 * 744 * H
    assert areas["yanghu"].verdict.level == NOT_COMPLIANT and "no enabled camera" in areas["yanghu"].verdict.reasons[0]

    jobs = {j.job: j for j in r.jobs}
    assert jobs["verify"].runs_by_status == {"ok": 1} and jobs["verify"].latest_status == "ok"
    assert jobs["integrity"].runs_by_status == {"critical": 1} and jobs["integrity"].completed_in_period == 1
    assert jobs["integrity"].latest_status == "failed" and jobs["integrity"].latest_started_ms == HI + D

    # every finding of the month, bucket-level ones too (not last month's)
    assert r.integrity.open_by_kind == {"altered": 1, "lock_mismatch": 1, "lock_missing": 1, "orphan_object": 1}
    assert r.integrity.resolved_by_kind == {"missing": 1}
    assert r.lock.open_lock_findings == 2
    assert r.verdict.level == NOT_COMPLIANT
    assert any("bucket-level" in x for x in r.verdict.reasons)
    assert any(x.startswith("力学室: ") for x in r.verdict.reasons)
    assert not any("no completed run" in x for x in r.verdict.reasons)

    js = json.loads(json.dumps(r.to_json()))  # plain JSON all the way down
    assert js["verdict"]["level"] == "not_compliant" and js["start"] == "2026-10-01T00:00:00.000+08:00"
    gappy = next(c for c in js["cameras"] if c["camera_id"] == "c-gappy")
    assert gappy["recorded_ms"] == 735 * H and gappy["gaps"]["longest"][0]["start"] == "2026-10-03T02:00:00.000+08:00"


# Month boundaries are local (Asia/Shanghai, UTC+8): one camera per case, expected minutes of October.
BOUNDARY = [
    ("crosses local midnight into the month", "2026-09-30 23:50", "2026-10-01 00:10", 10),
    ("October local, still September in UTC", "2026-10-01 07:00", "2026-10-01 07:30", 30),
    ("crosses local midnight out of the month", "2026-10-31 23:55", "2026-11-01 00:05", 5),
    ("November local, still October in UTC", "2026-11-01 02:00", "2026-11-01 02:30", 0),
    ("September local", "2026-09-30 23:00", "2026-09-30 23:30", 0),
]


def test_month_boundaries_in_lab_time_zone(engine):
    rows: list = [Area(id="a", name="A", created_ms=0)]
    for i, (_, start, end, _) in enumerate(BOUNDARY):
        rows += [cam(f"b{i}", "a"), seg(f"b{i}", local_ms(start), local_ms(end))]
    rows += [Gap(camera_id="b0", start_ms=local_ms("2026-09-30 20:00"), end_ms=local_ms("2026-10-01 00:30"), reason="timeout"),
             Gap(camera_id="b0", start_ms=local_ms("2026-11-01 01:00"), end_ms=local_ms("2026-11-01 09:00"), reason="timeout")]
    plant(engine, rows)
    r = compliance_report(engine, "2026-10", TZ, NOW)
    cams = {c.camera_id: c for c in r.cameras}
    for i, (what, _, _, minutes) in enumerate(BOUNDARY):
        assert cams[f"b{i}"].recorded_ms == minutes * M, what
    assert (cams["b0"].gaps.count, cams["b0"].gaps.total_ms) == (1, 30 * M)  # the November gap is not October's
    # the segment that ended before the month is not among the month's segments
    assert [cams[f"b{i}"].lock.segments for i in range(len(BOUNDARY))] == [1, 1, 1, 0, 0]


def test_partial_month_is_clipped_at_now(engine):
    now = local_ms("2026-10-11 06:00")
    plant(engine, [Area(id="a", name="A", created_ms=0), cam("p", "a", created=LO - 400 * D),
                   *hourly("p", LO - 200 * D, LO - 200 * D + H),  # old footage: the oldest is 210+ days old
                   *hourly("p", LO + 30 * M, now + 30 * M),  # the last one is still being written at "now"
                   JobRun(job="verify", started_ms=LO + H, status="ok")])
    r = compliance_report(engine, "2026-10", TZ, now)
    assert r.partial_month and r.until_ms == now and r.end_ms == HI
    p = r.cameras[0]
    assert (p.start_ms, p.end_ms, p.recorded_ms) == (LO, now, (10 * 24 + 6) * H - 30 * M)
    assert p.unaccounted_ms == 30 * M and p.coverage == pytest.approx(245.5 / 246)  # 99.80 % >= 99 %
    assert (p.verdict.level, p.verdict.reasons) == (COMPLIANT, ()) and r.areas[0].verdict.level == COMPLIANT
    # the report is partial only because no integrity audit completed this month
    assert r.verdict.level == PARTIAL and any("integrity audit" in x for x in r.verdict.reasons)
    html = render_html(r)
    assert "部分月份" in html and "partial month" in html


@pytest.mark.slow
def test_thresholds_are_configurable(engine):
    plant_month(engine)
    lax = ComplianceThresholds(coverage_ok=0.98, max_gap_s=None)
    r = compliance_report(engine, "2026-10", TZ, NOW, thresholds=lax)
    assert {c.camera_id: c for c in r.cameras}["c-gappy"].verdict.level == COMPLIANT
    strict = ComplianceThresholds(coverage_ok=1.0, coverage_partial=0.99)
    r = compliance_report(engine, "2026-10", TZ, NOW, thresholds=strict)
    assert {c.camera_id: c for c in r.cameras}["c-gappy"].verdict.level == NOT_COMPLIANT  # 98.79 % < 99 %
    with pytest.raises(ValueError):
        ComplianceThresholds(coverage_ok=0.9, coverage_partial=0.95)


@pytest.mark.parametrize("month", ["2026-13", "2026-00", "26-10", "2026-1", "2026/10", "", "2026-10-01", "1969-12",
                                   "9999-12", "\u0662\u0660\u0662\u0666-\u0661\u0660", "2026-10\n"])
def test_bad_month_is_refused(month):
    with pytest.raises(ValueError):
        parse_month(month)


def test_future_month_is_refused(engine):
    with pytest.raises(ValueError, match="not begun"):
        compliance_report(engine, "2026-12", TZ, NOW)
    assert month_bounds("2026-12", TZ) == (local_ms("2026-12-01 00:00"), local_ms("2027-01-01 00:00"))
    assert previous_month(local_ms("2026-01-01 00:30"), TZ) == "2025-12"  # still 31 Dec 16:30 in UTC


@pytest.mark.parametrize("a, b, merged_a, overlap", [
    ([(0, 10), (5, 20), (30, 40)], [(15, 35)], [(0, 20), (30, 40)], 10),
    ([(0, 10)], [(10, 20)], [(0, 10)], 0),
    ([(5, 5), (0, 3)], [(0, 100)], [(0, 3)], 3),
    ([], [(0, 1)], [], 0),
])
def test_spans(a, b, merged_a, overlap):
    """Spans merge into runs (index.tiling.merged_runs, here over a window holding them all), runs intersect."""
    everything = (-10**15, 10**15)
    assert merged_runs(a, *everything) == merged_a
    assert overlap_ms(merged_runs(a, *everything), merged_runs(b, *everything)) == overlap


# -- renderers ------------------------------------------------------------------------

HOSTILE = '<script>alert("x")</script>'


def hostile_report(engine):
    plant(engine, [Area(id="a1", name='力学室 <b>&"', created_ms=0),
                   cam("cam-x", "a1", name=HOSTILE), cam("cam-f", "a1", name="=HYPERLINK(\"http://evil\")"),
                   *hourly("cam-x", LO, HI, skip={3}), *hourly("cam-f", LO, HI),
                   Gap(camera_id="cam-x", start_ms=LO + 3 * H, end_ms=LO + 4 * H, reason=HOSTILE[:32])])
    return compliance_report(engine, "2026-10", TZ, NOW)


class _TagBalance(HTMLParser):
    VOID = {"meta", "br", "link", "img", "hr", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def test_html_escapes_names_and_is_printable(engine):
    html = render_html(hostile_report(engine))
    parser = _TagBalance()
    parser.feed(html)
    assert parser.errors == [] and parser.stack == []  # well-formed: every element closed in order
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "力学室 &lt;b&gt;&amp;&#34;" in html
    assert html.startswith("<!DOCTYPE html>") and "@page" in html and "A4" in html
    assert "<link" not in html and "src=" not in html  # self-contained
    for label in ("检测区域 <span class=\"en\">/ Testing areas</span>", "摄像机 <span class=\"en\">/ Cameras</span>",
                  "录像中断", "Object Lock", "COMPLIANCE", "第七条", "Asia/Shanghai", "2026-10-01 03:00:00"):
        assert label in html, label


@pytest.mark.slow
def test_csv_has_bom_and_numbers(engine):
    text = render_csv(hostile_report(engine))
    assert text.startswith("\ufeff")
    data = text.encode("utf-8")
    assert data[:3] == b"\xef\xbb\xbf"
    rows = list(csv.DictReader(io.StringIO(text[1:])))
    by = {r["摄像机 / camera"]: r for r in rows}
    x, f = by["cam-x"], by["cam-f"]
    assert x["名称 / name"] == HOSTILE
    assert f["名称 / name"].startswith("'=")  # no formula in Excel
    assert x["录像秒 / recorded s"] == f"{743 * 3600:.3f}"
    assert x["覆盖率% / coverage %"] == f"{743 / 744 * 100:.4f}" == "99.8656"
    assert x["中断次数 / gaps"] == "1" and x["中断秒 / gap s"] == "3600.000"
    assert x["区域 / area"] == '力学室 <b>&"'
    assert f["覆盖率% / coverage %"] == "100.0000"
    assert f["结论 / verdict"] == "not_compliant" and "oldest footage is 33.0 days old" in f["原因 / reasons"]
    assert x["统计开始 / period start"] == "2026-10-01 00:00:00"


# -- API ----------------------------------------------------------------------------------

@dataclass
class MiniRuntime:
    """What the compliance route and the auth dependency use of api.runtime.Runtime."""

    settings: object
    index: IndexStore
    tokens: TokenStore
    audit: AuditLog
    clock: FakeClock
    policy: RetentionPolicy


@pytest.fixture
def api(engine, tmp_path):
    from api import compliance_routes, problems
    from api.rate_limit import SourceLimiter
    from api.settings import load_settings

    now = lambda: NOW  # noqa: E731
    rt = MiniRuntime(load_settings(data_dir=tmp_path / "data"), IndexStore(engine), TokenStore(engine, now),
                     AuditLog(engine, now), FakeClock(from_ms(NOW)), POLICY)
    app = FastAPI()
    problems.install(app)
    app.include_router(compliance_routes.router)
    app.state.runtime = rt
    app.state.limiter = SourceLimiter(rt.clock)  # the auth dependency's failed-sign-in budget (api.rate_limit)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client, rt


@pytest.mark.slow
def test_api_compliance_formats_and_roles(api, engine):
    client, rt = api
    plant_month(engine)
    _, ops = rt.tokens.create("ops", "operations", "test")
    _, admin = rt.tokens.create("admin", "admin", "test")
    _, inspector = rt.tokens.create("insp", "inspector", "test")

    r = client.get("/api/v1/compliance", params={"month": "2026-10"}, headers={"Authorization": f"Bearer {ops}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verdict"]["level"] == "not_compliant" and len(body["cameras"]) == len(EXPECTED)

    r = client.get("/api/v1/compliance", params={"month": "2026-10", "format": "csv"},
                   headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == 'attachment; filename="labwitness-compliance-2026-10.csv"'
    assert r.content.startswith(b"\xef\xbb\xbf")

    r = client.get("/api/v1/compliance", params={"month": "2026-10", "format": "html"},
                   headers={"Authorization": f"Bearer {ops}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-disposition"].startswith("inline;") and "力学室" in r.text
    r = client.get("/api/v1/compliance", params={"month": "2026-10", "format": "html", "download": "true"},
                   headers={"Authorization": f"Bearer {ops}"})
    assert r.headers["content-disposition"] == 'attachment; filename="labwitness-compliance-2026-10.html"'

    assert client.get("/api/v1/compliance", params={"month": "2026-10"},
                      headers={"Authorization": f"Bearer {inspector}"}).status_code == 403
    assert client.get("/api/v1/compliance", params={"month": "2026-10"}).status_code == 401
    with Session(engine) as s:
        assert len(s.exec(select(AuditEvent).where(AuditEvent.action == "compliance.report")).all()) == 4


@pytest.mark.parametrize("params, detail", [
    ({"month": "2026-13"}, "YYYY-MM"),
    ({"month": "2026/10"}, "month"),
    ({"month": "0000-01"}, "YYYY-MM"),
    ({"month": "9999-12"}, "YYYY-MM"),
    ({"month": "2026-12"}, "not begun"),
    ({}, "month"),
    ({"month": "2026-10", "format": "pdf"}, "format"),
])
def test_api_bad_month_is_problem_json(api, params, detail):
    client, rt = api
    _, ops = rt.tokens.create("ops", "operations", "test")
    r = client.get("/api/v1/compliance", params=params, headers={"Authorization": f"Bearer {ops}"})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 422 and detail in r.json()["detail"]


# -- CLI -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_report_compliance(engine, db_url, tmp_path, monkeypatch):
    from api.cli import app
    monkeypatch.setenv("LABWITNESS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABWITNESS_DATABASE_URL", db_url)
    monkeypatch.delenv("LABWITNESS_CONFIG", raising=False)
    month = previous_month(utc_ms(SystemClock().now()), TZ)
    lo, hi = month_bounds(month, TZ)
    plant(engine, [Area(id="a", name="力学室", created_ms=0), cam("c1", "a", created=lo - 400 * D),
                   *hourly("c1", lo, hi, skip={5})])
    runner = CliRunner()

    res = runner.invoke(app, ["report", "compliance", "--month", month, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["month"] == month and out["cameras"][0]["recorded_ms"] == hi - lo - H

    target = tmp_path / "r.csv"
    res = runner.invoke(app, ["report", "compliance", "--month", month, "--out", str(target)])
    assert res.exit_code == 0, res.output
    assert target.read_bytes().startswith(b"\xef\xbb\xbf") and "c1" in target.read_text(encoding="utf-8-sig")
    html = tmp_path / "r.html"
    assert runner.invoke(app, ["report", "compliance", "--month", month, "--out", str(html)]).exit_code == 0
    assert "<!DOCTYPE html>" in html.read_text(encoding="utf-8")

    # --check: exit by verdict (no jobs ran and no footage is 183 days old: not compliant)
    assert runner.invoke(app, ["report", "compliance", "--month", month, "--check"]).exit_code == 2
    assert runner.invoke(app, ["report", "compliance", "--month", "2026-13"]).exit_code == 2
    assert runner.invoke(app, ["report", "compliance", "--month", month, "--format", "pdf"]).exit_code == 2


def test_cameras_without_area_form_their_own_area(engine):
    plant(engine, [cam("free", None), *hourly("free", LO, HI), cam("gone-off", None, enabled=False)])
    r = compliance_report(engine, "2026-10", TZ, NOW)
    (area,) = r.areas
    assert (area.area_id, area.camera_ids, area.counted_ids) == (None, ("free", "gone-off"), ("free",))
    assert area.coverage == 1.0 and area.verdict.level == NOT_COMPLIANT  # footage only 33 days old
    assert any("oldest footage is 33.0 days old" in x for x in area.verdict.reasons)


def test_kept_footage_of_uncounted_cameras_still_counts(engine):
    plant(engine, [Area(id="a", name="A", created_ms=0), cam("ok", "a"), *hourly("ok", OLD, OLD + H), *hourly("ok", LO, HI),
                   cam("off", "a", enabled=False), seg("off", LO, LO + 30 * M, lock_mode=None),
                   seg("gone", LO, LO + 30 * M),
                   IntegrityFinding(found_ms=LO + D, kind="altered", camera_id="gone"),
                   IntegrityFinding(found_ms=LO + D, kind="missing", camera_id="long-gone"),
                   JobRun(job="verify", started_ms=LO + D, status="ok"), JobRun(job="integrity", started_ms=LO + D, status="warning")])
    r = compliance_report(engine, "2026-10", TZ, NOW)
    assert [a.verdict.level for a in r.areas] == [COMPLIANT]  # only "ok" counts for coverage
    assert r.verdict.level == NOT_COMPLIANT
    assert [x.split(" / ")[-1] for x in r.verdict.reasons] == [
        "1 open critical integrity findings (altered)",  # "gone: ..."
        "1 segments are not locked in COMPLIANCE mode",  # "off: ..."
        "1 open findings on footage of cameras without data this period (missing)"]
    assert r.verdict.reasons[0].startswith("gone: ") and r.verdict.reasons[1].startswith("off: ")


# -- the verdict rules, pure (retention.compliance_rules) ----------------------------------

def camera_row(**kw) -> CameraReport:
    """A counted camera with a full, well-kept 100 h period; ``kw`` changes what a case is about."""
    fields = dict(camera_id="cam", name="", area_id="a", enabled=True, in_registry=True, counted=True, created_ms=0,
                  start_ms=0, end_ms=100 * H, recorded_ms=100 * H, unusable_ms=0, unusable_by_kind={}, gaps=GapStats(),
                  oldest_start_ms=0, oldest_age_days=200.0, expected_days=183.0, lock=LockStats(),
                  integrity=IntegrityStats(), notes=(), verdict=Verdict(COMPLIANT))
    fields.update(kw)
    return CameraReport(**fields)


def two_hour_gap() -> GapStats:
    return GapStats(1, 2 * H, {"timeout": ReasonStat(1, 2 * H)}, (GapItem("cam", 0, 2 * H, "timeout", 2 * H),))


@pytest.mark.parametrize("change, level, reasons", [
    ({}, COMPLIANT, []),
    ({"recorded_ms": 98 * H}, PARTIAL, ["coverage 98.00% below 99.00%"]),
    ({"recorded_ms": 94 * H}, NOT_COMPLIANT, ["coverage 94.00% below 99.00%", "usable coverage 94.00% below 98.00%"]),
    ({"unusable_ms": 5 * H}, PARTIAL, ["usable coverage 95.00% below 98.00%"]),
    ({"unusable_ms": 11 * H}, NOT_COMPLIANT, ["usable coverage 89.00% below 98.00%"]),
    ({"gaps": two_hour_gap()}, PARTIAL, ["longest gap 2.00 h exceeds 1 h"]),
    ({"lock": LockStats(missing_retain_until=3)}, NOT_COMPLIANT, ["3 segments have no retain-until"]),
    ({"lock": LockStats(not_compliance_mode=2)}, NOT_COMPLIANT, ["2 segments are not locked in COMPLIANCE mode"]),
    ({"lock": LockStats(below_legal_days=1)}, NOT_COMPLIANT,
     ["segments of 1 days are locked for less than end + 6 months"]),
    ({"lock": LockStats(open_lock_findings=1)}, NOT_COMPLIANT, ["1 open lock verification findings"]),
    # a lock finding is told once, by the lock numbers, not again among the integrity findings
    ({"integrity": IntegrityStats(open_critical=1, open_critical_by_kind={"lock_missing": 1})}, COMPLIANT, []),
    ({"integrity": IntegrityStats(open_critical=2, open_critical_by_kind={"altered": 1, "missing": 1})}, NOT_COMPLIANT,
     ["2 open critical integrity findings (altered, missing)"]),
    ({"integrity": IntegrityStats(open_warning=2)}, PARTIAL, ["2 open integrity warnings"]),
    ({"oldest_age_days": None, "oldest_start_ms": None}, NOT_COMPLIANT, ["no stored footage at all"]),
    ({"oldest_age_days": None, "oldest_start_ms": None, "expected_days": 0.5}, COMPLIANT, []),  # registered just now
    ({"oldest_age_days": 150.0}, NOT_COMPLIANT, ["oldest footage is 150.0 days old, 183 days must be kept"]),
    ({"oldest_age_days": 182.5}, COMPLIANT, []),  # within a day of slack (the sweep runs daily)
    ({"end_ms": 0, "lock": LockStats(missing_retain_until=3)}, COMPLIANT, []),  # no part of the period: nothing judged
])
def test_camera_verdict(change, level, reasons):
    v = camera_verdict(camera_row(**change), ComplianceThresholds())
    assert (v.level, [x.split(" / ")[-1] for x in v.reasons]) == (level, reasons)


def test_camera_verdict_reads_the_thresholds():
    gappy = camera_row(gaps=two_hour_gap(), recorded_ms=96 * H)
    assert camera_verdict(gappy, ComplianceThresholds()).level == PARTIAL
    lax = ComplianceThresholds(coverage_ok=0.95, usable_ok=0.95, max_gap_s=None)
    assert camera_verdict(gappy, lax) == Verdict(COMPLIANT, ())
    strict = ComplianceThresholds(coverage_partial=0.97, usable_partial=0.97)
    assert camera_verdict(gappy, strict).level == NOT_COMPLIANT


def test_area_verdict():
    ok = camera_row(camera_id="ok")
    part = camera_row(camera_id="part", verdict=Verdict(PARTIAL, ("coverage low",)))
    assert area_verdict([]) == Verdict(NOT_COMPLIANT, ("区域内没有启用的摄像机 / no enabled camera in this area",))
    assert area_verdict([ok]) == Verdict(COMPLIANT, ())
    assert area_verdict([ok, part]) == Verdict(PARTIAL, ("part: coverage low",))


def area_row(verdict: Verdict, name: str = "力学室") -> AreaReport:
    return AreaReport("a", name, ("cam",), ("cam",), 0, 0, 0, 0, 0, 0, 0, 0, verdict)


def job(name: str, completed: int = 1) -> JobStatus:
    return JobStatus(name, {"ok": completed} if completed else {}, None, None, None)


JOBS_RAN = (job("verify"), job("integrity"))


@pytest.mark.parametrize("areas, cameras, unlisted, bucket, jobs, require_jobs, level, reasons", [
    ([area_row(Verdict(COMPLIANT))], [], IntegrityStats(), IntegrityStats(), JOBS_RAN, True, COMPLIANT, []),
    ([area_row(Verdict(PARTIAL, ("x",)))], [], IntegrityStats(), IntegrityStats(), JOBS_RAN, True, PARTIAL,
     ["力学室: 部分合规 / partially compliant"]),
    ([area_row(Verdict(NOT_COMPLIANT), name="")], [], IntegrityStats(), IntegrityStats(), JOBS_RAN, True, NOT_COMPLIANT,
     ["a: 不合规 / not compliant"]),
    # a camera that is not counted: its coverage is not judged, the keeping of its footage is
    ([], [camera_row(camera_id="off", counted=False, recorded_ms=0, lock=LockStats(not_compliance_mode=1))],
     IntegrityStats(), IntegrityStats(), JOBS_RAN, True, NOT_COMPLIANT,
     ["off: 1 个片段未以 COMPLIANCE 模式锁定 / 1 segments are not locked in COMPLIANCE mode"]),
    ([], [], IntegrityStats({"missing": 2}, open_critical=2), IntegrityStats(), JOBS_RAN, True, NOT_COMPLIANT,
     ["其他摄像机的完整性问题 2 项未解决 / 2 open findings on footage of cameras without data this period (missing)"]),
    ([], [], IntegrityStats(), IntegrityStats({"orphan_object": 1}, open_critical=1), JOBS_RAN, True, NOT_COMPLIANT,
     ["存储桶级问题 1 项未解决 / 1 open bucket-level findings (orphan_object)"]),
    ([], [], IntegrityStats(), IntegrityStats(), (job("verify", 0), job("integrity")), True, PARTIAL,
     ["锁定校验 / lock verification: 本期没有完成的运行 / no completed run in this period"]),
    ([], [], IntegrityStats(), IntegrityStats(), (job("verify", 0), job("integrity", 0)), False, COMPLIANT, []),
])
def test_report_verdict(areas, cameras, unlisted, bucket, jobs, require_jobs, level, reasons):
    t = ComplianceThresholds(require_jobs=require_jobs)
    assert report_verdict(areas, cameras, unlisted, bucket, jobs, t) == Verdict(level, tuple(reasons))
