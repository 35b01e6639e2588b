"""The compliance report from the coverage rollup's lock columns (migration 0016,
``index.coverage`` invariant 5) equals the report read from every segment row, on both
databases: the planted month of ``test_compliance`` (segments crossing the month's edges and
midnight, bad locks, verified segments, a camera registered mid-month, a removed camera),
month by month in two time zones, after lock verification changed rolled-up days and after a
late segment arrived."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from index.coverage import CoverageStore
from index.models import CoverageDay, Segment
from retention.compliance import compliance_report
from retention.runs import mark_checked
from sqlmodel import Session

from test_compliance import LO, NOW, D, M, engine, plant, plant_month, seg  # noqa: F401  (engine: fixture)

CASES = [(tz, month) for tz in ("Asia/Shanghai", "UTC") for month in ("2026-09", "2026-10", "2026-11")]


def _same(engine) -> None:
    for tz, month in CASES:
        rolled = compliance_report(engine, month, ZoneInfo(tz), NOW).to_json()
        live = compliance_report(engine, month, ZoneInfo(tz), NOW, rollup=False).to_json()
        assert rolled == live, (tz, month)


def _lock_rows(engine) -> int:
    cov = CoverageDay.__table__
    with engine.connect() as c:
        return c.execute(select(func.count()).select_from(cov).where(cov.c.lock_segments > 0)).scalar()


@pytest.mark.slow
def test_rollup_report_equals_live_report(engine):
    plant_month(engine)
    cov = CoverageStore(engine, lambda: NOW)
    assert cov.refresh() > 0
    assert _lock_rows(engine) > 60  # the closed days carry their lock arithmetic: the rollup is what is read
    _same(engine)

    # lock verification stamps segments of rolled-up days: those days are dropped, the report stays exact
    seg_t = Segment.__table__
    with engine.connect() as c:
        ids = list(c.execute(select(seg_t.c.id).where(seg_t.c.camera_id.in_(["c-full", "c-lock"]),
                                                      seg_t.c.start_ms > LO + 10 * D, seg_t.c.start_ms < LO + 12 * D,
                                                      seg_t.c.lock_verified_ms.is_(None))).scalars())
    assert ids
    before = _lock_rows(engine)
    mark_checked(engine, ids, "lock_verified_ms", NOW - D)
    assert _lock_rows(engine) < before
    _same(engine)
    cov.refresh()
    assert _lock_rows(engine) == before
    _same(engine)

    # a late segment of a closed day (a spool drained after an outage), crossing UTC midnight
    plant(engine, [seg("c-gappy", LO + 400 * 3_600_000, LO + 400 * 3_600_000 + 30 * M)])
    _same(engine)
    cov.refresh()
    cov.refresh()  # the watermark trails by one refresh (index.coverage, invariant 3)
    _same(engine)
    with Session(engine) as s:
        assert s.get(CoverageDay, ("c-gappy", (LO + 400 * 3_600_000) // D * D)) is not None
