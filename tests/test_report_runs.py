"""Report footage paged (decision 48): the database merges segments into runs and
returns the first clips of each window; every figure is the one the full list of
clips gives, and the pages of clips put back together are that full list.  On both
SQLite and PostgreSQL (the ``index`` fixture is parametrised)."""

from __future__ import annotations

import json
import random

import pytest
from sqlmodel import Session

from index.models import Area, Camera, ExportPackage, Gap, Hold, Segment, TestRecord
from index.records import RecordStore, _segments_per_run

BASE = 1_790_000_000_000


def _seg(cam: str, a: int, b: int, n: int, status: str = "stored") -> Segment:
    return Segment(camera_id=cam, start_ms=BASE + a, end_ms=BASE + b, media_duration_ms=max(0, b - a),
                   key=f"v1/{cam}/{n}.mp4", version_id=f"v{n}", size=100, sha256=f"{n:064d}", codec="h264", status=status)


def _lab(index, rng: random.Random) -> None:
    """Cameras with clips that touch, overlap, share starts, stick out of windows, have
    zero length or are not stored; records whose windows overlap or stand apart."""
    with Session(index.engine) as s:
        s.add(Area(id="lab", name="力学室", created_ms=0))
        s.add_all([Camera(id=f"cam-{i}", rtsp_url="rtsp://x/", area_id="lab", created_ms=0) for i in range(4)])
        for i, (a, b) in enumerate(((50_000, 400_000), (380_000, 900_000), (2_000_000, 2_300_000))):
            s.add(TestRecord(record_id=f"r{i}", report_no="R-RUN", started_ms=BASE + a, ended_ms=BASE + b,
                             area_ids=json.dumps(["lab"]), equipment_ids="[]", updated_ms=0))
        s.commit()
    n, rows = 0, []
    for cam in range(4):
        t = rng.randrange(0, 30_000)
        while t < 2_500_000:
            length = rng.choice((0, 5_000, 10_000, 10_000, 10_000, 20_000))
            n += 1
            status = "stored" if rng.random() > 0.05 else "quarantined"
            rows.append(_seg(f"cam-{cam}", t, t + length, n, status))
            if rng.random() < 0.1:  # a second segment starting at the same instant (a failover's overlap)
                n += 1
                rows.append(_seg(f"cam-{cam}", t, t + rng.randrange(1, 15_000), n))
            step = rng.choice((length, length, length, length - 2_000, length + 3_000, length + 40_000))
            t += max(1, step)
        rows.append(Gap(camera_id=f"cam-{cam}", start_ms=BASE + 600_000, end_ms=BASE + 640_000, reason="timeout"))
    with Session(index.engine) as s:
        s.add_all(rows)
        s.commit()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_paged_report_footage_answers_as_the_full_list(index, seed):
    rng = random.Random(seed)
    _lab(index, rng)
    store = RecordStore(index.engine, lambda: BASE + 3_000_000)
    full = store.report_footage("R-RUN", margin_ms=60_000)
    assert sum(w.clips_total for w in full.windows) > 300
    for page in (0, 1, 7, 10_000):
        paged = store.report_footage("R-RUN", margin_ms=60_000, clip_page=page)
        assert len(paged.windows) == len(full.windows)
        for f, p in zip(full.windows, paged.windows, strict=True):
            assert (p.camera_id, p.start_ms, p.end_ms) == (f.camera_id, f.start_ms, f.end_ms)
            assert p.runs == f.runs and p.run_segments == f.run_segments
            assert p.clips_total == f.clips_total
            assert p.covered_ms == f.covered_ms and p.coverage == f.coverage and p.test_coverage == f.test_coverage
            assert p.parts == f.parts and p.gaps == f.gaps
            assert p.clips == f.clips[:page]
            assert p.paged == (page < f.clips_total)
    # the pages, put back together, are the full list of every window
    for f in full.windows:
        got, after = [], None
        while True:
            w, _, after = store.report_clips("R-RUN", 60_000, f.camera_id, f.start_ms, after, 13)
            assert len(w.clips) <= 13
            got += w.clips
            if after is None:
                break
        assert got == f.clips


@pytest.mark.parametrize("clips,runs,expected", [
    ([], [], []),
    ([(1, 0, 10, ""), (2, 10, 20, "")], [(0, 20)], [2]),
    ([(1, 0, 10, ""), (2, 30, 40, ""), (3, 35, 50, "")], [(0, 10), (30, 50)], [1, 2]),
    ([(1, 0, 0, ""), (2, 0, 10, "")], [(0, 10)], [1]),  # a zero-length clip covers nothing and is not counted
    ([(1, -50, 10, ""), (2, 90, 150, "")], [(0, 10), (90, 100)], [1, 1]),  # clips sticking out of the window
])
def test_segments_per_run(clips, runs, expected):
    assert _segments_per_run(clips, runs) == expected


def test_a_page_reads_only_the_reports_own_windows(index):
    rng = random.Random(4)
    _lab(index, rng)
    with Session(index.engine) as s:
        s.add(ExportPackage(id="pkg", report_no="R-RUN", created_ms=0, actor="t"))
        s.commit()
    store = RecordStore(index.engine, lambda: BASE + 3_000_000)
    full = store.report_footage("R-RUN", margin_ms=60_000)
    w0 = full.windows[0]
    with Session(index.engine) as s:
        s.add(Hold(segment_id=w0.clips[1][0], package_id="pkg", placed_ms=0))
        s.commit()
    page, held, nxt = store.report_clips("R-RUN", 60_000, w0.camera_id, w0.start_ms, None, 5)
    assert held == {w0.clips[1][0]} and nxt == (w0.clips[4][1], w0.clips[4][0])
    from labwitness.errors import NotFoundError

    with pytest.raises(NotFoundError):  # a start that is no window of this camera in this report
        store.report_clips("R-RUN", 60_000, w0.camera_id, w0.start_ms + 1, None, 5)
    with pytest.raises(NotFoundError):  # a camera outside the report
        store.report_clips("R-RUN", 60_000, "cam-elsewhere", w0.start_ms, None, 5)
    with pytest.raises(NotFoundError):
        store.report_clips("R-NONE", 60_000, w0.camera_id, w0.start_ms, None, 5)
