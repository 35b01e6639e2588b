"""Health over all cameras in grouped statements (index.camera_facts): the same facts as
asking each camera on its own, on SQLite and PostgreSQL, and a statement count that does
not grow with the number of cameras."""

from __future__ import annotations

import pytest
from sqlalchemy import event, insert
from sqlmodel import Session

from index.camera_facts import RECENT_MS, newest_segments, oldest_starts, recent_rates
from index.coverage import CoverageStore
from index.models import Camera, Gap, Segment
from labwitness.clock import DAY_MS
from retention.health import _latest_ends, gather

NOW = 1_790_035_200_000 + 70 * DAY_MS + 13 * 3_600_000 + 17_000  # early afternoon, not on a boundary
HOUR = 3_600_000


def _plant(engine, n_groups: int) -> list[str]:
    """``n_groups`` times five kinds of camera: recording now (hourly segments for 70 days,
    a 5-hour hole and a gap yesterday), stopped 50 days ago (older than RECENT_MS: the
    unbounded second statement), stopped 2 days ago with a non-stored newest segment,
    never recorded, and disabled.  Returns the enabled cameras' ids."""
    cams, segs, gaps = [], [], []
    for g in range(n_groups):
        live, old, recent, empty, off = (f"g{g:02d}-{k}" for k in ("live", "old", "recent", "empty", "off"))
        cams += [Camera(id=c, rtsp_url="rtsp://x/", created_ms=0, enabled=c != off) for c in (live, old, recent, empty, off)]
        for cam, until in ((live, NOW - 5 * 60_000), (old, NOW - 50 * DAY_MS), (recent, NOW - 2 * DAY_MS),
                           (off, NOW - DAY_MS)):
            t = NOW - 70 * DAY_MS + g * 60_000  # cameras do not start in step
            while t < until:
                if not (cam == live and NOW - 30 * HOUR <= t < NOW - 25 * HOUR):
                    dur = HOUR - 1000 * (len(segs) % 7)  # uneven lengths: rates and coverage differ per camera
                    segs.append({"camera_id": cam, "start_ms": t, "end_ms": t + dur, "media_duration_ms": dur - 500,
                                 "key": f"v1/{cam}/{t}.mp4", "version_id": "v", "size": 1000 + len(segs) % 13,
                                 "sha256": "0" * 64, "status": "stored"})
                t += HOUR
        # a newer segment that is not stored (not the camera's newest footage)
        segs.append({"camera_id": recent, "start_ms": NOW - DAY_MS, "end_ms": NOW - DAY_MS + HOUR,
                     "media_duration_ms": HOUR, "key": f"v1/{recent}/x.mp4", "version_id": "v", "size": 5,
                     "sha256": "0" * 64, "status": "missing"})
        gaps.append(Gap(camera_id=live, start_ms=NOW - 30 * HOUR, end_ms=NOW - 25 * HOUR, reason="timeout"))
    enabled = sorted(c.id for c in cams if c.enabled)
    with Session(engine) as s:
        s.add_all(cams)
        s.add_all(gaps)
        s.commit()
    with engine.begin() as conn:
        conn.execute(insert(Segment.__table__), segs)
    return enabled


def _gather(engine, per_camera: bool, **kw):
    cov = CoverageStore(engine, lambda: NOW)
    return gather(engine, cov, NOW, segment_seconds=60, read_timeout_s=10, retention_days=190, retention_enforced=True,
                  capacity=(10**12, 10**11), per_camera=per_camera, **kw)


@pytest.mark.slow
def test_grouped_facts_equal_the_per_camera_ones(index):
    engine = index.engine
    ids = _plant(engine, 3)
    CoverageStore(engine, lambda: NOW).refresh()
    cov = CoverageStore(engine, lambda: NOW)
    with engine.connect() as conn:
        newest = newest_segments(conn, ids, NOW)
        oldest = oldest_starts(conn, ids)
        rates = recent_rates(conn, newest, NOW)
        ends = _latest_ends(conn, ids)
    # the pieces, against the per-camera queries they replace
    assert oldest == cov.oldest(ids)
    assert rates == cov.recent_rates(ids)
    assert {c: e for c, (_s, e) in newest.items()} == ends
    # the planted variety really is there: a camera found only without the recent bound, one never recorded
    assert any(s < NOW - RECENT_MS for s, _e in newest.values())
    assert any(s >= NOW - RECENT_MS for s, _e in newest.values())
    assert "g00-empty" in oldest and oldest["g00-empty"] is None and "g00-empty" not in newest
    assert newest["g00-recent"][0] < NOW - 2 * DAY_MS  # the non-stored newer segment is not its newest footage
    # and the whole health facts, every camera and a subset
    grouped, reference = _gather(engine, False), _gather(engine, True)
    assert [c.camera_id for c in grouped.cameras] == ids
    assert grouped.to_dict() == reference.to_dict()
    assert grouped.storage.growth_bytes_per_day > 0 and any(c.offline for c in grouped.cameras)
    assert any(not c.offline for c in grouped.cameras)
    subset = ["g01-old", "g02-live", "g00-empty"]
    assert _gather(engine, False, camera_ids=subset).to_dict() == _gather(engine, True, camera_ids=subset).to_dict()


def _count_statements(engine, per_camera: bool | None) -> int:
    """Statements of one health gathering (``per_camera``: the reference path), or with None of
    a coverage refresh that finds nothing new (what ``api.health`` runs before each report)."""
    n = 0

    def count(*_a, **_k):
        nonlocal n
        n += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        if per_camera is None:
            CoverageStore(engine, lambda: NOW).refresh()
        else:
            _gather(engine, per_camera)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return n


@pytest.mark.slow
def test_health_statements_do_not_grow_with_cameras(db_url, tmp_path):
    from index.db import make_engine
    from index.migrate import upgrade

    counts = {}
    for groups in (1, 10):  # 5 cameras (4 enabled) vs 50 (40 enabled)
        url = db_url if groups == 1 or not db_url.startswith("sqlite") else db_url.replace("index.sqlite3", "ten.sqlite3")
        engine = make_engine(url)
        try:
            if groups == 10 and not db_url.startswith("sqlite"):
                with engine.begin() as conn:  # same PostgreSQL database: start again from empty tables
                    conn.exec_driver_sql("TRUNCATE camera, segment, gap, coverage_day, index_meta")
            else:
                upgrade(engine)
            _plant(engine, groups)
            CoverageStore(engine, lambda: NOW).refresh()
            counts[groups] = (_count_statements(engine, False), _count_statements(engine, True),
                              _count_statements(engine, None))
        finally:
            engine.dispose()
    assert counts[1][0] == counts[10][0], counts
    assert counts[1][2] == counts[10][2], counts  # a refresh with nothing new: no statement per camera
    # the per-camera reference does grow: the count above is able to tell
    assert counts[10][1] > counts[1][1] + 36, counts
