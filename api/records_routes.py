"""Test records (ingest) and footage per report (inspectors)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated
from urllib.parse import quote
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from labwitness.clock import from_ms
from labwitness.errors import ValidationError
from labwitness.ids import Number

from api.auth import Ingest, Inspector
from api.deps import AuditDep, RecordsDep, SettingsDep
from api.footage_json import GapOut, clips_next_url, gap_json, iso_ms, url_time, window_clips_next
from api.ingest import RecordValidationError, TestRecordIn, ingest


router = APIRouter(prefix="/api/v1")


class TestRecordView(BaseModel):
    __test__ = False
    record_id: str
    revision: int
    report_no: str
    commission_no: str
    project_name: str
    test_item: str
    sample_ids: list[str]
    area_ids: list[str]
    equipment_ids: list[str]
    operator: str
    started_at: datetime
    ended_at: datetime


class BatchItem(TestRecordIn):
    record_id: Number


class BatchResult(BaseModel):
    record_id: str
    status: int
    revision: int | None = None
    error: str | None = None


def record_view(r) -> TestRecordView:
    return TestRecordView(record_id=r.record_id, revision=r.revision, report_no=r.report_no, commission_no=r.commission_no,
                          project_name=r.project_name, test_item=r.test_item, sample_ids=json.loads(r.sample_ids),
                          area_ids=json.loads(r.area_ids), equipment_ids=json.loads(r.equipment_ids), operator=r.operator,
                          started_at=from_ms(r.started_ms), ended_at=from_ms(r.ended_ms))


# Numbers may hold '/' (JC2026-0001/A): path parameters take the rest of the path,
# so both the percent-encoded and the raw form reach the handler whole.
@router.put("/test-records/{record_id:path}", responses={200: {"description": "updated or unchanged"}, 201: {"description": "created"}})
def put_record(records: RecordsDep, audit: AuditDep, settings: SettingsDep, who: Ingest,
               record_id: Annotated[Number, Path()], body: TestRecordIn, response: Response) -> TestRecordView:
    done = ingest(records, audit, record_id, body, actor=who.actor, role=who.role, max_hours=settings.max_record_hours)
    response.status_code = 201 if done.created else 200
    return record_view(done.row)


@router.post("/test-records/batch")
def put_records(records: RecordsDep, audit: AuditDep, settings: SettingsDep, who: Ingest,
                items: Annotated[list[BatchItem], Field(max_length=1000)]) -> list[BatchResult]:
    out = []
    for item in items:
        try:
            done = ingest(records, audit, item.record_id, item, actor=who.actor, role=who.role,
                          max_hours=settings.max_record_hours)
            out.append(BatchResult(record_id=item.record_id, status=201 if done.created else 200, revision=done.row.revision))
        except RecordValidationError as e:
            out.append(BatchResult(record_id=item.record_id, status=422, error=str(e)))
    return out


class RevisionOut(BaseModel):
    revision: int
    at: datetime
    actor: str
    before: dict | None
    after: dict


@router.get("/test-records/{record_id:path}")
def get_record(records: RecordsDep, who: Inspector, record_id: Annotated[Number, Path()]) -> dict:
    r = records.get(record_id)
    revs = [RevisionOut(revision=v.revision, at=from_ms(v.at_ms), actor=v.actor, before=json.loads(v.before) if v.before else None,
                        after=json.loads(v.after)) for v in records.revisions(record_id)]
    return {"record": record_view(r), "revisions": revs}


class ClipOut(BaseModel):
    segment_id: int
    start: datetime
    end: datetime
    media_url: str
    sha256: str
    on_hold: bool


class RunOut(BaseModel):
    """Stored footage without a break: back-to-back segments merged."""

    start: datetime
    end: datetime
    segments: int = Field(description="stored segments in the run")
    media_url: str | None = Field(description="the run stitched into one MP4 (runs of at most 24 hours)")


STITCH_MAX_MS = 24 * 3600 * 1000  # what /cameras/{id}/media stitches at most


class CameraFootage(BaseModel):
    camera_id: str
    window_start: datetime
    window_end: datetime
    window_start_local: str
    window_end_local: str
    coverage: float = Field(description="share of the window, margins included, covered by stored footage")
    test_coverage: float = Field(description="share of the test windows themselves (started_at..ended_at) covered")
    runs: list[RunOut] = Field(description="stored footage of the window as runs without a break, in time order")
    clips: list[ClipOut] = Field(description="the window's first clips (segments), in time order; clips_next pages "
                                             "on. By default a report lists about report_clip_budget first clips in "
                                             "all, shared by its windows (at least one each)")
    clips_total: int = Field(description="clips (segments) the window has in all")
    clips_next: str | None = Field(description="URL of the next page of clips; null when clips holds them all")
    gaps: list[GapOut]
    stitched_url: str


class ClipPage(BaseModel):
    report_no: str
    camera_id: str
    window_start: datetime
    window_end: datetime
    clips: list[ClipOut]
    clips_next: str | None


class ReportFootage(BaseModel):
    report_no: str
    records: list[TestRecordView]
    margin_s: int
    cameras: list[CameraFootage]


def _stitched_url(camera_id: str, lo: int, hi: int) -> str:
    return f"/api/v1/cameras/{quote(camera_id, safe='')}/media?start={url_time(lo)}&end={url_time(hi)}"


def clips_json(clips, held: set[int]) -> list[dict]:
    # each clip ends where the next begins: format every instant once
    iso = {t: iso_ms(t) for t in {t for _, lo, hi, _ in clips for t in (lo, hi)}}
    return [{"segment_id": sid, "start": iso[lo], "end": iso[hi], "media_url": f"/api/v1/segments/{sid}/media",
             "sha256": sha, "on_hold": sid in held} for sid, lo, hi, sha in clips]


def footage_body(rf, report_no: str, margin_s: int, tz: ZoneInfo, page_limit: int = 200) -> bytes:
    """The JSON of GET /reports/{no}/footage (shape: :class:`ReportFootage`) from the
    index's rows, encoded directly with orjson: validating thousands of clips
    through pydantic, or encoding them with the json module, cost several times
    the query itself (bench/report_query); the tests check the shape against the model.
    ``page_limit``: the clips per page that ``clips_next`` asks for."""
    held = rf.held
    cams = []
    for w in rf.windows:
        start, end = from_ms(w.start_ms), from_ms(w.end_ms)
        cams.append({
            "camera_id": w.camera_id, "window_start": iso_ms(w.start_ms), "window_end": iso_ms(w.end_ms),
            "window_start_local": start.astimezone(tz).isoformat(timespec="seconds"),
            "window_end_local": end.astimezone(tz).isoformat(timespec="seconds"),
            "coverage": round(w.coverage, 6), "test_coverage": round(w.test_coverage, 6),
            "runs": [{"start": iso_ms(a), "end": iso_ms(b), "segments": n,
                      "media_url": _stitched_url(w.camera_id, a, b) if b - a <= STITCH_MAX_MS else None}
                     for (a, b), n in zip(w.runs, w.run_segments, strict=True)],
            "clips": clips_json(w.clips, held), "clips_total": w.clips_total,
            "clips_next": window_clips_next(report_no, w, page_limit),
            "gaps": [gap_json(p) for p in w.parts],
            "stitched_url": _stitched_url(w.camera_id, w.start_ms, w.end_ms),
        })
    body = {"report_no": report_no, "records": [record_view(r).model_dump(mode="json") for r in rf.records],
            "margin_s": margin_s, "cameras": cams}
    return orjson.dumps(body)


CLIP_PAGE_MAX = 1000


@router.get("/reports/{report_no:path}/footage/clips", response_model=ClipPage)
def report_footage_clips(records: RecordsDep, audit: AuditDep, settings: SettingsDep, who: Inspector,
                         report_no: Annotated[Number, Path()], camera_id: Annotated[str, Query(max_length=200)],
                         window_start: Annotated[int, Query(ge=0, le=2**53, description="the window's start, epoch ms")],
                         after: Annotated[str | None, Query(pattern=r"^\d{1,16}-\d{1,19}$",
                                                            description="cursor: the clips_next URL sets it")] = None,
                         at: Annotated[int | None, Query(ge=0, le=2**53,
                                                         description="instead of after: the page from the clip "
                                                                     "playing at this instant (epoch ms) on")] = None,
                         limit: Annotated[int, Query(ge=1, le=CLIP_PAGE_MAX)] = 200) -> Response:
    """The next page of one report window's clips (``clips_next`` of the report's footage),
    or, with ``at``, the page from the clip playing at that instant (a player seeking)."""
    if after is not None and at is not None:
        raise ValidationError("after 与 at 只能给一个 / give after or at, not both")
    cursor = None
    if after is not None:
        a, b = after.split("-")
        cursor = (int(a), int(b))
        if cursor[1] >= 2**63:  # past any id the index hands out (a 64-bit integer): no such page
            raise ValidationError("after 不是本接口给出的游标 / after is not a cursor this API handed out")
    w, held, nxt = records.report_clips(report_no, settings.report_margin_s * 1000, camera_id, window_start, cursor,
                                        limit, at_ms=at)
    audit.append(who.actor, "report.footage", report_no,
                 {"cameras": [camera_id], "clips_after": after, "clips_at": at, "clips": len(w.clips)}, who.role)
    body = {"report_no": report_no, "camera_id": camera_id, "window_start": iso_ms(w.start_ms),
            "window_end": iso_ms(w.end_ms), "clips": clips_json(w.clips, held),
            "clips_next": clips_next_url(report_no, w, nxt, limit) if nxt is not None else None}
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/reports/{report_no:path}/footage", response_model=ReportFootage)
def report_footage(records: RecordsDep, audit: AuditDep, settings: SettingsDep, who: Inspector,
                   report_no: Annotated[Number, Path()],
                   clips: Annotated[str | None, Query(pattern=r"^(all|\d{1,5})$",
                                                      description="clips listed per camera window: a number, or "
                                                                  "'all' (slow for long tests); default "
                                                                  "report_clip_page, and report_clip_budget for "
                                                                  "the whole report")] = None) -> Response:
    page = settings.report_clip_page if clips is None else (None if clips == "all" else int(clips))
    if page is not None and page > CLIP_PAGE_MAX:
        raise ValidationError(f"clips 最多 {CLIP_PAGE_MAX}，或 all / clips may be at most {CLIP_PAGE_MAX}, or all")
    rf = records.report_footage(report_no, settings.report_margin_s * 1000, clip_page=page,
                                clip_budget=settings.report_clip_budget if clips is None else None)
    audit.append(who.actor, "report.footage", report_no, {"cameras": sorted({w.camera_id for w in rf.windows})}, who.role)
    return Response(footage_body(rf, report_no, settings.report_margin_s, ZoneInfo(settings.timezone)),
                    media_type="application/json")
