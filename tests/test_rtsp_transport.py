"""The native RTSP client's transports and camera quirks, against real servers.

Keep-alive timing against a proxy that cuts sessions early (tests/rtsp_quirks.py),
RTP over UDP from a GStreamer mount that refuses TCP, rtsps:// with a pinned
certificate, 3xx redirects; and the pure rules behind them (keep-alive period,
redirect targets, periodic-reset detection, RTP reordering, receiver reports).
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import wait_for
from labwitness.errors import StreamError
from recorder.rtp_udp import UdpTrack, receiver_report, reorder
from recorder.rtsp_conn import keepalive_interval
from recorder.rtsp_native import NativeRtspInput
from recorder.rtsp_redirect import redirect_target
from recorder.session_resets import ResetDetector
from rtsp_quirks import ImpatientProxy, Redirector
from simulator.rtsp import Mount, RtspSimulator


# -- pure rules ---------------------------------------------------------------------------
@pytest.mark.parametrize("timeout, expected", [(60, 20.0), (6, 2.0), (30, 10.0), (90, 20.0), (1, 0.5)])
def test_keepalive_goes_at_a_third_of_the_timeout_and_at_least_every_20_s(timeout, expected):
    assert keepalive_interval(timeout) == pytest.approx(expected)


@pytest.mark.parametrize("current, location, url, kept, why", [
    # same host and port: the credentials follow (relative, absolute path, absolute URL)
    ("rtsp://u:p@cam:554/a/b", "c", "rtsp://u:p@cam:554/a/c", True, ""),
    ("rtsp://u:p@cam:554/a/b", "/x?y=1", "rtsp://u:p@cam:554/x?y=1", True, ""),
    ("rtsp://u:p@cam/a", "rtsp://CAM:554/z", "rtsp://u:p@CAM:554/z", True, ""),
    ("rtsp://u:p%40@cam/a", "/z", "rtsp://u:p%40@cam/z", True, ""),
    # another host or port: followed without them, and the reason is kept
    ("rtsp://u:p@cam/a", "rtsp://other/z", "rtsp://other/z", False, "another host"),
    ("rtsp://u:p@cam/a", "rtsp://cam:8554/z", "rtsp://cam:8554/z", False, "another host"),
    # user info in Location is ignored: a redirect does not pick our credentials
    ("rtsp://cam/a", "rtsp://evil:x@cam/z", "rtsp://cam/z", False, ""),
    ("rtsp://u:p@cam/a", "rtsp://evil:x@other/z", "rtsp://other/z", False, "another host"),
    # TLS: never down to plain rtsp with the credentials
    ("rtsps://u:p@cam:8322/a", "rtsp://cam:8322/z", "rtsp://cam:8322/z", False, "rtsps"),
    ("rtsps://u:p@cam:8322/a", "/z", "rtsps://u:p@cam:8322/z", True, ""),
])
def test_redirect_targets_and_where_credentials_may_go(current, location, url, kept, why):
    hop = redirect_target(current, location)
    assert (hop.url, hop.credentials_kept) == (url, kept)
    assert why in hop.why_not and (why or not hop.why_not)
    assert "p@" not in hop.why_not and ":p" not in hop.why_not


@pytest.mark.parametrize("location", ["http://cam/a", "file:///etc/passwd", "rtsp://256.1.1.1/a", "rtsp:///nohost"])
def test_redirect_to_what_is_not_a_camera_url_is_refused(location):
    with pytest.raises(StreamError) as e:
        redirect_target("rtsp://u:secret@cam/a", location)
    assert "secret" not in str(e.value)


@pytest.mark.parametrize("sessions, found", [
    ([(30.1, "stream_ended"), (30.0, "stream_ended"), (29.8, "stream_ended")], 30.0),  # the 30 s camera
    ([(30.1, "stream_ended"), (30.0, "stream_ended")], None),  # two are not a pattern
    ([(30.1, "stream_ended"), (30.0, "timeout"), (29.8, "stream_ended"), (30.2, "stream_ended")], None),
    ([(30, "stream_ended"), (45, "stream_ended"), (60, "stream_ended")], None),  # no common length
    ([(1, "stream_ended")] * 5, None),  # failing to start is not a period
    ([(900, "stream_ended"), (120, "stream_ended"), (121, "stream_ended"), (119.5, "stream_ended")], 120),
    ([(600, "stream_ended"), (610, "stream_ended"), (590, "stream_ended")], 600),  # 5 % of a long period
])
def test_periodic_session_resets_are_told_apart_from_chance(sessions, found):
    d = ResetDetector()
    results = [d.session_ended(s, r) for s, r in sessions]
    hits = [r for r in results if r is not None]
    if found is None:
        assert hits == []
    else:
        assert len(hits) == 1 and hits[0].period_s == pytest.approx(found, abs=0.5)
        msg = hits[0].message("ffmpeg")
        assert msg.index("摄像机") < msg.index("the camera") and f"{found:.0f} s" in msg
        # reported once: the same period again says nothing new
        assert [d.session_ended(s, r) for s, r in sessions] == [None] * len(sessions)


def test_reorder_puts_a_batch_back_in_sequence_order_across_the_wrap():
    batch = [(65534, 0, 1), (0, 1, 2), (65535, 2, 3), (2, 3, 4), (1, 4, 5)]
    assert [s for s, _, _ in reorder(batch)] == [65534, 65535, 0, 1, 2]


def test_receiver_report_counts_loss_and_carries_a_cname():
    a, b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        t = UdpTrack(0, a, b)
        t.ssrc = 0xCAFE
        for seq in [65530, 65531, 65533, 65534, 0, 1, 3]:  # 2 lost of 10, across the wrap
            t.saw(seq)
        rr = receiver_report(0x1234, t, time.monotonic())
    finally:
        a.close()
        b.close()
    v, pt, length, me, src = struct.unpack("!BBHII", rr[:12])
    assert (v, pt, length, me, src) == (0x81, 201, 7, 0x1234, 0xCAFE)
    lost_word, ext_max = struct.unpack("!II", rr[12:20])
    assert lost_word & 0xFFFFFF == 3 and ext_max == 65536 + 3  # 65532, 65535 and 2 missing
    assert rr[32 + 1] == 202 and b"labwitness" in rr[32:] and len(rr) % 4 == 0


# -- keep-alive against a camera that cuts sessions at half its timeout ---------------------
@pytest.fixture
def live(tmp_path):
    sim = RtspSimulator({"/live": Mount.live(), "/udp": Mount.live().with_protocols("udp"),
                         "/udp-aac": Mount.live(audio="aac").with_protocols("udp"),
                         "/secure": Mount(Mount.live().launch, auth=("admin", "s3cret"))},
                        workdir=tmp_path / "rtsp")
    sim.start()
    yield sim
    sim.stop()


def _raw_session(port: int, path: str) -> socket.socket:
    """OPTIONS..PLAY by hand and nothing after: a client that never keeps the session alive."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    url = f"rtsp://127.0.0.1:{port}{path}"
    buf = bytearray()

    def ask(req: str) -> str:
        s.sendall(req.encode())
        while b"\r\n\r\n" not in buf:
            buf.extend(s.recv(65536))
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        import re

        n = int(m.group(1)) if (m := re.search(rb"(?i)content-length:\s*(\d+)", head)) else 0
        while len(rest) < n:
            rest += s.recv(65536)
        buf[:] = rest[n:]
        return head.decode()

    ask(f"OPTIONS {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")
    ask(f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n\r\n")
    setup = ask(f"SETUP {url}/stream=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n")
    assert "timeout=6" in setup  # the proxy's advertised timeout
    sid = setup.split("Session:")[1].split(";")[0].strip()
    s.sendall(f"PLAY {url} RTSP/1.0\r\nCSeq: 4\r\nSession: {sid}\r\n\r\n".encode())
    return s


def test_a_camera_cutting_at_half_its_timeout_does_cut_a_client_without_keep_alives(live):
    with ImpatientProxy(live.port) as proxy:
        s = _raw_session(proxy.port, "/live")
        t0 = time.monotonic()
        try:
            while s.recv(65536):
                assert time.monotonic() - t0 < 10, "the proxy never cut the session"
        except (ConnectionResetError, TimeoutError):
            pass
        finally:
            s.close()
        cut_after = time.monotonic() - t0
    assert proxy.cuts == 1 and 2.5 < cut_after < 6


def test_native_keep_alives_hold_a_session_the_camera_cuts_at_half_its_timeout(live):
    with ImpatientProxy(live.port) as proxy:
        src = NativeRtspInput.open(proxy.url("/live"), 10, 10)
        frames, t0, last = 0, time.monotonic(), None
        try:
            for _, pkt, dts, _ in src.packets():
                frames += 1
                if last is not None:
                    assert dts - last < 90_000, "a gap in the stream"
                last = dts
                if time.monotonic() - t0 > 15:
                    break
        finally:
            src.close()
    assert src.conn.session_timeout_s == 6 and src.conn.keepalive_period() == pytest.approx(2.0)
    assert proxy.cuts == 0 and proxy.requests_while_playing >= 5
    assert frames >= 15 * 25 * 0.8


def test_a_camera_resetting_sessions_on_a_period_is_named_in_its_status(live, tmp_path, store):
    from recording import Background, pipeline

    with ImpatientProxy(live.port, reset_every_s=6.0) as proxy:
        p = pipeline(tmp_path, store, proxy.url("/live"), segment_seconds=1.0, rtsp_client="native")
        with Background(p.worker):
            wait_for(lambda: p.worker.status.notice, 90, what="the periodic reset notice")
    notice = p.worker.status.notice
    import re

    # (a session is timed from its opening to the worker seeing its end: a little over the 6 s)
    assert int(re.search(r"every (\d+) s", notice).group(1)) in (6, 7) and "秒重置" in notice and proxy.cuts >= 3
    assert p.worker.needs.resets.found.period_s == pytest.approx(6.3, abs=0.7)
    assert p.worker.needs.keepalive_max_s == pytest.approx(p.worker.needs.resets.found.period_s / 4)  # what helps (native)


# -- RTP over UDP ---------------------------------------------------------------------------
def test_a_camera_refusing_tcp_is_recorded_over_udp_by_the_native_client(live, tmp_path, store):
    from recording import Background, decode_object, pipeline

    p = pipeline(tmp_path, store, live.url("/udp"), segment_seconds=1.0, rtsp_client="native")
    with Background(p.worker):
        wait_for(lambda: p.worker.status.segments >= 4, 40, what="segments over UDP")
    assert p.worker.rtsp_client == "native" and p.worker.needs.transport == "udp"  # no fallback to FFmpeg
    assert p.uploader.drain(60)
    segs = list(p.index.iter_segments("cam-1"))
    assert len(segs) >= 4
    seg = decode_object(store, segs[1].key, segs[1].version_id)
    assert seg["frames"] >= 20 and seg["errors"] == 0 and seg["first_is_key"]
    assert p.worker.status.dropped_packets == 0


def test_udp_carries_audio_too_and_a_remembered_choice_skips_asking_for_tcp(live):
    src = NativeRtspInput.open(live.url("/udp-aac"), 5, 5)
    try:
        got = {True: 0, False: 0}
        for is_audio, _, _, _ in src.packets():
            got[is_audio] += 1
            if got[True] > 20 and got[False] > 20:
                break
        assert src.transport == "udp" and len(src.conn.udp.tracks) == 2 and src.audio_codec == "aac"
    finally:
        src.close()
    # the worker passes transport="udp" for a camera that refused TCP once: no TCP SETUP at all
    src = NativeRtspInput.open(live.url("/live"), 5, 5, transport="udp")
    try:
        assert src.transport == "udp" and sum(1 for _, _ in zip(range(10), src.packets())) == 10
    finally:
        src.close()


def test_a_udp_camera_that_dies_ends_the_session_with_a_reason(tmp_path):
    sim = RtspSimulator({"/udp": Mount.live().with_protocols("udp")}, workdir=tmp_path / "rtsp")
    sim.start()
    try:
        src = NativeRtspInput.open(sim.url("/udp"), 5, 3)
        it = src.packets()
        for _ in range(5):
            next(it)
        sim.kill()
        t0 = time.monotonic()
        with pytest.raises(StreamError) as e:
            for _ in it:
                pass
        assert e.value.reason in ("stream_ended", "timeout") and time.monotonic() - t0 < 6
        src.close()
    finally:
        sim.stop()


def test_udp_sockets_accept_the_camera_only(live):
    src = NativeRtspInput.open(live.url("/udp"), 5, 5)
    try:
        track = src.conn.udp.tracks[0]
        rtp_port = track.ports[0]
        server = track.rtp.getpeername()
        # an injector on the host: a datagram to our RTP port from another port is dropped by the kernel
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as evil:
            for _ in range(50):
                evil.sendto(struct.pack("!BBHII", 0x80, 96, 1, 0, 0xBAD) + b"\x65" * 100, ("127.0.0.1", rtp_port))
        n = 0
        for _, pkt, _, _ in src.packets():
            n += 1
            if n > 30:
                break
        assert track.ssrc != 0xBAD and src._vdep.lost == 0
        assert server[1] != 0 and track.rtp.getsockname()[0] == "127.0.0.1"
    finally:
        src.close()


# -- rtsps:// ---------------------------------------------------------------------------------
def _cert(path: Path, cn: str) -> Path:
    key, crt = path.with_suffix(".key"), path.with_suffix(".crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", f"/CN={cn}"],
                   check=True, capture_output=True)
    path.write_bytes(crt.read_bytes() + key.read_bytes())
    return path


def test_rtsps_is_recorded_natively_and_a_changed_certificate_is_refused(tmp_path, store):
    from recording import Background, pipeline

    first, second = _cert(tmp_path / "a.pem", "cam"), _cert(tmp_path / "b.pem", "cam")
    sim = RtspSimulator({"/live": Mount.live()}, workdir=tmp_path / "rtsp", tls_pem=first)
    sim.start()
    try:
        url = sim.url("/live", "admin", "pw")
        assert url.startswith("rtsps://")
        p = pipeline(tmp_path, store, url, segment_seconds=1.0, rtsp_client="native", backoff_cap_s=1)
        with Background(p.worker):
            wait_for(lambda: p.worker.status.segments >= 2, 30, what="segments over rtsps")
            assert p.worker.rtsp_client == "native"
            pins = p.spool.tls_pins()
            assert list(pins) == [f"127.0.0.1:{sim.port}"]
            # the camera now shows another certificate (replaced, or a machine in its place)
            sim.tls_pem = second
            sim.restart()
            # (the open gap keeps its first cause, the camera's restart; the status says why it stays open)
            wait_for(lambda: "TLS" in p.worker.status.last_error and p.spool.pending_open_gap() is not None, 30,
                     what="the refusal of the new certificate")
            assert "retrust-tls" in p.worker.status.last_error
            before = p.worker.status.segments
            time.sleep(3)
            assert p.worker.status.segments == before and p.spool.tls_pins() == pins  # nothing recorded, pin kept
            assert p.worker.rtsp_client == "native"  # and no fallback to a client that checks nothing
            with pytest.raises(StreamError) as e:
                NativeRtspInput.open(url, 5, 5, tls_pins=dict(pins))
            assert e.value.reason == "tls_untrusted" and pins[f"127.0.0.1:{sim.port}"] in str(e.value)
            # an administrator re-trusts the new certificate: recording resumes
            assert p.spool.forget_tls_pins()
            wait_for(lambda: p.worker.status.segments >= before + 2, 30, what="recording after re-trust")
        assert p.spool.tls_pins() != pins
    finally:
        sim.stop()


def test_an_administrator_re_trusts_a_camera_from_the_command_line(tmp_path, seaweed):
    from clitools import env_for, lw
    from recorder.spool import CameraSpool, SpoolQuota

    env = env_for(tmp_path, seaweed)
    assert lw(["camera", "add", "--id", "gate", "--url", "rtsps://127.0.0.1:8322/main"], env).returncode == 0
    spool = CameraSpool(tmp_path / "data" / "spool", "gate", SpoolQuota(tmp_path / "data" / "spool", None, 0))
    spool.set_tls_pin("127.0.0.1:8322", "AB:CD")
    r = lw(["camera", "retrust-tls", "gate"], env)
    assert r.returncode == 0 and "AB:CD" in r.stdout + r.stderr, r.stderr  # (messages go to stderr)
    assert spool.tls_pins() == {}
    assert lw(["camera", "retrust-tls", "nobody"], env).returncode != 0


def test_rtsps_to_a_server_without_tls_fails_clearly_and_stays_native(live, tmp_path, store):
    from recording import pipeline

    url = live.url("/live").replace("rtsp://", "rtsps://admin:pw@")
    with pytest.raises(StreamError) as e:
        NativeRtspInput.open(url, 3, 3)
    assert e.value.reason == "stream_error" and "TLS" in str(e.value) and "pw" not in str(e.value)
    p = pipeline(tmp_path, store, url, rtsp_client="native", open_timeout_s=3)
    with pytest.raises(StreamError):
        p.worker.run_once()
    assert p.worker.rtsp_client == "native"  # never handed to FFmpeg's client, which would not check the certificate


# -- redirects ----------------------------------------------------------------------------------
def test_redirects_are_followed_to_the_camera(live):
    target = live.url("/live")
    with Redirector({"/start": ("auth", (302, "/next")), "/next": ("auth", (301, target))}) as r:
        src = NativeRtspInput.open(r.url("/start", "admin:hunter2"), 5, 5)
        try:
            n = sum(1 for _, _ in zip(range(10), src.packets()))
        finally:
            src.close()
        assert n == 10 and src.redirected_to == target
        # the relative hop stayed on the same host:port: the credentials were answered there
        assert sum("Authorization: Basic" in q for q in r.requests) >= 2


def test_a_redirect_to_another_host_does_not_take_the_credentials(live):
    with Redirector({"/cam": (302, live.url("/secure"))}) as r:
        with pytest.raises(StreamError) as e:
            NativeRtspInput.open(r.url("/cam", "admin:s3cret"), 5, 5)
    assert e.value.reason == "auth_failed" and "credentials were not sent" in str(e.value)
    assert "s3cret" not in str(e.value)


def test_redirect_loops_end_after_three_hops():
    with Redirector({"/a": (302, "/b"), "/b": (307, "/a")}) as r:
        with pytest.raises(StreamError) as e:
            NativeRtspInput.open(r.url("/a"), 5, 5)
        assert "redirects" in str(e.value) and len(r.requests) == 4
