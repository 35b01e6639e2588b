"""index.coverage: rolled-up days + live edges must equal a brute-force sum, on
SQLite and PostgreSQL, before and after refresh, with late segments and deletions."""

from __future__ import annotations

import random

import pytest
from sqlmodel import Session, delete

from index.coverage import CoverageStore, day_of
from index.models import Camera, Segment
from labwitness.clock import DAY_MS

T0 = 1_790_035_200_000  # a UTC midnight
MIN = 60_000


def _seg(cam: str, start: int, end: int, n: int, size: int = 1000) -> Segment:
    return Segment(camera_id=cam, start_ms=start, end_ms=end, media_duration_ms=end - start, key=f"v1/{cam}/{n}.mp4",
                   version_id="v", size=size, sha256="0" * 64)


def _brute(segs: list[Segment], cam: str, lo: int, hi: int) -> tuple[int, int, int]:
    mine = [s for s in segs if s.camera_id == cam and s.end_ms > lo and s.start_ms < hi]
    rec = sum(min(s.end_ms, hi) - max(s.start_ms, lo) for s in mine)
    starting = [s for s in mine if s.start_ms >= lo]
    return rec, sum(s.size for s in starting), len(starting)


@pytest.fixture
def lab(index):
    """Two cameras, 9 days of 7-minute segments (so they cross midnight), holes, one camera starting late."""
    rng = random.Random(3)
    segs: list[Segment] = []
    n = 0
    for cam, first in (("a", T0), ("b", T0 + 4 * DAY_MS + 3 * MIN)):
        t = first
        while t < T0 + 9 * DAY_MS:
            if rng.random() < 0.03:
                t += rng.randrange(1, 300) * MIN  # a hole
                continue
            segs.append(_seg(cam, t, t + 7 * MIN, n, size=rng.randrange(1000, 5000)))
            n += 1
            t += 7 * MIN
    with Session(index.engine, expire_on_commit=False) as s:
        s.add_all([Camera(id="a", rtsp_url="rtsp://x/", created_ms=0), Camera(id="b", rtsp_url="rtsp://x/", created_ms=0)])
        s.add_all(segs)
        s.commit()
    return index.engine, segs


WINDOWS = [(T0, T0 + 9 * DAY_MS), (T0 + 3 * MIN + 17, T0 + 8 * DAY_MS + 11), (T0 + 5 * DAY_MS - 1, T0 + 5 * DAY_MS + 1),
           (T0 - DAY_MS, T0 + DAY_MS), (T0 + 6 * DAY_MS + 12 * MIN, T0 + 9 * DAY_MS + 5 * DAY_MS)]


@pytest.mark.parametrize("refresh", [False, True])
def test_totals_equal_brute_force(lab, refresh):
    engine, segs = lab
    now = [T0 + 9 * DAY_MS + 3 * 3600_000]
    cov = CoverageStore(engine, lambda: now[0])
    if refresh:
        assert cov.refresh() > 0
        assert cov.refresh() == 0  # nothing new: nothing recomputed
    for lo, hi in WINDOWS:
        got = cov.totals(["a", "b", "nobody"], lo, hi)
        for cam in ("a", "b"):
            assert (got[cam].recorded_ms, got[cam].bytes, got[cam].segments) == _brute(segs, cam, lo, hi), (cam, lo, hi)
        assert got["nobody"].recorded_ms == 0
    assert cov.stored_bytes(["a", "b"]) == sum(s.size for s in segs)
    assert cov.oldest(["a", "b"]) == {"a": T0, "b": T0 + 4 * DAY_MS + 3 * MIN}


def test_late_segments_and_deletions_are_seen(lab):
    engine, segs = lab
    now = T0 + 9 * DAY_MS + 3 * 3600_000
    cov = CoverageStore(engine, lambda: now)
    cov.refresh()
    cov.refresh()  # the watermark trails one refresh
    # a late upload into a closed, rolled-up day (spool drained after an outage)
    late = _seg("a", T0 + 2 * DAY_MS - 3 * MIN, T0 + 2 * DAY_MS + 4 * MIN, 99_999, size=7)
    hole_free = [s for s in segs if not (s.camera_id == "a" and s.end_ms > late.start_ms and s.start_ms < late.end_ms)]
    with Session(engine, expire_on_commit=False) as s:
        s.exec(delete(Segment).where(Segment.camera_id == "a", Segment.end_ms > late.start_ms, Segment.start_ms < late.end_ms))
        s.add(late)
        s.commit()
    segs2 = hole_free + [late]
    assert cov.refresh() >= 1
    lo, hi = T0, T0 + 9 * DAY_MS
    got = cov.totals(["a"], lo, hi)["a"]
    assert (got.recorded_ms, got.bytes, got.segments) == _brute(segs2, "a", lo, hi)
    # the sweep deletes a day's rows and invalidates it
    with Session(engine) as s:
        s.exec(delete(Segment).where(Segment.camera_id == "a", Segment.start_ms < T0 + DAY_MS))
        s.commit()
    cov.invalidate("a", T0, T0 + DAY_MS)
    cov.refresh()
    segs3 = [x for x in segs2 if not (x.camera_id == "a" and x.start_ms < T0 + DAY_MS)]
    got = cov.totals(["a"], lo, hi)["a"]
    assert (got.recorded_ms, got.bytes, got.segments) == _brute(segs3, "a", lo, hi)
    assert day_of(T0 + 5) == T0


def test_concurrent_refreshes_do_not_fail(lab):
    """The scheduler, an API request and `labwitness health` may refresh at once."""
    import threading

    engine, segs = lab
    now = T0 + 9 * DAY_MS + 3 * 3600_000
    errors, done = [], []

    def one():
        try:
            done.append(CoverageStore(engine, lambda: now).refresh())
        except Exception as e:  # noqa: BLE001  (the test reports any failure)
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sum(done) > 0
    got = CoverageStore(engine, lambda: now).totals(["a"], T0, T0 + 9 * DAY_MS)["a"]
    assert (got.recorded_ms, got.bytes, got.segments) == _brute(segs, "a", T0, T0 + 9 * DAY_MS)


@pytest.mark.parametrize("now", [T0 + 8 * DAY_MS, T0 + 8 * DAY_MS + 1, T0 + 8 * DAY_MS + 12 * 3600_000 + 5,
                                 T0 + 9 * DAY_MS - MIN, T0 + 4 * DAY_MS + 3 * MIN])
def test_shared_memo_equals_separate_windows(lab, now):
    """Health's windows at one "now" share their live parts through ``memo`` (cut at the first open
    day and at now): each window's totals, and the stored bytes, equal the brute force as before."""
    engine, segs = lab
    cov = CoverageStore(engine, lambda: now)
    cov.refresh()
    memo: dict = {}
    for span in (DAY_MS, 7 * DAY_MS, 183 * DAY_MS, 3 * 3600_000):
        got = cov.totals(["a", "b"], now - span, now, memo=memo)
        for cam in ("a", "b"):
            assert (got[cam].recorded_ms, got[cam].bytes, got[cam].segments) == _brute(segs, cam, now - span, now)
            assert got[cam] == cov.totals([cam], now - span, now)[cam]
    assert memo or now % DAY_MS == 0  # the live parts were kept for the next window (none at midnight)
    assert cov.stored_bytes(["a", "b"], memo=memo) == cov.stored_bytes(["a", "b"]) == sum(
        _brute(segs, cam, T0 - DAY_MS, now + DAY_MS)[1] for cam in ("a", "b"))
