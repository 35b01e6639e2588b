"""REST for a camera's footage: its segments and reasoned gaps in a window, one MP4
stitched for a window, and one segment's bytes (HTTP Range).  Every read is audited
before a byte leaves."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import AwareDatetime, BaseModel

from index.models import Segment
from index.tiling import NOTHING_SPOOLED
from labwitness.clock import from_ms, utc_ms
from labwitness.errors import NotFoundError, ValidationError

from api.auth import Inspector
from api.deps import AuditDep, ClockDep, IndexDep, RegistryDep, SettingsDep, SpoolDep, StoreDep, object_stream
from api.footage_json import GapOut, gap_json
from api.media import stream_stitched

router = APIRouter(prefix="/api/v1")


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


def seg_out(s: Segment, tz: ZoneInfo) -> SegmentOut:
    start, end = from_ms(s.start_ms), from_ms(s.end_ms)
    return SegmentOut(
        id=s.id, camera_id=s.camera_id, start=start, end=end,
        start_local=start.astimezone(tz).isoformat(timespec="milliseconds"),
        end_local=end.astimezone(tz).isoformat(timespec="milliseconds"),
        media_duration_ms=s.media_duration_ms, key=s.key, version_id=s.version_id, size=s.size, sha256=s.sha256,
        retain_until=from_ms(s.retain_until_ms) if s.retain_until_ms else None, lock_mode=s.lock_mode,
        codec=s.codec, width=s.width, height=s.height, media_url=f"/api/v1/segments/{s.id}/media",
    )


@router.get("/cameras/{camera_id}/footage")
def footage(index: IndexDep, registry: RegistryDep, spool: SpoolDep, audit: AuditDep, clock: ClockDep,
            settings: SettingsDep, who: Inspector, camera_id: str, start: Annotated[AwareDatetime, Query()],
            end: Annotated[AwareDatetime, Query()]) -> FootageOut:
    if end <= start:
        raise ValidationError("end 必须晚于 start / end must be after start")
    if (end - start).days > 31:
        raise ValidationError("时间窗口最长 31 天 / the window may span at most 31 days")
    now_ms = utc_ms(clock.now())
    # the spool before the index, as index.records does: footage indexed in between is seen twice, not missed
    spooled = spool.state([camera_id]).get(camera_id, NOTHING_SPOOLED)
    f = index.footage(camera_id, utc_ms(start), utc_ms(end))
    if not f.segments and not f.gaps:
        registry.camera(camera_id)  # 404 for a camera we never had; a removed one's footage stays visible
    parts = f.uncovered(now_ms, spooled)  # every uncovered part with its reason
    audit.append(who.actor, "footage.list", camera_id, {"start": start.isoformat(), "end": end.isoformat()}, who.role)
    tz = ZoneInfo(settings.timezone)
    return FootageOut(camera_id=camera_id, start=start, end=end, coverage=round(f.coverage, 6),
                      segments=[seg_out(s, tz) for s in f.segments], gaps=[GapOut(**gap_json(p)) for p in parts])


@router.get("/cameras/{camera_id}/media", responses={200: {"content": {"video/mp4": {}}}})
def stitched(index: IndexDep, store: StoreDep, audit: AuditDep, who: Inspector, camera_id: str,
             start: Annotated[AwareDatetime, Query()], end: Annotated[AwareDatetime, Query()]) -> StreamingResponse:
    """One MP4 for any window, stitched by stream copy from the stored segments."""
    if end <= start:
        raise ValidationError("end 必须晚于 start / end must be after start")
    if (end - start).total_seconds() > 24 * 3600:
        raise ValidationError("拼接窗口最长 24 小时 / a stitched window may span at most 24 hours")
    f = index.footage(camera_id, utc_ms(start), utc_ms(end))
    if not f.segments:
        raise NotFoundError(f"该时段没有录像 / no footage of {camera_id} in this window")
    audit.append(who.actor, "footage.play", f"camera:{camera_id}", {"start": start.isoformat(), "end": end.isoformat()},
                 who.role)
    name = f"{camera_id}_{start:%Y%m%dT%H%M%S}Z.mp4"
    return StreamingResponse(stream_stitched(store, f.segments, utc_ms(start), utc_ms(end)), media_type="video/mp4",
                             headers={"Content-Disposition": f'inline; filename="{name}"'})


def byte_range(range_: str, size: int) -> tuple[int, int]:
    """(first, last) byte of a ``Range: bytes=...`` header (its first range); ValueError
    when it cannot be served (416)."""
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
    return start, end


@router.get("/segments/{segment_id}/media", responses={200: {"content": {"video/mp4": {}}}, 206: {}})
def media(index: IndexDep, store: StoreDep, audit: AuditDep, who: Inspector,
          segment_id: Annotated[int, Path(ge=1, le=2**62)],
          range_: Annotated[str | None, Header(alias="Range")] = None) -> Response:
    seg = index.segment(segment_id)
    size = seg.size
    start, end = 0, size - 1
    status = 200
    if range_:
        try:
            start, end = byte_range(range_, size)
        except ValueError:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        status = 206
    # every read is audited before a byte leaves, whatever its Range (a suffix range is the whole
    # segment too); a player's many Range requests make one row per person, segment and ten minutes
    audit.append_once(who.actor, "footage.play", f"segment:{segment_id}", {"key": seg.key, "range": range_}, who.role)
    body = store.open(seg.key, seg.version_id, offset=start, length=end - start + 1)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start + 1), "ETag": f'"{seg.sha256}"'}
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return StreamingResponse(object_stream(body), status_code=status, media_type="video/mp4", headers=headers)
