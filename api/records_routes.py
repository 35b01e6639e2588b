"""Test records (ingest) and footage per report (inspectors)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import orjson
from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from labwitness.clock import from_ms
from labwitness.ids import Number

from api.auth import Ingest, Inspector
from api.deps import AuditDep, RecordsDep, SettingsDep
from api.footage_json import GapOut, gap_json, iso_ms
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


def footage_body(rf, report_no: str, margin_s: int, tz: ZoneInfo) -> bytes:
    """The JSON of GET /reports/{no}/footage (shape: :class:`ReportFootage`) from the
    index's rows, encoded directly with orjson: validating thousands of clips
    through pydantic, or encoding them with the json module, cost several times
    the query itself (bench/report_query); the tests check the shape against the model."""
    held = rf.held
    cams = []
    for w in rf.windows:
        # each clip ends where the next begins: format every instant once
        iso = {t: iso_ms(t) for t in {t for _, lo, hi, _ in w.clips for t in (lo, hi)}}
        start, end = from_ms(w.start_ms), from_ms(w.end_ms)
        stitched = f"/api/v1/cameras/{w.camera_id}/media?start={start.isoformat()}&end={end.isoformat()}"
        cams.append({
            "camera_id": w.camera_id, "window_start": iso_ms(w.start_ms), "window_end": iso_ms(w.end_ms),
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
def report_footage(records: RecordsDep, audit: AuditDep, settings: SettingsDep, who: Inspector,
                   report_no: Annotated[Number, Path()]) -> Response:
    rf = records.report_footage(report_no, settings.report_margin_s * 1000)
    audit.append(who.actor, "report.footage", report_no, {"cameras": sorted({w.camera_id for w in rf.windows})}, who.role)
    return Response(footage_body(rf, report_no, settings.report_margin_s, ZoneInfo(settings.timezone)),
                    media_type="application/json")
