"""Health by output: is every enabled camera producing locked segments right now?

One report for ``GET /api/v1/health`` and ``labwitness health`` (exit 0 ok,
1 warning, 2 critical).  Facts come from the index (what really reached
storage), the spool (what is waiting) and, inside the service, the live
workers — never from "the process is alive".
"""

from __future__ import annotations


from labwitness.clock import from_ms, utc_ms
from labwitness.errors import IndexUnavailableError, LabwitnessError

SEVERITY = ["ok", "warning", "critical"]


def health_report(rt) -> dict:
    levels, problems = ["ok"], []

    def flag(level: str, text: str) -> None:
        levels.append(level)
        problems.append(text)

    info = rt.store.info
    try:
        rt.store.check(create=False)
    except LabwitnessError as e:
        flag("critical", f"对象存储异常 / object store: {e}")
    if not info.retention_enforced:
        flag("warning", "存储未强制保留 / retention NOT enforced by storage")

    now = rt.clock.now()
    now_ms = utc_ms(now)
    offline_after_ms = int(2 * rt.settings.segment_seconds * 1000) + int(rt.settings.rtsp_read_timeout_s * 1000)
    workers = rt.recorder.workers() if rt.recorder else {}
    cameras: dict[str, dict] = {}
    try:
        cams = rt.registry.cameras(enabled_only=True)
        for cam in cams:
            last = rt.index.latest_segment(cam.id)
            day = rt.index.footage(cam.id, now_ms - 86_400_000, now_ms)
            age_s = (now_ms - last.end_ms) / 1000 if last else None
            w = workers.get(cam.id)
            fact = {
                "area_id": cam.area_id, "last_segment_end": from_ms(last.end_ms).isoformat() if last else None,
                "last_segment_age_s": round(age_s, 1) if age_s is not None else None,
                "coverage_24h": round(day.coverage, 4), "gaps_24h": len(day.gaps),
                "clock_offset_s": cam.clock_offset_ms / 1000 if cam.clock_offset_ms is not None else None,
                "state": ("stalled" if w.stalled() else w.status.state) if w else None,
                "last_error": w.status.last_error if w else "",
            }
            if last is None or now_ms - last.end_ms > offline_after_ms:
                fact["offline"] = True
                flag("critical", f"{cam.id}: 无新录像 / no footage stored for "
                                 f"{'ever' if last is None else f'{age_s:.0f} s'} ({fact['last_error'] or 'offline'})")
            if w is not None and w.status.state == "spool_full":
                flag("critical", f"{cam.id}: 本地缓存已满 / spool full: footage is not being recorded")
            if cam.clock_offset_ms is not None and abs(cam.clock_offset_ms) > 5000:
                flag("warning", f"{cam.id}: 摄像机时钟偏差 / camera clock off by {cam.clock_offset_ms / 1000:.1f} s")
            cameras[cam.id] = fact
    except IndexUnavailableError as e:
        flag("critical", f"索引数据库不可用 / index database unavailable: {e}")

    backlog = rt.recorder.uploader.backlog() if rt.recorder else _spool_backlog(rt.settings.spool_path)
    if backlog and rt.recorder and rt.recorder.uploader.last_error:
        flag("warning", f"上传积压 / upload backlog of {backlog} segments: {rt.recorder.uploader.last_error}")
    return {
        "status": max(levels, key=SEVERITY.index), "problems": problems, "checked_at": now.isoformat(),
        "storage": {"backend": info.backend, "location": info.location, "retention_enforced": info.retention_enforced,
                    "detail": info.detail},
        "retention": {"months": rt.policy.months, "margin_days": rt.policy.margin_days},
        "spool": {"backlog_segments": backlog, "bytes": rt.recorder.quota.used if rt.recorder else None,
                  "last_upload_error": rt.recorder.uploader.last_error if rt.recorder else ""},
        "cameras": cameras,
    }


def _spool_backlog(spool_dir) -> int:
    """Committed segments waiting in a spool that no process in here is draining."""
    if not spool_dir.exists():
        return 0
    return sum(1 for p in spool_dir.glob("*/" + "[0-9]" * 12 + ".json"))
