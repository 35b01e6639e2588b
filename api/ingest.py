"""Test-record ingest: the one rule for a test record coming in, whichever door it takes
(``PUT /test-records/{id}``, ``POST /test-records/batch``, ``labwitness records import``).

1. :class:`TestRecordIn` (pydantic) checks the fields: numbers and ids by the one
   rule of :mod:`labwitness.ids`, a window that ends after it starts, at least one
   area or instrument;
2. :func:`ingest` checks what needs the index: the record id, a window no longer
   than ``LABWITNESS_MAX_RECORD_HOURS``, every area and instrument known
   (:class:`RecordValidationError` names what is wrong);
3. the record is upserted (idempotent; a change is a new revision, :mod:`index.records`)
   and each change is one audit event, ``test_record.create`` or ``test_record.update``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field, model_validator

from index.audit import AuditLog
from index.models import TestRecord
from index.records import RecordStore
from labwitness.clock import utc_ms
from labwitness.errors import ValidationError
from labwitness.ids import EntityId, Number, check_number


class RecordValidationError(ValidationError):
    """A test record the index refuses (too long a window, an unknown area or instrument)."""

    code = "invalid-test-record"
    status = 422


class TestRecordIn(BaseModel):
    """One test as the core data upload module sends it upstream."""

    __test__ = False
    report_no: Number = Field(description="报告编号")
    commission_no: Number | Literal[""] = Field(default="", description="委托编号")
    project_name: str = Field(default="", max_length=500, description="工程名称")
    test_item: str = Field(default="", max_length=200, description="检测项目")
    sample_ids: list[Number] = Field(default_factory=list, max_length=200, description="样品唯一编号")
    area_ids: list[EntityId] = Field(default_factory=list, max_length=20)
    equipment_ids: list[EntityId] = Field(default_factory=list, max_length=20, description="设备编号")
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


@dataclass(frozen=True)
class Ingested:
    row: TestRecord
    created: bool
    changed: bool

    @property
    def status(self) -> str:
        return "created" if self.created else ("updated" if self.changed else "unchanged")


def ingest(records: RecordStore, audit: AuditLog, record_id: str, body: TestRecordIn, *, actor: str, role: str,
           max_hours: int) -> Ingested:
    """Check, upsert and audit one test record (steps 2-3 above)."""
    check_number(record_id, "记录编号", "record id")
    if body.ended_at - body.started_at > timedelta(hours=max_hours):
        raise RecordValidationError(f"试验时长超过 {max_hours} 小时上限 / the test window is longer than {max_hours} hours")
    bad_areas, bad_eq = records.unknown_refs(list(body.area_ids), list(body.equipment_ids))
    if bad_areas or bad_eq:
        raise RecordValidationError("未知的检测区域或设备 / unknown " + "; ".join(
            ([f"area_ids: {', '.join(bad_areas)}"] if bad_areas else []) + ([f"equipment_ids: {', '.join(bad_eq)}"] if bad_eq else [])))
    row, created, changed = records.upsert(record_id, body.content(), actor)
    if changed:
        audit.append(actor, "test_record.create" if created else "test_record.update", record_id,
                     {"revision": row.revision, "report_no": row.report_no}, role)
    return Ingested(row, created, changed)
