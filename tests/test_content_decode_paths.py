"""The content job's decode path against the plain one, on the same stored footage: events must
be identical, to the millisecond.

The job reads a segment's keyframes by byte range, decodes one alone with a codec context
opened on the track's ``avcC`` and only when the bitstream gate asks for it
(:mod:`retention.keyframes`, :mod:`retention.content_job`).  The plain path demuxes the whole
file with PyAV (``skip_frame='NONKEY'``), decodes every keyframe due and judges each one
(:func:`retention.keyframes.demux_keyframes`): what the job did before any of its savings.  A
cheaper decode (decoder flags, a smaller picture, fewer decodes) is only acceptable if this table
still passes; one row per condition, each starting and ending mid-footage."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session

from contenttools import JOB_CFG, SCENE, SEG_S, T0, encode_fmp4, flat, put_segment
from index.models import Camera
from labwitness.clock import FakeClock, utc_ms
from retention import content_index
from retention.content import fold, judge
from retention.content_job import run_content_check
from retention.content_state import DetectorState
from retention.keyframe_decode import luma
from retention.keyframes import demux_keyframes

CONDITIONS = {  # camera -> (picture at t seconds over both segments, kinds expected)
    "clean": (lambda t: SCENE.view(t), set()),
    "black": (lambda t: flat(17, 1.0) if 26 <= t < 34 else SCENE.view(t), {"blackout"}),
    "covered": (lambda t: flat(95, 1.5) if 14 <= t < 30 else SCENE.view(t), {"obscured"}),
    "defocused": (lambda t: SCENE.view(t, blur=2.5) if 6 <= t < 24 else SCENE.view(t), {"obscured"}),
    "frozen": (lambda t: SCENE.view(22.0, noise=0) if 22 <= t < 36 else SCENE.view(t), {"frozen"}),
}


def plain_events(files: list, cfg) -> list[tuple]:
    """Every due keyframe of each segment decoded by a full demux and judged; events folded."""
    c = cfg.content
    every_ms = round(c.sample_seconds * 1000)
    state = DetectorState()
    latest: dict = {}
    for k, path in enumerate(files):
        start_ms = utc_ms(T0) + k * SEG_S * 1000
        due_ms = start_ms if state.frame_ms is None else max(start_ms, state.frame_ms + every_ms)
        for kf in demux_keyframes(str(path), c.sample_seconds, (due_ms - start_ms) / 1000):
            t_ms = start_ms + round(kf.media_s * 1000)
            j = judge(state, t_ms, luma(kf.frame), c)
            for u in fold(state, [(t_ms, j.findings)], c):
                latest[(u.kind, u.start_ms)] = u
    return sorted((u.kind, u.start_ms, u.end_ms, u.ongoing) for u in latest.values())


@pytest.mark.parametrize("camera", sorted(CONDITIONS))
def test_job_decode_path_finds_what_decoding_every_keyframe_finds(store, index, tmp_path, camera):
    fn, kinds = CONDITIONS[camera]
    files = [encode_fmp4(tmp_path / f"{camera}-{k}.mp4", lambda t, k=k: fn(t + k * SEG_S), SEG_S) for k in range(2)]
    with Session(index.engine) as s:
        s.add(Camera(id=camera, rtsp_url=f"rtsp://127.0.0.1/{camera}", created_ms=0))
        s.commit()
    for k, f in enumerate(files):
        put_segment(store, index, f, camera, T0 + timedelta(seconds=k * SEG_S), SEG_S, k + 1)
    res = run_content_check(index, store, FakeClock(T0 + timedelta(seconds=3 * SEG_S)), JOB_CFG,
                            camera_id=camera).cameras[camera]
    job = sorted((e.kind, e.start_ms, e.end_ms, e.ongoing) for e in content_index.events(index.engine, camera))
    plain = plain_events(files, JOB_CFG)
    assert {k for k, *_ in plain} == kinds, plain
    assert job == plain, (res, job, plain)
    assert res.samples == 2 * SEG_S // 2 and res.undecodable == 0
