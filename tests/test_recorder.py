"""Recording path end to end: real RTSP (GStreamer) -> PyAV -> spool -> SeaweedFS -> index."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from labwitness.clock import from_ms
from labwitness.errors import StreamError
from recorder.worker import RecorderConfig
from retention.policy import RetentionPolicy

from recording import decode_object, pipeline


@pytest.fixture(params=["ffmpeg", "native"])
def client(request) -> str:
    """Every recording test runs with both RTSP clients (LABWITNESS_RTSP_CLIENT)."""
    return request.param


def _one_session(p) -> None:
    with pytest.raises(StreamError) as e:
        p.worker.run_once()
        raise StreamError("stream_ended", "returned")  # a clean end is a return
    assert e.value.reason == "stream_ended"


def test_every_frame_served_is_stored_once_keyframe_aligned_and_locked(tmp_path, store, rtsp, clips, client):
    clip = clips["h264"]
    p = pipeline(tmp_path, store, rtsp.url("/clip"), segment_seconds=2.0, rtsp_client=client)
    _one_session(p)
    assert p.uploader.drain(60), "spool did not drain"
    assert list((tmp_path / "spool" / "cam-1").glob("*.mp4*")) == []  # released after store + index

    segs = list(p.index.iter_segments("cam-1"))
    # 9 s clip, 1 keyframe/s, 2 s target: cuts at 2,4,6,8 -> 5 segments
    assert len(segs) == 5
    assert sum(s.frames for s in segs) == clip.frames  # indexed count
    decoded = [decode_object(store, s.key, s.version_id) for s in segs]
    assert sum(d["frames"] for d in decoded) == clip.frames  # frames served == frames stored, by decoding
    assert all(d["first_is_key"] for d in decoded)  # keyframe-aligned
    assert all(d["errors"] == 0 for d in decoded)
    assert [s.media_duration_ms for s in segs[:-1]] == [2000] * 4
    for a, b in zip(segs, segs[1:]):  # one session tiles time: no gap, no overlap
        assert a.end_ms == b.start_ms
    for s in segs:
        assert s.sha256 and s.size == len(decoded[segs.index(s)]["bytes"])
        obj, _ = store.stat(s.key, s.version_id)  # lock read back from storage, not from our index
        assert obj.mode == "COMPLIANCE"
        assert obj.retain_until >= RetentionPolicy(6, 0)(from_ms(s.end_ms)).replace(microsecond=0)
        assert s.retain_until_ms == int(obj.retain_until.timestamp() * 1000)
    # wall clock anchored near now: within a few seconds of when the test ran
    assert abs(from_ms(segs[0].start_ms).timestamp() - (time.time() - 9)) < 15


@pytest.mark.parametrize("mount, codec, audio", [("/hevc", "hevc", False), ("/audio", "h264", True)])
def test_h265_and_audio_are_stream_copied(tmp_path, store, rtsp, clips, mount, codec, audio, client):
    clip = clips["hevc" if codec == "hevc" else "audio"]
    p = pipeline(tmp_path, store, rtsp.url(mount), segment_seconds=2.0, rtsp_client=client)
    _one_session(p)
    assert p.uploader.drain(60)
    segs = list(p.index.iter_segments("cam-1"))
    assert {s.codec for s in segs} == {codec}
    decoded = [decode_object(store, s.key, s.version_id) for s in segs]
    assert sum(d["frames"] for d in decoded) == clip.frames
    if audio:
        assert {s.audio_codec for s in segs} == {"aac"}
        assert all(d["audio_packets"] > 0 for d in decoded)


def test_corrupt_h264_mid_stream_is_stored_not_fatal(tmp_path, store, rtsp, clips, client):
    clip = clips["corrupt"]
    p = pipeline(tmp_path, store, rtsp.url("/corrupt"), segment_seconds=2.0, rtsp_client=client)
    _one_session(p)
    assert p.uploader.drain(60)
    segs = list(p.index.iter_segments("cam-1"))
    # stream copy keeps every packet, damaged or not; the damage stays visible to a decoder
    assert sum(s.frames for s in segs) == clip.frames
    assert all(decode_object(store, s.key, s.version_id)["first_is_key"] for s in segs)


def _silent_server():
    """A TCP server that accepts and never answers: a hung camera."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    return srv, stop, conns


def test_bad_inputs_get_clear_reasons(tmp_path, store, rtsp, client):
    from conftest import free_port

    cases = {
        "not_rtsp": "http://127.0.0.1/stream",
        "refused": f"rtsp://127.0.0.1:{free_port()}/x",
        "auth_failed": rtsp.url("/secure", "admin", "wrong"),
        "no_video": rtsp.url("/noaudio"),
    }
    for expected, url in cases.items():
        p = pipeline(tmp_path / expected, store, url, open_timeout_s=3, read_timeout_s=3, rtsp_client=client)
        with pytest.raises(StreamError) as e:
            p.worker.run_once()
        assert e.value.reason == expected, (url, e.value.reason, str(e.value))
        assert "wrong" not in str(e.value)  # passwords never echoed
    # unauthenticated too
    p = pipeline(tmp_path / "noauth", store, rtsp.url("/secure"), open_timeout_s=3, rtsp_client=client)
    with pytest.raises(StreamError) as e:
        p.worker.run_once()
    assert e.value.reason == "auth_failed" and "401" in str(e.value)

    srv, stop, conns = _silent_server()
    try:
        p = pipeline(tmp_path / "hung", store, f"rtsp://127.0.0.1:{srv.getsockname()[1]}/x",
                     open_timeout_s=1.5, read_timeout_s=1.5, rtsp_client=client)
        t0 = time.monotonic()
        with pytest.raises(StreamError) as e:
            p.worker.run_once()
        assert e.value.reason == "timeout"
        assert time.monotonic() - t0 < 6
    finally:
        stop.set()
        srv.close()
        for c in conns:
            c.close()

    # something that is not an RTSP server at all answers on the port
    import http.server

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        p = pipeline(tmp_path / "http", store, f"rtsp://127.0.0.1:{httpd.server_address[1]}/x", open_timeout_s=3, read_timeout_s=3,
                     rtsp_client=client)
        with pytest.raises(StreamError) as e:
            p.worker.run_once()
        assert e.value.reason == "not_rtsp", str(e.value)
    finally:
        httpd.shutdown()
        httpd.server_close()

    p = pipeline(tmp_path / "dns", store, "rtsp://camera.invalid/x", open_timeout_s=3, rtsp_client=client)
    with pytest.raises(StreamError) as e:
        p.worker.run_once()
    assert e.value.reason == "unreachable" and "camera.invalid" in str(e.value)


def test_right_credentials_record(tmp_path, store, rtsp, client):
    p = pipeline(tmp_path, store, rtsp.url("/secure", "admin", "s3cret"), segment_seconds=1.0, rtsp_client=client)
    t = threading.Timer(3.5, p.worker.stop.set)
    t.start()
    p.worker.run_once()
    assert p.worker.status.segments >= 2
    assert p.uploader.drain(30)
    assert "s3cret" not in repr(p.worker.status)


@pytest.mark.parametrize("seconds", [0, -1, float("nan")])
def test_segment_length_must_be_positive(seconds):
    with pytest.raises(ValueError, match="> 0"):
        RecorderConfig(segment_seconds=seconds)


def test_a_short_first_segment_then_full_ones_tiling_the_session(tmp_path, store, rtsp, clips):
    """The demo's first segment (first_segment_seconds): footage is stored a second in, and the
    rest of the session is cut as usual, nothing lost between them."""
    clip = clips["h264"]
    p = pipeline(tmp_path, store, rtsp.url("/clip"), segment_seconds=4.0, first_segment_seconds=1.0)
    _one_session(p)
    assert p.uploader.drain(60), "spool did not drain"
    segs = list(p.index.iter_segments("cam-1"))
    # 9 s clip, 1 keyframe/s: cuts at 1 and 5 -> 1 s, 4 s, and the rest
    assert [s.media_duration_ms for s in segs[:2]] == [1000, 4000] and len(segs) == 3
    assert sum(s.frames for s in segs) == clip.frames
    for a, b in zip(segs, segs[1:]):
        assert a.end_ms == b.start_ms
    assert all(decode_object(store, s.key, s.version_id)["first_is_key"] for s in segs)


@pytest.mark.parametrize("first", [-1, 4.5])
def test_first_segment_length_is_within_the_segment_length(first):
    with pytest.raises(ValueError, match="first segment"):
        RecorderConfig(segment_seconds=4.0, first_segment_seconds=first)


def test_native_client_hands_over_to_ffmpeg_where_it_cannot_go(tmp_path, store, rtsp):
    """The native client is the default; a camera it cannot record is recorded with FFmpeg's."""
    import http.server

    p = pipeline(tmp_path / "tls", store, "rtsps://127.0.0.1:1/x", rtsp_client="native")
    assert p.worker.rtsp_client == "native"  # TLS too (tests/test_rtsp_transport.py)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        p = pipeline(tmp_path / "odd", store, f"rtsp://127.0.0.1:{httpd.server_address[1]}/x", open_timeout_s=3,
                     read_timeout_s=3, rtsp_client="native")
        with pytest.raises(StreamError):
            p.worker.run_once()
        assert p.worker.rtsp_client == "ffmpeg"  # an answer it did not understand: FFmpeg's client tries next
    finally:
        httpd.shutdown()
        httpd.server_close()
    # the camera's own faults are not the client's: no hand-over
    from conftest import free_port

    p = pipeline(tmp_path / "refused", store, f"rtsp://127.0.0.1:{free_port()}/x", open_timeout_s=3, rtsp_client="native")
    with pytest.raises(StreamError) as e:
        p.worker.run_once()
    assert e.value.reason == "refused" and p.worker.rtsp_client == "native"
    p = pipeline(tmp_path / "ok", store, rtsp.url("/clip"), segment_seconds=2.0)
    assert p.worker.rtsp_client == "native"  # the default
