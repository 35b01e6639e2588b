"""Audio benchmark: CPU per stream-minute of recording a camera's G.711 audio as AAC.

    python -m bench.audio_transcode [--minutes 10] [--repeat 3] [--browser]

(from the repository root, with the project's virtualenv).  No network, no camera:
the cost measured is the recorder's own work on the audio of one stream.

Signals (made once per run, not timed), 8 kHz mono, A-law coded by FFmpeg's encoder:

* ``busy``  -- a 300-3400 Hz sweep plus white noise at -20 dBFS: nothing for AAC to
  skip (the worst case; a lab's room sound costs less);
* ``quiet`` -- digital silence (a camera with its microphone off).

(a) labwitness: :class:`recorder.audio_transcode.AudioStage` over 20 ms RTP-sized
    packets (160 samples) with the camera's timestamps, as the worker drives it for
    either RTSP client, plus the native client's :class:`G711Depacketizer` over the
    same packets as RTP; CPU (``process_time``) per stream-minute.  The copy path
    (AAC cameras) is measured alike for comparison.
(b) baseline: ``ffmpeg -f alaw -ar 8000 -ac 1 -i in.alaw -c:a aac -b:a 32k out.m4a``
    on the same minutes (CPU of the child from ``wait4``, start-up included).

``--browser``: also asks the system Chromium (via Playwright, as the UI tests do)
whether it plays AAC and G.711 in MP4 (``MediaSource.isTypeSupported`` /
``canPlayType``), and FFmpeg's MP4 muxer whether it takes G.711 at all -- the two
facts behind transcoding.  Results: ``bench/out/audio_transcode-*.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import shutil
import struct
import subprocess
import time
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import av

from recorder.audio_transcode import AudioStage
from recorder.rtp_audio import G711Depacketizer
from recorder.segmenter import TrackTemplate

OUT = Path(__file__).with_name("out")
RATE = 8000
PACKET = 160  # 20 ms, the usual G.711 packet


def make_signal(kind: str, seconds: int) -> bytes:
    """``seconds`` of 8 kHz mono A-law."""
    n = RATE * seconds
    if kind == "quiet":
        pcm = bytes(2 * n)
    else:
        rnd = random.Random(7)
        import math

        phase, out = 0.0, bytearray()
        for i in range(n):
            f = 300 + (3100 * ((i / RATE) % 10) / 10)  # a 10 s sweep, over and over
            phase += 2 * math.pi * f / RATE
            v = 0.3 * math.sin(phase) + rnd.gauss(0, 0.1)
            out += struct.pack("<h", max(-32767, min(32767, int(v * 32767))))
        pcm = bytes(out)
    enc = av.CodecContext.create("pcm_alaw", "w")
    enc.sample_rate, enc.layout, enc.format = RATE, "mono", "s16"
    enc.open()
    frame = av.AudioFrame(format="s16", layout="mono", samples=n)
    frame.sample_rate = RATE
    frame.planes[0].update(pcm)
    return b"".join(bytes(p) for p in enc.encode(frame))


def _g711_track() -> tuple[TrackTemplate, av.container.InputContainer]:
    c = av.open(io.BytesIO(bytes(PACKET)), format="alaw", options={"sample_rate": str(RATE), "ch_layout": "mono"})
    return TrackTemplate(c.streams.audio[0], Fraction(1, RATE), sample_rate=RATE, layout="mono"), c


def run_transcode(alaw: bytes) -> dict:
    """CPU of the worker's audio stage (and the native depacketizer) over ``alaw``."""
    track, tmpl = _g711_track()
    tb = Fraction(1, RATE)
    rtp = [struct.pack("!BBHII", 0x80, 8, i & 0xFFFF, (i * PACKET) & 0xFFFFFFFF, 1) + alaw[o:o + PACKET]
           for i, o in enumerate(range(0, len(alaw), PACKET))]
    t0 = time.process_time()
    dep = G711Depacketizer()
    for p in rtp:
        dep.push(memoryview(p))
    t_dep = time.process_time() - t0
    t0 = time.process_time()
    stage = AudioStage.open("pcm_alaw", track)
    out_bytes = packets = 0
    for au in dep.out:
        pkt = av.Packet(au.data)
        pkt.time_base = tb
        pkt.pts = pkt.dts = au.ts
        for a in stage.convert(pkt):
            out_bytes += a.size
            packets += 1
    for a in stage.flush():
        out_bytes += a.size
        packets += 1
    t_tx = time.process_time() - t0
    stage.close()
    tmpl.close()
    return {"depacketize_cpu_s": t_dep, "transcode_cpu_s": t_tx, "aac_packets": packets, "aac_bytes": out_bytes}


def run_copy(seconds: int) -> float:
    """CPU of the copy path (an AAC camera) for the same minutes: 8 kHz AAC, 1024-sample frames."""
    c = av.open(io.BytesIO(b"\xff\xf1\x6c\x40\x01\x1f\xfc" * 2), format="aac")
    stage = AudioStage.open("aac", c.streams.audio[0])
    pkts = []
    for i in range(seconds * RATE // 1024):
        p = av.Packet(bytes(100))
        p.pts = p.dts = i * 1024
        pkts.append(p)
    t0 = time.process_time()
    for p in pkts:
        stage.convert(p)
    cpu = time.process_time() - t0
    c.close()
    return cpu


def run_ffmpeg(alaw: bytes, workdir: Path) -> float | None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return None
    src, dst = workdir / "in.alaw", workdir / "out.m4a"
    src.write_bytes(alaw)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "alaw", "-ar", str(RATE), "-ac", "1", "-i", str(src),
                    "-c:a", "aac", "-b:a", "32k", str(dst)], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def browser_facts() -> dict:
    """What plays in the browser and what FFmpeg's MP4 muxer takes (the decision's evidence)."""
    facts: dict = {"mp4_muxer": {}}
    for codec in ("pcm_alaw", "pcm_mulaw", "aac"):
        buf = io.BytesIO()
        c = av.open(buf, "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov+default_base_moof"})
        try:
            c.add_stream(codec, rate=RATE)
            facts["mp4_muxer"][codec] = "accepted"
        except ValueError as e:
            facts["mp4_muxer"][codec] = f"refused: {e}"
        finally:
            try:
                c.close()
            except Exception:
                pass
    chromium = os.environ.get("LABWITNESS_CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        facts["chromium"] = f"{chromium} missing"
        return facts
    from playwright.sync_api import sync_playwright

    types = ['video/mp4; codecs="avc1.42E01E,mp4a.40.2"', 'audio/mp4; codecs="mp4a.40.2"', 'audio/mp4; codecs="alaw"',
             'audio/mp4; codecs="ulaw"', 'video/mp4; codecs="avc1.42E01E,alaw"', 'audio/wav; codecs="6"']
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = b.new_page()
            facts["chromium_version"] = b.version
            facts["chromium"] = {t: page.evaluate(
                "t => ({mse: MediaSource.isTypeSupported(t), canPlayType: document.createElement('video').canPlayType(t)})",
                t) for t in types}
        finally:
            b.close()
    return facts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--browser", action="store_true", help="also check Chromium and the MP4 muxer")
    args = ap.parse_args(argv)
    seconds = int(args.minutes * 60)
    minutes = seconds / 60
    OUT.mkdir(exist_ok=True)
    work = OUT / "audio_transcode"
    work.mkdir(exist_ok=True)
    result: dict = {"minutes": minutes, "repeat": args.repeat, "pyav": av.__version__,
                    "ffmpeg": av.ffmpeg_version_info, "signals": {}}
    for kind in ("busy", "quiet"):
        alaw = make_signal(kind, seconds)
        runs = [run_transcode(alaw) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["transcode_cpu_s"])
        ff = run_ffmpeg(alaw, work)
        row = {
            "transcode_cpu_s_per_stream_min": best["transcode_cpu_s"] / minutes,
            "depacketize_cpu_s_per_stream_min": best["depacketize_cpu_s"] / minutes,
            "aac_kbit_s": best["aac_bytes"] * 8 / seconds / 1000,
            "all_runs_cpu_s": [round(r["transcode_cpu_s"], 4) for r in runs],
            "ffmpeg_cli_cpu_s_per_stream_min": ff / minutes if ff is not None else None,
        }
        result["signals"][kind] = row
        print(f"{kind:6s} transcode {row['transcode_cpu_s_per_stream_min']:.4f} CPU-s/stream-min  "
              f"depacketize {row['depacketize_cpu_s_per_stream_min']:.4f}  AAC {row['aac_kbit_s']:.1f} kbit/s  "
              f"ffmpeg CLI {row['ffmpeg_cli_cpu_s_per_stream_min'] or float('nan'):.4f}")
    copy = min(run_copy(seconds) for _ in range(args.repeat))
    result["copy_cpu_s_per_stream_min"] = copy / minutes
    print(f"copy   {copy / minutes:.4f} CPU-s/stream-min (an AAC camera, for comparison)")
    if args.browser:
        result["browser"] = browser_facts()
        print(json.dumps(result["browser"], indent=2, ensure_ascii=False))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (OUT / f"audio_transcode-{stamp}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
