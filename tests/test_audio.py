"""Camera audio (docs/recording.md "Audio", Decision 40): G.711 transcoded to AAC, AAC copied,
anything else said once in the camera's status -- over real GStreamer cameras, both RTSP clients."""

from __future__ import annotations

import io
import logging
import math
import struct
from fractions import Fraction

import av
import pytest

from recorder.audio_transcode import MAX_FILL_S, G711ToAac, plan_audio
from recorder.rtp_audio import G711Depacketizer
from recorder.rtsp_session import audio_codec_name, g711_track
from recorder.sdp import parse_sdp
from simulator.rtsp import Mount, RtspSimulator

from conftest import wait_for
from recording import Background, pipeline

# -- pure parts -----------------------------------------------------------------------------


@pytest.mark.parametrize("codec, delivered, action, note_has", [
    ("", True, "none", None),
    ("aac", True, "copy", None),
    ("opus", True, "copy", None),
    ("pcm_alaw", True, "transcode", None),
    ("pcm_mulaw", True, "transcode", None),
    ("pcm_alaw", False, "skip", "native RTSP client"),
    ("aac", False, "skip", "LABWITNESS_RTSP_CLIENT=ffmpeg"),
    ("g726le", True, "skip", "G.726"),
    ("adpcm_g726", True, "skip", "AAC 或 G.711"),
    ("weird", True, "skip", "weird"),
])
def test_audio_plan_table(codec, delivered, action, note_has):
    plan = plan_audio(codec, delivered)
    assert plan.action == action
    if note_has is None:
        assert plan.note == ""
    else:
        assert note_has in plan.note and " / " in plan.note  # 中文 / English


def test_sdp_audio_tracks_the_native_client_takes():
    _, media = parse_sdp("m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
                         "m=audio 0 RTP/AVP 8\r\n"  # static payload type: no rtpmap
                         "m=audio 0 RTP/AVP 0\r\n"
                         "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 PCMA/16000/2\r\n"
                         "m=audio 0 RTP/AVP 98\r\na=rtpmap:98 G726-32/8000\r\n")
    a8, a0, a97, a98 = media[1:]
    assert (g711_track(a8).codec, g711_track(a8).rate, g711_track(a8).channels) == ("pcm_alaw", 8000, 1)
    assert g711_track(a0).codec == "pcm_mulaw"
    assert (g711_track(a97).rate, g711_track(a97).channels) == (16000, 2)
    assert g711_track(a98) is None
    assert [audio_codec_name(m) for m in (a8, a0, a98)] == ["pcm_alaw", "pcm_mulaw", "g726le"]


def _rtp(seq: int, ts: int, payload: bytes, pad: int = 0) -> memoryview:
    b0 = 0x80 | (0x20 if pad else 0)
    body = struct.pack("!BBHII", b0, 8, seq & 0xFFFF, ts & 0xFFFFFFFF, 1234) + payload
    if pad:
        body += bytes(pad - 1) + bytes((pad,))
    return memoryview(body)


def test_g711_depacketizer_payload_is_the_samples():
    d = G711Depacketizer()
    d.push(_rtp(65535, 2**32 - 160, b"\x01" * 160))
    d.push(_rtp(0, 0, b"\x02" * 160, pad=4))  # sequence and timestamp wrap; padding stripped
    d.push(_rtp(3, 480, b"\x03" * 160))  # two packets lost
    d.push(_rtp(3, 480, b"\x03" * 160))  # a duplicate is dropped
    d.push(memoryview(b"\x80\x08"))  # too short: malformed, not a crash
    assert [(au.data[:1], len(au.data), au.ts - d.out[0].ts) for au in d.out] == [
        (b"\x01", 160, 0), (b"\x02", 160, 160), (b"\x03", 160, 640)]
    assert d.lost == 2 and d.malformed == 1


def _alaw_tone(n: int, start: int = 0) -> bytes:
    """``n`` samples of a 440 Hz tone, A-law coded (FFmpeg's encoder: the reference)."""
    enc = av.CodecContext.create("pcm_alaw", "w")
    enc.sample_rate, enc.layout, enc.format = 8000, "mono", "s16"
    enc.open()
    frame = av.AudioFrame(format="s16", layout="mono", samples=n)
    frame.sample_rate = 8000
    frame.planes[0].update(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * (start + i) / 8000)))
                                    for i in range(n)))
    return b"".join(bytes(p) for p in enc.encode(frame))


def _g711(data: bytes, pts: int) -> av.Packet:
    p = av.Packet(data)
    p.pts = p.dts = pts
    p.time_base = Fraction(1, 8000)
    return p


def _decode_aac(tx: G711ToAac, packets: list[av.Packet]) -> int:
    dec = av.CodecContext.create("aac", "r")
    dec.extradata = tx.asc
    n = 0
    for p in packets:
        for f in dec.decode(p):
            n += f.samples
    return n


def test_g711_to_aac_keeps_the_camera_timeline_and_fills_lost_packets():
    tone = _alaw_tone(8000 * 3)
    tx = G711ToAac("pcm_alaw", 8000)
    out: list[av.Packet] = []
    t0 = 1000
    for i in range(0, 8000 * 3, 160):
        if 8000 <= i < 8480:
            continue  # three packets lost: filled with silence, later audio stays in place
        out += tx.push(_g711(tone[i:i + 160], t0 + i))
    out += tx.flush()
    assert tx.filled == 480 and tx.restarts == 0
    # the first packet is the encoder's priming frame, one frame before the first sample
    assert out[0].pts == t0 - 1024
    for a, b in zip(out, out[1:]):
        assert b.pts == a.pts + a.duration  # contiguous: no gap, no overlap
    assert out[-1].pts + out[-1].duration == t0 + 8000 * 3
    assert all(p.time_base == Fraction(1, 8000) for p in out)
    assert _decode_aac(tx, out) == 1024 * len(out)


def test_g711_to_aac_restarts_on_a_jump_and_trims_an_overlap():
    tone = _alaw_tone(1600)
    tx = G711ToAac("pcm_mulaw", 8000)
    out = tx.push(_g711(tone[:800], 0)) + tx.push(_g711(tone[800:1600], 800))
    out += tx.push(_g711(tone[:160], 1600 - 80))  # overlaps by 80 samples: only the new 80 are kept
    assert tx._next == 1600 + 80  # (the 80 new samples follow on)
    far = 1680 + int(MAX_FILL_S * 8000) + 1
    out += tx.push(_g711(tone[:1600], far))  # far ahead: a new encoder there, not minutes of silence
    out += tx.flush()
    assert tx.restarts == 1 and tx.filled == 0
    assert out[-1].pts + out[-1].duration == far + 1600
    assert any(p.pts == far - 1024 for p in out)  # the new encoder's priming frame
    with pytest.raises(ValueError):
        G711ToAac("g726le", 8000)


# -- recording real cameras -----------------------------------------------------------------------

MOUNTS = {
    "/pcma": Mount.live(audio="pcma"),
    "/pcmu": Mount.live(audio="pcmu"),
    "/aac": Mount.live(audio="aac"),
    "/hevc-pcma": Mount.live(codec="hevc", audio="pcma"),  # the common factory setting of Chinese cameras
}


@pytest.fixture(scope="module")
def cams(tmp_path_factory):
    sim = RtspSimulator(MOUNTS, workdir=tmp_path_factory.mktemp("rtsp-audio"))
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(params=["ffmpeg", "native"])
def client(request) -> str:
    return request.param


def _audio_of(data: bytes) -> dict:
    """The audio track of one segment: codec, rate, packets (pts, duration) and decoded samples."""
    with av.open(io.BytesIO(data)) as c:
        assert c.streams.audio, "no audio track"
        a = c.streams.audio[0]
        assert a.time_base == Fraction(1, a.codec_context.sample_rate)
        facts = {"codec": a.codec_context.name, "rate": a.codec_context.sample_rate, "packets": [], "samples": 0,
                 "video_frames": 0}
        for p in c.demux():
            if not p.size:
                continue
            if p.stream.type == "video":
                facts["video_frames"] += 1
                continue
            facts["packets"].append((p.pts, p.duration))
            facts["samples"] += sum(f.samples for f in p.decode())  # raises on undecodable audio
    return facts


def _check_audio_follows_video(segs, store, frame_s: float) -> list[dict]:
    """Every segment has decodable AAC that covers its video; audio runs on across cuts."""
    from recording import decode_object

    assert len(segs) >= 4
    assert {s.audio_codec for s in segs} == {"aac"}
    facts = []
    for s in segs:
        d = decode_object(store, s.key, s.version_id)
        assert d["errors"] == 0 and d["frames"] == s.frames
        f = _audio_of(d["bytes"])
        assert f["codec"] == "aac" and f["packets"]
        assert f["samples"] == 1024 * len(f["packets"])  # every packet decodes to a whole AAC frame
        for (p0, d0), (p1, _) in zip(f["packets"], f["packets"][1:]):
            assert p1 == p0 + d0, "audio gap or overlap inside a segment"
        facts.append(f)
    for i, (s, f) in enumerate(zip(segs, facts)):
        rate = f["rate"]
        aac_frame_s = 1024 / rate
        start_s = f["packets"][0][0] / rate
        end_s = (f["packets"][-1][0] + f["packets"][-1][1]) / rate
        video_s = s.media_duration_ms / 1000
        if i > 0:  # (the session's first segment starts with the first audio after the first picture)
            assert 0 <= start_s < aac_frame_s + 0.002, (i, start_s)
        if i < len(segs) - 1:
            # the audio ends with the video, to within the AAC frame that straddles the cut
            assert -0.002 <= end_s - video_s < aac_frame_s + 0.002, (i, end_s, video_s)
            nxt = facts[i + 1]
            # the next segment's audio starts where this one's ended (on the camera's audio clock)
            assert abs((end_s - video_s) - nxt["packets"][0][0] / nxt["rate"]) <= 0.002, (i, end_s, video_s)
        else:
            assert abs(end_s - video_s) < aac_frame_s + frame_s, (end_s, video_s)
    return facts


@pytest.mark.parametrize("mount, vcodec, acodec", [
    ("/pcma", "h264", "pcm_alaw"), ("/pcmu", "h264", "pcm_mulaw"), ("/aac", "h264", "aac"),
    ("/hevc-pcma", "hevc", "pcm_alaw"),
])
def test_camera_audio_is_recorded_as_aac_in_step_with_the_video(tmp_path, store, cams, client, mount, vcodec, acodec):
    p = pipeline(tmp_path, store, cams.url(mount), segment_seconds=1.0, rtsp_client=client)
    with Background(p.worker):
        wait_for(lambda: p.worker.status.segments >= 5, 90, what="five segments")
    st = p.worker.status
    assert (st.audio_codec, st.audio_recorded, st.audio_note) == (acodec, "aac", "")
    assert st.sessions == 1
    assert p.uploader.drain(60)
    segs = list(p.index.iter_segments("cam-1"))
    assert {s.codec for s in segs} == {vcodec}
    facts = _check_audio_follows_video(segs, store, 1 / 25)
    if acodec != "aac":
        assert {f["rate"] for f in facts} == {8000}  # transcoded at the camera's own rate


def test_a_g726_camera_records_video_and_says_once_that_its_audio_is_not(tmp_path, store, client, caplog):
    caplog.set_level(logging.INFO, logger="recorder.worker")
    with RtspSimulator({"/g726": Mount.live(audio="g726")}, workdir=tmp_path / "rtsp") as sim:
        p = pipeline(tmp_path, store, sim.url("/g726"), segment_seconds=1.0, rtsp_client=client,
                     read_timeout_s=3, backoff_cap_s=1)
        with Background(p.worker):
            wait_for(lambda: p.worker.status.segments >= 2, 60, what="segments")
            st = p.worker.status
            assert st.audio_codec == "g726le" and st.audio_recorded == ""
            assert "G.726" in st.audio_note and "无法录制" in st.audio_note and "cannot be recorded" in st.audio_note
            sim.kill()  # the camera reboots: a new session, the same audio
            wait_for(lambda: p.worker.status.state == "reconnecting", 30, what="reconnecting")
            sim.restart()
            before = p.worker.status.segments
            wait_for(lambda: p.worker.status.sessions >= 2 and p.worker.status.segments >= before + 2, 60,
                     what="recording again")
        assert p.worker.status.audio_note == st.audio_note
    notes = [r for r in caplog.records if "G.726" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelno == logging.WARNING  # once a camera, not once a session
    assert p.uploader.drain(60)
    segs = list(p.index.iter_segments("cam-1"))
    assert len(segs) >= 4 and {s.audio_codec for s in segs} == {""}
    from recording import decode_object

    for s in segs:
        d = decode_object(store, s.key, s.version_id)
        assert d["frames"] == s.frames and d["audio_packets"] == 0


def test_audio_in_the_camera_status_and_an_evidence_export(running, cams, tmp_path):
    """A G.711 camera and a G.726 one beside the live camera of a running labwitness: the API's
    camera view, the health JSON and the web UI's camera list say what happens to their audio;
    an export of the G.711 footage verifies and carries AAC in step with its video."""
    import zipfile
    from datetime import datetime, timedelta, timezone

    from fastapi.testclient import TestClient

    from api.evidence import verify_package
    from webtools import sign_in

    client, rt = running
    with RtspSimulator({"/g726": Mount.live(audio="g726")}, workdir=tmp_path / "rtsp-g726") as g726:
        for cid, url in (("cam-g711", cams.url("/pcma")), ("cam-g726", g726.url("/g726"))):
            r = client.post("/api/v1/cameras", json={"id": cid, "rtsp_url": url, "area_id": "lixue"})
            assert r.status_code == 201, r.text
        wait_for(lambda: all(len(list(rt.index.iter_segments(c))) >= 2 for c in ("cam-g711", "cam-g726")), 90,
                 what="segments of both new cameras")
        g711, g726v = (client.get(f"/api/v1/cameras/{c}").json() for c in ("cam-g711", "cam-g726"))
        assert (g711["audio_codec"], g711["audio_recorded"], g711["audio_note"]) == ("pcm_alaw", "aac", "")
        assert (g726v["audio_codec"], g726v["audio_recorded"]) == ("g726le", "")
        assert "G.726" in g726v["audio_note"] and " / " in g726v["audio_note"]
        live = client.get("/api/v1/cameras/cam-api").json()  # the clip camera sends no audio
        assert (live["audio_codec"], live["audio_note"]) == ("", "")
        health = client.get("/api/v1/health").json()["cameras"]
        assert health["cam-g726"]["audio_note"] == g726v["audio_note"]
        assert health["cam-g711"]["audio_recorded"] == "aac"

        token = rt.tokens.create("insp-audio", "inspector", "test")[1]
        web = sign_in(client.app, token)
        web.cookies.set("lw_lang", "zh-CN")
        rows = web.get("/ui/cameras/rows").text
        row = rows.split('data-camera="cam-g726"')[1].split("</tr>")[0]
        assert 'data-audio="not_recorded"' in row and "音频未录制（G.726）" in row
        assert "请在摄像机上把音频编码设为 AAC 或 G.711" in row  # the note in the page's language
        row = rows.split('data-camera="cam-g711"')[1].split("</tr>")[0]
        assert 'data-audio="transcoded"' in row and "音频 G.711 A-law (PCMA) 转为 AAC 录制" in row
        web.cookies.set("lw_lang", "en")
        row = web.get("/ui/cameras/rows").text.split('data-camera="cam-g726"')[1].split("</tr>")[0]
        assert "audio not recorded (G.726)" in row and "set the camera&#39;s audio codec to AAC or G.711" in row
        ops = sign_in(client.app, rt.tokens.create("ops-audio", "operations", "test")[1])
        ops.cookies.set("lw_lang", "zh-CN")
        row = ops.get("/ui/health").text.split('data-camera="cam-g726"')[1].split("</tr>")[0]
        assert 'data-audio="not_recorded"' in row and "音频未录制（G.726）" in row

        # an evidence export of the G.711 footage
        now = datetime.now(timezone.utc)
        ingest = TestClient(client.app)
        ingest.headers["Authorization"] = f"Bearer {rt.tokens.create('core-audio', 'ingest', 'test')[1]}"
        r = ingest.put("/api/v1/test-records/REC-AUDIO", json={
            "report_no": "JC-AUDIO", "area_ids": ["lixue"], "started_at": (now - timedelta(seconds=3)).isoformat(),
            "ended_at": now.isoformat()})
        assert r.status_code == 201, r.text
        wait_for(lambda: rt.index.footage("cam-g711", 0, 2**62).segments[-1].end_ms > now.timestamp() * 1000 + 500,
                 60, what="footage past the record's end")
    insp = TestClient(client.app)
    insp.headers["Authorization"] = f"Bearer {token}"
    r = insp.post("/api/v1/reports/JC-AUDIO/exports")
    assert r.status_code == 202, r.text
    pid = r.json()["id"]
    st = wait_for(lambda: (s := insp.get(f"/api/v1/exports/{pid}").json())["status"] != "running" and s, 120,
                  what="export")
    assert st["status"] == "done", st
    pkg = tmp_path / "audio.zip"
    pkg.write_bytes(insp.get(st["download_url"]).content)
    rep = verify_package(pkg, trusted_public_pem=rt.exporter.key.public_pem())
    assert rep.ok, rep.problems
    with zipfile.ZipFile(pkg) as z:
        data = z.read("cam-g711.mp4")
        assert z.namelist().count("cam-g726.mp4") == 1
        with av.open(io.BytesIO(z.read("cam-g726.mp4"))) as c:
            assert not c.streams.audio  # video only, as its status says
    facts = _audio_of(data)
    assert facts["codec"] == "aac" and facts["rate"] == 8000 and facts["samples"] == 1024 * len(facts["packets"])
    pk = facts["packets"]
    for (p0, d0), (p1, _) in zip(pk, pk[1:]):
        assert p1 == p0 + d0  # stitched across segments with no gap or overlap
    with av.open(io.BytesIO(data)) as c:
        v = c.streams.video[0]
        vd = [p.dts for p in c.demux(v) if p.size]
    video_s = float((vd[-1] - vd[0]) * v.time_base) + 1 / 25
    audio_s = (pk[-1][0] + pk[-1][1] - pk[0][0]) / 8000
    assert abs(audio_s - video_s) < 2 * 1024 / 8000, (audio_s, video_s)
    assert abs(pk[0][0] / 8000 - float(vd[0] * v.time_base)) < 1024 / 8000 + 0.002  # starts with the picture
