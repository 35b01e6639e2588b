"""Index on both SQLite and PostgreSQL (the ``index`` fixture is parametrised)."""

from __future__ import annotations

import pytest

from index.models import Gap, Segment

BASE = 1_790_000_000_000  # ms


def seg(cam: str, start_s: float, dur_s: float, n: int) -> Segment:
    return Segment(camera_id=cam, start_ms=BASE + int(start_s * 1000), end_ms=BASE + int((start_s + dur_s) * 1000),
                   media_duration_ms=int(dur_s * 1000), key=f"v1/{cam}/{n}.mp4", version_id=f"v{n}", size=100,
                   sha256="0" * 64, codec="h264")


def test_footage_window_segments_and_gaps(index):
    for i in range(10):
        if i == 5:
            continue  # a hole from 300 s to 360 s
        index.add_segment(seg("cam-a", i * 60, 60, i))
    index.add_segment(seg("cam-b", 0, 60, 100))  # another camera never leaks in
    index.add_gap(Gap(camera_id="cam-a", start_ms=BASE + 300_000, end_ms=BASE + 360_000, reason="timeout", detail="x"))

    f = index.footage("cam-a", BASE + 250_000, BASE + 420_000)
    assert [s.version_id for s in f.segments] == ["v4", "v6"]
    assert [g.reason for g in f.gaps] == ["timeout"]
    # covered: 250..300 and 360..420 = 110 s of 170 s
    assert f.covered_ms == 110_000
    assert f.coverage == pytest.approx(110 / 170)

    whole = index.footage("cam-a", BASE, BASE + 600_000)
    assert len(whole.segments) == 9 and whole.coverage == pytest.approx(0.9)
    assert index.footage("cam-a", BASE + 700_000, BASE + 800_000).segments == []


def test_writes_are_idempotent_for_spool_replay(index):
    a = index.add_segment(seg("cam-a", 0, 60, 1))
    b = index.add_segment(seg("cam-a", 0, 60, 1))
    assert a.id == b.id
    assert len(index.footage("cam-a", BASE, BASE + 60_000).segments) == 1
    g1 = index.add_gap(Gap(camera_id="cam-a", start_ms=BASE, end_ms=BASE + 10, reason="refused"))
    g2 = index.add_gap(Gap(camera_id="cam-a", start_ms=BASE, end_ms=BASE + 5000, reason="refused"))
    assert g1.id == g2.id and index.gaps("cam-a")[0].end_ms == BASE + 5000


def test_window_must_be_positive(index):
    with pytest.raises(ValueError):
        index.footage("cam-a", BASE, BASE)


def test_migrations_reach_head(index):
    from alembic.script import ScriptDirectory

    from index.migrate import alembic_config, current

    assert current(index.engine) == ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_report_footage_resolves_cameras_merges_windows_and_marks_holds(index):
    """RecordStore.report_footage: records -> cameras (areas; linked instruments; an
    unlinked instrument falls back to its area's cameras) -> per-camera windows merged
    only where they overlap, clips in order with coverage, gaps, and held segments."""
    import json

    from sqlmodel import Session

    from index.models import Area, Camera, Equipment, EquipmentCamera, ExportPackage, Hold, TestRecord
    from index.records import RecordStore

    eng = index.engine
    with Session(eng) as s:
        s.add_all([Area(id="mech", name="力学室", created_ms=0), Area(id="cure", name="养护室", created_ms=0)])
        s.add_all([Camera(id=c, rtsp_url="rtsp://x/", area_id=a, created_ms=0)
                   for c, a in (("m1", "mech"), ("m2", "mech"), ("c1", "cure"), ("lone", None))])
        s.add_all([Equipment(id="utm-1", name="万能试验机", area_id="mech", created_ms=0),
                   Equipment(id="press-2", name="压力机", area_id="cure", created_ms=0),
                   EquipmentCamera(equipment_id="utm-1", camera_id="lone")])

        def rec(rid, start_s, end_s, areas=(), eqs=()):
            return TestRecord(record_id=rid, report_no="R-1", started_ms=BASE + start_s * 1000, ended_ms=BASE + end_s * 1000,
                              area_ids=json.dumps(list(areas)), equipment_ids=json.dumps(list(eqs)), updated_ms=0)
        # r1 and r2 overlap on lone (after margins); r3 is days later on press-2 (-> cure's camera c1)
        s.add_all([rec("r1", 600, 1200, eqs=["utm-1"]), rec("r2", 1300, 1500, eqs=["utm-1"]),
                   rec("r3", 86_400 * 7, 86_400 * 7 + 600, eqs=["press-2"]), rec("r4", 0, 60, areas=["mech"])])
        s.commit()
    for i in range(0, 40):  # lone: 0..2400 s, one minute each, minute 20 missing
        if i != 20:
            index.add_segment(seg("lone", i * 60, 60, 1000 + i))
    index.add_gap(Gap(camera_id="lone", start_ms=BASE + 1_200_000, end_ms=BASE + 1_260_000, reason="timeout"))
    held = index.add_segment(seg("c1", 86_400 * 7, 60, 5000))
    with Session(eng) as s:
        s.add(ExportPackage(id="pkg1", report_no="R-1", created_ms=0, actor="t"))
        s.add(Hold(segment_id=held.id, package_id="pkg1", placed_ms=0))
        s.commit()

    rf = RecordStore(eng, lambda: 0).report_footage("R-1", margin_ms=120_000)
    assert [r.record_id for r in rf.records] == ["r4", "r1", "r2", "r3"]
    got = [(w.camera_id, (w.start_ms - BASE) // 1000, (w.end_ms - BASE) // 1000) for w in rf.windows]
    assert got == [("c1", 86_400 * 7 - 120, 86_400 * 7 + 720),  # press-2 is unlinked -> its area's cameras
                   ("lone", 480, 1620),  # r1 + r2 merged: their margins overlap
                   ("m1", -120, 180), ("m2", -120, 180)]  # r4 by area; utm-1 is linked, so not mech's cameras
    lone = rf.windows[1]
    assert [c[1] for c in lone.clips] == sorted(c[1] for c in lone.clips)
    assert len(lone.clips) == 18 and lone.covered_ms == (1620 - 480 - 60) * 1000
    assert lone.gaps == [(BASE + 1_200_000, BASE + 1_260_000, "timeout")]
    assert rf.held == {held.id}
    assert rf.windows[0].clips[0][0] == held.id and rf.windows[0].coverage == pytest.approx(60 / 840)
    assert rf.windows[2].clips == [] and rf.windows[2].coverage == 0.0
    with pytest.raises(Exception, match="R-404"):
        RecordStore(eng, lambda: 0).report_footage("R-404", margin_ms=0)
