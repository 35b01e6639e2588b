"""The time-witness rule (retention.time_witness), table-driven: when the sweep may trust its clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from retention.time_witness import Absent, CameraClock, TimeReading, combine_cameras, judge

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=timezone.utc)
BOUND = 120.0
YEAR = 365 * 86400.0


def reading(source: str, offset_s: float, *, independent: bool = True, uncertainty_s: float = 0.5,
            span_s: float | None = 0.0) -> TimeReading:
    """A witness whose clock is ``offset_s`` ahead of the host's (negative: the host runs ahead)."""
    return TimeReading(source, NOW + timedelta(seconds=offset_s), NOW, uncertainty_s=uncertainty_s,
                       independent=independent, span_s=span_s)


CASES = [
    # (what, readings, absent, expected reason, witnesses the message must name)
    ("external store agrees", [reading("store", 0.7)], [], "ok", []),
    ("cameras agree, embedded store is the host clock", [reading("cameras", -2.0), reading("store", 0.0, independent=False)],
     [], "ok", []),
    ("within the bound plus the witness's uncertainty", [reading("cameras", -121.0, uncertainty_s=2.0)], [], "ok", []),
    ("host a year ahead of the cameras", [reading("cameras", -YEAR), reading("store", 0.0, independent=False)], [],
     "clock_disagrees", ["cameras", "-365.0 d"]),
    ("host a year ahead of the external store", [reading("store", -YEAR)], [], "clock_disagrees", ["store"]),
    ("host behind a witness is a wrong clock too", [reading("cameras", 600.0)], [], "clock_disagrees", ["+600.0 s"]),
    ("one witness off is enough, even when another agrees", [reading("cameras", 1.0), reading("store", -3600.0)], [],
     "clock_disagrees", ["store", "cameras"]),
    ("a same-host witness that disagrees refuses too", [reading("cameras", 0.0), reading("seal", 900.0, independent=False)],
     [], "clock_disagrees", ["seal (same host clock)"]),
    ("only the embedded store: no independent witness", [reading("store", 0.0, independent=False)],
     [Absent("cameras", "no enabled camera has an ONVIF address")], "no_time_witness",
     ["store: same host clock", "cameras: no enabled camera has an ONVIF address"]),
    ("nothing configured", [], [], "no_time_witness", ["no witness configured"]),
    ("all witnesses down", [], [Absent("cameras", "no camera answered"), Absent("store", "no Date")], "no_time_witness",
     ["no camera answered", "no Date"]),
    # a lower bound only (the newest seal, seal job state unknown): catches a clock set back, not one ahead
    ("seal lower bound alone is no witness", [reading("seal", -YEAR, span_s=None)], [], "no_time_witness",
     ["seal: lower bound only"]),
    ("seal lower bound catches a clock set back", [reading("cameras", 0.0), reading("seal", 7200.0, span_s=None)], [],
     "clock_disagrees", ["seal"]),
    # the newest seal while the hourly seal job is healthy: the host is at most ~1 h after it
    ("healthy seal 40 min old", [reading("seal", -2400.0, span_s=3600.0)], [], "ok", []),
    ("healthy seal a year old: host ahead", [reading("seal", -YEAR, span_s=3600.0)], [], "clock_disagrees", ["seal"]),
]


@pytest.mark.parametrize("what,readings,absent,reason,named", CASES, ids=[c[0] for c in CASES])
def test_judge(what, readings, absent, reason, named):
    v = judge(NOW, readings, absent, BOUND)
    assert v.reason == reason and v.ok == (reason == "ok")
    for text in named:
        assert text in v.message, v.message
    if not v.ok:
        assert " / " in v.message and "refusing to delete anything" in v.message  # zh-CN first, then English


def test_judge_names_the_trusted_witnesses():
    v = judge(NOW, [reading("cameras", 1.0), reading("store", 0.0, independent=False), reading("witness", 0.2)], [], BOUND)
    assert v.ok and v.trusted == ("cameras", "witness")


def test_excess_is_signed_distance_outside_the_interval():
    assert reading("x", 10.0, uncertainty_s=1.0).excess_s() == pytest.approx(9.0)  # witness ahead: host behind it
    assert reading("x", -10.0, uncertainty_s=1.0).excess_s() == pytest.approx(-9.0)
    assert reading("x", -10.0, uncertainty_s=1.0, span_s=5.0).excess_s() == pytest.approx(-4.0)
    assert reading("x", -10.0, span_s=None).excess_s() == 0.0


CAMERA_CASES = [
    # (what, offsets, failed, expected median or None (no witness), reason fragment)
    ("one camera", [0.4], [], 0.4, ""),
    ("three agree", [0.4, -1.0, 2.5], [], 0.4, ""),
    ("one camera reset to 2000 among three", [0.4, -1.0, -27 * YEAR], [], -1.0, ""),
    ("one wrong among four", [0.4, -1.0, 2.0, 9 * 86400.0], [], 1.2, ""),
    ("the host is wrong, not the cameras", [-YEAR, -YEAR + 1, -YEAR - 2], [], -YEAR, ""),
    ("two cameras a year apart: no majority", [0.0, -YEAR], [], None, "disagree among themselves"),
    ("split three ways", [0.0, 1000.0, -1000.0], [], None, "disagree among themselves"),
    ("down cameras do not count against the rest", [0.3], [("cam-b", "(timeout)"), ("cam-c", "(refused)")], 0.3, ""),
    ("all down", [], [("cam-a", "(timeout)")], None, "no camera answered (cam-a (timeout))"),
    ("none with an ONVIF address", [], [], None, "no enabled camera has an ONVIF address"),
]


@pytest.mark.parametrize("what,offsets,failed,median,why", CAMERA_CASES, ids=[c[0] for c in CAMERA_CASES])
def test_combine_cameras(what, offsets, failed, median, why):
    clocks = [CameraClock(f"cam-{i}", o) for i, o in enumerate(offsets)]
    r = combine_cameras(clocks, failed, NOW, BOUND)
    if median is None:
        assert isinstance(r, Absent) and why in r.reason, r
    else:
        assert isinstance(r, TimeReading) and r.independent and r.host_time == NOW
        assert r.offset_s == pytest.approx(median) and r.span_s == 0.0
        assert f"median of {len(offsets)}" in r.detail


def test_a_year_ahead_host_against_cameras_end_to_end():
    """The cameras' median, judged: the host a year ahead is refused and the cameras named."""
    cams = combine_cameras([CameraClock("cam-a", -YEAR), CameraClock("cam-b", -YEAR + 0.5)], [], NOW, BOUND)
    v = judge(NOW, [cams, reading("store", 0.0, independent=False)], [], BOUND)
    assert v.reason == "clock_disagrees" and "cam-a" in v.message and "cam-b" in v.message
