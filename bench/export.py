"""Export benchmark: labwitness's stitch against ``ffmpeg -f concat -c copy``.

    python -m bench.export [--minutes 60] [--segment-seconds 60] [--repeat 3] [--audio both|none|aac] [--keep]

Puts ``--minutes`` of one camera's footage into real storage, then times the
two ways of turning it into one MP4:

setup (not timed against anything)
    the benchmark's camera clip (1080p25 H.264, ~4.4 Mbit/s, IDR every 2 s;
    :func:`bench.source.ensure_source`, made once with ``make_clip`` and
    cached) is remuxed ONCE by the recorder's own muxer
    (:class:`recorder.segmenter.SegmentWriter`: fragmented MP4, 1 s fragments)
    into a ``--segment-seconds`` segment; N copies of that file are stored
    with ``S3ObjectStore.put_segment`` (COMPLIANCE lock, read back) in an
    embedded SeaweedFS with proper :class:`SegmentMeta` and contiguous
    start/end times, and indexed in SQLite with the uploader's own
    ``segment_row`` + ``IndexStore.add_segment``.  The RTSP recorder is not run.

(a) labwitness
    ``IndexStore.footage`` for the whole window, then ``api.media.stitch`` of
    it into a file — exactly what an evidence export does per camera.
(b) baseline
    download the same object versions to local files (sequentially, as stitch
    fetches them), then ``ffmpeg -f concat -safe 0 -i list.txt -c copy``.
    Reported both including the download and "ffmpeg from local files only".

Each is run ``--repeat`` times, alternating; medians are compared.  Wall
clock and CPU (user+sys of this process for (a) -- both its threads, fetch
and mux -- and the download, wait4 of ffmpeg) are reported; SeaweedFS's CPU
is reported separately, not added.  Both outputs must have the same number
of video packets (ffprobe ``-count_packets``), and every labwitness run the
same bytes (SHA-256).  Goals (issue 17): labwitness / (download + ffmpeg)
<= 0.75 wall and <= 1.0 CPU, for video alone and for video with AAC audio
(``--audio both``, the default: the same clip with a 16 kHz mono AAC track,
each variant its own camera).  Results go to ``bench/out/export-*.json``;
the run directory (segments, SeaweedFS data, outputs) is deleted unless
``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
from rich.console import Console
from rich.table import Table

from api.media import stitch
from bench.source import ensure_source
from index.db import make_engine, sqlite_url
from index.migrate import upgrade
from index.queries import IndexStore
from labwitness.clock import utc_ms
from recorder.segmenter import SegmentWriter
from recorder.uploader import segment_row
from storage.hashing import file_sha256
from storage.layout import SegmentMeta
from storage.s3 import S3ObjectStore
from storage.seaweed import EmbeddedSeaweed

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
BUCKET = "lw-export-bench"
CAMERA = "cam-export"
#: issue 17: wall and CPU of the stitch against download + ffmpeg concat
GOAL_WALL = 0.75
GOAL_CPU = 1.0
AUDIO_RATE = 16_000
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
FFPROBE = shutil.which("ffprobe") or "/usr/bin/ffprobe"

console = Console(width=None if sys.stdout.isatty() else 130)


def _log(msg: str) -> None:
    console.print(f"[dim]{datetime.now():%H:%M:%S}[/] {msg}")


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _proc_cpu(pid: int) -> float:
    """utime+stime of a live process (all its threads), seconds."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    f = raw[raw.rindex(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def _run_reaped(cmd: list[str], timeout: float = 3600) -> tuple[int, float, str]:
    """Run a command; (returncode, its CPU seconds from wait4, stderr)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            err = p.stderr.read().decode(errors="replace")
            p.stderr.close()
            return p.returncode, ru.ru_utime + ru.ru_stime, err
        if time.monotonic() > deadline:
            p.send_signal(signal.SIGKILL)
            deadline = time.monotonic() + 30
        time.sleep(0.02)


# -- setup ----------------------------------------------------------------------------
def make_aac(seconds: float, out: Path) -> Path:
    """``seconds`` of a 440 Hz tone as AAC-LC, 16 kHz mono, 32 kbit/s (a camera's microphone)."""
    import numpy as np

    with av.open(str(out), "w", format="mp4") as c:
        st = c.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        st.codec_context.bit_rate = 32_000
        n, step = int(seconds * AUDIO_RATE), 1024
        for first in range(0, n, step):
            t = np.arange(first, min(n, first + step), dtype=np.float32) / AUDIO_RATE
            fr = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32).reshape(1, -1),
                                            format="fltp", layout="mono")
            fr.sample_rate, fr.pts, fr.time_base = AUDIO_RATE, first, Fraction(1, AUDIO_RATE)
            c.mux(st.encode(fr))
        c.mux(st.encode(None))
    return out


def make_segment(src_mp4: Path, seconds: float, out: Path, *, from_keyframe: int = 0, audio: Path | None = None) -> dict:
    """``seconds`` of the source clip (looped if shorter) through the recorder's SegmentWriter,
    starting at its ``from_keyframe``-th keyframe (0: the start); with ``audio`` (an MP4 of
    one AAC track, :func:`make_aac`) its packets too, from the segment's start."""
    a_src = av.open(str(audio)) if audio is not None else None
    a_in = a_src.streams.audio[0] if a_src is not None else None
    a_packets = [p for p in a_src.demux(a_in) if p.size and p.dts is not None] if a_src is not None else []
    try:
        return _make_segment(src_mp4, seconds, out, from_keyframe, a_in, a_packets)
    finally:
        if a_src is not None:
            a_src.close()


def _make_segment(src_mp4: Path, seconds: float, out: Path, from_keyframe: int, a_in, a_packets: list) -> dict:
    with av.open(str(src_mp4)) as src:
        v_in = src.streams.video[0]
        packets = [p for p in src.demux(v_in) if p.size and p.dts is not None]
    tb = v_in.time_base
    start_dts = [p.dts for p in packets if p.is_keyframe][from_keyframe]
    first = packets[0].dts
    step = packets[1].dts - packets[0].dts
    loop_len = packets[-1].dts - first + step  # one clip, in time-base units
    limit = int(Fraction(seconds) / tb)
    with open(out, "wb") as f:
        with av.open(str(src_mp4)) as src:
            v_in = src.streams.video[0]
            writer = SegmentWriter(f, v_in, a_in, base_dts=start_dts)
            # audio packets (from 0) join the segment at its start: in the audio time base
            # that is writer.a_base; each goes in once the video has reached its time
            a0 = a_packets[0].dts if a_packets else 0
            a_queue = [(p, p.dts - a0) for p in a_packets]
            a_limit = int(Fraction(seconds) / a_in.time_base) if a_in is not None else 0
            a_next = 0
            written, loop = 0, 0
            while written < limit:
                for p in src.demux(v_in):
                    if not p.size or p.dts is None or (loop == 0 and p.dts < start_dts):
                        continue
                    off = loop * loop_len
                    if p.dts + off - start_dts >= limit:
                        break
                    written = p.dts + off - start_dts + step  # before write_video, which rebases p.dts
                    while a_next < len(a_queue) and a_queue[a_next][1] < a_limit and \
                            a_queue[a_next][1] * a_in.time_base <= (p.dts + off - start_dts) * tb:
                        q, rel = a_queue[a_next]
                        q.dts, q.pts = writer.a_base + rel, writer.a_base + rel
                        writer.write_audio(q)
                        a_next += 1
                    writer.write_video(p, p.dts + off, (p.pts if p.pts is not None else p.dts) + off)
                loop += 1
                src.seek(0)
            while a_next < len(a_queue) and a_queue[a_next][1] < a_limit:
                q, rel = a_queue[a_next]
                q.dts, q.pts = writer.a_base + rel, writer.a_base + rel
                writer.write_audio(q)
                a_next += 1
            writer.close()
            st = writer.stats
    return {"frames": st.frames, "keyframes": st.keyframes, "audio_packets": st.audio_packets,
            "audio": a_in.codec_context.name if a_in is not None else None, "media_s": float((st.last_dts - st.first_dts + step) * tb),
            "width": v_in.codec_context.width, "height": v_in.codec_context.height, "codec": v_in.codec_context.name}


def store_hour(store: S3ObjectStore, index: IndexStore, seg_file: Path | list[Path], seg: dict, n: int, seg_ms: int,
               t0: datetime, camera: str = CAMERA) -> float:
    """``n`` consecutive segments of ``camera`` from ``t0``: the file, or the files in turn."""
    files = seg_file if isinstance(seg_file, list) else [seg_file]
    facts = [(f, file_sha256(f), f.stat().st_size) for f in files]
    retain = datetime.now(timezone.utc) + timedelta(days=1)

    def one(i: int) -> None:
        seg_file, sha, size = facts[i % len(facts)]
        start = t0 + timedelta(milliseconds=i * seg_ms)
        meta = SegmentMeta(camera_id=camera, start=start, end=start + timedelta(milliseconds=seg_ms),
                           media_duration_ms=seg_ms, codec=seg["codec"], width=seg["width"], height=seg["height"],
                           sha256=sha, size=size, recorder_id="bench-export", session_id="s-export", sequence=i + 1,
                           area_id="area-01", frames=seg["frames"], audio_codec=seg.get("audio") or "")
        stored = store.put_segment(seg_file, meta, retain)
        c = SimpleNamespace(meta=meta, version_id=stored.version_id, retain_until=stored.retain_until,
                            lock_mode=stored.mode)
        index.add_segment(segment_row(c))

    t = time.perf_counter()
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(one, range(n)))
    return time.perf_counter() - t


# -- the two contenders ----------------------------------------------------------------
def run_labwitness(store, index: IndexStore, lo: int, hi: int, out: Path, sw_pid: int, camera: str = CAMERA) -> dict:
    out.unlink(missing_ok=True)
    sw0, c0, t0 = _proc_cpu(sw_pid), _self_cpu(), time.perf_counter()
    f = index.footage(camera, lo, hi)
    with open(out, "wb") as sink:
        res = stitch(store, f.segments, lo, hi, sink)
    wall, cpu = time.perf_counter() - t0, _self_cpu() - c0
    return {"wall_s": wall, "cpu_s": cpu, "seaweed_cpu_s": _proc_cpu(sw_pid) - sw0, "segments": len(f.segments),
            "frames": res.frames, "bytes": res.bytes, "sha256": res.sha256}


def run_baseline(store, index: IndexStore, lo: int, hi: int, work: Path, out: Path, sw_pid: int,
                 camera: str = CAMERA) -> dict:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    out.unlink(missing_ok=True)
    segs = index.footage(camera, lo, hi).segments  # the same versions stitch uses (not timed: both need it)
    sw0, c0, t0 = _proc_cpu(sw_pid), _self_cpu(), time.perf_counter()
    lines = []
    for i, s in enumerate(segs):
        path = work / f"{i:05d}.mp4"
        with store.open(s.key, s.version_id) as body, open(path, "wb") as f:
            shutil.copyfileobj(body, f, 1 << 20)
        lines.append(f"file '{path}'\n")
    (work / "list.txt").write_text("".join(lines))
    t_dl, c_dl, sw_dl = time.perf_counter() - t0, _self_cpu() - c0, _proc_cpu(sw_pid) - sw0
    t1 = time.perf_counter()
    rc, ff_cpu, err = _run_reaped([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0",
                                   "-i", str(work / "list.txt"), "-c", "copy", str(out)])
    t_ff = time.perf_counter() - t1
    if rc != 0:
        raise RuntimeError(f"ffmpeg concat failed ({rc}): {err[-2000:]}")
    return {"download_wall_s": t_dl, "download_cpu_s": c_dl, "seaweed_cpu_s": sw_dl, "ffmpeg_wall_s": t_ff,
            "ffmpeg_cpu_s": ff_cpu, "wall_s": t_dl + t_ff, "cpu_s": c_dl + ff_cpu, "segments": len(segs),
            "bytes": out.stat().st_size, "ffmpeg_stderr": err.strip()[-500:]}


def probe(path: Path) -> dict:
    r = subprocess.run([FFPROBE, "-v", "error", "-count_packets", "-show_entries",
                        "stream=codec_type,nb_read_packets,codec_name,width,height:format=duration,size", "-of", "json",
                        str(path)], capture_output=True, text=True, check=True)
    d = json.loads(r.stdout)
    s = next(x for x in d["streams"] if x["codec_type"] == "video")
    a = next((x for x in d["streams"] if x["codec_type"] == "audio"), None)
    return {"video_packets": int(s["nb_read_packets"]), "codec": s.get("codec_name"), "width": s.get("width"),
            "height": s.get("height"), "duration_s": float(d["format"]["duration"]), "bytes": int(d["format"]["size"]),
            "audio_packets": int(a["nb_read_packets"]) if a else 0, "audio_codec": a.get("codec_name") if a else None}


def _med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def compare(args, run: Path, store, index: IndexStore, sw_pid: int, src, audio: bool, t0: datetime) -> dict:
    """One variant (video alone, or with AAC): N copies of one segment stored under its own
    camera, then ``--repeat`` alternating runs of the two contenders; medians and ratios."""
    name = "video+aac" if audio else "video"
    camera = f"{CAMERA}-aac" if audio else CAMERA
    d = run / name
    d.mkdir()
    seg_ms = round(args.segment_seconds * 1000)
    n = max(1, round(args.minutes * 60_000 / seg_ms))
    seg_file = d / "segment.mp4"
    aac = make_aac(args.segment_seconds + 1, d / "tone.mp4") if audio else None
    seg = make_segment(src.mp4, args.segment_seconds, seg_file, audio=aac)
    size = seg_file.stat().st_size
    _log(f"{name}: segment: {seg['frames']} frames ({seg['keyframes']} keyframes), {seg['audio_packets']} audio "
         f"packets, {seg['media_s']:.2f} s, {seg['width']}x{seg['height']} {seg['codec']}, {size / 1e6:.1f} MB, "
         f"{size * 8 / seg['media_s'] / 1e6:.2f} Mbit/s; storing {n} copies")
    up_s = store_hour(store, index, seg_file, seg, n, seg_ms, t0, camera)
    lo, hi = utc_ms(t0), utc_ms(t0) + n * seg_ms
    _log(f"{name}: stored {n} segments ({n * size / 1e9:.2f} GB) and indexed them in {up_s:.1f} s")
    out_a, out_b, work = d / "labwitness.mp4", d / "ffmpeg.mp4", d / "download"
    lw_runs, ff_runs = [], []
    for k in range(args.repeat):
        for who in (("a", "b") if k % 2 == 0 else ("b", "a")):
            # Each run starts with no dirty pages: the last run's 2-4 GB of output (and the store's
            # footage, before the first) would otherwise be written back during the next, whose own
            # writes the kernel may throttle, whichever contender it is.  (It does not explain why the
            # first run of each contender costs about twice the others on the 2-core VM: that stays.)
            os.sync()
            if who == "a":
                r = run_labwitness(store, index, lo, hi, out_a, sw_pid, camera)
                lw_runs.append(r)
                _log(f"{name}: run {k + 1} labwitness stitch: {r['wall_s']:.2f} s wall, {r['cpu_s']:.2f} s CPU "
                     f"(SeaweedFS {r['seaweed_cpu_s']:.2f} s), {r['frames']} frames, {r['bytes'] / 1e9:.2f} GB")
            else:
                r = run_baseline(store, index, lo, hi, work, out_b, sw_pid, camera)
                ff_runs.append(r)
                _log(f"{name}: run {k + 1} baseline: download {r['download_wall_s']:.2f} s wall / "
                     f"{r['download_cpu_s']:.2f} s CPU, ffmpeg concat {r['ffmpeg_wall_s']:.2f} s wall / "
                     f"{r['ffmpeg_cpu_s']:.2f} s CPU (SeaweedFS {r['seaweed_cpu_s']:.2f} s)")
    pa, pb = probe(out_a), probe(out_b)
    shutil.rmtree(work, ignore_errors=True)
    for f in (out_a, out_b, seg_file):
        f.unlink(missing_ok=True)
    expected = n * seg["frames"]
    same = pa["video_packets"] == pb["video_packets"] == expected
    lw = {k: _med(lw_runs, k) for k in ("wall_s", "cpu_s", "seaweed_cpu_s")}
    ff = {k: _med(ff_runs, k) for k in ("wall_s", "cpu_s", "download_wall_s", "download_cpu_s", "ffmpeg_wall_s",
                                        "ffmpeg_cpu_s", "seaweed_cpu_s")}
    ratios = {
        "wall_vs_baseline_incl_download": lw["wall_s"] / ff["wall_s"],
        "wall_vs_ffmpeg_local_only": lw["wall_s"] / ff["ffmpeg_wall_s"],
        "cpu_vs_baseline_incl_download": lw["cpu_s"] / ff["cpu_s"],
        "cpu_vs_ffmpeg_local_only": lw["cpu_s"] / ff["ffmpeg_cpu_s"],
    }
    media_s = n * seg["media_s"]
    return {
        "variant": name, "camera": camera,
        "footage": {"segments": n, "segment_seconds": args.segment_seconds, "media_s": media_s,
                    "segment_bytes": size, "total_bytes": n * size, "frames_expected": expected,
                    "source": str(src.mp4), "segment": seg, "upload_and_index_s": up_s},
        "labwitness": {"median": lw, "runs": lw_runs,
                       "same_bytes_every_run": len({r["sha256"] for r in lw_runs}) == 1},
        "baseline": {"median": ff, "runs": ff_runs,
                     "command": f"{FFMPEG} -f concat -safe 0 -i list.txt -c copy out.mp4"},
        "ratios": ratios,
        "goal": {"wall": GOAL_WALL, "cpu": GOAL_CPU,
                 "wall_met": ratios["wall_vs_baseline_incl_download"] <= GOAL_WALL,
                 "cpu_met": ratios["cpu_vs_baseline_incl_download"] <= GOAL_CPU},
        "verify": {"labwitness": pa, "ffmpeg": pb, "same_video_packets": same, "expected_packets": expected},
    }


def report(args, v: dict) -> None:
    lw, ff, ratios, ft = v["labwitness"]["median"], v["baseline"]["median"], v["ratios"], v["footage"]
    pa, pb = v["verify"]["labwitness"], v["verify"]["ffmpeg"]
    t = Table(title=f"{v['variant']}: export of {args.minutes:g} min (1 camera, {ft['segments']} x "
                    f"{args.segment_seconds:g} s segments, {ft['total_bytes'] / 1e9:.2f} GB) — medians of {args.repeat}")
    for c in ("", "wall s", "CPU s", "x realtime", "SeaweedFS CPU s"):
        t.add_column(c, justify="right")
    media_s = ft["media_s"]
    t.add_row("labwitness stitch (fetch + mux)", f"{lw['wall_s']:.2f}", f"{lw['cpu_s']:.2f}",
              f"{media_s / lw['wall_s']:.0f}", f"{lw['seaweed_cpu_s']:.2f}")
    t.add_row("baseline incl. download", f"{ff['wall_s']:.2f}", f"{ff['cpu_s']:.2f}", f"{media_s / ff['wall_s']:.0f}",
              f"{ff['seaweed_cpu_s']:.2f}")
    t.add_row("  download only", f"{ff['download_wall_s']:.2f}", f"{ff['download_cpu_s']:.2f}", "", "")
    t.add_row("  ffmpeg concat, local files only", f"{ff['ffmpeg_wall_s']:.2f}", f"{ff['ffmpeg_cpu_s']:.2f}",
              f"{media_s / ff['ffmpeg_wall_s']:.0f}", "")
    console.print(t)
    g = v["goal"]
    console.print(
        f"{v['variant']}: GOAL wall labwitness / (download + ffmpeg concat): "
        f"{ratios['wall_vs_baseline_incl_download']:.2f}x (goal <= {GOAL_WALL}: {'met' if g['wall_met'] else 'NOT met'})\n"
        f"{v['variant']}: GOAL CPU  labwitness / (download + ffmpeg concat): "
        f"{ratios['cpu_vs_baseline_incl_download']:.2f}x (goal <= {GOAL_CPU}: {'met' if g['cpu_met'] else 'NOT met'})\n"
        f"{v['variant']}: labwitness / ffmpeg from local files only: wall {ratios['wall_vs_ffmpeg_local_only']:.2f}x, "
        f"CPU {ratios['cpu_vs_ffmpeg_local_only']:.2f}x\n"
        f"{v['variant']}: video packets: labwitness {pa['video_packets']}, ffmpeg {pb['video_packets']}, expected "
        f"{v['verify']['expected_packets']} -> {'same' if v['verify']['same_video_packets'] else 'DIFFERENT'}; audio "
        f"packets {pa['audio_packets']} vs {pb['audio_packets']}; duration {pa['duration_s']:.2f} s vs "
        f"{pb['duration_s']:.2f} s; size {pa['bytes'] / 1e9:.3f} GB vs {pb['bytes'] / 1e9:.3f} GB; labwitness runs "
        f"{'all the same bytes' if v['labwitness']['same_bytes_every_run'] else 'DIFFERENT bytes'} "
        f"(sha256 {v['labwitness']['runs'][0]['sha256'][:16]}…)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--segment-seconds", type=float, default=60)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each contender, alternating (medians compared)")
    ap.add_argument("--audio", choices=("both", "none", "aac"), default="both",
                    help="video alone, video with a 16 kHz AAC track, or both in turn (default)")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (SeaweedFS data, segments, outputs)")
    args = ap.parse_args(argv)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run = OUT / f"export-{stamp}"
    run.mkdir(parents=True)
    src = ensure_source(OUT, log=_log)
    sw = EmbeddedSeaweed(run / "seaweed")  # its own generated credentials
    sw.start()
    doc: dict = {"benchmark": "export", "started": stamp, "args": vars(args),
                 "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()}}
    try:
        store = S3ObjectStore(sw.endpoint, sw.access_key, sw.secret_key, BUCKET)
        info = store.check()
        engine = make_engine(sqlite_url(run / "index.sqlite3"))
        upgrade(engine)
        index = IndexStore(engine)
        t0 = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
        doc["retention_enforced"] = info.retention_enforced
        variants = {"both": (False, True), "none": (False,), "aac": (True,)}[args.audio]
        doc["variants"] = [compare(args, run, store, index, sw.proc.pid, src, a, t0) for a in variants]
        doc["machine"]["loadavg_at_end"] = os.getloadavg()
        for v in doc["variants"]:
            report(args, v)
        engine.dispose()
    finally:
        sw.stop()
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)
    f = OUT / f"export-{stamp}.json"
    f.write_text(json.dumps(doc, indent=2, default=str))
    _log(f"load average at start {doc['machine']['loadavg_at_start']}, at end {doc['machine'].get('loadavg_at_end')}; "
         f"results written to {f}" + ("" if args.keep else f" (run directory {run} removed)"))
    ok = all(v["goal"]["wall_met"] and v["goal"]["cpu_met"] and v["verify"]["same_video_packets"]
             and v["labwitness"]["same_bytes_every_run"] for v in doc.get("variants", []))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
