"""Test records (ingest) and footage per report (inspectors)."""

from __future__ import annotations

import functools
import json
import time
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from labwitness.clock import from_ms
from labwitness.ids import Number

from api.auth import Ingest, Inspector
from api.deps import RuntimeDep
from api.ingest import RecordValidationError, TestRecordIn, ingest
from api.runtime import Runtime
from index.records import merge_windows  # noqa: F401  (re-exported: tests and callers)


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
def put_record(rt: RuntimeDep, who: Ingest, record_id: Annotated[Number, Path()], body: TestRecordIn,
               response: Response) -> TestRecordView:
    done = ingest(rt.records, rt.audit, record_id, body, actor=who.actor, role=who.role,
                  max_hours=rt.settings.max_record_hours)
    response.status_code = 201 if done.created else 200
    return record_view(done.row)


@router.post("/test-records/batch")
def put_records(rt: RuntimeDep, who: Ingest, items: Annotated[list[BatchItem], Field(max_length=1000)]) -> list[BatchResult]:
    out = []
    for item in items:
        try:
            done = ingest(rt.records, rt.audit, item.record_id, item, actor=who.actor, role=who.role,
                          max_hours=rt.settings.max_record_hours)
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
def get_record(rt: RuntimeDep, who: Inspector, record_id: Annotated[Number, Path()]) -> dict:
    r = rt.records.get(record_id)
    revs = [RevisionOut(revision=v.revision, at=from_ms(v.at_ms), actor=v.actor, before=json.loads(v.before) if v.before else None,
                        after=json.loads(v.after)) for v in rt.records.revisions(record_id)]
    return {"record": record_view(r), "revisions": revs}


class ClipOut(BaseModel):
    segment_id: int
    start: datetime
    end: datetime
    media_url: str
    sha256: str
    on_hold: bool


class GapOut(BaseModel):
    """A part of a footage window without stored footage, and why (``index.tiling``):
    clips and gaps together tile the window exactly."""

    start: datetime
    end: datetime
    reason: str = Field(description="pending_upload | a recorded gap's reason (timeout, refused, spool_full, ...) | "
                                    "camera_offline | not_registered | future | unknown")
    detail: str = Field(default="", description="the recorder's message (recorded gaps; the cause of camera_offline)")
    since: datetime | None = Field(default=None, description="camera_offline: when the outage still going on began")


class CameraFootage(BaseModel):
    camera_id: str
    window_start: datetime
    window_end: datetime
    window_start_local: str
    window_end_local: str
    coverage: float = Field(description="share of the window, margins included, covered by stored footage")
    test_coverage: float = Field(description="share of the test windows themselves (started_at..ended_at) covered")
    clips: list[ClipOut]
    gaps: list[GapOut]
    stitched_url: str


class ReportFootage(BaseModel):
    report_no: str
    records: list[TestRecordView]
    margin_s: int
    cameras: list[CameraFootage]


def report_windows(rt: Runtime, report_no: str) -> tuple[list, list[tuple[str, int, int]]]:
    """Records of the report and its footage windows as (camera, start, end):
    each record's [start - margin, end + margin] on each of its cameras, merged per
    camera only where they overlap (index.records.merge_windows)."""
    rf = rt.records.report_footage(report_no, rt.settings.report_margin_s * 1000, holds=False, footage=False)
    return rf.records, [(w.camera_id, w.start_ms, w.end_ms) for w in rf.windows]


@functools.lru_cache(maxsize=64)
def _utc_day(day: int) -> str:
    t = time.gmtime(day * 86400)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"


def _iso(ms: int) -> str:
    """RFC 3339 UTC with milliseconds, by integer arithmetic: a long report has
    thousands of clip times, and datetime objects cost several times more."""
    day, rest = divmod(ms, 86_400_000)
    h, rest = divmod(rest, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, milli = divmod(rest, 1000)
    return f"{_utc_day(day)}{h:02d}:{m:02d}:{s:02d}.{milli:03d}Z"


def gap_json(p) -> dict:
    """One :class:`GapOut` from an ``index.tiling.Part`` (JSON-ready)."""
    return {"start": _iso(p.start_ms), "end": _iso(p.end_ms), "reason": p.reason, "detail": p.detail,
            "since": None if p.since_ms is None else _iso(p.since_ms)}


def footage_body(rf, report_no: str, margin_s: int, tz: ZoneInfo) -> bytes:
    """The JSON of GET /reports/{no}/footage (shape: :class:`ReportFootage`) from the
    index's rows, encoded directly with orjson: validating thousands of clips
    through pydantic, or encoding them with the json module, cost several times
    the query itself (bench/report_query); the tests check the shape against the model."""
    held = rf.held
    cams = []
    for w in rf.windows:
        # each clip ends where the next begins: format every instant once
        iso = {t: _iso(t) for t in {t for _, lo, hi, _ in w.clips for t in (lo, hi)}}
        start, end = from_ms(w.start_ms), from_ms(w.end_ms)
        stitched = f"/api/v1/cameras/{w.camera_id}/media?start={start.isoformat()}&end={end.isoformat()}"
        cams.append({
            "camera_id": w.camera_id, "window_start": _iso(w.start_ms), "window_end": _iso(w.end_ms),
            "window_start_local": start.astimezone(tz).isoformat(timespec="seconds"),
            "window_end_local": end.astimezone(tz).isoformat(timespec="seconds"),
            "coverage": round(w.coverage, 6), "test_coverage": round(w.test_coverage, 6),
            "clips": [{"segment_id": sid, "start": iso[lo], "end": iso[hi], "media_url": f"/api/v1/segments/{sid}/media",
                       "sha256": sha, "on_hold": sid in held} for sid, lo, hi, sha in w.clips],
            "gaps": [gap_json(p) for p in w.parts],
            "stitched_url": stitched.replace("+", "%2B"),
        })
    body = {"report_no": report_no, "records": [record_view(r).model_dump(mode="json") for r in rf.records],
            "margin_s": margin_s, "cameras": cams}
    return orjson.dumps(body)


@router.get("/reports/{report_no:path}/footage", response_model=ReportFootage)
def report_footage(rt: RuntimeDep, who: Inspector, report_no: Annotated[Number, Path()]) -> Response:
    rf = rt.records.report_footage(report_no, rt.settings.report_margin_s * 1000)
    rt.audit.append(who.actor, "report.footage", report_no, {"cameras": sorted({w.camera_id for w in rf.windows})}, who.role)
    return Response(footage_body(rf, report_no, rt.settings.report_margin_s, ZoneInfo(rt.settings.timezone)),
                    media_type="application/json")
