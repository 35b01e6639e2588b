"""Sub-stream samples vs main-stream keyframes: CPU to decode and judge one picture.

    python -m bench.substream_sample [--frames 12] [--repeat 3] [--codecs h264,hevc]

The content job's cost per sample is decoding one keyframe and judging it
(:mod:`retention.content_job`; judging works on a 320 px picture whatever the
source size).  This measures, per codec and size, the CPU of
:class:`retention.keyframe_decode.KeyframeDecoder` on one Annex B IDR (as the
sub-stream sampler spools it) + :func:`retention.keyframe_decode.luma` +
:func:`retention.content.judge`:

* 640x360 (a typical sub stream, ~0.5 Mbit/s),
* 1920x1080 (main, ~4 Mbit/s), 3840x2160 (main, ~12 Mbit/s).

Setup (not timed): a textured scene with sensor noise, every frame an IDR,
x264/x265 at camera-like settings (``veryfast``/``ultrafast``, CRF 23/26, an
IDR at most one second's bits: VBV buffer = the bitrate).  Timed: ``process_time`` around decode+judge of every frame, the
median of ``--repeat`` passes.  Reading the bytes (a ranged read of a stored
segment vs a local file) is not counted.

The sub stream's own price, paid whether or not anything changes: the recorder's
sampler (:class:`recorder.substream.SubStreamSampler`, native RTSP client, no
decoding) receiving a live 640x360 25 fps ~0.8 Mbit/s stream from a local
GStreamer server (another process, not counted) for ``--sampler-seconds``:
this process's CPU per stream-minute.
Results: ``bench/out/substream_sample-*.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from retention.content import judge
from retention.content_detect import ContentConfig
from retention.content_state import DetectorState
from retention.keyframe_decode import KeyframeDecoder, luma

OUT = Path(__file__).with_name("out")
SIZES = {"sub 640x360": (640, 360, 768), "main 1920x1080": (1920, 1080, 4000), "main 3840x2160": (3840, 2160, 12000)}


def scene(w: int, h: int, t: int, rng: np.random.Generator) -> np.ndarray:
    """A textured lab-like picture (rectangles, text, a moving bar) with sensor noise, as yuv420p."""
    base = np.full((h, w), 90, np.uint8)
    r = np.random.default_rng(7)
    for _ in range(80):
        x, y = int(r.integers(0, w - w // 10)), int(r.integers(0, h - h // 10))
        cv2.rectangle(base, (x, y), (x + int(r.integers(w // 60, w // 8)), y + int(r.integers(h // 60, h // 8))),
                      int(r.integers(20, 230)), -1)
    for k in range(10):
        cv2.putText(base, f"UTM-{k:02d}", (int(r.integers(0, w - w // 5)), int(r.integers(h // 20, h))),
                    cv2.FONT_HERSHEY_SIMPLEX, w / 800, int(r.integers(0, 255)), max(1, w // 400))
    x = (t * w // 40) % (w - w // 12)
    base[h // 3: 2 * h // 3, x: x + w // 12] = 200
    y = np.clip(base + rng.normal(0, 2.5, base.shape).astype(np.float32), 16, 235).astype(np.uint8)
    return np.vstack([y, np.full((h // 2, w), 128, np.uint8)])


def keyframes(codec: str, w: int, h: int, kbps: int, n: int) -> list[bytes]:
    """``n`` IDRs (Annex B with parameter sets, as the sub-stream sampler spools them)."""
    enc = av.CodecContext.create("libx264" if codec == "h264" else "libx265", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base = Fraction(1, 1)  # one frame a second: each IDR may take a second of bits, as a camera IDR does
    enc.framerate = Fraction(1, 1)
    # an IDR gets the bits of about one GOP's first second (cameras: IDR every 1-2 s): VBV at the bitrate
    if codec == "h264":
        enc.options = {"preset": "veryfast", "x264-params": f"keyint=1:crf=23:vbv-maxrate={kbps}:vbv-bufsize={kbps}"}
    else:
        enc.options = {"preset": "ultrafast",
                       "x265-params": f"keyint=1:crf=26:vbv-maxrate={kbps}:vbv-bufsize={kbps}:log-level=error"}
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        f = av.VideoFrame.from_ndarray(scene(w, h, i, rng), format="yuv420p")
        f.pts = i
        out += [bytes(p) for p in enc.encode(f)]
    out += [bytes(p) for p in enc.encode(None)]
    return out[:n]


def measure(codec: str, kfs: list[bytes], repeat: int) -> dict:
    cfg = ContentConfig(sample_seconds=10)
    runs = []
    for _ in range(repeat):
        dec = KeyframeDecoder()
        state = DetectorState()
        t0 = time.process_time()
        for i, data in enumerate(kfs):
            judge(state, i * 10_000, luma(dec.decode(codec, None, data)), cfg)
        runs.append((time.process_time() - t0) / len(kfs))
    return {"cpu_ms_per_sample": round(statistics.median(runs) * 1000, 2), "kb_per_keyframe": round(
        statistics.mean(len(k) for k in kfs) / 1024, 1), "samples": len(kfs)}


def sampler_cost(seconds: float) -> float:
    import tempfile
    import threading

    from labwitness.picture_samples import SampleSpool
    from recorder.substream import SubStreamSampler
    from simulator.rtsp import Mount, RtspSimulator

    with tempfile.TemporaryDirectory() as d, \
            RtspSimulator({"/sub": Mount.live(640, 360, fps=25, bitrate_kbps=800, key_int=50)}, workdir=Path(d)) as sim:
        stop = threading.Event()
        s = SubStreamSampler("bench", sim.url("/sub"), SampleSpool(Path(d) / "samples"), 10.0, stop=stop)
        t = threading.Thread(target=s.run, daemon=True)
        t.start()
        deadline = time.monotonic() + 30
        while s.status.samples == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        c0, w0 = time.process_time(), time.monotonic()
        time.sleep(seconds)
        c1, w1 = time.process_time(), time.monotonic()
        stop.set()
        t.join(15)
        return round((c1 - c0) / (w1 - w0) * 60, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--codecs", default="h264,hevc")
    ap.add_argument("--sampler-seconds", type=float, default=60.0, help="0: skip the sampler's cost")
    a = ap.parse_args()
    res: dict = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "results": {}}
    for codec in a.codecs.split(","):
        for name, (w, h, kbps) in SIZES.items():
            r = measure(codec, keyframes(codec, w, h, kbps, a.frames), a.repeat)
            res["results"][f"{codec} {name}"] = r
            print(f"{codec:5} {name:16} {r['cpu_ms_per_sample']:8.2f} ms CPU/sample  {r['kb_per_keyframe']:7.1f} KB/IDR")
    if a.sampler_seconds > 0:
        res["sampler_cpu_s_per_stream_minute"] = sampler_cost(a.sampler_seconds)
        print(f"sampler: {res['sampler_cpu_s_per_stream_minute']:.3f} CPU-s per sub-stream minute")
    OUT.mkdir(exist_ok=True)
    path = OUT / f"substream_sample-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(res, indent=2))
    print(path)


if __name__ == "__main__":
    main()
