"""recorder.reorder: decode timestamps from presentation times in decode order (pure, table-driven),
and the reorder depth the SPS declares (labwitness.media.h26x)."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from labwitness.media.h26x import h264_sps, h265_sps, sps_reorder
from recorder.reorder import LOOKAHEAD, DecodeTimes

F = 3600  # 25 fps at 90 kHz


def run(pts_in_decode_order, depth, *, ft=F):
    t = DecodeTimes(ft, depth)
    out = []
    for i, p in enumerate(pts_in_decode_order):
        out += t.push(i, p)
    out += t.flush()
    assert [i for i, _, _ in out] == list(range(len(pts_in_decode_order))), "every frame, once, in decode order"
    return t, [(d, p) for _, d, p in out]


def frames(*presentation_index):
    """pts of frames given by their presentation index, listed in decode order."""
    return [1000 + k * F for k in presentation_index]


# (name, pts in decode order, declared depth, expected dts in frames before 1000, learned depth)
CASES = [
    ("no B-frames, Baseline", frames(0, 1, 2, 3, 4), 0, [0, 1, 2, 3, 4], 0),
    ("no B-frames, depth unknown", frames(0, 1, 2, 3, 4), None, [0, 1, 2, 3, 4], 0),
    ("IBBP (depth 1), declared", frames(0, 3, 1, 2, 6, 4, 5, 9, 7, 8), 1, [-1, 0, 1, 2, 3, 4, 5, 6, 7, 8], 1),
    ("IBBP declared 2 (x264 says 2)", frames(0, 3, 1, 2, 6, 4, 5), 2, [-2, -1, 0, 1, 2, 3, 4], 2),
    ("IBBP learned", frames(0, 3, 1, 2, 6, 4, 5, 9, 7, 8), None, [-1, 0, 1, 2, 3, 4, 5, 6, 7, 8], 1),
    ("B-pyramid (depth 2) learned", frames(0, 4, 2, 1, 3, 8, 6, 5, 7), None, [-2, -1, 0, 1, 2, 3, 4, 5, 6], 2),
    ("B-pyramid declared", frames(0, 4, 2, 1, 3, 8, 6, 5, 7), 2, [-2, -1, 0, 1, 2, 3, 4, 5, 6], 2),
]


@pytest.mark.parametrize("name, pts, depth, dts_frames, learned", CASES, ids=[c[0] for c in CASES])
def test_dts_is_monotonic_never_after_pts_and_follows_the_rule(name, pts, depth, dts_frames, learned):
    t, out = run(pts, depth)
    assert [p for _, p in out] == pts, "presentation times are the camera's"
    assert [d for d, _ in out] == [1000 + k * F for k in dts_frames]
    assert t.depth == learned and t.late == 0


def test_a_camera_reordering_deeper_than_its_sps_says_keeps_dts_increasing():
    # declared 0 (a lying SPS), IBBP: the first B-frame cannot be placed before the P already given
    t, out = run(frames(0, 3, 1, 2, 6, 4, 5), 0)
    dts = [d for d, _ in out]
    assert all(b > a for a, b in zip(dts, dts[1:]))
    assert t.depth == 1 and t.late >= 1
    assert dts[-1] <= out[-1][1], "back on the rule once the depth grew"


@pytest.mark.parametrize("pts, depth, expected_pts", [
    # FFmpeg's RTSP demuxer: the first IDR comes without a timestamp (captured on a bframes=2 stream)
    ([None, 11007, 3807, 7407, 21807, 14607, 18207], 2, [207, 11007, 3807, 7407, 21807, 14607, 18207]),
    ([None, 11007, 3807, 7407, 21807, 14607, 18207], None, [207, 11007, 3807, 7407, 21807, 14607, 18207]),
    ([None, None, 7200, 10800], 0, [0, 3600, 7200, 10800]),
    ([None, None], 0, [0, 3600]),  # a stream that never gave a timestamp: still kept, in order
    ([0, 3600, None, 10800], 0, [0, 3600, 7200, 10800]),  # a gap mid-stream: the next frame
])
def test_frames_without_pts_are_placed_by_the_frame_duration(pts, depth, expected_pts):
    t, out = run(pts, depth)
    assert [p for _, p in out] == expected_pts
    dts = [d for d, _ in out]
    assert all(b > a for a, b in zip(dts, dts[1:])) and all(d <= p for d, p in out)
    assert t.late == 0


def test_learning_holds_back_only_the_lookahead_and_stops_when_the_sps_declares():
    t = DecodeTimes(F, None)
    got = []
    for i, p in enumerate(frames(0, 1, 2, 3, 4, 5)):
        got += t.push(i, p)
    assert len(got) == 6 - LOOKAHEAD
    got += t.declare(0)
    assert len(got) == 6 and not t.learning
    assert t.push(6, 1000 + 6 * F) == [(6, 1000 + 6 * F, 1000 + 6 * F)]


def test_timestamps_far_from_zero_and_irregular_frame_spacing():
    base = 2**33  # an unwrapped RTP clock past its first wrap
    pts = [base + x for x in (0, 9000, 3000, 6000, 18000, 12100, 15000)]
    t, out = run(pts, 1)
    dts = [d for d, _ in out]
    assert all(b > a for a, b in zip(dts, dts[1:])) and all(d <= p for d, p in out) and t.late == 0


def _encode(codec, opts, bframes, fmt):
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.codec_context.max_b_frames = bframes
        s.codec_context.options = opts
        for i in range(20):
            img = np.zeros((240, 320, 3), np.uint8)
            img[:, i * 4:i * 4 + 20] = 255
            for pk in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    return buf.getvalue()


def _nal(data: bytes, codec: str, typ: int) -> bytes:
    for n in data.split(b"\x00\x00\x01"):
        if n and ((n[0] >> 1) & 0x3F if codec == "hevc" else n[0] & 0x1F) == typ:
            return n.rstrip(b"\x00")
    raise AssertionError("no SPS")


@pytest.mark.parametrize("codec, opts, bframes, reorder", [
    ("libx264", {"profile": "baseline"}, 0, 0),
    ("libx264", {"bf": "0", "tune": "zerolatency"}, 0, 0),
    ("libx264", {"bf": "2", "b-pyramid": "none"}, 2, 1),
    ("libx264", {"bf": "3", "b-pyramid": "normal"}, 3, 2),
    ("libx265", {"x265-params": "bframes=2:log-level=error"}, 2, 2),
    ("libx265", {"x265-params": "bframes=0:log-level=error"}, 0, 0),
])
def test_the_sps_declares_the_reorder_depth(codec, opts, bframes, reorder):
    hevc = codec == "libx265"
    sps = _nal(_encode(codec, opts, bframes, "hevc" if hevc else "h264"), "hevc" if hevc else "h264", 33 if hevc else 7)
    info = (h265_sps if hevc else h264_sps)(sps)
    assert (info.width, info.height) == (320, 240)
    assert info.reorder == reorder
    assert sps_reorder("hevc" if hevc else "h264", sps) == reorder


def test_an_sps_that_cannot_be_read_declares_no_depth():
    main = _nal(_encode("libx264", {"bf": "2"}, 2, "h264"), "h264", 7)
    assert sps_reorder("h264", main[:8]) is None
    assert sps_reorder("h264", b"\x67") is None
    assert sps_reorder("hevc", b"\x42\x01") is None


@pytest.mark.parametrize("pts, depth, expected_pts", [
    # an encoder restart: the clock starts again from 0; order and spacing kept, no depth learned
    ([900000, 903600, 907200, 0, 3600, 7200], 0, [900000, 903600, 907200, 910800, 914400, 918000]),
    ([900000, 910800, 903600, 907200, 0, 10800, 3600, 7200], 1,
     [900000, 910800, 903600, 907200, 914400, 925200, 918000, 921600]),
    # a jump forward is kept as it is (the worker cuts there)
    ([0, 3600, 900000, 903600], None, [0, 3600, 900000, 903600]),
])
def test_a_clock_going_back_is_a_jump_not_reordering(pts, depth, expected_pts):
    t, out = run(pts, depth)
    assert [p for _, p in out] == expected_pts
    dts = [d for d, _ in out]
    assert all(b > a for a, b in zip(dts, dts[1:])) and all(d <= p for d, p in out)
    assert t.late == 0 and t.depth == (depth or 0) and t.jumps == (expected_pts != pts)
