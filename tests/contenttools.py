"""Helpers for the content health tests: synthetic footage (a textured lab scene the camera
can move over, flat pictures), encoded as the recorder writes segments, and put into storage
and the index as the uploader would."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import cv2
import numpy as np

from recorder.uploader import segment_row
from retention.content_detect import ContentConfig
from retention.content_job import ContentJobConfig
from storage.hashing import file_sha256
from simulator.rtsp import Mount
from storage.layout import SegmentMeta

W, H = 640, 360


class Scene:
    """A textured lab larger than the picture, so that moving the camera is a crop offset;
    a person walks across it; the sensor adds noise."""

    def __init__(self, seed: int = 7, margin: int = 96) -> None:
        self.m = margin
        rng = np.random.default_rng(seed)
        hh, ww = H + 2 * margin, W + 2 * margin
        ys, xs = np.mgrid[0:hh, 0:ww]
        canvas = (60 + 60 * xs / ww + 30 * ys / hh).astype(np.uint8)
        for _ in range(60):
            x0, y0 = int(rng.integers(0, ww - 20)), int(rng.integers(0, hh - 20))
            cv2.rectangle(canvas, (x0, y0), (x0 + int(rng.integers(10, 90)), y0 + int(rng.integers(10, 70))),
                          int(rng.integers(20, 230)), -1)
        for _ in range(25):
            cv2.circle(canvas, (int(rng.integers(0, ww)), int(rng.integers(0, hh))), int(rng.integers(5, 40)),
                       int(rng.integers(20, 230)), -1)
        for k in range(8):
            cv2.putText(canvas, f"UTM-{k:02d}", (int(rng.integers(0, ww - 120)), int(rng.integers(20, hh))),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.8, int(rng.integers(0, 255)), 2)
        self.canvas = canvas.astype(np.float32)
        self.rng = np.random.default_rng(seed + 1)

    def view(self, t: float, *, dx: int = 0, dy: int = 0, gain: float = 1.0, mover: bool = True, noise: float = 2.0,
             blur: float = 0.0) -> np.ndarray:
        m = self.m
        f = self.canvas[m + dy: m + dy + H, m + dx: m + dx + W].copy()
        if mover:
            x = int((t * 40) % (W - 60))
            f[120:300, x:x + 50] = 200
        f *= gain
        if blur:
            f = cv2.GaussianBlur(f, (0, 0), blur)
        if noise:
            f += self.rng.normal(0, noise, f.shape).astype(np.float32)
        return np.clip(f, 16, 235).astype(np.uint8)


def flat(level: float, noise: float, rng=np.random.default_rng(3)) -> np.ndarray:
    return np.clip(rng.normal(level, noise, (H, W)), 16, 235).astype(np.uint8)


def encode_fmp4(path: Path, frame_at, seconds: float, *, fps: int = 5, gop: int = 5, codec: str = "h264") -> Path:
    """Y planes from ``frame_at(t)`` encoded and muxed the way the recorder writes segments:
    fragmented MP4, ``frag_keyframe+empty_moov+default_base_moof``, 1 s fragments."""
    params = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0"
    opts = {"preset": "ultrafast"}
    opts["x264-params" if codec == "h264" else "x265-params"] = params if codec == "h264" else params + ":log-level=error"
    with av.open(str(path), "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov+default_base_moof",
                                                        "frag_duration": "1000000"}) as c:
        s = c.add_stream("libx264" if codec == "h264" else "libx265", rate=fps, options=opts)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        buf = np.full((H * 3 // 2, W), 128, np.uint8)
        for i in range(round(seconds * fps)):
            buf[:H] = frame_at(i / fps)
            fr = av.VideoFrame.from_ndarray(buf, format="yuv420p")
            fr.pts, fr.time_base = i, Fraction(1, fps)
            c.mux(s.encode(fr))
        c.mux(s.encode(None))
    return path


SCENE = Scene()

#: the content job's tests: segments of SEG_S seconds from T0, sampled every 2 s
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
SEG_S = 20
JOB_CFG = ContentJobConfig(content=ContentConfig(sample_seconds=2.0), initial_lookback_s=7 * 86400)


def put_segment(store, index, path: Path, camera: str, start: datetime, seconds: float, seq: int):
    """The clip at ``path`` stored (locked a day) and indexed as camera's segment ``seq`` starting at ``start``."""
    meta = SegmentMeta(camera_id=camera, start=start, end=start + timedelta(seconds=seconds),
                       media_duration_ms=int(seconds * 1000), codec="h264", width=W, height=H, sha256=file_sha256(path),
                       size=path.stat().st_size, recorder_id="test", session_id="s", sequence=seq)
    stored = store.put_segment(path, meta, datetime.now(timezone.utc) + timedelta(days=1))
    return index.add_segment(segment_row(SimpleNamespace(meta=meta, version_id=stored.version_id,
                                                          retain_until=stored.retain_until, lock_mode=stored.mode)))


def black_mount(width=640, height=360, fps=10, codec="h264"):
    """A live RTSP mount of a black picture (a covered lens, lights off), H.264 or H.265."""
    enc = ("x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bitrate=300 ! h264parse config-interval=-1 "
           "! rtph264pay" if codec == "h264" else
           "x265enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bitrate=300 option-string=log-level=error "
           "! h265parse config-interval=-1 ! rtph265pay")
    return Mount(f"videotestsrc is-live=true pattern=black ! video/x-raw,format=I420,width={width},height={height},"
                 f"framerate={fps}/1 ! {enc} name=pay0 pt=96")
