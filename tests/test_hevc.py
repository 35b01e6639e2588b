"""H.265 end to end (issue 15 B): live H.265 cameras (without and with B-frames) recorded
through to storage; their content health (thumbnails, a black picture's event); an evidence
export stitching their footage that `labwitness verify` accepts and whose videos play (PyAV
decodes every frame, in presentation order).  Real parts: GStreamer x265 cameras, the whole
runtime (recorder, SeaweedFS, SQLite), the export job, the CLI."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import datetime, timedelta, timezone

import av
import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from api.cli import app as cli_app
from retention import content_index
from retention.content_detect import ContentConfig
from retention.content_job import ContentJobConfig, run_content_check
from simulator.rtsp import Mount, RtspSimulator

from conftest import wait_for
from contenttools import black_mount
from recording import decode_object
from test_export_holds import _export, _ingest

CAMS = {"h265": "/hevc", "h265-b": "/hevc-b", "h265-black": "/hevc-black"}
FPS = 10


def _stored(rt, cam):
    return [s for s in rt.index.iter_segments(cam) if s.status == "stored"]


def _play(data: bytes) -> tuple[str, int, list[int]]:
    """(codec, frames, presentation times in decode-output order) of one MP4, every frame decoded."""
    pts = []
    with av.open(io.BytesIO(data)) as c:
        v = c.streams.video[0]
        codec = v.codec_context.name
        for f in c.decode(v):
            pts.append(f.pts)
    return codec, len(pts), pts


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_h265_recorded_checked_exported_and_verified(running, tmp_path, db_url):
    client, rt = running
    sim = RtspSimulator({
        "/hevc": Mount.live(640, 360, fps=FPS, codec="hevc", key_int=FPS),
        "/hevc-b": Mount.live(640, 360, fps=FPS, codec="hevc", bframes=2, key_int=FPS),
        "/hevc-black": black_mount(codec="hevc"),
    }, workdir=tmp_path / "rtsp-hevc")
    with sim:
        t0 = datetime.now(timezone.utc)
        for cam, path in CAMS.items():
            rt.registry.add_camera(rt.new_camera(cam, sim.url(path), area_id="lixue"), actor="test")
        rt.registry_admin.sync_cameras()
        for cam in CAMS:
            wait_for(lambda cam=cam: len(_stored(rt, cam)) >= 6, 90, what=f"stored H.265 segments of {cam}")
        t1 = datetime.now(timezone.utc)
        workers = rt.recorder.workers()
        assert workers["h265-b"].rtsp_client == "native"  # B-frames stay on the native client (recorder.reorder)
        assert workers["h265"].rtsp_client == "native"

    # storage: every stored segment is H.265, starts with a keyframe and decodes whole
    for cam in CAMS:
        segs = _stored(rt, cam)
        assert {s.codec for s in segs} == {"hevc"}, cam
        for s in segs[1:3]:
            d = decode_object(rt.store, s.key, s.version_id)
            assert d["codec"] == "hevc" and d["first_is_key"] and d["errors"] == 0 and d["frames"] > 0, (cam, d)

    # content health on H.265: thumbnails from H.265 keyframes, the black camera's event
    summary = run_content_check(rt.index, rt.store, rt.clock, ContentJobConfig(content=ContentConfig(sample_seconds=2.0)),
                                samples=rt.samples)
    for cam in CAMS:
        r = summary.cameras[cam]
        assert r.samples > 0 and r.undecodable == 0 and r.undecodable_samples == 0 and not r.error, (cam, r)
        st = content_index.load_state(rt.index.engine, cam)
        thumb = cv2.imdecode(np.frombuffer(st.thumbnail_jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert thumb.shape == (180, 320, 3) and st.last_sample_source == "main", cam
    evs = content_index.events(rt.index.engine)
    assert {(e.camera_id, e.kind) for e in evs if e.camera_id in CAMS} == {("h265-black", "blackout")}
    (black,) = [e for e in evs if e.camera_id == "h265-black"]
    first = _stored(rt, "h265-black")[0]
    assert first.start_ms <= black.start_ms <= first.start_ms + 3000 and black.ongoing, black

    # an evidence export of the H.265 footage: stitched, signed, verified by the CLI, plays
    start, end = t0 + timedelta(seconds=2), t1 - timedelta(seconds=1)
    _ingest(client, rt, "REC-H265", "JC-H265", start, end)
    st = _export(client, "JC-H265")
    assert st["status"] == "done", st
    pkg = tmp_path / "h265.zip"
    pkg.write_bytes(client.get(st["download_url"]).content)
    (tmp_path / "lab.pub").write_bytes(rt.exporter.key.public_pem())
    r = CliRunner().invoke(cli_app, ["verify", str(pkg), "--public-key", str(tmp_path / "lab.pub")], terminal_width=400)
    assert r.exit_code == 0, r.output
    with zipfile.ZipFile(pkg) as z:
        files = json.loads(z.read("manifest.json"))["files"]
        members = {f["name"]: (f, z.read(f["name"])) for f in files if f["name"].endswith(".mp4")}
    for cam in CAMS:
        mine = [(f, data) for f, data in members.values() if f["camera_id"] == cam]
        assert mine, (cam, list(members))
        for f, data in mine:
            codec, frames, pts = _play(data)
            assert codec == "hevc" and frames == f["frames"], (f, frames)
            assert pts == sorted(pts) and len(set(pts)) == len(pts), (f["name"], pts[:20])  # every frame, in order
            lo, hi = (datetime.fromisoformat(f["footage"][k]).timestamp() * 1000 for k in ("start", "end"))
            recorded_s = sum(max(0, min(g.end_ms, hi) - max(g.start_ms, lo)) for g in _stored(rt, cam)) / 1000
            # no frame lost or doubled (the camera's encoder may drop a few under load)
            assert recorded_s * FPS * 0.8 - 2 <= frames <= recorded_s * FPS * 1.05 + 2, (f, frames, recorded_s)
