"""Test records (ingest) and footage per report (inspectors)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Response
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from labwitness.clock import from_ms, utc_ms
from labwitness.errors import LabwitnessError

from api.auth import Ingest, Inspector
from api.deps import RuntimeDep
from api.runtime import Runtime

CODE = r"^[A-Za-z0-9\u4e00-\u9fff][A-Za-z0-9\u4e00-\u9fff._/()\-]{0,63}$"
ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class RecordValidationError(LabwitnessError):
    code = "invalid-test-record"
    status = 422



router = APIRouter(prefix="/api/v1")


class TestRecordIn(BaseModel):
    """One test as the core data upload module sends it upstream."""

    __test__ = False
    report_no: str = Field(pattern=CODE, description="报告编号")
    commission_no: str = Field(default="", max_length=64, description="委托编号")
    project_name: str = Field(default="", max_length=500, description="工程名称")
    test_item: str = Field(default="", max_length=200, description="检测项目")
    sample_ids: list[Annotated[str, Field(pattern=CODE)]] = Field(default_factory=list, max_length=200, description="样品唯一编号")
    area_ids: list[Annotated[str, Field(pattern=ID)]] = Field(default_factory=list, max_length=20)
    equipment_ids: list[Annotated[str, Field(pattern=ID)]] = Field(default_factory=list, max_length=20, description="设备编号")
    operator: str = Field(default="", max_length=200, description="检测人员")
    started_at: AwareDatetime = Field(description="试验开始时间")
    ended_at: AwareDatetime = Field(description="试验结束时间")

    @model_validator(mode="after")
    def _window(self) -> "TestRecordIn":
        if self.ended_at <= self.started_at:
            raise ValueError("ended_at 必须晚于 started_at / ended_at must be after started_at")
        if not self.area_ids and not self.equipment_ids:
            raise ValueError("至少需要一个检测区域或设备 / give at least one area_id or equipment_id")
        return self

    def content(self) -> dict:
        return {"report_no": self.report_no, "commission_no": self.commission_no, "project_name": self.project_name,
                "test_item": self.test_item, "sample_ids": list(self.sample_ids), "area_ids": list(self.area_ids),
                "equipment_ids": list(self.equipment_ids), "operator": self.operator,
                "started_ms": utc_ms(self.started_at), "ended_ms": utc_ms(self.ended_at)}


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
    record_id: str = Field(pattern=ID)


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


def ingest_one(rt: Runtime, record_id: str, body: TestRecordIn, actor: str, role: str):
    max_h = rt.settings.max_record_hours
    if body.ended_at - body.started_at > timedelta(hours=max_h):
        raise RecordValidationError(f"试验时长超过 {max_h} 小时上限 / the test window is longer than {max_h} hours")
    bad_areas, bad_eq = rt.records.unknown_refs(list(body.area_ids), list(body.equipment_ids))
    if bad_areas or bad_eq:
        raise RecordValidationError("未知的检测区域或设备 / unknown " + "; ".join(
            ([f"area_ids: {', '.join(bad_areas)}"] if bad_areas else []) + ([f"equipment_ids: {', '.join(bad_eq)}"] if bad_eq else [])))
    row, created, changed = rt.records.upsert(record_id, body.content(), actor)
    if changed:
        rt.audit.append(actor, "test_record.create" if created else "test_record.update", record_id,
                        {"revision": row.revision, "report_no": row.report_no}, role)
    return row, created


@router.put("/test-records/{record_id}", responses={200: {"description": "updated or unchanged"}, 201: {"description": "created"}})
def put_record(rt: RuntimeDep, who: Ingest, record_id: Annotated[str, Path(pattern=ID)], body: TestRecordIn,
               response: Response) -> TestRecordView:
    row, created = ingest_one(rt, record_id, body, who.actor, who.role)
    response.status_code = 201 if created else 200
    return record_view(row)


@router.post("/test-records/batch")
def put_records(rt: RuntimeDep, who: Ingest, items: Annotated[list[BatchItem], Field(max_length=1000)]) -> list[BatchResult]:
    out = []
    for item in items:
        try:
            row, created = ingest_one(rt, item.record_id, item, who.actor, who.role)
            out.append(BatchResult(record_id=item.record_id, status=201 if created else 200, revision=row.revision))
        except RecordValidationError as e:
            out.append(BatchResult(record_id=item.record_id, status=422, error=str(e)))
    return out


class RevisionOut(BaseModel):
    revision: int
    at: datetime
    actor: str
    before: dict | None
    after: dict


@router.get("/test-records/{record_id}")
def get_record(rt: RuntimeDep, who: Inspector, record_id: str) -> dict:
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
    start: datetime
    end: datetime
    reason: str


class CameraFootage(BaseModel):
    camera_id: str
    window_start: datetime
    window_end: datetime
    window_start_local: str
    window_end_local: str
    coverage: float
    clips: list[ClipOut]
    gaps: list[GapOut]
    stitched_url: str


class ReportFootage(BaseModel):
    report_no: str
    records: list[TestRecordView]
    margin_s: int
    cameras: list[CameraFootage]


def merge_windows(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching windows become one; separate ones stay separate (a 7-day
    and a 28-day cube test of one report must not become weeks of footage)."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def report_windows(rt: Runtime, report_no: str) -> tuple[list, list[tuple[str, int, int]]]:
    """Records of the report and its footage windows as (camera, start, end):
    each record's [start - margin, end + margin] on each of its cameras, merged per
    camera only where they overlap."""
    records = rt.records.by_report(report_no)
    margin = rt.settings.report_margin_s * 1000
    spans: dict[str, list[tuple[int, int]]] = {}
    for r in records:
        for cam in rt.records.cameras_for(json.loads(r.area_ids), json.loads(r.equipment_ids)):
            spans.setdefault(cam, []).append((r.started_ms - margin, r.ended_ms + margin))
    return records, [(cam, lo, hi) for cam in sorted(spans) for lo, hi in merge_windows(spans[cam])]


@router.get("/reports/{report_no}/footage")
def report_footage(rt: RuntimeDep, who: Inspector, report_no: str) -> ReportFootage:
    tz = ZoneInfo(rt.settings.timezone)
    records, windows = report_windows(rt, report_no)
    held = rt.holds_for_report(report_no)
    cams = []
    for cam, lo, hi in windows:
        f = rt.index.footage(cam, lo, hi)
        start, end = from_ms(lo), from_ms(hi)
        cams.append(CameraFootage(
            camera_id=cam, window_start=start, window_end=end,
            window_start_local=start.astimezone(tz).isoformat(timespec="seconds"),
            window_end_local=end.astimezone(tz).isoformat(timespec="seconds"),
            coverage=round(f.coverage, 6),
            clips=[ClipOut(segment_id=s.id, start=from_ms(s.start_ms), end=from_ms(s.end_ms), sha256=s.sha256,
                           media_url=f"/api/v1/segments/{s.id}/media", on_hold=s.id in held) for s in f.segments],
            gaps=[GapOut(start=from_ms(g.start_ms), end=from_ms(g.end_ms), reason=g.reason) for g in f.gaps],
            stitched_url=f"/api/v1/cameras/{cam}/media?start={start.isoformat()}&end={end.isoformat()}".replace("+", "%2B"),
        ))
    rt.audit.append(who.actor, "report.footage", report_no, {"cameras": sorted({w[0] for w in windows})}, who.role)
    return ReportFootage(report_no=report_no, records=[record_view(r) for r in records],
                         margin_s=rt.settings.report_margin_s, cameras=cams)
