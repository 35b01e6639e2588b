"""Sub streams for content health (issue 15 A): the main stream is recorded, the sub stream's
keyframes are the pictures judged, on the footage's wall-clock timeline; without a sub stream
(none, down, trimmed) the stored main stream's keyframes are judged as before.

Real parts: a GStreamer camera with a 1920x1080 main and a 640x360 sub mount, the recorder
service (main-stream worker + sub-stream sampler), SeaweedFS, SQLite, the ONVIF simulator
serving two profiles to a real scan."""

from __future__ import annotations

import time
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
from sqlmodel import Session, select

from camera_discovery.models import MediaProfile, sub_profile
from index.db import make_engine, sqlite_url
from index.migrate import upgrade
from index.models import Camera, Segment
from index.queries import IndexStore
from labwitness.clock import SystemClock
from labwitness.picture_samples import SampleSpool
from recorder.service import CameraSpec, RecorderService
from recorder.substream import SubStreamSampler
from recorder.worker import RecorderConfig
from retention import content_index
from retention.content_detect import ContentConfig
from retention.content_job import SUB_NOTE, ContentJobConfig, check_camera, run_content_check
from retention.keyframe_decode import Keyframe, KeyframeDecoder, luma
from retention.picture_sources import holes, media_at_s, on_wall_ms, segment_pictures, slack_ms
from retention.policy import RetentionPolicy
from simulator.rtsp import Mount, RtspSimulator

from conftest import free_port, wait_for
from contenttools import H, W, Scene, black_mount, flat

EVERY_S = 2.0
JOB = ContentJobConfig(content=ContentConfig(sample_seconds=EVERY_S), initial_lookback_s=3600)


# -- pure parts, table-driven ------------------------------------------------------------------
def _p(token, w, h, uri="rtsp://cam/x", enc="H264"):
    return MediaProfile(token, encoding=enc, width=w, height=h, stream_uri=uri and f"{uri}/{token}")


@pytest.mark.parametrize("name, profiles, expected", [
    ("none", [], None),
    ("main only", [_p("main", 1920, 1080)], None),
    ("main + sub", [_p("main", 1920, 1080), _p("sub", 640, 360)], "sub"),
    ("smallest of several", [_p("main", 3840, 2160), _p("mid", 1280, 720), _p("sub", 640, 360)], "sub"),
    ("too small for the detectors", [_p("main", 1920, 1080), _p("cif", 176, 144), _p("sub", 704, 576)], "sub"),
    ("not smaller than the main", [_p("main", 640, 360), _p("big", 1920, 1080)], None),
    ("MJPEG is not sampled", [_p("main", 1920, 1080), _p("mj", 640, 360, enc="JPEG")], None),
    ("H.265 sub", [_p("main", 1920, 1080, enc="H265"), _p("sub", 640, 360, enc="H265")], "sub"),
    ("no stream URI", [_p("main", 1920, 1080), _p("sub", 640, 360, uri=None)], None),
    ("no size said", [_p("main", 1920, 1080), MediaProfile("sub", stream_uri="rtsp://cam/x/sub")], None),
])
def test_sub_profile_choice(name, profiles, expected):
    got = sub_profile(profiles)
    assert (got.token if got else None) == expected, name


@pytest.mark.parametrize("name, profiles, expected", [
    ("1080p main: not worth a sub stream", [_p("main", 1920, 1080), _p("sub", 640, 360)], None),
    ("4K main", [_p("main", 3840, 2160), _p("sub", 640, 360)], "sub"),
    ("5 MP main", [_p("main", 2592, 1944), _p("sub", 704, 576)], "sub"),
])
def test_sub_profile_automatic_only_above_1080p(name, profiles, expected):
    from api.camera_rows import AUTO_SUB_STREAM_ABOVE_PX

    got = sub_profile(profiles, AUTO_SUB_STREAM_ABOVE_PX)
    assert (got.token if got else None) == expected, name


S = slack_ms(2000)


@pytest.mark.parametrize("name, times, expected", [
    ("no samples: all of it", [], [(0, 20_000)]),
    ("every 2 s: none", list(range(0, 20_000, 2000)), []),
    ("late by one sub GOP: none", list(range(1500, 20_000, 2500)), []),
    ("sub stream down in the middle", [0, 2000, 4000, 14_000, 16_000, 18_000], [(4001, 14_000)]),
    ("sub stream starts late", [10_000, 12_000, 14_000, 16_000, 18_000], [(0, 10_000)]),
    ("sub stream ends early", [0, 2000, 4000], [(4001, 20_000)]),
    ("neighbours before and after count", [-1000, 3000, 7000, 11_000, 15_000, 19_000, 21_000], []),
    ("a short span between two samples needs none", [-500, 1500], []),
])
def test_holes(name, times, expected):
    assert holes(None, 0, 20_000 if "short" not in name else 1000, times, 2000) == expected, name
    assert holes(-2000, 0, 20_000 if "short" not in name else 1000, times, 2000) == expected, name


@pytest.mark.parametrize("last, times, expected", [
    (-2000, [], [(0, 20_000)]),
    (-9000, [3000], [(0, 3000), (3001, 20_000)]),  # the last picture long ago: what is due now is a hole
    (-500, [4500, 8000], [(8001, 20_000)]),
])
def test_holes_after_the_last_picture(last, times, expected):
    assert holes(last, 0, 20_000, times, 2000) == expected


@pytest.mark.parametrize("name, sample_ms, seg, expected", [
    # the segment starts more than a sample interval after the sample judged last, and the next
    # sample is not taken yet (the live edge): that sample covers it within every + slack
    ("covered by the sample judged last", 0, (2500, 3500), []),
    ("past its reach: a hole, the main stream's keyframes", 0, (6500, 7500), [("main", 6500)]),
    ("the last picture was the main stream's, no sample: today's path", None, (2500, 3500), [("main", 2500)]),
])
def test_segment_pictures_reckon_from_the_sample_judged_last(tmp_path, name, sample_ms, seg, expected):
    sp = SampleSpool(tmp_path / "samples")
    if sample_ms is not None:
        sp.put("cam-1", sample_ms, "h264", b"\x00\x00\x00\x01")  # taken in by the segment before
    start, end = seg
    reads = []

    def read_main():
        reads.append(start)
        return [Keyframe(0.0, decode=lambda: None)]  # the segment's first keyframe

    got = segment_pictures(sp, "cam-1", start, start, end, 2000, read_main, KeyframeDecoder(), last_ms=0)
    assert [(k.source, start + round(k.media_s * 1000)) for k in got] == expected, name
    assert bool(reads) == bool(expected), name  # the main stream is read only for a hole


@pytest.mark.parametrize("name, samples, last, seg, due, expected", [
    # footage dropped (spool full) while the sub stream was sampled: the sample at 4000 shows no
    # footage and no segment judges it, so it must not stand in for one: the segment, 9 s past
    # the picture judged last, is read from the main stream
    ("a sample where no footage was kept is no coverage", [0, 4000], 0, (5500, 9000), 5500, [("main", 5500)]),
    # a restarted sampler's extra sample before the next picture is due is not judged (one
    # picture per interval), so it covers nothing: 7 s from the last picture is a hole
    ("a sample passed over before due is no coverage", [0, 1000, 7000], 0, (500, 7500), 2000,
     [("main", 2000), ("sub", 7000)]),
    ("the sample judged last still covers (live edge)", [0], 0, (2500, 3500), 2500, []),
])
def test_segment_pictures_count_only_what_is_judged(tmp_path, name, samples, last, seg, due, expected):
    sp = SampleSpool(tmp_path / "samples")
    for t in samples:
        sp.put("cam-1", t, "h264", b"\x00\x00\x00\x01")
    start, end = seg

    def read_main():  # the segment's keyframe at its due time
        return [Keyframe((due - start) / 1000, decode=lambda: None)]

    got = segment_pictures(sp, "cam-1", start, due, end, 2000, read_main, KeyframeDecoder(), last_ms=last)
    assert [(k.source, start + round(k.media_s * 1000)) for k in got] == expected, name


def _idr(gray: np.ndarray) -> bytes:
    """One H.264 IDR with its parameter sets (Annex B), as the sampler spools a sub-stream keyframe."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = W, H, "yuv420p", Fraction(1, 10)
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency"}
    buf = np.full((H * 3 // 2, W), 128, np.uint8)
    buf[:H] = gray
    frame = av.VideoFrame.from_ndarray(buf, format="yuv420p")
    frame.pts = 0
    return b"".join(bytes(p) for p in ctx.encode(frame) + ctx.encode(None))


SEAM_T0 = 1_796_421_778_512  # wall ms; the segments and samples below are offsets from it


@pytest.mark.parametrize("name, segs, samples, black, expected_event", [
    # (start, end, media duration) as the recorder indexes them: a session's segments tile the wall
    # clock (the next starts where the last ended), wall duration = media duration steered by at
    # most 500 ppm, start and end truncated to the ms; start + media duration is not the wall end
    ("a 1 ms seam: the wall 1 ms longer than the media", [(0, 2001, 2000), (2001, 4002, 2000), (4002, 6003, 2000)],
     [0, 2000, 4000, 6000], 2000, (2000, 4000, False)),
    ("60 s segments steered 500 ppm: a 30 ms seam", [(0, 60_030, 60_000), (60_030, 120_060, 60_000)],
     list(range(0, 120_001, 2000)), 60_000, (60_000, 62_000, False)),
    ("the last segment's tail, before the next is stored", [(0, 2001, 2000), (2001, 4002, 2000)],
     [0, 2000, 4001], 4001, (4001, 4001, True)),
    ("an overlap: the wall 1 ms shorter than the media", [(0, 3999, 4000), (3999, 7998, 4000), (7998, 11_997, 4000)],
     [0, 3999, 5999, 7999, 9999], 3999, (3999, 5999, False)),
    ("no seam: a sample at the boundary", [(0, 2000, 2000), (2000, 4000, 2000), (4000, 6000, 2000)],
     [0, 2000, 4000], 2000, (2000, 4000, False)),
])
def test_a_sample_in_a_seam_is_judged_once(tmp_path, name, segs, samples, black, expected_event):
    """Every sub-stream sample inside the stored footage is judged by exactly one segment, at its
    own time: the one black picture opens (and the next closes) a blackout to the millisecond.
    No main-stream keyframe is needed (the samples cover everything): there is no store to read."""
    ix = _index_with_camera(tmp_path)
    engine = ix.engine
    for i, (start, end, media) in enumerate(segs):
        ix.add_segment(Segment(camera_id="cam-1", start_ms=SEAM_T0 + start, end_ms=SEAM_T0 + end,
                               media_duration_ms=media, key=f"seg-{i}", version_id="v", size=1, sha256="0" * 64,
                               codec="h264", sequence=i))
    sp = SampleSpool(tmp_path / "samples")
    scene = Scene()
    for t in samples:
        sp.put("cam-1", SEAM_T0 + t, "h264", _idr(flat(18, 0.5) if t == black else scene.view(t / 1000)))
    now = SEAM_T0 + segs[-1][1] + 10_000
    r = check_camera(engine, None, "cam-1", now, JOB, samples=sp)  # None: no main stream to read
    assert not r.error and r.samples == r.sub_samples == len(samples), (name, r)
    got = [(e.kind, e.start_ms - SEAM_T0, e.end_ms - SEAM_T0, e.ongoing) for e in content_index.events(engine, "cam-1")]
    assert got == [("blackout", *expected_event)], name
    assert sp.samples("cam-1") == []  # all taken in (deleted once the mark passed them), each judged once above


@pytest.mark.parametrize("name, media_s, span, media, expected", [
    ("wall = media", 1.0, 2000, 2000, 1000),
    ("stretched: 60 s of media over 60.030 s of wall", 59.9, 60_030, 60_000, 59_930),
    # start + media would put it at 59 990, 20 ms into the next segment's span, ahead of its first picture
    ("squeezed: the last keyframe stays in its own span", 59.99, 59_970, 60_000, 59_960),
    ("shown after the last decode time (composition offset): still its own segment's", 2.05, 2000, 2000, 1999),
])
def test_main_keyframes_on_the_segments_wall_span(name, media_s, span, media, expected):
    assert on_wall_ms(media_s, span, media) == expected, name
    for due in (0, 1, 999, span // 2, span - 1):  # a keyframe picked at or after due's media time lands at or after due
        assert on_wall_ms(media_at_s(due, span, media) - 1e-6, span, media) >= due, (name, due)


def test_sample_spool_layout_and_bounds(tmp_path):
    sp = SampleSpool(tmp_path / "samples", max_bytes_per_camera=250)
    for t in (3000, 1000, 2000):
        sp.put("cam-1", t, "h264", b"x" * 100)
    (tmp_path / "samples" / "cam-1" / "0000000004000.h264.tmp").write_bytes(b"half")
    assert [s.wall_ms for s in sp.samples("cam-1")] == [1000, 2000, 3000]
    assert [s.wall_ms for s in sp.samples("cam-1", 1500, 3000)] == [2000]
    assert sp.trim("cam-1") == 1 and [s.wall_ms for s in sp.samples("cam-1")] == [2000, 3000]
    assert sp.prune("cam-1", 3000) == 1 and [s.wall_ms for s in sp.samples("cam-1")] == [3000]
    assert (tmp_path / "samples" / "cam-1").stat().st_mode & 0o777 == 0o700
    with pytest.raises(ValueError):
        sp.put("../x", 1, "h264", b"")
    assert sp.samples("nobody") == []


# -- a camera with two streams -----------------------------------------------------------------
@pytest.fixture
def camera(tmp_path):
    """One camera, two streams: main 1920x1080 (recorded), sub 640x360 (healthy or black)."""
    sim = RtspSimulator({
        "/main": Mount.live(1920, 1080, fps=10, bitrate_kbps=2000, key_int=10),
        "/sub": Mount.live(640, 360, fps=10, bitrate_kbps=400, key_int=10),
        "/sub-black": black_mount(),
        "/sub-hevc": Mount.live(640, 360, fps=10, codec="hevc", bitrate_kbps=400, key_int=10),
        "/sub-b": Mount.live(640, 360, fps=10, bitrate_kbps=400, key_int=10, bframes=2),
    }, workdir=tmp_path / "rtsp")
    sim.start()
    yield sim
    sim.stop()


def test_sampler_writes_keyframes_with_wall_time(tmp_path, camera):
    """Samples are decodable alone (H.264 and H.265), every ``every_s``, timed on the wall clock."""
    for mount, codec in (("/sub", "h264"), ("/sub-hevc", "hevc")):
        sp = SampleSpool(tmp_path / f"samples-{codec}")
        s = SubStreamSampler("cam", camera.url(mount), sp, 1.0, read_timeout_s=20)
        before = time.time()
        s.run_once(max_samples=3)
        after = time.time()
        got = sp.samples("cam")
        assert [x.codec for x in got] == [codec] * 3 and s.status.samples == 3
        walls = [x.wall_ms for x in got]
        assert all(b - a >= 1000 for a, b in zip(walls, walls[1:])), walls
        assert before * 1000 - 1000 <= walls[0] and walls[-1] <= after * 1000, (before, walls, after)
        dec = KeyframeDecoder()
        for x in got:
            f = dec.decode(codec, None, x.read())
            assert (f.width, f.height) == (640, 360) and luma(f).mean() > 40  # the test pattern, not black


@pytest.mark.parametrize("client", ["native", "ffmpeg"])
def test_sampler_takes_a_b_frame_sub_stream(tmp_path, camera, client):
    """A sub stream with B-frames is sampled by either client (the native one reorders them since
    issue 15), and every sample decodes alone."""
    sp = SampleSpool(tmp_path / "samples")
    s = SubStreamSampler("cam", camera.url("/sub-b"), sp, 1.0, read_timeout_s=20, client=client)
    s.run_once(max_samples=3)
    assert s.client == client
    dec = KeyframeDecoder()
    got = sp.samples("cam")
    assert len(got) >= 3
    for x in got[-3:]:
        f = dec.decode("h264", None, x.read())
        assert (f.width, f.height) == (640, 360)


def _index_with_camera(tmp_path) -> IndexStore:
    """A migrated SQLite index with camera ``cam-1`` registered."""
    ix = IndexStore(make_engine(sqlite_url(tmp_path / "index.sqlite3")))
    upgrade(ix.engine)
    with Session(ix.engine) as s:
        s.add(Camera(id="cam-1", rtsp_url="rtsp://127.0.0.1/main", created_ms=0))
        s.commit()
    return ix


def _service(tmp_path, store, samples):
    ix = _index_with_camera(tmp_path)
    svc = RecorderService(tmp_path / "spool", store, ix, RetentionPolicy(),
                          RecorderConfig(segment_seconds=2.0, backoff_cap_s=0.5, read_timeout_s=5),
                          samples=samples, sample_seconds=EVERY_S).start()
    return ix, svc


def _stored_until(ix, camera_id, t_ms):
    segs = [s for s in ix.iter_segments(camera_id) if s.status == "stored"]
    return segs and segs[-1].end_ms >= t_ms


def test_black_sub_stream_detected_at_its_time_and_fallback_when_down(tmp_path, store, camera):
    """Healthy sub stream, then a black one (the main stream shows the test pattern all along: only
    the sub stream can tell), then the sub stream down: the blackout event opens when the sub
    stream went black, from sub-stream samples, and closes at the first main-stream keyframe
    judged once the sub stream is down."""
    samples = SampleSpool(tmp_path / "samples")
    ix, svc = _service(tmp_path, store, samples)
    main = camera.url("/main")
    try:
        svc.sync([CameraSpec("cam-1", main, sub_url=camera.url("/sub"))])
        wait_for(lambda: len(samples.samples("cam-1")) >= 4, 60, what="healthy sub-stream samples")
        worker = svc.workers()["cam-1"]
        sessions = worker.status.sessions
        t_black = time.time() * 1000
        svc.sync([CameraSpec("cam-1", main, sub_url=camera.url("/sub-black"))])  # only the sampler restarts
        wait_for(lambda: len(samples.samples("cam-1", int(t_black))) >= 4, 60, what="black sub-stream samples")
        t_down = time.time() * 1000
        svc.sync([CameraSpec("cam-1", main, sub_url=f"rtsp://127.0.0.1:{free_port()}/gone")])
        wait_for(lambda: svc.samplers()["cam-1"].status.last_error, 30, what="the sampler to fail")
        time.sleep(3 * EVERY_S + 1)
        t_end = time.time() * 1000
        wait_for(lambda: _stored_until(ix, "cam-1", t_end), 60, what="main-stream segments stored")
        assert svc.workers()["cam-1"] is worker and worker.status.sessions == sessions  # recording never interrupted
        assert not ix.gaps("cam-1")
    finally:
        svc.stop(drain_timeout=20)

    r = run_content_check(ix, store, SystemClock(), JOB, samples=samples).cameras["cam-1"]
    assert not r.error and r.samples > 0 and 0 < r.sub_samples < r.samples, r  # both sources, after the sub went down: main
    (ev,) = content_index.events(ix.engine, "cam-1")
    assert ev.kind == "blackout" and SUB_NOTE.strip() in ev.detail, ev
    # opens at the first black sub-stream sample: after the switch, within a sample interval and a sub GOP
    assert t_black <= ev.start_ms <= t_black + EVERY_S * 1000 + slack_ms(2000), (ev.start_ms - t_black)
    # closes at the first picture after the sub stream went down: a main-stream keyframe (not black)
    assert not ev.ongoing and t_down <= ev.end_ms <= t_down + 3 * EVERY_S * 1000 + 3000, (ev.end_ms - t_down)
    st = content_index.load_state(ix.engine, "cam-1")
    assert st.last_sample_source == "main"  # the newest picture came from the stored main stream
    thumb = cv2.imdecode(np.frombuffer(st.thumbnail_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape == (180, 320, 3)
    assert samples.samples("cam-1", end_ms=st.sampled_until_ms) == []  # taken in: deleted


def test_no_sub_stream_is_todays_path(tmp_path, store, camera):
    """A camera without a sub stream: main-stream keyframes only, said so; nothing spooled."""
    samples = SampleSpool(tmp_path / "samples")
    ix, svc = _service(tmp_path, store, samples)
    try:
        svc.sync([CameraSpec("cam-1", camera.url("/main"))])
        wait_for(lambda: len([s for s in ix.iter_segments("cam-1") if s.status == "stored"]) >= 3, 60,
                 what="stored segments")
        assert svc.samplers() == {}
    finally:
        svc.stop(drain_timeout=20)
    r = run_content_check(ix, store, SystemClock(), JOB, samples=samples).cameras["cam-1"]
    assert r.samples > 0 and r.sub_samples == 0 and r.reads > 0 and not r.events, r
    st = content_index.load_state(ix.engine, "cam-1")
    assert st.last_sample_source == "main"
    assert not (tmp_path / "samples").exists()


def test_sub_stream_only_when_the_main_records(tmp_path, store, camera):
    """The sampler never opens the sub stream while the camera's main stream is not recording:
    a camera's RTSP sessions go to the evidence first; a camera removed leaves no pictures."""
    samples = SampleSpool(tmp_path / "samples")
    ix, svc = _service(tmp_path, store, samples)
    try:
        svc.sync([CameraSpec("cam-1", f"rtsp://127.0.0.1:{free_port()}/down", sub_url=camera.url("/sub"))])
        wait_for(lambda: svc.samplers()["cam-1"].status.state == "waiting", 20, what="the sampler to wait")
        time.sleep(2)
        assert samples.samples("cam-1") == [] and svc.samplers()["cam-1"].status.sessions == 0
        svc.sync([CameraSpec("cam-1", camera.url("/main"), sub_url=camera.url("/sub"))])  # the camera is back
        wait_for(lambda: samples.samples("cam-1"), 60, what="samples once the main stream records")
        svc.sync([])  # removed from the registry: no sampler, and its pictures go (they were never footage)
        assert svc.samplers() == {} and samples.samples("cam-1") == []
    finally:
        svc.stop()


def test_discovery_picks_the_sub_stream_and_admin_sets_and_clears_it(running, tmp_path):
    """ONVIF scan -> register: for a 4K camera (as it says) the smaller profile becomes the sub
    stream (its secret query value sealed like the main URL's); the recorder samples it; PATCH
    null clears it, a URL with credentials is refused."""
    from simulator.onvif import OnvifCameraSimulator

    client, rt = running
    sim = RtspSimulator({"/main": Mount.live(640, 360, fps=10), "/sub": Mount.live(320, 180, fps=10)},
                        workdir=tmp_path / "rtsp2")
    with sim, OnvifCameraSimulator(name="two", rtsp_url=sim.url("/main"), sub_rtsp_url=sim.url("/sub") + "?token=t0ps3cret",
                                   main_resolution=(3840, 2160), sub_resolution=(320, 180), username="onvif",
                                   password="0nvif-pass", discovery_port=rt.settings.discovery_port) as cam:
        scan = client.post("/api/v1/discovery/scan", json={"timeout": 1.5, "username": "onvif", "password": "0nvif-pass"})
        assert scan.status_code == 200, scan.text
        r = client.post("/api/v1/cameras", json={"id": "two", "from_discovery": cam.endpoint})
        assert r.status_code == 201, r.text
        view = r.json()
        assert view["sub_rtsp_url"].endswith("/sub?token=***"), view
        row = rt.registry.camera("two")
        assert "t0ps3cret" not in row.sub_rtsp_url and row.sub_url_secrets_enc
        assert rt.cipher.sub_stream_url(row).endswith("/sub?token=t0ps3cret")
        wait_for(lambda: len(rt.samples.samples("two")) >= 2, 60, what="sub-stream samples of the discovered camera")
        assert client.get("/api/v1/cameras/two").json()["sub_stream_state"] == "sampling"
        t = time.time() * 1000
        wait_for(lambda: _stored_until(rt.index, "two", t), 60, what="stored segments after the first samples")
        # the job at the sampler's cadence, as the scheduler pairs them (retention.scheduler): at
        # JOB's 2 s against this runtime's 10 s sampler, a sample covers only 6 s (2 s + slack), so
        # whenever the run found footage stored more than 6 s past the newest sample (a loaded box
        # asking late) its newest picture, the thumbnail, was rightly a main-stream keyframe
        job = ContentJobConfig(content=ContentConfig(sample_seconds=rt.settings.content_sample_seconds))
        res = run_content_check(rt.index, rt.store, rt.clock, job, camera_id="two", samples=rt.samples).cameras["two"]
        assert res.sub_samples > 0 and not res.error, res
        th = client.get("/api/v1/cameras/two/thumbnail")
        assert th.status_code == 200 and th.headers["X-Labwitness-Sample-Source"] == "sub", th.headers
        sessions = rt.recorder.workers()["two"].status.sessions

        bad = client.patch("/api/v1/cameras/two", json={"sub_rtsp_url": "rtsp://u:p@127.0.0.1/sub"})
        assert bad.status_code == 422 and "credentials" in bad.text
        r = client.patch("/api/v1/cameras/two", json={"sub_rtsp_url": None})
        assert r.status_code == 200 and r.json()["sub_rtsp_url"] is None
        wait_for(lambda: "two" not in rt.recorder.samplers(), 20, what="the sampler to stop")
        assert rt.recorder.workers()["two"].status.sessions == sessions  # the main stream was not reopened
        assert rt.registry.camera("two").sub_url_secrets_enc is None


def test_cli_camera_add_with_a_sub_stream(tmp_path):
    """`labwitness camera add --sub-url`: sealed like the main URL; credentials in it refused (exit 2)."""
    import json

    from typer.testing import CliRunner

    from api.cli import app as cli_app

    env = {"LABWITNESS_DATA_DIR": str(tmp_path / "data")}
    runner = CliRunner()
    r = runner.invoke(cli_app, ["camera", "add", "--id", "c1", "--url", "rtsp://admin:pw@127.0.0.1/main",
                                "--sub-url", "rtsp://127.0.0.1/sub?token=t0ps3cret", "--json"], env=env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["sub_rtsp_url"] == "rtsp://127.0.0.1/sub?token=***"
    r = runner.invoke(cli_app, ["camera", "add", "--id", "c2", "--url", "rtsp://127.0.0.1/main",
                                "--sub-url", "rtsp://u:p@127.0.0.1/sub"], env=env)
    assert r.exit_code == 2 and "credentials" in " ".join(r.output.split()), r.output
    engine = make_engine(sqlite_url(tmp_path / "data" / "index.sqlite3"))
    with Session(engine) as s:
        rows = {c.id: c for c in s.exec(select(Camera))}
    assert set(rows) == {"c1"} and "t0ps3cret" not in rows["c1"].sub_rtsp_url and rows["c1"].sub_url_secrets_enc
