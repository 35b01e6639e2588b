"""Issue 15 end to end: every segment starts at a keyframe, and cameras sending B-frames are
recorded with their own timestamps, in order, by both RTSP clients (real GStreamer mounts)."""

from __future__ import annotations

import time
from pathlib import Path

import av
import pytest

from conftest import wait_for
from recording import Background, pipeline
from simulator.rtsp import Mount, RtspSimulator


def _segment_check(path: Path) -> dict:
    """Decode one spooled segment: its packets' timestamps (decode order) and its frames."""
    out = {"dts": [], "pts": [], "keys": [], "frames_pts": [], "errors": 0, "audio": 0,
           "edit_list": b"elst" in path.read_bytes()}
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        out["time_base"] = v.time_base
        for pkt in c.demux():
            if pkt.size == 0:
                continue
            if pkt.stream.type == "audio":
                out["audio"] += 1
                continue
            out["dts"].append(pkt.dts)
            out["pts"].append(pkt.pts)
            out["keys"].append(pkt.is_keyframe)
            try:
                out["frames_pts"] += [f.pts for f in pkt.decode()]
            except av.error.FFmpegError:
                out["errors"] += 1
        try:
            out["frames_pts"] += [f.pts for f in v.codec_context.decode(None)]
        except av.error.FFmpegError:
            out["errors"] += 1
    return out


def _segments(p) -> list[dict]:
    return [_segment_check(c.mp4) for c in p.spool.committed()]


def _assert_in_order(seg: dict, frame: int, whole_gops: bool = True, tolerance: int = 0) -> None:
    """The camera's timestamps, in order: decode times strictly increase, none after its
    presentation time, frames come out of the decoder in presentation order, one frame apart."""
    dts, pts = seg["dts"], seg["pts"]
    assert seg["keys"][0], "the segment starts with a keyframe"
    assert seg["errors"] == 0
    assert len(seg["frames_pts"]) == len(dts), "every frame decodes"
    assert all(b > a for a, b in zip(dts, dts[1:])), f"dts not strictly increasing: {dts[:12]}"
    assert all(p >= d for d, p in zip(dts, pts)), "pts before dts"
    shown = seg["frames_pts"]
    assert all(b > a for a, b in zip(shown, shown[1:])), f"frames out of order: {shown[:12]}"
    if not whole_gops:
        return  # the segment the stop closed ends mid-GOP: its last B-frames had not arrived
    steps = {b - a for a, b in zip(sorted(pts), sorted(pts)[1:])}
    # the camera's frame spacing; FFmpeg's RTSP demuxer moves its timestamps by a few ticks when it
    # re-bases them on the first RTCP sender report (A/V sync), hence 1 %: invented 1-tick steps stay out
    assert all(abs(s - frame) <= tolerance for s in steps), f"pts steps {sorted(steps)} are not the frame duration {frame}"


@pytest.mark.parametrize("client", ["native", "ffmpeg"])
@pytest.mark.parametrize("codec, audio", [("h264", None), ("h264", "aac"), ("hevc", None)])
def test_b_frames_are_recorded_in_order_by_both_clients(tmp_path, client, codec, audio):
    sim = RtspSimulator({"/b": Mount.live(codec=codec, bframes=2, audio=audio)}, workdir=tmp_path / "rtsp")
    sim.start()
    try:
        p = pipeline(tmp_path, None, sim.url("/b"), segment_seconds=1.0, rtsp_client=client)
        with Background(p.worker):
            wait_for(lambda: p.worker.status.segments >= 4, 60, what="four segments")
    finally:
        sim.stop()
    assert p.worker.rtsp_client == client, "no hand-over: B-frames are recorded by the client configured"
    assert p.spool.pending_open_gap() is None or p.worker.status.sessions == 1
    segs = _segments(p)
    assert len(segs) >= 4
    reordered = 0
    for i, seg in enumerate(segs):
        frame = round(1 / (25 * seg["time_base"]))
        _assert_in_order(seg, frame, whole_gops=i < len(segs) - 1, tolerance=0 if client == "native" else frame // 100)
        reordered += seg["pts"] != sorted(seg["pts"])
        if audio:
            assert seg["audio"] > 0
    assert reordered, "the stream had no B-frames: the test would prove nothing"
    # the first picture is shown at the composition offset of the first sample (docs/recording.md):
    # the reorder depth the encoder declares (x264 and x265 with bframes=2: 2) in frames
    for seg in segs:
        frame = round(1 / (25 * seg["time_base"]))
        assert abs(seg["pts"][0] - seg["dts"][0] - 2 * frame) <= frame // 100
        assert not seg["edit_list"], "FFmpeg wrote an edit list: docs/recording.md says when the first picture shows"
        assert seg["frames_pts"][0] == seg["pts"][0], "the keyframe is the first picture shown"
    # cuts and durations go by dts: one session's segments tile time, each as long as its frames
    metas = [c.meta for c in p.spool.committed()]
    assert all(a.end == b.start for a, b in zip(metas, metas[1:]) if a.session_id == b.session_id)
    for m, seg in list(zip(metas, segs))[:-1]:
        assert abs(m.media_duration_ms - 40 * len(seg["dts"])) <= 1


def test_late_joiners_of_a_shared_long_gop_stream_start_at_a_keyframe(tmp_path):
    """Cameras behind one restreamer: 8 native clients and one FFmpeg client join a shared 2.5 s GOP
    at different moments mid-GOP; each drops what comes before its first keyframe.  The stream has
    B-frames too: frames joined mid-GOP reorder across the first keyframe; and G.711 audio, which
    arrives while the video is still waiting for its first keyframe (bench/record found that crash)."""
    sim = RtspSimulator({"/shared": Mount.live(shared=True, key_int=62, bframes=2, audio="pcma")},
                        workdir=tmp_path / "rtsp")
    sim.start()
    workers = []
    try:
        for i in range(9):
            d = tmp_path / f"cam{i}"
            d.mkdir()
            p = pipeline(d, None, sim.url("/shared"), camera_id=f"cam-{i}", segment_seconds=1.0,
                         rtsp_client="ffmpeg" if i == 8 else "native")
            bg = Background(p.worker).__enter__()
            workers.append((p, bg))
            time.sleep(0.37)  # joins spread over a GOP and a half
        for p, _ in workers:
            wait_for(lambda p=p: p.worker.status.segments >= 3, 90, what=f"three segments of {p.worker.camera_id}")
    finally:
        for _, bg in workers:
            bg.__exit__(None, None, None)
        sim.stop()
    late = 0
    for p, _ in workers:
        st = p.worker.status
        assert st.sessions == 1, st.last_error
        assert st.audio_recorded == "aac", (st.audio_codec, st.audio_note)
        assert st.dropped_packets == st.before_keyframe
        late += st.before_keyframe > 0
        assert p.worker.metrics.dropped_packets.labels(p.worker.camera_id, "before_keyframe")._value.get() == st.before_keyframe
        assert p.spool.pending_open_gap() is None and not list(p.spool.finished_gaps()), \
            "no gap is invented for a camera's first session"
        segs = _segments(p)
        for i, seg in enumerate(segs):
            assert seg["keys"][0], f"{p.worker.camera_id}: a segment does not start with a keyframe"
            _assert_in_order(seg, 3600, whole_gops=i < len(segs) - 1, tolerance=36)  # every frame decodes, in order
    assert late >= 6, "most joined mid-GOP and dropped the frames before their first keyframe"


def test_after_an_interruption_the_gap_covers_the_frames_before_the_first_keyframe(tmp_path):
    """A camera's second session joins its stream mid-GOP: the gap (here: the recorder was
    stopped) ends where the first segment starts, at the first keyframe, so the dropped
    frames' time is inside the gap and no segment claims it."""
    from storage.layout import parse_iso

    def ms(t):
        return round(t.timestamp() * 1000)

    sim = RtspSimulator({"/shared": Mount.live(shared=True, key_int=62)}, workdir=tmp_path / "rtsp")
    sim.start()
    keeper_dir = tmp_path / "keeper"
    keeper_dir.mkdir()
    keeper = pipeline(keeper_dir, None, sim.url("/shared"), camera_id="keeper", segment_seconds=1.0)
    try:
        with Background(keeper.worker):  # keeps the shared stream running between the camera's sessions
            first = pipeline(tmp_path, None, sim.url("/shared"), segment_seconds=1.0)
            with Background(first.worker):
                wait_for(lambda: first.worker.status.segments >= 1, 60, what="the first session's segment")
            ended = first.spool.last_end
            # join again about a second after a keyframe (the keeper cuts a segment at each one)
            n = keeper.worker.status.segments
            wait_for(lambda: keeper.worker.status.segments > n, 30, what="a keyframe")
            time.sleep(1.0)
            joined = time.time()
            second = pipeline(tmp_path, None, sim.url("/shared"), segment_seconds=1.0)
            with Background(second.worker):
                wait_for(lambda: second.worker.status.segments >= 1, 60, what="the second session's segment")
    finally:
        sim.stop()
    dropped = second.worker.status.before_keyframe
    assert dropped >= 10, "joined mid-GOP"
    gaps = [g for _, g in second.spool.finished_gaps()]
    assert [g["reason"] for g in gaps] == ["recorder_stopped"]
    seg = next(c.meta for c in second.spool.committed() if c.meta.session_id != first.spool.committed()[0].meta.session_id)
    assert ms(parse_iso(gaps[0]["start"])) == ms(ended)
    assert ms(parse_iso(gaps[0]["end"])) == ms(seg.start), "the gap ends where the first segment starts"
    # the dropped frames (25 fps) lie between the join and that start (the wall clock is anchored
    # on the least-delayed packet, within a read batch of arrival)
    assert seg.start.timestamp() - joined >= dropped * 0.04 - 0.6
    assert _segment_check(next(c.mp4 for c in second.spool.committed() if c.meta == seg))["keys"][0]
