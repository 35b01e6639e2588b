"""Test records from the lab's core data upload modules, with every revision kept.

Linking records to footage is computed at query time (areas/equipment ->
cameras, record window -> segments), not materialised: a record may arrive
before, during or after its footage, and may be corrected later; a query-time
join can never be stale, and it costs one index range scan per camera.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from index.models import Camera, Equipment, EquipmentCamera, TestRecord, TestRecordRevision
from index.queries import _guard
from labwitness.errors import NotFoundError

_CONTENT = ("report_no", "commission_no", "project_name", "test_item", "sample_ids", "area_ids", "equipment_ids",
            "operator", "started_ms", "ended_ms")


def record_content(r: TestRecord) -> dict[str, Any]:
    d = {k: getattr(r, k) for k in _CONTENT}
    for k in ("sample_ids", "area_ids", "equipment_ids"):
        d[k] = json.loads(d[k])
    return d


class RecordStore:
    def __init__(self, engine: Engine, now_ms: Callable[[], int]) -> None:
        self.engine = engine
        self.now_ms = now_ms

    @_guard
    def upsert(self, record_id: str, content: dict[str, Any], actor: str) -> tuple[TestRecord, bool, bool]:
        """Idempotent: (row, created, changed). A changed record gets a new revision."""
        stored = {k: (json.dumps(v, ensure_ascii=False) if k.endswith("_ids") else v) for k, v in content.items()}
        for attempt in range(3):
            with Session(self.engine, expire_on_commit=False) as s:
                cur = s.get(TestRecord, record_id)
                before = record_content(cur) if cur is not None else None
                if before == content:
                    return cur, False, False
                now = self.now_ms()
                if cur is None:
                    cur = TestRecord(record_id=record_id, revision=1, updated_ms=now, **stored)
                else:
                    for k, v in stored.items():
                        setattr(cur, k, v)
                    cur.revision += 1
                    cur.updated_ms = now
                s.add(cur)
                s.add(TestRecordRevision(record_id=record_id, revision=cur.revision, at_ms=now, actor=actor[:200],
                                         before=json.dumps(before, ensure_ascii=False) if before else None,
                                         after=json.dumps(content, ensure_ascii=False)))
                try:
                    s.commit()
                except sa_exc.IntegrityError:
                    continue  # a concurrent writer took this revision number: re-read and retry
                return cur, before is None, True
        raise sa_exc.OperationalError("upsert", {}, Exception("too many concurrent updates of one record"))

    @_guard
    def get(self, record_id: str) -> TestRecord:
        with Session(self.engine, expire_on_commit=False) as s:
            r = s.get(TestRecord, record_id)
            if r is None:
                raise NotFoundError(f"检测记录不存在 / test record {record_id!r} not found")
            return r

    @_guard
    def revisions(self, record_id: str) -> list[TestRecordRevision]:
        with Session(self.engine, expire_on_commit=False) as s:
            return list(s.exec(select(TestRecordRevision).where(TestRecordRevision.record_id == record_id)
                               .order_by(col(TestRecordRevision.revision))))

    @_guard
    def by_report(self, report_no: str) -> list[TestRecord]:
        with Session(self.engine, expire_on_commit=False) as s:
            rows = list(s.exec(select(TestRecord).where(TestRecord.report_no == report_no).order_by(col(TestRecord.started_ms))))
        if not rows:
            raise NotFoundError(f"报告编号没有对应的检测记录 / no test record has report no. {report_no!r}")
        return rows

    @_guard
    def unknown_refs(self, area_ids: list[str], equipment_ids: list[str]) -> tuple[list[str], list[str]]:
        from index.models import Area

        with Session(self.engine) as s:
            known_a = set(s.exec(select(Area.id).where(col(Area.id).in_(area_ids)))) if area_ids else set()
            known_e = set(s.exec(select(Equipment.id).where(col(Equipment.id).in_(equipment_ids)))) if equipment_ids else set()
        return [a for a in area_ids if a not in known_a], [e for e in equipment_ids if e not in known_e]

    @_guard
    def cameras_for(self, area_ids: list[str], equipment_ids: list[str]) -> list[str]:
        """Cameras of the areas, plus the cameras watching the instruments (or, for an
        instrument no camera is linked to, the cameras of its area)."""
        with Session(self.engine) as s:
            cams: set[str] = set()
            if area_ids:
                cams |= set(s.exec(select(Camera.id).where(col(Camera.area_id).in_(area_ids))))
            for eq_id in equipment_ids:
                linked = set(s.exec(select(EquipmentCamera.camera_id).where(EquipmentCamera.equipment_id == eq_id)))
                if not linked:
                    eq = s.get(Equipment, eq_id)
                    if eq is not None and eq.area_id:
                        linked = set(s.exec(select(Camera.id).where(Camera.area_id == eq.area_id)))
                cams |= linked
        return sorted(cams)
