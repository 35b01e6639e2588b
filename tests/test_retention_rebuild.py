"""Index rebuild from object metadata alone: record real footage, drop the index, rebuild, compare."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text
from sqlmodel import Session, SQLModel, select

from index import segment_runs
from index.migrate import upgrade
from index.models import Camera, Gap, Segment
from labwitness.clock import SystemClock
from retention.rebuild import GAP_REASON, infer_gaps, run_rebuild

from conftest import wait_for
from recording import Background, pipeline
from retentiontools import Fixture

IGNORED = {"id", "verified_ms", "lock_verified_ms"}


def _rows(engine) -> dict[tuple[str, str], dict]:
    with Session(engine) as s:
        return {(r.key, r.version_id): {k: v for k, v in r.model_dump().items() if k not in IGNORED}
                for r in s.exec(select(Segment))}


def test_dropped_index_is_rebuilt_equal_from_storage(tmp_path, store, rtsp, db_url):
    p = pipeline(tmp_path, store, rtsp.url("/live"), segment_seconds=1.0, db_url=db_url)
    with Background(p.worker):
        wait_for(lambda: p.worker.status.segments >= 3, 30, what="recorded segments")
    assert p.uploader.drain(60)
    fx = Fixture(store, p.index, tmp_path)
    a = fx.put("cam-hole", lock_s=None, age=timedelta(hours=2), seconds=2)
    b = fx.put("cam-hole", lock_s=None, age=timedelta(hours=2) - timedelta(seconds=10), seconds=2)  # 8 s hole
    engine = p.index.engine
    original = _rows(engine)
    assert len([k for k in original if k[0].startswith("v1/cam-1/")]) >= 3

    SQLModel.metadata.drop_all(engine)  # the index is lost
    with engine.begin() as c:
        c.execute(text("DROP TABLE alembic_version"))
    upgrade(engine)
    assert _rows(engine) == {}

    seen: list[tuple[int, int, str]] = []
    res = run_rebuild(store, engine, SystemClock(), progress=lambda d, t, phase: seen.append((d, t, phase)), actor="test")
    assert res.status == "ok", res.summary
    assert res.summary["journal_objects"] == 0  # no journal in this bucket: footage metadata alone, as before
    assert seen[0] == (0, 0, "journal") and seen[-1] == (2, 2, "footage")  # two cameras' footage checked
    assert res.summary["versions"] == res.summary["segments_added"] == len(original)
    assert _rows(engine) == original  # field by field, except ids and verification marks
    with Session(engine) as s:
        cams = {c.id: c for c in s.exec(select(Camera))}
        assert set(cams) == {"cam-1", "cam-hole"} and not any(c.enabled for c in cams.values())
        assert cams["cam-hole"].area_id == "lixue"
        gaps = list(s.exec(select(Gap).where(Gap.camera_id == "cam-hole")))
    assert [(g.start_ms, g.end_ms, g.reason) for g in gaps] == [(a.end_ms, b.start_ms, GAP_REASON)]
    with engine.begin() as c:  # the runs the index keeps follow what the rebuild put back (decision 54)
        assert segment_runs.differences(c) == []
        assert segment_runs.stored(c, ["cam-hole"]) == {"cam-hole": [(a.start_ms, a.end_ms), (b.start_ms, b.end_ms)]}
    again = run_rebuild(store, engine, SystemClock())  # idempotent: adds nothing twice
    assert again.summary["segments_added"] == 0 and again.summary["segments_present"] == len(original)
    assert again.summary["gaps_added"] == 0 and _rows(engine) == original


def test_gap_inference_table():
    cases = [
        ([], []),
        ([(0, 1000), (1000, 2000)], []),  # contiguous (same RTSP session)
        ([(0, 1000), (1900, 3000)], []),  # within the 1 s tolerance
        ([(0, 1000), (2500, 3000)], [(1000, 2500)]),
        ([(0, 5000), (1000, 2000), (7000, 8000)], [(5000, 7000)]),  # overlaps merged
        ([(7000, 8000), (0, 1000)], [(1000, 7000)]),  # order does not matter
    ]
    for spans, expected in cases:
        got = [(g.start_ms, g.end_ms) for g in infer_gaps(spans, "c")]
        assert got == expected, (spans, got)
        assert all(g.reason == "unknown" for g in infer_gaps(spans, "c"))
