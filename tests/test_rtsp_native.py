"""The native RTSP client's pure parts: RTP depacketizing, SPS sizes, SDP, Digest.

Constructed packets pin the RFC cases (FU-A across packets, STAP-A, H.265 FU
and AP, sequence gaps, timestamp wrap, AAC-hbr); packets captured from the
GStreamer RTSP server check the same code on what a real payloader sends.
End-to-end recording with the native client runs in tests/test_recorder.py.
"""

from __future__ import annotations

import base64
import random
import socket
import struct

import av
import pytest

from labwitness.errors import StreamError
from labwitness.media.aac import aac_config
from labwitness.media.h26x import h264_dimensions, h265_dimensions
from recorder.rtcp import parse_rtcp
from recorder.rtp_audio import AacDepacketizer
from recorder.rtp_depacketize import START, VideoDepacketizer
from recorder.rtsp_auth import Auth
from recorder.rtsp_native import NativeRtspInput
from recorder.rtsp_session import aac_track, rtp_info
from recorder.sdp import SdpMedia, control_url, parse_sdp
from simulator.clip import make_clip


def rtp(payload: bytes, seq: int, ts: int, marker: bool = False, pt: int = 96) -> memoryview:
    return memoryview(struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, 1234)
                      + payload)


def fu_a(nal: bytes, size: int) -> list[bytes]:
    """Split one H.264 NAL unit into FU-A payloads of at most ``size`` bytes of NAL data."""
    h, body = nal[0], nal[1:]
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    out = []
    for i, part in enumerate(parts):
        fu = (h & 0x1F) | (0x80 if i == 0 else 0) | (0x40 if i == len(parts) - 1 else 0)
        out.append(bytes(((h & 0xE0) | 28, fu)) + part)
    return out


SPS = bytes.fromhex("6742c01eda0280bfe584000003000400000300ca3c58ba80")  # 640x360, from the test clips' SDP
PPS = bytes.fromhex("68ce0fc8")
IDR = bytes([0x65]) + bytes(range(256)) * 20
P = bytes([0x41]) + b"\x9a" * 300


def test_fu_a_reassembles_across_packets_and_keyframes_get_parameter_sets():
    d = VideoDepacketizer("h264", [SPS, PPS])
    frags = fu_a(IDR, 1400)
    assert len(frags) == 4
    for i, f in enumerate(frags):
        d.push(rtp(f, 100 + i, 9000, marker=i == len(frags) - 1))
    d.push(rtp(P, 104, 12600, marker=True))
    (key, inter) = d.out
    assert key.key and key.data == START + SPS + START + PPS + START + IDR  # in-band params before the IDR
    assert not inter.key and inter.data == START + P
    assert inter.ts - key.ts == 3600 and d.lost == 0 and not key.damaged


def test_stap_a_keeps_its_own_parameter_sets_once():
    d = VideoDepacketizer("h264")
    assert not d.ready
    stap = bytes([24]) + b"".join(struct.pack("!H", len(n)) + n for n in (SPS, PPS, P[:50]))
    d.push(rtp(stap, 1, 0))
    for i, f in enumerate(fu_a(IDR, 1000)):
        d.push(rtp(f, 2 + i, 0, marker=i == 5))
    (au,) = d.out
    assert d.ready and au.key
    assert au.data == START + SPS + START + PPS + START + P[:50] + START + IDR
    assert d.annexb_params() == START + SPS + START + PPS


def test_sequence_gap_is_counted_and_the_broken_fragment_dropped():
    d = VideoDepacketizer("h264", [SPS, PPS])
    frags = fu_a(IDR, 1400)
    sei = bytes([0x06, 0x05, 0x01, 0xAA, 0x80])
    seq = 65533  # and the sequence number wraps on the way
    d.push(rtp(sei, seq, 0))
    for i, f in enumerate(frags):
        if i != 2:  # the third fragment never arrives
            d.push(rtp(f, seq + 1 + i, 0, marker=i == len(frags) - 1))
    d.push(rtp(P, seq + 5, 3600, marker=True))
    d.push(rtp(P, seq + 6, 7200, marker=True))
    assert d.lost == 1
    broken, after, after2 = d.out
    assert broken.damaged and broken.data == START + sei  # the IDR is not reassembled into garbage ...
    assert not broken.key  # ... and what is left of it does not pass for a keyframe
    assert not after.damaged and after.data == START + P and after2.ts == 7200
    # a frame that was one fragmented NAL and lost a piece is gone altogether, and counted
    d.push(rtp(fu_a(P, 100)[0], seq + 7, 10800))
    d.push(rtp(fu_a(P, 100)[-1], seq + 9, 10800, marker=True))
    d.push(rtp(P, seq + 10, 14400, marker=True))
    assert d.lost == 2 and [a.ts for a in d.out[3:]] == [14400] and not d.out[3].damaged


def test_missing_marker_ends_the_access_unit_at_the_next_timestamp_and_timestamps_unwrap():
    d = VideoDepacketizer("h264", [SPS, PPS])
    ts = 2**32 - 3600
    d.push(rtp(P, 1, ts))  # marker lost (e.g. camera quirk)
    d.push(rtp(P, 2, ts + 3600, marker=True))
    d.push(rtp(P, 3, ts + 7200, marker=True))
    assert [a.ts for a in d.out] == [ts, ts + 3600, ts + 7200]  # monotone across the 32-bit wrap


def test_h265_fu_and_aggregation_packets():
    vps, sps, pps = (bytes([t << 1, 1]) + b"\x0c\x01" * 8 for t in (32, 33, 34))
    idr = bytes([19 << 1, 1]) + bytes(range(200)) * 10  # IDR_W_RADL
    d = VideoDepacketizer("hevc")
    ap = bytes([48 << 1, 1]) + b"".join(struct.pack("!H", len(n)) + n for n in (vps, sps, pps))
    d.push(rtp(ap, 10, 0))
    body = idr[2:]
    chunks = [body[i:i + 900] for i in range(0, len(body), 900)]
    for i, c in enumerate(chunks):
        fu = 19 | (0x80 if i == 0 else 0) | (0x40 if i == len(chunks) - 1 else 0)
        d.push(rtp(bytes([49 << 1, 1, fu]) + c, 11 + i, 0, marker=i == len(chunks) - 1))
    trail = bytes([1 << 1, 1]) + b"\x55" * 30  # TRAIL_R
    d.push(rtp(trail, 11 + len(chunks), 3600, marker=True))
    key, p = d.out
    assert key.key and key.data == START + vps + START + sps + START + pps + START + idr
    assert d.ready and not p.key and p.data == START + trail


def test_fragments_walked_in_one_batch_as_by_the_general_path():
    """A NAL in many fragments, walked as one receive batch (the inline path for the middle
    fragments), gives what the general path gives packet by packet, for H.264 and H.265,
    also with a middle fragment lost or the stream's SSRC changing mid-NAL."""
    idr264 = IDR
    idr265 = bytes([19 << 1, 1]) + bytes(range(200)) * 10
    streams = {
        "h264": [bytes(r) for r in (rtp(f, 7 + i, 900, marker=i == 14)
                                    for i, f in enumerate(fu_a(idr264, 350)))],
        "hevc": [],
    }
    body = idr265[2:]
    chunks = [body[i:i + 150] for i in range(0, len(body), 150)]
    for i, c in enumerate(chunks):
        fu = 19 | (0x80 if i == 0 else 0) | (0x40 if i == len(chunks) - 1 else 0)
        streams["hevc"].append(bytes(rtp(bytes([49 << 1, 1, fu]) + c, 40 + i, 0, marker=i == len(chunks) - 1)))
    for codec, packets in streams.items():
        assert len(packets) >= 10
        other_ssrc = bytearray(packets[5])
        other_ssrc[11] ^= 1
        for variant in (packets, packets[:4] + packets[5:], packets[:5] + [bytes(other_ssrc)] + packets[6:]):
            variant = variant + [bytes(rtp(P if codec == "h264" else bytes([2, 1]) + b"\x55" * 30,
                                           (struct.unpack("!H", variant[-1][2:4])[0] + 1), 3600, marker=True))]
            general = VideoDepacketizer(codec)
            for q in variant:
                general._push(memoryview(q))  # noqa: SLF001 -- the reference
            general.flush()
            walked = _walk_in_batches(VideoDepacketizer(codec), variant, 1 << 20)
            assert walked.out == general.out and walked.lost == general.lost, (codec, len(variant))
        assert general.out[0].data.endswith(body if codec == "hevc" else idr264[1:])


def test_an_empty_frame_at_the_end_of_the_receive_buffer_mid_nal_is_malformed_not_a_crash():
    frags = fu_a(IDR, 350)
    packets = [bytes(rtp(f, 1 + i, 0)) for i, f in enumerate(frags[:3])] + [b""]
    frames = _frames(packets)  # no room after
    d = VideoDepacketizer("h264")
    assert d.walk(frames, memoryview(frames), 0, len(frames), 0) == len(frames)
    assert d.malformed == 1 and d.lost == 0


def test_aac_hbr_several_frames_per_packet():
    frames = [b"\x21" * 100, b"\x22" * 120, b"\x23" * 90]
    headers = b"".join(struct.pack("!H", len(f) << 3) for f in frames)  # 13-bit size, 3-bit index
    d = AacDepacketizer()
    d.push(rtp(struct.pack("!H", 16 * len(frames)) + headers + b"".join(frames), 5, 8000, marker=True, pt=97))
    assert [a.data for a in d.out] == frames
    assert [a.ts for a in d.out] == [8000, 9024, 10048]
    assert aac_config("158856e500")[1:] == (8000, 1)


@pytest.mark.parametrize("raw", [
    bytes([0x9F, 0x60]) + struct.pack("!HI", 1, 0) + b"\x00" * 6,  # 15 CSRCs and an extension, 14 bytes in all
    bytes([0x90, 0xE0]) + struct.pack("!HI", 1, 0) + b"\x00" * 4 + b"\x00\x00\xff\xff",  # extension longer than the packet
    bytes([0xA0, 0xE0]) + struct.pack("!HI", 1, 0) + b"\x00" * 3 + b"\xff",  # padding longer than the packet
])
def test_truncated_rtp_headers_are_counted_not_fatal(raw):
    for d in (VideoDepacketizer("h264"), AacDepacketizer()):
        d.push(memoryview(raw))
        assert d.malformed == 1 and d.out == [], type(d).__name__


def test_rtcp_sender_report_and_bye():
    sr = struct.pack("!BBHIIIIII", 0x80, 200, 6, 42, 3_900_000_000, 2**31, 12345, 10, 1000)
    bye = struct.pack("!BBHI", 0x81, 203, 1, 42)
    reports, saw_bye = parse_rtcp(memoryview(sr + bye))
    assert saw_bye and reports[0].rtp == 12345 and reports[0].ntp == pytest.approx(3_900_000_000.5)


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_picture_size_from_the_sps_including_cropping(tmp_path, codec):
    clip = make_clip(tmp_path / "c.mp4", seconds=0.2, width=1920, height=1080, codec=codec)  # 1080 = 1088 cropped
    with av.open(str(clip.path)) as c:
        extradata = bytes(c.streams.video[0].codec_context.extradata)
    sps = _sps_from_extradata(extradata, codec)
    assert (h264_dimensions if codec == "h264" else h265_dimensions)(sps) == (1920, 1080)
    assert h264_dimensions(SPS) == (640, 360)


def _sps_from_extradata(x: bytes, codec: str) -> bytes:
    if codec == "h264":  # avcC: 5 bytes, count, then 16-bit length + SPS
        n = struct.unpack_from("!H", x, 6)[0]
        return x[8:8 + n]
    i, arrays = 23, x[22]  # hvcC: arrays of (type, count, (length, nal)...)
    for _ in range(arrays):
        t, count = x[i] & 0x3F, struct.unpack_from("!H", x, i + 1)[0]
        i += 3
        for _ in range(count):
            n = struct.unpack_from("!H", x, i)[0]
            if t == 33:
                return x[i + 2:i + 2 + n]
            i += 2 + n
    raise AssertionError("no SPS")


def test_sdp_tracks_and_control_urls():
    sdp = ("v=0\r\ns=x\r\na=control:*\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=framerate:25\r\n"
           "a=fmtp:96 packetization-mode=1;sprop-parameter-sets=" + base64.b64encode(SPS).decode() + ","
           + base64.b64encode(PPS).decode() + "\r\na=control:stream=0\r\n"
           "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/8000/1\r\n"
           "a=fmtp:97 mode=AAC-hbr;config=1588;SizeLength=13\r\na=control:rtsp://cam/abs/track2\r\n"
           "m=audio 0 RTP/AVP 8\r\n")
    session, media = parse_sdp(sdp)
    assert session == "*"
    v, a, g711 = media
    assert (v.kind, v.encoding, v.clock_rate, v.framerate, v.control) == ("video", "H264", 90000, 25.0, "stream=0")
    assert v.fmtp["packetization-mode"] == "1" and a.fmtp["sizelength"] == "13"
    assert (a.encoding, a.clock_rate, a.channels) == ("MPEG4-GENERIC", 8000, 1)
    assert g711.encoding == "PCMA"
    assert control_url("rtsp://h:554/clip/", "stream=0") == "rtsp://h:554/clip/stream=0"
    assert control_url("rtsp://h:554/clip", "stream=0") == "rtsp://h:554/clip/stream=0"  # no trailing slash
    assert control_url("rtsp://h:554/clip/", "rtsp://cam/abs/track2") == "rtsp://cam/abs/track2"
    assert control_url("rtsp://h:554/clip/", "*") == "rtsp://h:554/clip/"


@pytest.mark.parametrize("value, expected", [
    # whole URLs, as the GStreamer server sends them
    ("url=rtsp://h:554/clip/stream=0;seq=1;rtptime=900,url=rtsp://h:554/clip/stream=1;seq=5;rtptime=16000",
     {0: 900, 2: 16000}),
    ("url=/clip/stream=0;rtptime=7", {0: 7}),  # a path: the control URL ends with it
    ("url=stream=1;rtptime=8", {2: 8}),  # only the last component
    ("url=rtsp://h:554/clip/stream=0;seq=1", {}),  # no rtptime: nothing to align with
    ("", {}),
])
def test_rtp_info_is_matched_to_the_tracks_control_urls(value, expected):
    urls = {"rtsp://h:554/clip/stream=0": 0, "rtsp://h:554/clip/stream=1": 2}
    assert rtp_info(value, urls) == expected


def test_only_aac_hbr_or_lbr_audio_with_a_size_length_is_recorded():
    def audio(mode: str = "AAC-hbr", config: str = "1588", **fmtp: str) -> SdpMedia:
        return SdpMedia("audio", 97, "MPEG4-GENERIC", 8000, 1,
                        {"mode": mode, "config": config, "sizelength": "13", **fmtp})

    a = aac_track(audio(indexlength="3", indexdeltalength="3"))
    assert a is not None and (a.rate, a.channels, a.size_length, a.index_length, a.index_delta_length) == (8000, 1, 13, 3, 3)
    assert aac_track(audio("AAC-lbr", sizelength="6", indexlength="2")).size_length == 6
    assert aac_track(audio("CELP-cbr")) is None  # other MPEG-4 audio modes
    assert aac_track(audio(config="")) is None  # no AudioSpecificConfig
    assert aac_track(audio(sizelength="0")) is None
    assert aac_track(SdpMedia("audio", 8, "PCMA", 8000)) is None  # G.711 is not AAC (rtsp_session.g711_track)


def test_digest_answer_matches_rfc2617_example():
    a = Auth("Mufasa", "Circle Of Life")
    assert a.challenge(['Basic realm="x"', 'Digest realm="testrealm@host.com", qop="auth,auth-int", '
                        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'])
    h = a.digest("GET", "/dir/index.html", "0a4f113b")
    assert 'response="6629fae49393a05397450978507c4ef1"' in h and "nc=00000001" in h
    assert not Auth(None, None).challenge(['Basic realm="x"'])  # no credentials: nothing to answer with


class _Capture(VideoDepacketizer):
    """A depacketizer that also keeps a copy of every RTP packet it is given."""

    def __init__(self, codec: str, params: list[bytes]) -> None:
        super().__init__(codec, params)
        self.packets: list[bytes] = []

    def walk(self, buf: bytearray, mv: memoryview, pos: int, end: int, ch: int) -> int:
        taken = super().walk(buf, mv, pos, end, ch)
        while pos < taken:  # the $-frames it took: channel, 16-bit length, packet
            stop = pos + 4 + ((buf[pos + 2] << 8) | buf[pos + 3])
            self.packets.append(bytes(buf[pos + 4:stop]))
            pos = stop
        return taken


@pytest.mark.parametrize("mount, codec", [("/clip", "h264"), ("/hevc", "hevc")])
def test_rtp_captured_from_gstreamer(rtsp, clips, mount, codec):
    src = NativeRtspInput.open(rtsp.url(mount), 5, 5)
    try:
        cap = _Capture(codec, list(src._vdep.params.values()))
        src._vdep = cap
        aus = [pkt for _, pkt, _, _ in src.packets()]  # until the clip ends (RTCP BYE)
    finally:
        src.close()
    clip = clips["h264" if codec == "h264" else "hevc"]
    assert len(aus) == clip.frames and sum(p.is_keyframe for p in aus) == clip.keyframes
    assert (src.width, src.height) == (640, 360)
    fragmented = [p for p in cap.packets if (p[12] & 0x1F if codec == "h264" else (p[12] >> 1) & 0x3F) in (28, 49)]
    assert fragmented, "the payloader fragmented nothing: the test would not cover FU reassembly"

    # the same packets again, one fragment lost: one access unit damaged, the rest intact
    fu_header = 13 if codec == "h264" else 14
    # a later fragment of the first keyframe: its access unit keeps its parameter sets and SEI
    victim = next(i for i, p in enumerate(cap.packets) if p in fragmented and not p[fu_header] & 0x80)
    # (its access unit stays, flagged damaged and no longer a keyframe)
    again = VideoDepacketizer(codec, list(cap.params.values()))
    for i, p in enumerate(cap.packets):
        if i != victim:
            again.push(memoryview(p))
    again.flush()
    assert again.lost == 1
    assert len(again.out) == clip.frames
    assert sum(au.damaged for au in again.out) == 1
    assert [au.data for au in again.out if not au.damaged] == [bytes(p) for p, au in zip(aus, again.out, strict=True) if not au.damaged]

    # the walk's inline paths give the general path's outcome, packet for packet, also on a
    # stream with packets lost, repeated, swapped and corrupted, cut into receive batches anywhere
    params = list(cap.params.values())
    rng = random.Random(17)
    for trial in range(12):
        packets = list(cap.packets)
        for _ in range(rng.randint(1, 12) if trial else 0):
            i = rng.randrange(len(packets))
            op = rng.random()
            if op < 0.4:
                del packets[i]
            elif op < 0.6:
                packets.insert(i, packets[i])
            elif op < 0.8 and i + 1 < len(packets):
                packets[i], packets[i + 1] = packets[i + 1], packets[i]
            else:
                b = bytearray(packets[i])
                b[rng.randrange(min(16, len(b)))] ^= 1 << rng.randrange(8)
                packets[i] = bytes(b)
        general = VideoDepacketizer(codec, params)
        for p in packets:
            general._push(memoryview(p))  # noqa: SLF001 -- the reference: no inline path at all
        general.flush()
        walked = _walk_in_batches(VideoDepacketizer(codec, params), packets, rng.choice((1500, 9000, 1 << 20)))
        assert walked.out == general.out and (walked.lost, walked.malformed) == (general.lost, general.malformed)


def _frames(packets: list[bytes]) -> bytearray:
    """``packets`` as RTP-over-TCP frames on channel 0 (``$``, channel, 16-bit length, packet)."""
    return bytearray(b"".join(b"$\x00" + len(p).to_bytes(2, "big") + p for p in packets))


def _walk_in_batches(d: VideoDepacketizer, packets: list[bytes], batch: int) -> VideoDepacketizer:
    """``packets`` as RTP-over-TCP frames on channel 0, walked ``batch`` bytes at a time (a frame
    cut by a batch's end waits for the next batch, as in the receive buffer)."""
    frames = _frames(packets)
    mv, pos = memoryview(frames), 0
    while pos < len(frames):
        limit = min(len(frames), pos + batch)
        taken = d.walk(frames, mv, pos, limit, 0)
        if taken == pos:  # the batch holds no whole frame: the next one ends with this frame
            taken = d.walk(frames, mv, pos, pos + 4 + ((frames[pos + 2] << 8) | frames[pos + 3]), 0)
        pos = taken
    d.flush()
    return d


@pytest.mark.parametrize("client", ["native", "ffmpeg"])
def test_a_camera_sending_b_frames_is_recorded_whole_and_in_order(tmp_path, store, client):
    """B-frames stay on the client configured (no hand-over): every frame the camera sent is
    stored, decode times derived from the presentation times, pictures in presentation order."""

    from simulator.rtsp import Mount, RtspSimulator
    from recording import decode_object, pipeline

    import io

    import numpy as np

    clip = tmp_path / "bframes.mp4"  # 6 s, 25 fps, x264 with B-frames (display order != decode order)
    with av.open(str(clip), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.codec_context.gop_size = 25
        s.codec_context.max_b_frames = 2
        s.codec_context.options = {"bf": "2", "b-adapt": "0", "preset": "superfast"}
        for i in range(150):
            img = np.zeros((240, 320, 3), np.uint8)
            img[:, (i * 4) % 300:(i * 4) % 300 + 20] = 255
            img[::7, ::5] = (i * 37) % 255
            for pk in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    sim = RtspSimulator({"/bframes": Mount.from_clip(clip)}, workdir=tmp_path / "rtsp")
    sim.start()
    try:
        p = pipeline(tmp_path, store, sim.url("/bframes"), segment_seconds=1.0, rtsp_client=client)
        try:
            p.worker.run_once()  # one session: the clip once, to its end
        except StreamError as e:
            assert e.reason == "stream_ended", e
        assert p.uploader.drain(60)
    finally:
        sim.stop()
    assert p.worker.rtsp_client == client
    assert not [g for g in p.index.gaps("cam-1") if g.reason == "unsupported_codec"]
    segs = list(p.index.iter_segments("cam-1"))
    assert sum(s.frames for s in segs) == 150, "every frame the camera sent, the first and the last GOP too"
    reordered = False
    for seg in segs:
        d = decode_object(store, seg.key, seg.version_id)
        assert d["frames"] == seg.frames and d["errors"] == 0 and d["first_is_key"]
        with av.open(io.BytesIO(d["bytes"])) as c:
            pk = [(x.dts, x.pts) for x in c.demux(c.streams.video[0]) if x.size]
        assert all(b[0] > a[0] for a, b in zip(pk, pk[1:])) and all(p_ >= d_ for d_, p_ in pk)
        pts = [x[1] for x in pk]
        reordered = reordered or pts != sorted(pts)
    assert reordered, "expected B-frames (presentation order != decode order) in the stored segments"


@pytest.mark.parametrize("rcvbuf, got, elapsed, expected", [
    (1 << 20, 300_000, 0.5, 0.1),  # first second: rate unknown
    (1 << 20, 550_000, 2.0, 0.5),  # 4 Mbit/s camera, 1 MiB asked (2 MiB reported): the full half second
    (64 * 1024, 1_100_000, 2.0, 64 * 1024 / 550_000),  # a LAN socket before autotuning: what half of it holds
    (64 * 1024, 40_000_000, 2.0, 0.05),  # very high rate: never below the floor
])
def test_read_pause_never_outgrows_the_receive_buffer(rcvbuf, got, elapsed, expected):
    inp = NativeRtspInput("rtsp://127.0.0.1:1/x", 1.0, 1.0)
    a, b = socket.socketpair()
    try:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # Linux reports (and keeps) twice this
        inp.conn.sock = a
        assert inp._pause(got, elapsed) == pytest.approx(expected, rel=0.02)
    finally:
        a.close()
        b.close()
