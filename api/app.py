"""FastAPI app factory: ``create_app(settings)``; nothing happens at import."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Annotated
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AwareDatetime, BaseModel

from index.models import Segment
from index.tiling import NOTHING_SPOOLED, Part
from labwitness.clock import from_ms, utc_ms
from labwitness.errors import LabwitnessError, NotFoundError, ValidationError

from api import (admin_routes, compliance_routes, docs_routes, export_routes, keys_routes, problems, records_routes,
                 registry_routes)
from api.auth import Inspector, Operations
from api.records_routes import GapOut
from api.deps import RuntimeDep, object_stream
from api.rate_limit import SourceLimiter, write_floods
from api.runtime import Runtime
from api.settings import Settings

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # 1 MiB: no single request needs more
MAX_BATCH_BODY = 8 << 20  # up to 1000 test records


class SegmentOut(BaseModel):
    id: int
    camera_id: str
    start: datetime
    end: datetime
    start_local: str
    end_local: str
    media_duration_ms: int
    key: str
    version_id: str
    size: int
    sha256: str
    retain_until: datetime | None
    lock_mode: str | None
    codec: str
    width: int
    height: int
    media_url: str


class FootageOut(BaseModel):
    camera_id: str
    start: datetime
    end: datetime
    coverage: float
    segments: list[SegmentOut]
    gaps: list[GapOut]





def _recover_exports(rt: Runtime) -> None:
    try:
        released = rt.exporter.recover()
    except LabwitnessError as e:  # storage or index down: the next run tries again
        log.warning("export recovery could not run: %s", e)
        return
    if released:
        log.info("released the legal holds of %d failed or interrupted export(s): %s", len(released), ", ".join(released))


def create_app(settings: Settings, runtime: Runtime | None = None, *, sync_interval_s: float = 5.0) -> FastAPI:
    tz = ZoneInfo(settings.timezone)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        owned = runtime is None
        rt = runtime or Runtime(settings)
        if owned:
            rt.__enter__()
        app.state.runtime = rt
        if getattr(rt, "health_collector", None) is None:  # once per runtime (apps may be rebuilt in tests)
            from api.health import HealthCollector

            rt.health_collector = HealthCollector(rt)
            rt.metrics.registry.register(rt.health_collector)
        limiter = app.state.limiter = SourceLimiter(rt.clock)
        sched = BackgroundScheduler(timezone="UTC")
        sched.add_job(rt.sync_cameras, "interval", seconds=sync_interval_s, id="sync-cameras",
                      max_instances=1, coalesce=True, next_run_time=datetime.now(timezone.utc))
        # a flood's summary row is due when its window ends, even if that source stays quiet
        sched.add_job(write_floods, "interval", args=(limiter, rt.audit), seconds=15, id="audit-floods",
                      max_instances=1, coalesce=True)
        # holds of an export that failed or whose process died are released without waiting for the next
        # export to start (docs/exports.md, "recovery"); first run at start-up
        sched.add_job(_recover_exports, "interval", args=(rt,), minutes=10, id="export-recovery",
                      max_instances=1, coalesce=True, next_run_time=datetime.now(timezone.utc))
        sched.start()
        try:
            yield
        finally:
            sched.shutdown(wait=False)
            try:
                write_floods(limiter, rt.audit, final=True)  # counted refusals are not lost at shutdown
            except LabwitnessError:
                log.exception("could not write the rate limiter's flood summaries to the audit log")
            if owned:
                rt.__exit__(None, None, None)

    app = FastAPI(title="labwitness", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="实验室检测区域视频留存与索引 / Lab testing-area video retention and indexing")
    problems.install(app)
    docs_routes.install(app)  # /docs from vendored Swagger UI (no CDN), /favicon.ico

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        """Refuse oversized requests before reading them (the batch endpoint gets more room)."""
        limit = MAX_BATCH_BODY if request.url.path.endswith("/batch") else MAX_BODY
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return problems.problem(413, "请求体过大 / request body too large", f"at most {limit} bytes")
        if length is None and request.method in ("POST", "PUT", "PATCH"):
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    return problems.problem(413, "请求体过大 / request body too large", f"at most {limit} bytes")
            request._body = body  # starlette re-reads the cached body
        return await call_next(request)
    app.include_router(registry_routes.router)
    app.include_router(admin_routes.router)
    app.include_router(records_routes.router)
    app.include_router(export_routes.router)
    app.include_router(compliance_routes.router)
    app.include_router(keys_routes.router)

    def seg_out(s: Segment) -> SegmentOut:
        start, end = from_ms(s.start_ms), from_ms(s.end_ms)
        return SegmentOut(
            id=s.id, camera_id=s.camera_id, start=start, end=end,
            start_local=start.astimezone(tz).isoformat(timespec="milliseconds"),
            end_local=end.astimezone(tz).isoformat(timespec="milliseconds"),
            media_duration_ms=s.media_duration_ms, key=s.key, version_id=s.version_id, size=s.size, sha256=s.sha256,
            retain_until=from_ms(s.retain_until_ms) if s.retain_until_ms else None, lock_mode=s.lock_mode,
            codec=s.codec, width=s.width, height=s.height, media_url=f"/api/v1/segments/{s.id}/media",
        )

    def gap_out(p: Part) -> GapOut:
        return GapOut(start=from_ms(p.start_ms), end=from_ms(p.end_ms), reason=p.reason, detail=p.detail,
                      since=None if p.since_ms is None else from_ms(p.since_ms))

    @app.get("/api/v1/health")
    def health(rt: RuntimeDep, who: Operations) -> dict:
        """Recording and retention health (same report as ``labwitness health --json``)."""
        from api.health import health_report

        return health_report(rt)

    @app.get("/api/v1/health/retention")
    def health_retention(rt: RuntimeDep, who: Operations) -> dict:
        """Retention health: coverage 24 h / 7 d / 183 d, gaps, oldest footage, runway,
        integrity findings, lock verification and the retention jobs' last runs."""
        from api.health import health_report

        rep = health_report(rt)
        return {k: rep[k] for k in ("status", "problems", "alerts", "checked_at", "storage", "retention", "integrity",
                                    "jobs", "areas", "cameras")}

    @app.get("/api/v1/cameras/{camera_id}/footage")
    def footage(rt: RuntimeDep, who: Inspector, camera_id: str, start: Annotated[AwareDatetime, Query()],
                end: Annotated[AwareDatetime, Query()]) -> FootageOut:
        if end <= start:
            raise ValidationError("end 必须晚于 start / end must be after start")
        if (end - start).days > 31:
            raise ValidationError("时间窗口最长 31 天 / the window may span at most 31 days")
        now_ms = utc_ms(rt.clock.now())
        # the spool before the index, as index.records does: footage indexed in between is seen twice, not missed
        spooled = rt.spool_view.state([camera_id]).get(camera_id, NOTHING_SPOOLED)
        f = rt.index.footage(camera_id, utc_ms(start), utc_ms(end))
        if not f.segments and not f.gaps:
            rt.registry.camera(camera_id)  # 404 for a camera we never had; a removed one's footage stays visible
        parts = f.uncovered(now_ms, spooled)  # every uncovered part with its reason
        rt.audit.append(who.actor, "footage.list", camera_id, {"start": start.isoformat(), "end": end.isoformat()}, who.role)
        return FootageOut(camera_id=camera_id, start=start, end=end, coverage=round(f.coverage, 6),
                          segments=[seg_out(s) for s in f.segments], gaps=[gap_out(p) for p in parts])

    @app.get("/api/v1/cameras/{camera_id}/media", responses={200: {"content": {"video/mp4": {}}}})
    def stitched(rt: RuntimeDep, who: Inspector, camera_id: str, start: Annotated[AwareDatetime, Query()],
                 end: Annotated[AwareDatetime, Query()]) -> StreamingResponse:
        """One MP4 for any window, stitched by stream copy from the stored segments."""
        from api.media import stream_stitched

        if end <= start:
            raise ValidationError("end 必须晚于 start / end must be after start")
        if (end - start).total_seconds() > 24 * 3600:
            raise ValidationError("拼接窗口最长 24 小时 / a stitched window may span at most 24 hours")
        f = rt.index.footage(camera_id, utc_ms(start), utc_ms(end))
        if not f.segments:
            raise NotFoundError(f"该时段没有录像 / no footage of {camera_id} in this window")
        rt.audit.append(who.actor, "footage.play", f"camera:{camera_id}", {"start": start.isoformat(), "end": end.isoformat()}, who.role)
        name = f"{camera_id}_{start:%Y%m%dT%H%M%S}Z.mp4"
        return StreamingResponse(stream_stitched(rt.store, f.segments, utc_ms(start), utc_ms(end)), media_type="video/mp4",
                                 headers={"Content-Disposition": f'inline; filename="{name}"'})

    @app.get("/api/v1/segments/{segment_id}/media", responses={200: {"content": {"video/mp4": {}}}, 206: {}})
    def media(rt: RuntimeDep, who: Inspector, segment_id: Annotated[int, Path(ge=1, le=2**62)],
              range_: Annotated[str | None, Header(alias="Range")] = None) -> Response:
        seg = rt.index.segment(segment_id)
        size = seg.size
        start, end = 0, size - 1
        status = 200
        if range_:
            try:
                unit, spec = range_.split("=", 1)
                a, b = spec.split(",")[0].strip().split("-", 1)
                if unit.strip() != "bytes":
                    raise ValueError
                if a == "":
                    start, end = max(0, size - int(b)), size - 1
                else:
                    start, end = int(a), min(int(b) if b else size - 1, size - 1)
                if start > end or start >= size:
                    raise ValueError
                status = 206
            except ValueError:
                return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        # every read is audited before a byte leaves, whatever its Range (a suffix range is the whole
        # segment too); a player's many Range requests make one row per person, segment and ten minutes
        rt.audit.append_once(who.actor, "footage.play", f"segment:{segment_id}", {"key": seg.key, "range": range_},
                             who.role)
        body = rt.store.open(seg.key, seg.version_id, offset=start, length=end - start + 1)
        headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start + 1), "ETag": f'"{seg.sha256}"'}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return StreamingResponse(object_stream(body), status_code=status, media_type="video/mp4", headers=headers)

    @app.get("/metrics", include_in_schema=False)
    def metrics(rt: RuntimeDep, who: Operations) -> Response:
        return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    from api import web  # the web UI: pages, /static, sign-in sessions, the public status page at "/"

    web.install(app)
    return app
