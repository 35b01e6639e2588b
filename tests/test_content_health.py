"""Content health: detectors (table-driven), event folding, keyframe extraction from
fMP4 segments (files, and SeaweedFS by byte range), and the job end to end."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import av
import cv2
import numpy as np
import pytest
from sqlmodel import Session, select

from index.models import Camera, JobRun
from labwitness.clock import FakeClock, utc_ms
from recorder.segmenter import SegmentWriter
from retention import content_index
from retention.content import EventUpdate, Finding, fold, judge, unusable_ms
from retention.content_detect import ContentConfig, Reference, check_moved, layout_ncc
from retention.content_state import Coded, DetectorState, decode_reason
from retention.content_job import ContentJobConfig, run_content_check
from labwitness.media.mp4 import parse_mfra_tail
from retention.byte_sources import BytesSource, FileSource, StoreSource
from retention.keyframe_decode import coded_picture, luma
from retention.keyframe_locate import locate_keyframes
from retention.keyframes import demux_keyframes, sample_keyframes
from simulator.clip import make_clip

from contenttools import H, JOB_CFG, SCENE, SEG_S, T0, W, Scene, encode_fmp4, flat, put_segment


# -- synthetic footage (contenttools) through the recorder's writer -------------------------
def recorder_segment(src_mp4: Path, out: Path) -> Path:
    """A clip stream-copied through the recorder's own SegmentWriter."""
    with av.open(str(src_mp4)) as src:
        v = src.streams.video[0]
        packets = [p for p in src.demux(v) if p.size]
        with open(out, "wb") as f:
            w = SegmentWriter(f, v, None, base_dts=packets[0].dts)
            for p in packets:
                w.write_video(p, p.dts, p.pts)
            w.close()
    return out


# -- detectors, table-driven ------------------------------------------------------------
CFG = ContentConfig(sample_seconds=2.0, moved_check_every_s=0)


def _kinds(state: DetectorState, t_ms: int, frame: np.ndarray, ref=None) -> set[str]:
    return {f.kind for f in judge(state, t_ms, frame, CFG, ref).findings}


@pytest.mark.parametrize("name, frame, expected", [
    ("clean", lambda: SCENE.view(3.0), set()),
    ("dimmed lights (x0.55)", lambda: SCENE.view(3.0, gain=0.55), set()),
    ("brighter + more noise", lambda: SCENE.view(3.0, gain=1.2, noise=4.0), set()),
    ("camera shake 3 px", lambda: SCENE.view(3.0, dx=3, dy=-2), set()),
    ("black", lambda: flat(17, 1.0), {"blackout"}),
    ("dark with noise", lambda: flat(22, 3.0), {"blackout"}),
    ("dark room, one lamp", lambda: np.maximum(flat(20, 1.0), cv2.circle(np.zeros((H, W), np.uint8), (300, 150), 30, 230, -1)),
     set()),
    ("covered (uniform grey)", lambda: flat(90, 1.5), {"obscured"}),
    ("defocused", lambda: SCENE.view(3.0, blur=2.5), {"obscured"}),
    ("shifted 7%", lambda: SCENE.view(3.0, dx=45, dy=10), {"moved"}),
    ("pointing elsewhere", lambda: np.ascontiguousarray(np.flipud(SCENE.view(3.0))), {"moved"}),
])
def test_detectors_one_frame(name, frame, expected):
    state = DetectorState()
    ref = Reference.from_gray(SCENE.view(0.0, mover=False), CFG)
    for k in range(3):  # the camera's own sharpness baseline, learnt from healthy samples
        assert _kinds(state, k * 2000, SCENE.view(k * 0.5), ref) == set()
    assert _kinds(state, 10_000, frame(), ref) == expected, name


def _bar(f: np.ndarray, x: int, width: int = 24) -> np.ndarray:
    f = f.copy()
    f[:, x:x + width] = 235  # a bright full-height object (a white coat close to the lens)
    return f


@pytest.mark.parametrize("name, other, same_place", [
    ("same view", lambda f: SCENE.view(3.0, mover=False), True),
    ("a bright object passes through", lambda f: _bar(SCENE.view(3.0, mover=False), 400), True),
    ("the bright object elsewhere in both", lambda f: _bar(_bar(SCENE.view(3.0, mover=False), 100), 500), True),
    ("pointing elsewhere (flipped)", lambda f: np.ascontiguousarray(np.flipud(f)), False),
    ("another room", lambda f: Scene(seed=99).view(3.0, mover=False), False),
    ("shifted by a third of the picture", lambda f: np.ascontiguousarray(np.roll(f, W // 3, axis=1)), False),
])
def test_layout_correlation_ignores_what_passes_through(name, other, same_place):
    ref = _bar(SCENE.view(0.0, mover=False), 60)
    ncc = layout_ncc(ref, other(ref))
    assert (ncc > CFG.moved_max_layout_ncc) == same_place, (name, ncc)


@pytest.mark.parametrize("name, second, frozen", [
    ("identical frame", lambda f: f, True),
    ("same frame, re-encoded (+-1 level here and there)",
     lambda f: np.clip(f.astype(int) + np.random.default_rng(5).choice([-1, 0, 0, 0, 0, 0, 0, 0, 0, 1], f.shape), 0, 255)
     .astype(np.uint8), True),
    ("live sensor noise only", lambda f: SCENE.view(0.0, mover=False, noise=2.0), False),
    ("small object moved", lambda f: cv2.rectangle(f.copy(), (500, 20), (540, 60), 230, -1), False),
    ("lights changed", lambda f: (f * 0.8).astype(np.uint8), False),
])
def test_frozen_pairs(name, second, frozen):
    state = DetectorState()
    first = SCENE.view(0.0, mover=False, noise=2.0)
    judge(state, 0, first, CFG)
    assert ("frozen" in _kinds(state, 2000, second(first))) is frozen, name


def test_precedence_black_hides_frozen_and_uniform():
    state = DetectorState()
    judge(state, 0, flat(17, 0.0), CFG)
    assert _kinds(state, 2000, flat(17, 0.0)) == {"blackout"}
    assert _kinds(state, 4000, flat(120, 0.0)) == {"obscured"}


def test_reference_from_jpeg_matches_the_live_picture():
    ok, jpg = cv2.imencode(".jpg", cv2.resize(SCENE.view(0.0), (320, 180), interpolation=cv2.INTER_AREA),
                           [cv2.IMWRITE_JPEG_QUALITY, 85])
    ref = Reference.from_jpeg(jpg.tobytes(), CFG)
    assert check_moved(ref, cv2.resize(SCENE.view(5.0, gain=0.7), (320, 180)), CFG).moved is False
    mc = check_moved(ref, cv2.resize(SCENE.view(5.0, dx=50), (320, 180)), CFG)
    assert mc.moved is True and 0.06 < mc.shift < 0.10, mc


def test_state_round_trips_through_json():
    st = DetectorState()
    judge(st, 1000, SCENE.view(0.0), CFG)
    fold(st, [(1000, [Finding("blackout", 1000, "x")])], CFG)
    back = DetectorState.from_json(st.to_json())
    assert back.baseline == st.baseline and back.frame_ms == 1000 and back.prev_ms == 1000
    assert np.array_equal(back.prev_small, st.prev_small)
    assert back.runs["blackout"].start_ms == 1000
    assert len(st.to_json()) < 200_000
    assert DetectorState.from_json("{}").baseline is None and DetectorState.from_json(None).runs == {}


# -- folding samples into events -----------------------------------------------------------
def _f(kind, since=None):
    return lambda t: Finding(kind, t if since is None else t - since)


FOLD_CASES = [
    # name, [(t, kinds)], min_samples, expected events (kind, start, end, ongoing)
    ("nothing", [(0, ""), (10, ""), (20, "")], {}, []),
    ("one blackout sample opens at once", [(0, ""), (10, "blackout")], {"blackout": 1},
     [("blackout", 10, 10, True)]),
    ("extends, then closes at the first good sample", [(0, "blackout"), (10, "blackout"), (20, "blackout"), (30, "")],
     {"blackout": 1}, [("blackout", 0, 30, False)]),
    ("debounce: two samples are not enough for three", [(0, "moved"), (10, "moved"), (20, "")], {"moved": 3}, []),
    ("debounce: opens at the first of three", [(0, ""), (10, "moved"), (20, "moved"), (30, "moved")], {"moved": 3},
     [("moved", 10, 30, True)]),
    ("two kinds side by side", [(0, "frozen moved"), (10, "frozen moved"), (20, "moved"), (30, "")],
     {"frozen": 1, "moved": 1}, [("frozen", 0, 20, False), ("moved", 0, 30, False)]),
    ("a gap (no footage) closes at the last bad sample", [(0, "blackout"), (10, "blackout"), (500, "blackout")],
     {"blackout": 1}, [("blackout", 0, 10, False), ("blackout", 500, 500, True)]),
    ("re-folded samples are ignored", [(0, "blackout"), (0, "blackout"), (10, "")], {"blackout": 1},
     [("blackout", 0, 10, False)]),
]


@pytest.mark.parametrize("name, samples, need, expected", FOLD_CASES)
def test_fold(name, samples, need, expected):
    cfg = ContentConfig(sample_seconds=10, max_sample_gap_s=60, min_samples={**CFG.min_samples, **need})
    st = DetectorState()
    seq = [(t * 1000, [Finding(k, t * 1000) for k in kinds.split()]) for t, kinds in samples]
    got = fold(st, seq, cfg)
    assert sorted((e.kind, e.start_ms // 1000, e.end_ms // 1000, e.ongoing) for e in got) == sorted(expected), name


def test_fold_in_pieces_equals_fold_at_once():
    cfg = ContentConfig(min_samples={"blackout": 2, "frozen": 1, "obscured": 1, "moved": 1})
    seq = [(t * 1000, [Finding("blackout", t * 1000)] if 20 <= t < 70 else []) for t in range(0, 100, 10)]
    whole = fold(DetectorState(), seq, cfg)
    st, pieces = DetectorState(), {}
    for i in range(0, len(seq), 3):
        st = DetectorState.from_json(st.to_json())  # a job run boundary
        for e in fold(st, seq[i:i + 3], cfg):
            pieces[(e.kind, e.start_ms)] = e
    assert list(pieces.values()) == [e for e in whole] == [EventUpdate("blackout", 20_000, 70_000, False, "")]


def test_frozen_event_starts_at_the_earlier_frame():
    cfg = ContentConfig(min_samples={"frozen": 1})
    st = DetectorState()
    got = fold(st, [(0, []), (10_000, [Finding("frozen", 0)]), (20_000, [])], cfg)
    assert [(e.start_ms, e.end_ms, e.ongoing) for e in got] == [(0, 20_000, False)]


@pytest.mark.parametrize("spans, window, expected", [
    ([], (0, 100), 0),
    ([(10, 20)], (0, 100), 10),
    ([(10, 20), (15, 30)], (0, 100), 20),  # overlaps (two kinds at once) count once
    ([(-50, 20), (90, 200)], (0, 100), 30),  # clipped to the window
    ([(10, 20), (40, 50)], (0, 100), 20),
])
def test_unusable_ms(spans, window, expected):
    rows = [SimpleNamespace(camera_id="c", kind="blackout", start_ms=a, end_ms=b, ongoing=False) for a, b in spans]
    assert unusable_ms(rows, *window) == expected
    u = content_index.usability(rows, *window)
    assert (u["c"].unusable_ms if rows else 0) == expected


# -- keyframe extraction -------------------------------------------------------------------
@pytest.fixture(scope="module")
def segfiles(tmp_path_factory):
    d = tmp_path_factory.mktemp("kf")
    out = {}
    for codec in ("h264", "hevc"):
        clip = make_clip(d / f"{codec}.mp4", seconds=9, fps=25, gop=50, codec=codec)  # IDR every 2 s, 1 s fragments
        out[codec] = recorder_segment(clip.path, d / f"{codec}-seg.mp4")
    return out


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_keyframes_match_a_full_demux(segfiles, codec):
    path = segfiles[codec]
    with FileSource(path) as src:
        cfg, picked, _ = locate_keyframes(src, 3.0)
        assert cfg.codec == codec and (cfg.width, cfg.height) == (640, 360)
        # IDR every 2 s and fragments of 1 s: odd fragments start with a P-frame and are skipped
        assert [k.media_s for k in picked] == [0.0, 4.0, 8.0]
        got = sample_keyframes(src, 3.0)
    ref = demux_keyframes(str(path), 3.0)
    assert [k.media_s for k in got] == [k.media_s for k in ref]
    for a, b in zip(got, ref):
        assert np.array_equal(luma(a.frame), luma(b.frame))


def test_keyframes_from_a_due_time_and_without_mfra(segfiles):
    data = segfiles["h264"].read_bytes()
    tail = data[-4096:]
    assert len(parse_mfra_tail(tail, len(data) - 4096, 1)) == 9  # ffmpeg lists every fragment
    # a segment recovered after a crash ends after its last complete fragment: no mfra
    cut = data[: len(data) - int.from_bytes(data[-4:], "big")]
    cut = cut[: cut.rfind(b"moof") - 4]
    src = BytesSource(cut)
    ks = sample_keyframes(src, 2.0, first_at_s=1.5)
    assert [k.media_s for k in ks] == [2.0, 4.0, 6.0]


def test_unparsable_segment_falls_back_to_a_full_demux(tmp_path):
    clip = make_clip(tmp_path / "plain.mp4", seconds=4, fps=10, gop=10)  # a plain (moov at end) MP4
    from retention.keyframes import SampleStats

    stats = SampleStats()
    ks = sample_keyframes(BytesSource(clip.path.read_bytes()), 2.0, stats=stats)
    assert stats.fallback and [k.media_s for k in ks] == [0.0, 2.0]


def test_keyframes_by_byte_range_from_seaweedfs(store, tmp_path):
    """The extractor reads only the init segment, mfra, a few moofs and the sampled IDRs."""
    seg = encode_fmp4(tmp_path / "s.mp4", lambda t: SCENE.view(t), 30, fps=10, gop=20)
    key = f"v1/kf/{uuid.uuid4().hex}.mp4"
    stored = store.put_file(key, seg, datetime.now(timezone.utc) + timedelta(days=1))
    src = StoreSource(store, key, stored.version_id, stored.size)
    ks = sample_keyframes(src, 10.0)
    assert [k.media_s for k in ks] == [0.0, 10.0, 20.0]
    local = demux_keyframes(str(seg), 10.0)
    assert all(np.array_equal(luma(a.frame), luma(b.frame)) for a, b in zip(ks, local))
    assert src.reads <= 2 + 2 * 3 + 3, src.reads
    assert src.bytes_read < stored.size / 3, (src.bytes_read, stored.size)


# -- the job, end to end -------------------------------------------------------------------
#: camera -> (first segment: healthy, second segment: the condition, expected kinds)
_frozen: dict = {}


def _frozen_view(t: float) -> np.ndarray:
    if "f" not in _frozen:
        _frozen["f"] = SCENE.view(t)
    return _frozen["f"]


CAMERAS = {
    "clean-motion": (lambda t: SCENE.view(t), set()),
    "clean-lights": (lambda t: SCENE.view(t, gain=1.0 - 0.4 * t / SEG_S, noise=3.0), set()),
    "clean-shake": (lambda t: SCENE.view(t, dx=int(3 * np.sin(3 * t)), dy=int(2 * np.cos(2 * t))), set()),
    "clean-still": (lambda t: SCENE.view(t, mover=False, noise=1.5), set()),
    "black": (lambda t: flat(17, 1.0), {"blackout"}),
    "frozen": (_frozen_view, {"frozen"}),
    "defocused": (lambda t: SCENE.view(t, blur=2.5), {"obscured"}),
    "covered": (lambda t: flat(95, 1.5), {"obscured"}),
    "moved": (lambda t: SCENE.view(t, dx=40, dy=12), {"moved"}),
}


@pytest.fixture(scope="module")
def job_clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("content-job")
    healthy = encode_fmp4(d / "healthy.mp4", lambda t: SCENE.view(t), SEG_S)
    out = {cam: (healthy, encode_fmp4(d / f"{cam}.mp4", lambda t, fn=fn: fn(t + SEG_S), SEG_S))
           for cam, (fn, _) in CAMERAS.items()}
    out["recovered"] = encode_fmp4(d / "recovered.mp4", lambda t: SCENE.view(t + 2 * SEG_S), SEG_S)
    return out


def test_job_end_to_end(store, index, job_clips):
    engine = index.engine
    clock = FakeClock(T0 + timedelta(seconds=2 * SEG_S + 5))
    with Session(engine) as s:
        for cam in CAMERAS:
            s.add(Camera(id=cam, rtsp_url=f"rtsp://127.0.0.1/{cam}", created_ms=0))
        s.commit()
    for cam in CAMERAS:
        put_segment(store, index, job_clips[cam][0], cam, T0, SEG_S, 1)

    first = run_content_check(index, store, clock, JOB_CFG)
    assert first.status == "ok", first.to_json()
    for cam, r in first.cameras.items():
        assert r.samples == SEG_S // 2 and r.events == [] and not r.error, (cam, r)
        assert r.sampled_until_ms == utc_ms(T0) + SEG_S * 1000
    # ranged reads, not whole objects
    assert first.to_json()["totals"]["bytes_read"] < len(CAMERAS) * job_clips["clean-motion"][0].stat().st_size

    # the admin approves each camera's current picture as its reference
    st = content_index.load_state(engine, "moved")
    thumb = cv2.imdecode(np.frombuffer(st.thumbnail_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape == (180, 320, 3) and st.last_sample_ms == utc_ms(T0) + (SEG_S - 2) * 1000
    from index.audit import AuditLog

    audit = AuditLog(engine, lambda: 1)
    for cam in CAMERAS:
        content_index.approve_reference(engine, cam, "admin:test", 12345, audit=audit)
    assert content_index.load_state(engine, "moved").reference_approved_by == "admin:test"

    for cam in CAMERAS:
        put_segment(store, index, job_clips[cam][1], cam, T0 + timedelta(seconds=SEG_S), SEG_S, 2)
    second = run_content_check(index, store, clock, JOB_CFG)
    assert second.status == "warning"
    evs = content_index.events(engine)
    got = {cam: {e.kind for e in evs if e.camera_id == cam} for cam in CAMERAS}
    assert got == {cam: kinds for cam, (_, kinds) in CAMERAS.items()}, [(e.camera_id, e.kind, e.detail) for e in evs]
    seg2 = utc_ms(T0) + SEG_S * 1000
    for e in evs:  # frozen: x264 needs a few IDRs of the same input before they decode identically
        late = 12_000 if e.kind == "frozen" else 2000
        assert e.ongoing and seg2 - 2000 <= e.start_ms <= seg2 + late and e.end_ms == seg2 + (SEG_S - 2) * 1000, e
    assert sorted(second.cameras["black"].ongoing) == ["blackout"]

    # nothing new: nothing read, nothing changes
    again = run_content_check(index, store, clock, JOB_CFG)
    assert again.to_json()["totals"]["reads"] == 0 and len(content_index.events(engine)) == len(evs)

    # the black camera comes back (from a segment without mfra: recovered after a crash)
    data = job_clips["recovered"].read_bytes()
    cut = data[: len(data) - int.from_bytes(data[-4:], "big")]
    (rec := job_clips["recovered"].with_name("recovered-cut.mp4")).write_bytes(cut)
    put_segment(store, index, rec, "black", T0 + timedelta(seconds=2 * SEG_S), SEG_S, 3)
    third = run_content_check(index, store, clock, JOB_CFG, camera_id="black")
    assert list(third.cameras) == ["black"] and third.cameras["black"].ongoing == []
    (black,) = content_index.events(engine, "black")
    assert not black.ongoing and black.end_ms == utc_ms(T0) + 2 * SEG_S * 1000

    # coverage: "recorded but not usable"
    u = content_index.camera_usability(engine, utc_ms(T0), utc_ms(T0) + 3 * SEG_S * 1000)
    assert "clean-motion" not in u
    assert u["black"].unusable_ms == SEG_S * 1000 and u["black"].ongoing == ()
    (moved,) = [e for e in evs if e.camera_id == "moved"]
    assert u["moved"].by_kind == {"moved": moved.end_ms - moved.start_ms} and u["moved"].ongoing == ("moved",)

    with Session(engine) as s:
        runs = list(s.exec(select(JobRun).where(JobRun.job == "content")))
    assert [r.status for r in runs] == ["ok", "warning", "warning", "ok"]  # the last: camera "black" only, healthy again
    assert json.loads(runs[1].summary)["cameras"]["moved"]["samples"] == SEG_S // 2


def test_approve_reference_needs_a_sample(index):
    from labwitness.errors import NotFoundError

    with pytest.raises(NotFoundError):
        content_index.approve_reference(index.engine, "nobody", "admin", 1)


def test_cli_content_and_approve(seaweed, tmp_path, monkeypatch, job_clips):
    from typer.testing import CliRunner

    from api.cli import app
    from conftest import ACCESS, SECRET

    env = {"LABWITNESS_DATA_DIR": str(tmp_path / "data"), "LABWITNESS_S3_ENDPOINT": seaweed.endpoint,
           "LABWITNESS_S3_ACCESS_KEY": ACCESS, "LABWITNESS_S3_SECRET_KEY": SECRET,
           "LABWITNESS_S3_BUCKET": f"cli-{uuid.uuid4().hex[:10]}", "LABWITNESS_CONTENT_SAMPLE_SECONDS": "5"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    from api.runtime import Runtime
    from api.settings import load_settings

    now = datetime.now(timezone.utc).replace(microsecond=0)
    with Runtime(load_settings(), recording=False) as rt:
        with Session(rt.index.engine) as s:
            s.add(Camera(id="cam-cli", rtsp_url="rtsp://127.0.0.1/x", created_ms=0))
            s.commit()
        put_segment(rt.store, rt.index, job_clips["black"][1], "cam-cli", now - timedelta(seconds=60), SEG_S, 1)
    runner = CliRunner()
    r = runner.invoke(app, ["camera", "approve-reference", "cam-cli"])
    assert r.exit_code == 1, r.output  # no sample yet
    r = runner.invoke(app, ["retention", "content", "--json"])
    assert r.exit_code == 1, r.output  # warning: blackout
    out = json.loads(r.stdout)
    assert out["cameras"]["cam-cli"]["samples"] == 4 and out["cameras"]["cam-cli"]["ongoing"] == ["blackout"]
    r = runner.invoke(app, ["camera", "approve-reference", "cam-cli"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["retention", "content", "--camera", "cam-cli"])
    assert r.exit_code == 1 and "blackout" in r.output, r.output


def test_moved_is_checked_once_a_minute_until_suspected():
    cfg = ContentConfig(sample_seconds=10)
    ref = Reference.from_gray(SCENE.view(0.0), cfg)
    st = DetectorState()
    seen = []
    for t in range(0, 110, 10):
        j = judge(st, t * 1000, SCENE.view(t / 10, dx=45 if t >= 20 else 0), cfg, ref)
        fold(st, [(t * 1000, j.findings)], cfg)
        seen.append((t, "moved" in j.metrics, {f.kind for f in j.findings}))
    assert [t for t, checked, _ in seen if checked] == [0, 60, 70, 80, 90, 100]
    assert [t for t, _, kinds in seen if "moved" in kinds] == [60, 70, 80, 90, 100]


# -- decoding only what may have changed ----------------------------------------------------
GATE = ContentConfig(sample_seconds=10)  # decoded at least every 60 s = every 6th sample
_C = Coded(100_000, 20_000, False)


@pytest.mark.parametrize("name,last,cur,undecoded,expected", [
    ("never decoded", None, _C, 0, "first"),
    ("same bitstream", _C, Coded(102_000, 21_000, False), 0, None),
    ("fifth held", _C, _C, 4, None),
    ("sixth: a minute since the last decode", _C, _C, 5, "interval"),
    ("picture much smaller (black, covered, defocused)", _C, Coded(30_000, 20_000, False), 0, "coded-size"),
    ("picture much larger (recovered)", _C, Coded(130_000, 20_000, False), 0, "coded-size"),
    ("size within 3 %", _C, Coded(97_500, 20_000, False), 0, None),
    ("6 % smaller: a noisy picture defocused", _C, Coded(94_000, 20_000, False), 0, "coded-size"),
    ("seconds between keyframes went quiet (frozen)", _C, Coded(100_000, 9_000, False), 0, "activity"),
    ("seconds between keyframes got busy", _C, Coded(100_000, 41_000, False), 0, "activity"),
    ("activity unknown (a segment's first second) is no change", _C, Coded(100_000, None, False), 0, None),
    ("keyframe repeated bit for bit", _C, Coded(100_000, 20_000, True), 0, "repeat"),
    ("repeat ended", Coded(100_000, 20_000, True), _C, 0, "repeat"),
])
def test_decode_reason(name, last, cur, undecoded, expected):
    assert decode_reason(last, cur, undecoded, GATE) == expected


@pytest.mark.parametrize("jitter,size,expected", [
    (0.0, 96_000, "coded-size"), (0.02, 96_000, None), (0.02, 91_000, "coded-size"), (0.04, 85_000, None),
    (0.1, 79_000, "coded-size"),  # a very noisy camera still flags a fifth of its bits gone
])
def test_decode_reason_allows_for_the_cameras_usual_change(jitter, size, expected):
    assert decode_reason(_C, Coded(size, 20_000, False), 0, GATE, jitter) == expected


def test_decode_every_sample_when_asked():
    cfg = ContentConfig(sample_seconds=10, decode_at_least_every_s=10)
    assert decode_reason(_C, _C, 0, cfg) == "interval"


def test_coded_picture_counts_vcl_only():
    avcc = bytes([1, 0x64, 0, 0x28, 0xFF])  # lengthSizeMinusOne = 3
    sei, idr, filler = b"\x06" + b"\x05" * 30, b"\x65" + b"\x88" * 100, b"\x0c" + b"\xff" * 50
    au = b"".join(len(n).to_bytes(4, "big") + n for n in (sei, idr, filler))
    size, digest = coded_picture("h264", avcc, au)
    assert size == len(idr)
    au2 = b"".join(len(n).to_bytes(4, "big") + n for n in (b"\x06" + b"\x07" * 30, idr))  # another SEI, no filler
    assert coded_picture("h264", avcc, au2) == (size, digest)
    assert coded_picture("h264", avcc, au.replace(b"\x88" * 100, b"\x89" * 100))[1] != digest


#: a 20 s segment, healthy but for seconds 6-14
MID = {
    "mid-clean": (lambda t: SCENE.view(t), set()),
    "mid-black": (lambda t: flat(17, 1.0) if 6 <= t < 14 else SCENE.view(t), {"blackout"}),
    "mid-covered": (lambda t: flat(95, 1.5) if 6 <= t < 14 else SCENE.view(t), {"obscured"}),
    "mid-defocused": (lambda t: SCENE.view(t, blur=2.5) if 6 <= t < 14 else SCENE.view(t), {"obscured"}),
    "mid-frozen": (lambda t: SCENE.view(6.0, mover=True, noise=0) if 6 <= t < 14 else SCENE.view(t), {"frozen"}),
}


def test_gated_decoding_finds_what_decoding_everything_finds(store, index, tmp_path):
    """Same footage, two cameras each: one decodes every sample, the other only what
    the bitstream flags.  Events must be identical, to the millisecond."""
    engine = index.engine
    every = ContentJobConfig(content=ContentConfig(sample_seconds=2.0, decode_at_least_every_s=2.0),
                             initial_lookback_s=7 * 86400)
    gated = ContentJobConfig(content=ContentConfig(sample_seconds=2.0), initial_lookback_s=7 * 86400)
    healthy = encode_fmp4(tmp_path / "healthy.mp4", lambda t: SCENE.view(t), SEG_S)
    clock = FakeClock(T0 + timedelta(seconds=3 * SEG_S))
    with Session(engine) as s:
        for cam in MID:
            for v in ("every", "gated"):
                s.add(Camera(id=f"{cam}-{v}", rtsp_url=f"rtsp://127.0.0.1/{cam}", created_ms=0))
        s.commit()
    for cam, (fn, _) in MID.items():
        seg = encode_fmp4(tmp_path / f"{cam}.mp4", fn, SEG_S)
        for v in ("every", "gated"):
            put_segment(store, index, healthy, f"{cam}-{v}", T0, SEG_S, 1)
            put_segment(store, index, seg, f"{cam}-{v}", T0 + timedelta(seconds=SEG_S), SEG_S, 2)
    decoded = {}
    for cam, (_, kinds) in MID.items():
        a = run_content_check(index, store, clock, every, camera_id=f"{cam}-every").cameras[f"{cam}-every"]
        b = run_content_check(index, store, clock, gated, camera_id=f"{cam}-gated").cameras[f"{cam}-gated"]
        ea = [(e.kind, e.start_ms, e.end_ms, e.ongoing) for e in content_index.events(engine, f"{cam}-every")]
        eb = [(e.kind, e.start_ms, e.end_ms, e.ongoing) for e in content_index.events(engine, f"{cam}-gated")]
        assert {k for k, *_ in ea} == kinds, (cam, ea)
        assert eb == ea, (cam, a, b)
        assert a.samples == b.samples == 2 * SEG_S // 2 and a.decoded == a.samples and a.inherited == 0
        assert b.decoded + b.inherited == b.samples
        decoded[cam] = b.decoded
        st = content_index.load_state(engine, f"{cam}-gated")
        assert st.last_sample_ms == utc_ms(T0) + (2 * SEG_S - 2) * 1000  # the thumbnail is the newest sample
    # healthy footage: the first sample and each segment's last, plus what the bitstream flagged
    # (here: each clip is a new encoder, whose first keyframe is small, and the one after it)
    assert decoded["mid-clean"] <= 6, decoded
    for cam in MID:
        if cam != "mid-clean":
            assert decoded[cam] > decoded["mid-clean"], decoded  # the condition was looked at, not guessed
