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
