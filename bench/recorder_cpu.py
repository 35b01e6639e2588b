"""The recorder's own CPU per camera-minute, recording a given clip live: the baseline that
``bench.health_content`` sets picture health against.

:func:`recorder_cpu_per_minute` serves the clip's H.264 stream (remuxed once to MPEG-TS, cached
next to it, looped by ``multifilesrc`` as :mod:`bench.source` serves the recording benchmark's
clips) from a local GStreamer RTSP server, with a keeper client on the shared mount so the
recorder joins a running stream as it would a camera's, and records one camera of it with the
real recording path (:func:`bench.record.run_labwitness`: :mod:`bench.recorder_child` in a
process of its own -- RecorderService, native RTSP client, segmenter, spool, uploader into an
embedded SeaweedFS with COMPLIANCE lock, SQLite index).

The figure is the child's CPU while recording, less its main thread's (the benchmark loop that
polls the backlog gauge five times a second and starts the camera: harness, not recorder), plus
stopping and draining (``cpu.recording - cpu.recording_main_thread + cpu.stop_and_drain``), per
stream-minute: the interpreter's start-up, imports and service set-up are a one-off, not a
per-minute cost, and counting them, or the harness's polling, would flatter the ratio.  SeaweedFS and the RTSP server are other processes, measured and reported apart.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.record import JOIN_AFTER_S, run_labwitness
from bench.source import SOURCES, start_keeper, stop_keeper
from simulator.rtsp import Mount, RtspSimulator, _gst_quote

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"


def transport_stream(mp4: Path) -> Path:
    """The clip's video as MPEG-TS (stream copy, Annex B), made once next to it."""
    ts = mp4.with_suffix(".ts")
    if not ts.exists():
        tmp = ts.with_suffix(".tmp.ts")
        subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-i", str(mp4), "-map", "0:v:0", "-c", "copy",
                        "-bsf:v", "h264_mp4toannexb", "-f", "mpegts", str(tmp)], check=True)
        tmp.replace(ts)
    return ts


def looped_mount(ts: Path) -> Mount:
    launch = (f"multifilesrc location={_gst_quote(str(ts.resolve()))} loop=true "
              'caps="video/mpegts,systemstream=true,packetsize=188" ! tsdemux ! '
              "h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96")
    return Mount(launch=launch, shared=True).with_protocols("tcp")


def recorder_cpu_per_minute(mp4: Path, minutes: float, segment_s: float = 60.0, log=print) -> dict:
    """Record ``mp4`` (H.264, looped) live for ``minutes`` as one camera; the recorder's CPU per
    camera-minute and what it stored (module docstring)."""
    ts = transport_stream(mp4)
    # a short path: SeaweedFS's filer listens on a unix socket inside it (108 bytes at most)
    run_dir = Path(tempfile.mkdtemp(prefix="lw-rec-"))
    sim = RtspSimulator({"/cam": looped_mount(ts)}, workdir=run_dir / "rtsp")
    sim.start()
    keeper = start_keeper(sim.url("/cam"))
    try:
        time.sleep(JOIN_AFTER_S)
        r = run_labwitness(sim.url("/cam"), 1, minutes, segment_s, 0.0, run_dir, sim=sim, drain_timeout=60.0,
                           keep=False, py_spy=False, spec=SOURCES["h264"])
    finally:
        stop_keeper(keeper)
        sim.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    cpu = r["cpu_breakdown"]
    steady = cpu["recording"] - cpu["recording_main_thread"] + cpu["stop_and_drain"]
    cam = next(iter(r["cameras"].values()))
    out = {
        "stream_minutes": r["stream_minutes"], "cpu_steady_s": steady,
        "cpu_per_min": steady / r["stream_minutes"] if r["stream_minutes"] else None,
        "cpu_process_per_min": r["cpu_per_stream_minute"],  # whole process, start-up and imports included
        "cpu_breakdown": cpu, "seaweed_cpu_per_min": r["seaweed_cpu_per_stream_minute"],
        "rtsp_server_cpu_s": r["rtsp_server_cpu_s"], "rtsp_client": cam["rtsp_client"],
        "segments_indexed": cam["indexed"], "frames_indexed": cam["frames_indexed"], "media_s": cam["media_s"],
        "lost": r["lost_segments"], "recorded_ok": r["ok"], "keeps_pace": r["keeps_pace"],
    }
    log(f"recorder: {steady:.2f} CPU s recording {r['stream_minutes']:.2f} camera-min -> {out['cpu_per_min']:.4f} "
        f"CPU s/camera-min ({cam['indexed']} segments, {cam['frames_indexed']} frames, client {cam['rtsp_client']}; "
        f"whole process {r['cpu_per_stream_minute']:.4f})")
    return out
