"""The benchmark's camera: one endless 1080p25 H.264 stream of about 4 Mbit/s.

The clip is made once with :func:`simulator.clip.make_clip`
and cached under ``bench/out/``.  The simulator's own frames (a gradient and a
moving bar) compress to well under 1 Mbit/s, so a fixed texture plus a little
per-frame "sensor noise" is added to the luma plane here; x264's rate control
then holds the requested 4 Mbit/s the way a real camera's encoder does.

The MP4 is remuxed (stream copy) into MPEG-TS and served by ONE shared
GStreamer mount that loops it forever::

    multifilesrc loop=true ! tsdemux ! h264parse ! rtph264pay

tsdemux treats the jump back at each loop as a PCR discontinuity and keeps the
output timestamps running, so every client sees one continuous real-time
stream however long the run is (a plain ``from_clip`` mount would end with
the clip).  All N cameras of a run connect to this one mount.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from simulator import clip as clipmod
from simulator.rtsp import Mount, _gst_quote

WIDTH, HEIGHT, FPS = 1920, 1080, 25
BITRATE = 4_000_000  # bit/s
GOP = 2 * FPS  # one IDR every 2 s, a common IP camera default
CLIP_SECONDS = 60
_NOISE_FRAMES = 7
_NOISE_AMPLITUDE = 4  # luma levels; 4 gives ~4.2 Mbit/s at 1080p ultrafast


class _TexturedPainter(clipmod._Painter):
    """The simulator's painter plus a fixed texture and per-frame noise."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__(width, height)
        rng = np.random.default_rng(1)
        texture = rng.integers(0, 40, size=(height, width), dtype=np.uint8)
        self.background = (self.background // 2 + texture + 30).astype(np.uint8)
        self.noise = [rng.integers(0, _NOISE_AMPLITUDE, size=(height, width), dtype=np.uint8)
                      for _ in range(_NOISE_FRAMES)]

    def paint(self, i: int) -> np.ndarray:
        buf = super().paint(i)
        luma = buf[: self.height]
        np.add(luma, self.noise[i % _NOISE_FRAMES], out=luma)
        return buf


@dataclass(frozen=True)
class Source:
    mp4: Path
    ts: Path
    seconds: float
    frames: int
    keyframes: int
    bitrate: int  # measured, bit/s
    generate_seconds: float  # wall time it took to make (0 when cached)

    def mount(self) -> Mount:
        launch = (
            f"multifilesrc location={_gst_quote(str(self.ts.resolve()))} loop=true "
            'caps="video/mpegts,systemstream=true,packetsize=188" ! tsdemux ! '
            "h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96"
        )
        return Mount(launch=launch, shared=True)


def ensure_source(out_dir: Path, seconds: int = CLIP_SECONDS, log=print) -> Source:
    """The cached clip, made now if missing (about 0.3 s of CPU per clip second)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"src-{WIDTH}x{HEIGHT}-{FPS}fps-{BITRATE // 1000}k-gop{GOP}-{seconds}s"
    mp4, ts, info_f = out_dir / f"{stem}.mp4", out_dir / f"{stem}.ts", out_dir / f"{stem}.json"
    if mp4.exists() and ts.exists() and info_f.exists():
        d = json.loads(info_f.read_text())
        return Source(mp4=mp4, ts=ts, seconds=d["seconds"], frames=d["frames"], keyframes=d["keyframes"],
                      bitrate=d["bitrate"], generate_seconds=0.0)
    log(f"generating the {seconds} s 1080p source clip once (cached in {out_dir}) ...")
    t0 = time.monotonic()
    original = clipmod._Painter
    clipmod._Painter = _TexturedPainter
    try:
        info = clipmod.make_clip(mp4.with_suffix(".tmp.mp4"), seconds=seconds, fps=FPS, width=WIDTH, height=HEIGHT,
                                 gop=GOP, bitrate=BITRATE)
    finally:
        clipmod._Painter = original
    mp4.with_suffix(".tmp.mp4").replace(mp4)
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(mp4), "-c", "copy",
                    "-bsf:v", "h264_mp4toannexb", "-f", "mpegts", str(ts)], check=True)
    elapsed = time.monotonic() - t0
    bitrate = round(mp4.stat().st_size * 8 / info.seconds)
    src = Source(mp4=mp4, ts=ts, seconds=info.seconds, frames=info.frames, keyframes=info.keyframes,
                 bitrate=bitrate, generate_seconds=elapsed)
    d = asdict(src)
    d.update(mp4=str(mp4), ts=str(ts))
    info_f.write_text(json.dumps(d, indent=2))
    log(f"source clip ready in {elapsed:.1f} s: {info.frames} frames, {bitrate / 1e6:.2f} Mbit/s")
    return src
