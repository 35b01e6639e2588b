"""Retention health: can operations prove, right now, that every camera's footage
is kept for six months and nothing was lost or altered?

Two halves:

* :func:`gather` reads facts from the index (and what the caller knows about
  storage and the spool): per camera last segment age, coverage over 24 h /
  7 d / 183 d (and how much of it was recorded but not usable), gaps with
  reasons, oldest retained footage, camera clock offset (ONVIF; the caller adds
  the stream's, from RTCP sender reports), bytes; for the lab
  storage used, growth per day, runway, open integrity findings and the latest
  run of every retention job.  Six months of coverage come from
  :mod:`index.coverage`'s day rollup and the per-camera facts from
  :mod:`index.camera_facts` (one statement per fact for all cameras), so the number
  of statements does not grow with the camera count.
* :func:`classify` is pure policy: facts + thresholds -> ok / warning /
  critical with the reasons, bilingual, each one something an operator can act on.
  Table-driven tests pin it down.
"""

from __future__ import annotations

import json
from typing import Iterable, Mapping

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from index import camera_facts
from index.coverage import CoverageStore
from index.exports import ExportStore
from index.models import Camera, ContentEvent, Gap, IntegrityFinding, JobRun, Seal, Segment
from index.queries import db_guarded
from labwitness.clock import DAY_MS, HOUR_MS, from_ms
from retention.camera_clock import camera_clock, clock_warning, osd_off
from retention.health_facts import CameraFacts, ExportQueueFacts, Facts, SealFacts, StorageFacts, Thresholds
from retention.time_witness import TIME_REFUSALS

#: sweep refusals that say the host clock cannot be trusted: critical (the store's clock, the witnesses)
TIME_REASONS = ("clock_skew", *TIME_REFUSALS)

SEVERITY = ("ok", "warning", "critical")
WINDOWS = {"24h": DAY_MS, "7d": 7 * DAY_MS, "183d": 183 * DAY_MS}
#: how often each job is expected to succeed (hours); a job older than twice this is stale
JOB_EXPECTED_H = {"sweep": 24, "verify": 24, "integrity": 24, "reconcile": 24 * 7, "content": 1}


def growth_per_day(rates: Mapping[str, tuple[int, int]]) -> float:
    """Bytes per day the enabled cameras add to storage: per camera, the bytes of its
    recent segments over their media milliseconds (what it really writes per second
    of recording) times one day, summed.  Known from each camera's first segment on;
    dividing what was stored by the installation's age instead reads far too low in
    the first days (a 10-minute-old installation looked 6 times slower than it was).
    ``rates``: camera -> (bytes, media ms), :meth:`index.coverage.CoverageStore.recent_rates`."""
    return round(sum(size / media_ms * DAY_MS for size, media_ms in rates.values() if media_ms > 0), 1)


def offline_after_ms(segment_seconds: float, read_timeout_s: float) -> int:
    """A camera is offline when no segment ended within two segment lengths (plus
    the read timeout, the time the recorder needs to notice a silent camera)."""
    return int(2 * segment_seconds * 1000 + read_timeout_s * 1000)


def is_offline(last_segment_end_ms: int | None, now_ms: int, segment_seconds: float, read_timeout_s: float) -> bool:
    """The one "camera offline" rule (health, its gauges and the cameras page): no stored
    segment at all, or none that ended within :func:`offline_after_ms`."""
    return last_segment_end_ms is None or now_ms - last_segment_end_ms > offline_after_ms(segment_seconds, read_timeout_s)


@db_guarded
def gather(engine: Engine, coverage: CoverageStore, now_ms: int, *, segment_seconds: float, read_timeout_s: float,
           retention_days: float, retention_enforced: bool, capacity: tuple[int, int] | None = None,
           spool_backlog: int = 0, upload_error: str = "", camera_ids: Iterable[str] | None = None,
           seal_interval_h: float = 0.0, seal_grace_min: float = 15.0, per_camera: bool = False) -> Facts:
    """Facts for every enabled camera (or ``camera_ids``).  ``capacity`` is
    (total, free) bytes of the storage when known.  The per-camera facts (oldest, newest,
    write rate) come from :mod:`index.camera_facts`, a constant number of statements
    whatever the camera count; ``per_camera`` asks each camera on its own instead (the
    reference the tests and ``bench/index_scale`` compare against: same answer, slower)."""
    with engine.connect() as conn:
        cams = conn.execute(select(Camera.__table__.c.id, Camera.__table__.c.name, Camera.__table__.c.area_id,
                                   Camera.__table__.c.enabled, Camera.__table__.c.clock_offset_ms)
                            .order_by(Camera.__table__.c.id)).all()
    wanted = set(camera_ids) if camera_ids is not None else None
    cams = [c for c in cams if (c.enabled if wanted is None else c.id in wanted)]
    ids = [c.id for c in cams]
    facts = {c.id: CameraFacts(c.id, c.name, c.area_id, bool(c.enabled),
                               clock_offset_s=c.clock_offset_ms / 1000 if c.clock_offset_ms is not None else None)
             for c in cams}
    if per_camera:
        oldest = coverage.oldest(ids)
    else:
        with engine.connect() as conn:
            oldest = camera_facts.oldest_starts(conn, ids)
            newest = camera_facts.newest_segments(conn, ids, now_ms)
            rates = camera_facts.recent_rates(conn, newest, now_ms)
    memo: dict = {}  # the windows' open part (today so far) is summed once for all of them
    for name, span in WINDOWS.items():
        totals = coverage.totals(ids, now_ms - span, now_ms, oldest, memo)
        unusable = _unusable(engine, ids, now_ms - span, now_ms)
        for cam in ids:
            f = facts[cam]
            f.coverage[name] = round(min(1.0, totals[cam].recorded_ms / span), 6)
            bad = min(unusable.get(cam, (0, set()))[0], totals[cam].recorded_ms)
            f.unusable[name] = round(bad / span, 6)
            f.usable_coverage[name] = round(max(0.0, (totals[cam].recorded_ms - bad) / span), 6)
            if name == "24h":
                f.unusable_ongoing = sorted(unusable.get(cam, (0, set()))[1])
            if name == "183d":
                f.bytes_183d = totals[cam].bytes
    with engine.connect() as conn:
        seg_end = _latest_ends(conn, ids) if per_camera else {c: end for c, (_s, end) in newest.items()}
        gap_t = Gap.__table__
        for cam in ids:
            f = facts[cam]
            f.last_segment_end_ms = seg_end.get(cam)
            f.last_segment_age_s = round((now_ms - f.last_segment_end_ms) / 1000, 1) if f.last_segment_end_ms else None
            f.offline = is_offline(f.last_segment_end_ms, now_ms, segment_seconds, read_timeout_s)
            f.oldest_ms = oldest.get(cam)
            f.oldest_age_days = round((now_ms - f.oldest_ms) / DAY_MS, 2) if f.oldest_ms is not None else None
        if ids:
            for cam, lo, hi, reason in conn.execute(
                    select(gap_t.c.camera_id, gap_t.c.start_ms, gap_t.c.end_ms, gap_t.c.reason)
                    .where(gap_t.c.camera_id.in_(ids), gap_t.c.start_ms < now_ms, gap_t.c.end_ms > now_ms - 7 * DAY_MS)
                    .order_by(gap_t.c.camera_id, gap_t.c.start_ms)):
                f = facts[cam]
                f.gap_reasons_7d[reason] = f.gap_reasons_7d.get(reason, 0) + 1
                if hi > now_ms - DAY_MS:
                    f.gaps_24h.append({"start_ms": lo, "end_ms": hi, "reason": reason})
        fi = IntegrityFinding.__table__
        findings = conn.execute(select(fi.c.kind, fi.c.severity, func.count()).where(fi.c.resolved_ms.is_(None))
                                .group_by(fi.c.kind, fi.c.severity)).all()
        jobs = _latest_jobs(conn)
        st = Seal.__table__
        newest = conn.execute(select(st.c.seq, st.c.created_ms).order_by(st.c.seq.desc()).limit(1)).first()
    findings_open: dict[str, int] = {}
    for kind, _sev, n in findings:
        findings_open[kind] = findings_open.get(kind, 0) + n
    critical = sum(n for _k, sev, n in findings if sev == "critical")

    used = coverage.stored_bytes(ids, oldest, memo)
    growth = growth_per_day(coverage.recent_rates(ids) if per_camera else rates)
    oldest_age = max((f.oldest_age_days or 0.0) for f in facts.values()) if facts else 0.0
    storage = StorageFacts(retention_enforced, used, growth,
                           needed_days=round(max(0.0, retention_days - oldest_age), 2))
    if capacity is not None:
        storage.set_capacity(*capacity)
    seals = SealFacts(seal_interval_h, seal_grace_min, newest.created_ms if newest else None, newest.seq if newest else None)
    queue = ExportStore(engine, lambda: now_ms).backlog()
    exports = ExportQueueFacts(queue.queued, queue.running, None if queue.oldest_created_ms is None else
                               round(max(0, now_ms - queue.oldest_created_ms) / 1000, 1))
    return Facts(now_ms, segment_seconds, retention_days, list(facts.values()), storage, findings_open, critical, jobs,
                 spool_backlog, upload_error, seals, exports)


def _latest_ends(conn, ids: list[str]) -> dict[str, int]:
    """The per-camera reference for :func:`index.camera_facts.newest_segments`."""
    seg = Segment.__table__
    out = {}
    for cam in ids:  # one index lookup each (ORDER BY start DESC LIMIT 1)
        row = conn.execute(select(seg.c.end_ms).where(seg.c.camera_id == cam, seg.c.status == "stored")
                           .order_by(seg.c.start_ms.desc()).limit(1)).first()
        if row:
            out[cam] = row[0]
    return out


def _unusable(engine: Engine, ids: list[str], lo: int, hi: int) -> dict[str, tuple[int, set[str]]]:
    """Per camera: ms of [lo, hi) under a content event (overlaps merged) and the ongoing kinds."""
    if not ids:
        return {}
    ev = ContentEvent.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(ev.c.camera_id, ev.c.start_ms, ev.c.end_ms, ev.c.kind, ev.c.ongoing)
                            .where(ev.c.camera_id.in_(ids), ev.c.start_ms < hi, ev.c.end_ms > lo)
                            .order_by(ev.c.camera_id, ev.c.start_ms)).all()
    out: dict[str, tuple[int, set[str]]] = {}
    cursor: dict[str, int] = {}
    for cam, s, e, kind, ongoing in rows:
        total, kinds = out.get(cam, (0, set()))
        s, e = max(s, lo, cursor.get(cam, lo)), min(e, hi)
        if e > s:
            total += e - s
            cursor[cam] = e
        if ongoing:
            kinds.add(kind)
        out[cam] = (total, kinds)
    return out


def _latest_jobs(conn) -> dict[str, dict]:
    jr = JobRun.__table__
    out: dict[str, dict] = {}
    latest = select(jr.c.job, func.max(jr.c.id).label("id")).where(jr.c.dry_run.is_(False)).group_by(jr.c.job).subquery()
    ok = select(jr.c.job, func.max(jr.c.finished_ms).label("t")).where(
        jr.c.status.in_(["ok", "warning"]), jr.c.dry_run.is_(False)).group_by(jr.c.job).subquery()
    last_ok = {job: t for job, t in conn.execute(select(ok.c.job, ok.c.t))}
    for row in conn.execute(select(jr).join(latest, latest.c.id == jr.c.id)):
        try:
            summary = json.loads(row.summary or "{}")
        except ValueError:
            summary = {}
        out[row.job] = {"status": row.status, "started_ms": row.started_ms, "finished_ms": row.finished_ms,
                        "last_success_ms": last_ok.get(row.job), "summary": summary}
    return out


# -- policy -------------------------------------------------------------------------------
def sweep_not_due(job: str, run: dict, cameras: list[CameraFacts]) -> str:
    """Why a refused expiry sweep is expected (shown as information), or "" when the
    refusal is a real problem.  ``index_fresh``: the oldest footage is younger than
    one retention period, so nothing can have expired (every new installation, for
    six months).  ``index_empty`` before any camera had recorded is the same; once a
    camera's footage predates the run, an empty index means rows were lost.  Any other
    reason stays a warning, or is critical (:func:`time_untrusted`)."""
    if job != "sweep" or run.get("status") != "refused":
        return ""
    reason = (run.get("summary") or {}).get("reason")
    if reason == "index_fresh":
        return ("清理暂无可做：最旧的录像还不到一个保留期（新安装属正常） / expiry sweep: nothing can have expired yet, "
                "the oldest footage is younger than one retention period (expected on a new installation)")
    started = run.get("started_ms")
    recorded_before = any(c.oldest_ms is not None and (started is None or c.oldest_ms < started) for c in cameras)
    if reason == "index_empty" and not recorded_before:
        return "清理暂无可做：尚无录像 / expiry sweep: nothing has been recorded yet"
    return ""


def time_untrusted(job: str, run: dict) -> str:
    """Why the latest sweep did not trust this host's clock (the store's clock or a witness
    disagreed, or no witness independent of the host clock answered), or "": critical, since
    deleting is then blocked and the clock may be wrong for everything else the service dates."""
    summary = run.get("summary") or {}
    if job != "sweep" or run.get("status") != "refused" or summary.get("reason") not in TIME_REASONS:
        return ""
    return summary.get("message") or f"清理因时间不可信被拒绝 / expiry sweep refused: {summary.get('reason')}"


def time_witness_view(jobs: Mapping[str, dict]) -> dict | None:
    """The latest sweep's time-witness readings, as health shows them (None before any sweep read them)."""
    run = jobs.get("sweep") or {}
    summary = run.get("summary") or {}
    if "time_witnesses" not in summary:
        return None
    at = run.get("finished_ms") or run.get("started_ms")
    return {"checked_at": from_ms(at).isoformat() if at else None, "verdict": summary.get("time_verdict"),
            "witnesses": summary["time_witnesses"]}


def classify(f: Facts, th: Thresholds = Thresholds()) -> tuple[str, list[dict]]:
    """Overall status and the problems behind it, each ``{level, code, camera?, text}``
    (level ``info`` is shown but does not change the status)."""
    problems: list[dict] = []

    def flag(level: str, code: str, text: str, camera: str | None = None) -> None:
        problems.append({"level": level, "code": code, "camera": camera, "text": text})

    if not f.cameras:
        flag("warning", "no_cameras", "没有启用的摄像机，没有任何录像在录制 / no enabled camera: nothing is being recorded")
    if not f.storage.retention_enforced:
        flag("warning", "retention_not_enforced",
             "存储未强制保留（无对象锁定），录像可被删除 / retention NOT enforced by storage (no Object Lock)")
    for c in f.cameras:
        if c.offline:
            age = "从未 / never" if c.last_segment_age_s is None else f"{c.last_segment_age_s:.0f} s"
            flag("critical", "camera_offline", f"{c.camera_id}: 无新录像 / no footage stored for {age}", c.camera_id)
        cov = c.coverage.get("24h")
        if cov is not None and not c.offline and c.oldest_age_days is not None and c.oldest_age_days >= 1:
            if cov < th.coverage_critical:
                flag("critical", "coverage_low", f"{c.camera_id}: 24 小时覆盖率 {cov:.1%} / 24 h coverage {cov:.1%}", c.camera_id)
            elif cov < th.coverage_warning:
                flag("warning", "coverage_low", f"{c.camera_id}: 24 小时覆盖率 {cov:.1%} / 24 h coverage {cov:.1%}", c.camera_id)
        if c.unusable_ongoing:
            kinds = ", ".join(c.unusable_ongoing)
            flag("warning", "content_unusable", f"{c.camera_id}: 画面不可用 / picture not usable: {kinds}", c.camera_id)
        offset, source = camera_clock(c.stream_clock_offset_s, c.clock_offset_s)
        if offset is not None and osd_off(offset, th.clock_offset_warning_s):
            flag("warning", "clock_offset", clock_warning(c.camera_id, offset, source), c.camera_id)
    s = f.storage
    if s.capacity_bytes is None:  # informational: does not change the status
        flag("info", "capacity_unknown", "存储容量未知，无法计算可用天数 / storage capacity unknown: set "
                                            "LABWITNESS_STORAGE_CAPACITY_BYTES to get the runway")
    elif s.runway_days is not None:
        if s.runway_days < s.needed_days:
            flag("critical", "runway_short", f"存储将在 {s.runway_days:.0f} 天后写满，早于最旧录像可删除的 {s.needed_days:.0f} 天 / "
                                             f"storage full in {s.runway_days:.0f} days, before the oldest footage may be "
                                             f"deleted ({s.needed_days:.0f} days)")
        elif s.runway_days < s.needed_days + th.runway_warning_margin_days:
            flag("warning", "runway_short", f"存储余量紧张：{s.runway_days:.0f} 天 / storage runway only {s.runway_days:.0f} days")
    for kind, n in sorted(f.findings_open.items()):
        flag("critical" if f.findings_critical else "warning", f"integrity_{kind}",
             f"完整性问题 {n} 项（{kind}）/ {n} open integrity finding(s): {kind}")
    for job, run in sorted(f.jobs.items()):
        not_due = sweep_not_due(job, run, f.cameras)
        untrusted = time_untrusted(job, run)
        if not_due:
            flag("info", "sweep_not_due", not_due)
        elif untrusted:
            flag("critical", "time_untrusted", untrusted)
        elif job == "seal" and run["status"] == "warning":
            flag("warning", "job_seal", "封印未能交给见证方发件箱，下次运行重试 / seals not handed to the witness outbox yet "
                                        f"(retried next run): {(run.get('summary') or {}).get('witness_error', '')}")
        elif run["status"] in ("failed", "critical", "refused"):
            # a seal that failed leaves footage without its proof: as serious as a finding
            serious = run["status"] == "critical" or (job == "seal" and run["status"] == "failed")
            flag("critical" if serious else "warning", f"job_{job}",
                 f"任务 {job} 最近一次 {run['status']} / job {job} last run: {run['status']}")
        expected = JOB_EXPECTED_H.get(job)
        last = run.get("last_success_ms")
        if expected and last is not None and f.now_ms - last > th.job_stale_factor * expected * 3_600_000:
            flag("warning", f"job_{job}_stale", f"任务 {job} 已 {(f.now_ms - last) / 3_600_000:.0f} 小时未成功 / "
                                                f"job {job} has not succeeded for {(f.now_ms - last) / 3_600_000:.0f} h")
    _classify_seals(f, flag)
    lag = export_queue_lag(f.exports, th.export_queue_warning_s)
    if lag:
        flag("warning", "export_queue_lag", lag)
    if f.spool_backlog and f.upload_error:
        flag("warning", "upload_backlog", f"上传积压 {f.spool_backlog} 段 / upload backlog of {f.spool_backlog} segments: "
                                          f"{f.upload_error}")
    status = max((p["level"] for p in problems if p["level"] in SEVERITY), key=SEVERITY.index, default="ok")
    return status, problems


def export_queue_lag(q: ExportQueueFacts, warning_s: float) -> str:
    """Why the export queue needs a look, or "": the oldest export not finished was requested more than
    ``warning_s`` ago (no jobs node builds exports, its workers are stuck, or the queue outgrows them)."""
    if q.oldest_age_s is None or q.oldest_age_s <= warning_s:
        return ""
    minutes = q.oldest_age_s / 60
    return (f"证据包导出积压：最早的请求已等待 {minutes:.0f} 分钟（排队 {q.queued}，生成中 {q.running}）/ export queue: the "
            f"oldest unfinished export was requested {minutes:.0f} min ago ({q.queued} queued, {q.running} being built)")


def _classify_seals(f: Facts, flag) -> None:
    """Critical when seals fall behind: the newest is older than two intervals plus the grace, or
    none was ever written although footage is older than that."""
    sf = f.seals
    if sf.interval_h <= 0:
        return
    if sf.newest_ms is None:
        oldest = min((c.oldest_ms for c in f.cameras if c.oldest_ms is not None), default=None)
        if oldest is not None and f.now_ms - oldest > sf.late_after_ms:
            flag("critical", "seal_late", "尚无封印，录像未被签名封存 / no seal written yet: footage is not sealed "
                                          "(see the seal job's log; `labwitness seal now`)")
    elif f.now_ms - sf.newest_ms > sf.late_after_ms:
        age_h = (f.now_ms - sf.newest_ms) / HOUR_MS
        flag("critical", "seal_late", f"最新封印已是 {age_h:.1f} 小时前（封印 {sf.newest_seq}）/ the newest seal "
                                      f"(seal {sf.newest_seq}) is {age_h:.1f} h old: seals are falling behind")
