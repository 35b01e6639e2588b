"""Monthly compliance report: did every camera of the testing areas record, keep
and lock its footage the way the rule asks (Guangxi 2015, Art. 7: video
surveillance of the main testing areas, recordings kept no less than 6 months)?

``compliance_report(engine, "2026-11", tz, now_ms)`` reads the index only and
returns the report; this module assembles it from its parts:

* :mod:`retention.compliance_model` — the report's dataclasses and thresholds;
* :mod:`retention.months` — the calendar month in the lab's time zone;
* :mod:`retention.compliance_queries` — one aggregate query per index table;
* :mod:`retention.compliance_rules` — the verdicts, pure;
* :mod:`retention.compliance_render` — the printable HTML page and the CSV sheet.

The period is the calendar month in the lab's time zone, clipped at *now* for
the current month (``partial_month``).  A camera created during the month is
counted from its ``created_ms``.

What counts toward the verdict (:class:`~retention.compliance_model.ComplianceThresholds`):

* recorded coverage and usable coverage (recorded minus content events:
  blackout / frozen / obscured / moved) against "ok" and "partial" thresholds;
* a single gap longer than ``max_gap_s`` (partial);
* every segment of the month locked in COMPLIANCE mode until at least
  end + 6 calendar months (not compliant otherwise);
* open integrity findings of the month (critical -> not compliant, warning -> partial);
* the oldest retained footage reaching back ``required_days`` (183), or to the
  camera's registration when that is more recent;
* report-wide: lock verification and integrity audit completed at least one run
  in the period, bucket-level findings.

Disabled cameras and cameras no longer in the registry are listed with their
numbers but their coverage is not counted in their area's or the overall
verdict; the lock and integrity of their kept footage still is (report level).  An area's
verdict is the worst of its counted cameras'; an area without an enabled camera
is not compliant; cameras without an area form an "area" of their own when
one of them counts.
"""

from __future__ import annotations

from dataclasses import replace
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.engine import Engine

from index.coverage import CoverageStore
from index.models import Area, Camera
from index.queries import db_errors
from labwitness.clock import DAY_MS, from_ms
from labwitness.errors import ValidationError
from retention.compliance_model import (
    COMPLIANT, AreaReport, CameraReport, ComplianceReport, ComplianceThresholds, GapStats, Verdict,
)
from retention.compliance_queries import (
    SegmentAgg, finding_counts, gap_stats, integrity_stats, job_statuses, oldest_footage, open_lock_findings,
    segment_stats, unusable,
)
from retention.compliance_rules import area_verdict, camera_verdict, report_verdict
from retention.months import month_bounds
from retention.policy import RetentionPolicy


def compliance_report(engine: Engine, month: str, tz: ZoneInfo, now_ms: int, *,
                      thresholds: ComplianceThresholds | None = None,
                      policy: RetentionPolicy | None = None, rollup: bool = True) -> ComplianceReport:
    """The compliance report of ``month`` ("YYYY-MM", calendar month in ``tz``) as of ``now_ms``.
    ``rollup=False`` reads every segment row of the month instead of the closed days' rollup (the
    reference the tests and ``bench/index_scale`` compare against: same report, slower).

    Raises ValidationError for a malformed month or one that has not begun yet."""
    t = thresholds or ComplianceThresholds()
    policy = policy or RetentionPolicy()
    lo, end = month_bounds(month, tz)
    if now_ms <= lo:
        raise ValidationError(f"月份 {month} 尚未开始 / month {month} has not begun yet")
    hi = min(end, now_ms)
    with db_errors(), engine.connect() as conn:
        areas = {a.id: a for a in conn.execute(select(Area.__table__)).all()}
        cams = {c.id: c for c in conn.execute(select(Camera.__table__)).all()}
        # closed days from the coverage rollup's lock columns, the month's edges live (index.coverage)
        segs = segment_stats(conn, lo, hi, policy,
                             rolled_before=CoverageStore(engine, lambda: now_ms).first_open_day() if rollup else None)
        gaps = gap_stats(conn, lo, hi, t.longest_gaps)
        findings = finding_counts(conn, lo, hi)
        jobs = job_statuses(conn, lo, hi)
        # Every camera that existed during the period, plus any with footage or gaps in it
        # (a removed camera's footage is kept, and reported).
        ids = sorted({cid for cid, c in cams.items() if c.created_ms < hi} | set(segs) | set(gaps))
        windows = {}
        for cid in ids:
            c = cams.get(cid)
            windows[cid] = (c.created_ms if c is not None and lo < c.created_ms < hi else lo, hi)
        unusable_by_camera = unusable(conn, lo, hi, windows)
        oldest = oldest_footage(conn, ids)

    cameras: list[CameraReport] = []
    for cid in ids:
        c = cams.get(cid)
        wlo, whi = windows[cid]
        rows = findings.get(cid, {})
        agg = segs.get(cid, SegmentAgg())
        un, un_kind = unusable_by_camera.get(cid, (0, {}))
        old = oldest.get(cid)
        registered_days = (now_ms - c.created_ms) / DAY_MS if c is not None else float(t.required_days)
        report = CameraReport(
            camera_id=cid, name=c.name if c is not None else "", area_id=c.area_id if c is not None else None,
            enabled=bool(c.enabled) if c is not None else False, in_registry=c is not None,
            counted=c is not None and bool(c.enabled), created_ms=int(c.created_ms) if c is not None else None,
            start_ms=wlo, end_ms=whi, recorded_ms=agg.recorded_ms, unusable_ms=min(un, agg.recorded_ms),
            unusable_by_kind=un_kind, gaps=gaps.get(cid, GapStats()), oldest_start_ms=old,
            oldest_age_days=None if old is None else round((now_ms - old) / DAY_MS, 3),
            expected_days=round(max(0.0, min(float(t.required_days), registered_days)), 3),
            lock=agg.lock(open_lock_findings(rows)), integrity=integrity_stats(rows), notes=_notes(c, lo, hi, tz),
            verdict=Verdict(COMPLIANT))
        cameras.append(replace(report, verdict=camera_verdict(report, t)))

    area_reports = _areas(areas, cameras)
    total = SegmentAgg()
    for a in segs.values():
        total.add(a)
    all_rows: dict[tuple[str, str, bool], int] = {}
    for rows in findings.values():
        for k, n in rows.items():
            all_rows[k] = all_rows.get(k, 0) + n
    unlisted = integrity_stats({k: n for cid, rows in findings.items() if cid and cid not in windows
                                for k, n in rows.items()})
    bucket = integrity_stats(findings.get("", {}))
    return ComplianceReport(
        month=month, timezone=str(tz.key), start_ms=lo, end_ms=end, until_ms=hi, partial_month=hi < end,
        generated_ms=now_ms, retention_months=policy.months, retention_margin_days=policy.margin_days,
        thresholds=t, areas=tuple(area_reports), cameras=tuple(cameras), jobs=jobs, integrity=integrity_stats(all_rows),
        lock=total.lock(open_lock_findings(all_rows)),
        verdict=report_verdict(area_reports, cameras, unlisted, bucket, jobs, t))


def _notes(c, lo: int, hi: int, tz: ZoneInfo) -> tuple[str, ...]:
    """Why camera row ``c`` (None: no longer registered) is counted the way it is."""
    if c is None:
        return ("已从登记中移除，录像仍保留；不计入结论 / removed from the registry, footage kept; not counted",)
    notes = []
    if lo < c.created_ms < hi:
        notes.append(f"本月新增，自 {from_ms(c.created_ms).astimezone(tz):%Y-%m-%d %H:%M} 起计 / "
                     f"added during the month, counted from its registration")
    elif c.created_ms >= hi:
        notes.append("登记晚于本期，但本期有录像 / registered after this period but has footage in it")
    if not c.enabled:
        notes.append("已停用，不计入区域结论 / disabled: not counted in the area verdict")
    return tuple(notes)


def _areas(areas: dict, cameras: list[CameraReport]) -> list[AreaReport]:
    by_area: dict[str | None, list[CameraReport]] = {aid: [] for aid in areas}
    for c in cameras:
        by_area.setdefault(c.area_id if c.area_id in areas else None, []).append(c)
    out = []
    for aid in sorted(by_area, key=lambda a: (a is None, a or "")):
        cs = by_area[aid]
        counted = [c for c in cs if c.counted]
        if aid is None and not counted:
            continue  # no area and nothing counted (e.g. removed cameras): listed among the cameras only
        row = areas.get(aid)
        out.append(AreaReport(
            area_id=aid, name=row.name if row is not None else "未分配区域 / no area",
            camera_ids=tuple(c.camera_id for c in cs), counted_ids=tuple(c.camera_id for c in counted),
            period_ms=sum(c.period_ms for c in counted), recorded_ms=sum(c.recorded_ms for c in counted),
            unusable_ms=sum(c.unusable_ms for c in counted), gap_count=sum(c.gaps.count for c in counted),
            gap_ms=sum(c.gaps.total_ms for c in counted), lock_segments=sum(c.lock.segments for c in counted),
            lock_verified=sum(c.lock.verified for c in counted),
            integrity_open=sum(c.integrity.open for c in counted), verdict=area_verdict(counted)))
    return out

