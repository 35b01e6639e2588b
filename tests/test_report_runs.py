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
from index.records import RecordStore, _segments_per_run, shared_page

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


@pytest.mark.parametrize("page,budget,windows,expected", [
    (20, 500, 1, 20),
    (20, 500, 25, 20),
    (20, 500, 26, 19),
    (20, 500, 128, 3),
    (20, 500, 501, 1),  # every window shows where its footage starts
    (20, 500, 10_000, 1),
    (0, 500, 4, 0),  # no clips asked: none
    (5, 1, 1, 1),
])
def test_a_reports_windows_share_the_clip_budget(page, budget, windows, expected):
    assert shared_page(page, budget, windows) == expected


def test_the_clip_budget_shortens_only_the_first_page(index):
    rng = random.Random(5)
    _lab(index, rng)
    store = RecordStore(index.engine, lambda: BASE + 3_000_000)
    full = store.report_footage("R-RUN", margin_ms=60_000)
    assert len(full.windows) >= 8
    for budget in (1, len(full.windows) * 2 + 1, 10_000):
        n = shared_page(20, budget, len(full.windows))
        paged = store.report_footage("R-RUN", margin_ms=60_000, clip_page=20, clip_budget=budget)
        for f, p in zip(full.windows, paged.windows, strict=True):
            assert p.clips == f.clips[:n] and p.clips_total == f.clips_total and p.runs == f.runs
            assert p.parts == f.parts and p.coverage == f.coverage
        assert sum(len(w.clips) for w in paged.windows) <= max(budget, len(full.windows))


@pytest.mark.parametrize("seed", [6, 7])
def test_a_page_at_an_instant_starts_with_the_clip_playing_then(index, seed):
    rng = random.Random(seed)
    _lab(index, rng)
    store = RecordStore(index.engine, lambda: BASE + 3_000_000)
    full = store.report_footage("R-RUN", margin_ms=60_000)
    for f in full.windows:
        instants = [f.start_ms - 5_000, f.start_ms, f.end_ms - 1, f.end_ms + 5_000]
        instants += [rng.randrange(f.start_ms, f.end_ms) for _ in range(15)]
        instants += [c[1] for c in rng.sample(f.clips, min(5, len(f.clips)))]  # exactly at a clip's start
        instants += [c[2] for c in rng.sample(f.clips, min(5, len(f.clips)))]  # and at its end: the next one plays
        for t in instants:
            w, _, nxt = store.report_clips("R-RUN", 60_000, f.camera_id, f.start_ms, None, 7, at_ms=t)
            expected = [c for c in f.clips if c[2] > t] if t > f.start_ms else list(f.clips)
            assert w.clips == expected[:7], t
            if w.clips and t < f.end_ms:  # the clip playing at t, or the first after a hole
                assert w.clips[0][2] > t and not any(c[1] <= t < c[2] for c in f.clips if c[1] < w.clips[0][1])
            # and the pages after it carry on to the window's end
            got = list(w.clips)
            while nxt is not None:
                w, _, nxt = store.report_clips("R-RUN", 60_000, f.camera_id, f.start_ms, nxt, 7)
                got += w.clips
            assert got == expected, t


def test_held_segments_are_counted_per_window(index):
    rng = random.Random(8)
    _lab(index, rng)
    store = RecordStore(index.engine, lambda: BASE + 3_000_000)
    full = store.report_footage("R-RUN", margin_ms=60_000)
    with Session(index.engine) as s:
        s.add_all([ExportPackage(id="pkg", report_no="R-RUN", created_ms=0, actor="t"),
                   ExportPackage(id="other", report_no="R-ELSE", created_ms=0, actor="t")])
        s.commit()
    held: set[int] = set()
    with Session(index.engine) as s:
        for f in full.windows:
            for c in {f.clips[1], *rng.sample(f.clips, min(4, len(f.clips)))}:  # one among the first clips
                s.add(Hold(segment_id=c[0], package_id="pkg", placed_ms=0))
                held.add(c[0])
        gone = full.windows[0].clips[-1][0]  # released: no longer held
        s.add(Hold(segment_id=gone, package_id="pkg", placed_ms=0, released_ms=1))
        held.discard(gone)
        s.add(Hold(segment_id=full.windows[0].clips[0][0], package_id="other", placed_ms=0))  # another report's hold
        s.commit()
    counts = store.held_per_window("R-RUN", full.windows)
    again = store.report_footage("R-RUN", margin_ms=60_000)
    assert counts == [sum(1 for c in f.clips if c[0] in again.held) for f in full.windows]
    assert counts == [sum(1 for c in f.clips if c[0] in held) for f in full.windows] and sum(counts) > 0
    # paged, the held among the listed clips are marked (one probe per clip, not the report's every hold)
    for page in (1, 3):
        paged = store.report_footage("R-RUN", margin_ms=60_000, clip_page=page)
        listed = {c[0] for w in paged.windows for c in w.clips}
        assert paged.held == held & listed and (page == 1 or paged.held)
    assert store.report_footage("R-RUN", margin_ms=60_000, clip_page=3, holds=False).held == set()


def test_report_reads_run_outside_a_transaction_block_on_postgresql(index):
    """Decision 58: a report's statements without BEGIN/ROLLBACK on PostgreSQL; the pool's
    connections go back to writers with transactions as before."""
    store = RecordStore(index.engine, lambda: 0)
    pg = index.engine.dialect.name == "postgresql"
    with store.reads.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
        raw = conn.connection.driver_connection
        if pg:
            from psycopg.pq import TransactionStatus

            assert raw.autocommit and raw.info.transaction_status == TransactionStatus.IDLE
    if not pg:
        assert store.reads is index.engine  # SQLite: one snapshot for the whole request, as before
    for _ in range(3):  # every pooled connection a writer gets back opens its transaction again
        with index.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
            if pg:
                assert not conn.connection.driver_connection.autocommit
                assert conn.connection.driver_connection.info.transaction_status == TransactionStatus.INTRANS
