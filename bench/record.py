"""Recording benchmark: labwitness against ``ffmpeg -c copy -f segment``.

    python -m bench.record [--source NAME|all] [--streams N] [--minutes M] [--segment-seconds S] [--find-max]

Serves one endless 1080p25 stream of the chosen kind (``--source``: ``h264``,
the default, ``h265-g711``, ``h264-bframes-aac``, ``h264-midgop``, or ``all``
of them one after the other; see :mod:`bench.source`) from a local GStreamer
RTSP server on 127.0.0.1, checks with FFmpeg's client that it carries what
its name says, and records N copies of it

(a) with labwitness: the real recording path (RecorderService -> spool ->
    S3ObjectStore on an embedded SeaweedFS with Object Lock -> SQLite index)
    in a child process of its own (:mod:`bench.recorder_child`);
(b) with N ``ffmpeg -rtsp_transport tcp -i URL -map 0 -c copy -f segment``
    processes (MP4 segments; Matroska for G.711, which MP4 does not take),

one after the other, same N, same duration, same segment length, and prints

* CPU seconds per stream-minute of both and their ratio (goal <= 0.5, issue 17; it was 0.8);
* lost segments (goal 0), and with ``--find-max`` the largest N this machine
  records with 0 lost segments (goal >= 100);
* p99 seconds from segment close to verified lock in S3 (goal < 5);
* the recorder process's resident memory: base (no camera), per camera above it
  (goal <= 8 MiB) and growth over the run (goal: flat), sampled once a second by
  the child (``--tracemalloc``: Python's allocations by source line as well);
* per source, which RTSP client recorded each camera in the end (labwitness's
  native client hands a camera it cannot record over to FFmpeg's), what audio
  the stored segments carry and whether each camera's first segment starts at
  a keyframe (read back from S3 / the ffmpeg files after the run);
* with ``--source all``, one line per source with its ratio against the goal.

CPU is the recorder's own process (all threads, from exec to exit, read with
wait4); SeaweedFS and the RTSP server are measured separately and reported,
not added.  Results are also written to ``bench/out/record-*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.procstat import BusyMeter, proc_cpu, reap
from bench.source import (FPS, SOURCES, Source, SourceSpec, check, describe, ensure_source, inspect_recording,
                          probe, start_keeper, stop_keeper)
from labwitness.private_fs import private_file
from simulator.rtsp import RtspSimulator
from storage.s3 import S3ObjectStore
from storage.seaweed import EmbeddedSeaweed

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
GOAL_RATIO, GOAL_MAX_N, GOAL_P99 = 0.5, 200, 5.0  # issue 17: whole-process CPU <= 0.5x ffmpeg; 200 cameras
#: resident memory of the recorder process per camera above its base (no camera), MiB
GOAL_MIB_PER_CAMERA = 8.0
#: the first segment starts once the session is open: allow this much of each
#: camera's window to pass before footage is expected
OPEN_ALLOWANCE_S = 3.0
#: share of frames that must be in the index for the media time recorded
MIN_FRAME_SHARE = 0.99
#: bytes of each camera's first stored segment read back to see how it starts (1 s fragments:
#: about two of them at 4 Mbit/s)
INSPECT_BYTES = 1 << 20
#: the source check joins this long after the keeper client (not a multiple of any GOP)
JOIN_AFTER_S = 1.3

console = Console(width=None if sys.stdout.isatty() else 130)


def _log(msg: str) -> None:
    console.print(f"[dim]{datetime.now():%H:%M:%S}[/] {msg}")


def allowance(spec: SourceSpec) -> float:
    """Seconds of a camera's window that may pass before footage is expected: the session
    set-up, plus one GOP, since a recorder may (ffmpeg -c copy does) start at the first
    keyframe after it joins mid-GOP."""
    return OPEN_ALLOWANCE_S + spec.gop_s


def expected_segments(window_s: float, segment_s: float, allowance_s: float = OPEN_ALLOWANCE_S) -> int:
    """Segments that must exist for a camera recorded ``window_s`` seconds.

    Cuts fall on the first keyframe at or after the target length, so a
    segment is S..S+GOP long; ``floor((W - allowance) / S)`` is a floor that
    every loss-free recording meets (the real count is usually one more).
    """
    return max(0, int((window_s - allowance_s) // segment_s))


def summarise_starts(inspections: list[dict], last: list[dict] | None = None) -> dict:
    """What the recorded segments show over the cameras inspected: how each camera's first
    segment starts, and (from its last segment, after any hand-over to another client)
    whether B-frames survived."""
    def count(key) -> dict:
        out: dict[str, int] = {}
        for i in inspections:
            if i["error"] is None:
                k = str(key(i))
                out[k] = out.get(k, 0) + 1
        return out
    ok = [i for i in inspections if i["error"] is None]
    return {"inspected": len(inspections), "unreadable": len(inspections) - len(ok),
            "start_at_keyframe": sum(1 for i in ok if i["first_video_keyframe"]),
            "video": count(lambda i: i["video_codec"]), "audio": count(lambda i: i["audio_codec"] or "none"),
            "pts_ne_dts": sum(1 for i in (last if last is not None else ok) if i["error"] is None and i["reordered"]),
            "errors": sorted({i["error"] for i in inspections + (last or []) if i["error"]})[:3]}


# -- (a) labwitness ---------------------------------------------------------------
def run_labwitness(url: str, n: int, minutes: float, segment_s: float, stagger_s: float, run_dir: Path, *,
                   sim: RtspSimulator, drain_timeout: float, keep: bool, py_spy: bool, client: str = "native",
                   profile: bool = False, spec: SourceSpec = SOURCES["h264"], tracemalloc: bool = False,
                   child_python: str | None = None) -> dict:
    d = run_dir / f"{spec.name}-labwitness-{client}-n{n}"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    sw = EmbeddedSeaweed(d / "seaweed")  # its own generated credentials
    sw.start()
    child = spy = None
    try:
        cfg = {
            "endpoint": sw.endpoint, "access_key": sw.access_key, "secret_key": sw.secret_key, "bucket": f"bench-n{n}",
            "workdir": str(d), "url": url, "streams": n, "segment_seconds": segment_s,
            "duration_s": minutes * 60, "stagger_s": stagger_s, "drain_timeout_s": drain_timeout,
            "result": str(d / "result.json"), "rtsp_client": client,
            "profile": str(d / "profile.pstats") if profile else None,
            "tracemalloc": str(d / "tracemalloc.txt") if tracemalloc else None,
        }
        private_file(d / "config.json").write_text(json.dumps(cfg, indent=1))  # it carries the store's keys
        sw_cpu0, sim_cpu0 = proc_cpu(sw.proc.pid), proc_cpu(sim.pid)
        busy = BusyMeter()
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        if child_python:  # another interpreter of the same version, on this environment's packages
            env["PYTHONPATH"] += os.pathsep + os.pathsep.join(p for p in sys.path if p.endswith("site-packages"))
        with open(d / "recorder.log", "wb") as logf:
            t0 = time.monotonic()
            child = subprocess.Popen([child_python or sys.executable, "-m", "bench.recorder_child", str(d / "config.json")],
                                     cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        if py_spy:
            spy_bin = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
            if spy_bin:
                with open(d / "py-spy.log", "wb") as spy_log:
                    spy = subprocess.Popen([spy_bin, "record", "-p", str(child.pid), "-r", "100", "--nonblocking", "--threads",
                                            "-f", "raw", "-o", str(d / "py-spy.txt"),
                                            "-d", str(int(minutes * 60 + stagger_s))],
                                           stdout=subprocess.DEVNULL, stderr=spy_log)
            else:
                _log("[yellow]py-spy not found; no profile[/]")
        r = reap(child, timeout=minutes * 60 + stagger_s + drain_timeout + 180)
        wall = time.monotonic() - t0
        share = busy.stop()
        sw_cpu, sim_cpu = proc_cpu(sw.proc.pid) - sw_cpu0, proc_cpu(sim.pid) - sim_cpu0
        other = busy.other_cores(r.cpu_s + sw_cpu + sim_cpu)
        restarts = sw.restarts
        child = None
        starts = _inspect_stored(d / "result.json", sw, "first_segment") if r.returncode == 0 else {}
        lasts = _inspect_stored(d / "result.json", sw, "last_segment") if r.returncode == 0 else {}
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        if spy is not None:
            try:
                spy.wait(60)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
        sw.stop()
        if not keep:  # gigabytes per run
            for sub in ("seaweed", "spool"):
                shutil.rmtree(d / sub, ignore_errors=True)
    result_f = d / "result.json"
    if r.returncode != 0 or not result_f.exists():
        tail = (d / "recorder.log").read_text(errors="replace").splitlines()[-30:]
        mem_f = d / "memory.json"  # written when the recording stopped, before the service's stop
        if mem_f.exists():
            m = json.loads(mem_f.read_text())
            _log(f"[yellow]N={n}: RSS while recording: {memory_cell(m)} (base / per camera / growth)[/]")
            tail.append(f"RSS while recording (memory.json): {memory_cell(m)} MiB (base / per camera / growth)")
        raise RuntimeError(f"labwitness recorder exited with {r.returncode}; log tail:\n" + "\n".join(tail))
    s = json.loads(result_f.read_text())
    loss = judge(s, allowance(spec))
    stream_min = s["stream_seconds"] / 60
    clients: dict[str, int] = {}
    audio_indexed: dict[str, int] = {}
    for c in s["cameras"].values():
        clients[str(c["rtsp_client"])] = clients.get(str(c["rtsp_client"]), 0) + 1
        a = ",".join(c["audio_codecs"]) or "none"
        audio_indexed[a] = audio_indexed.get(a, 0) + 1
    return {
        "recorder": "labwitness", "rtsp_client": client, "streams": n, "minutes": minutes, "segment_seconds": segment_s,
        "stagger_s": stagger_s, "stream_minutes": stream_min, "wall_s": wall,
        "cpu_s": r.cpu_s, "cpu_user_s": r.user_s, "cpu_sys_s": r.sys_s, "cpu_per_stream_minute": r.cpu_s / stream_min if stream_min else None,
        "cpu_recording_window_s": s["cpu"]["recording"],
        "cpu_window_per_stream_minute": s["cpu"]["recording"] / stream_min if stream_min else None,
        "cpu_breakdown": s["cpu"], "maxrss_mb": r.maxrss_kb / 1024,
        "seaweed_cpu_s": sw_cpu, "seaweed_cpu_per_stream_minute": sw_cpu / stream_min if stream_min else None,
        "rtsp_server_cpu_s": sim_cpu, "machine_busy": share, "other_load_cores": other, "seaweed_restarts": restarts,
        "close_to_locked": s["close_to_locked"], "close_to_locked_recording": s["close_to_locked_recording"],
        "keeps_pace": keeps_pace(s), "drained": s["drained"], "drain_s": s["drain_s"],
        "backlog_at_stop": s["backlog_at_stop"], "backlog_max": s["backlog_max"],
        "rtsp_clients": clients, "audio_indexed": audio_indexed, "memory": s["memory"],
        "recorded": summarise_starts(list(starts.values()), list(lasts.values())),
        **loss, "dir": str(d), "cameras": s["cameras"],
    }


def _inspect_stored(result_f: Path, sw: EmbeddedSeaweed, which: str) -> dict[str, dict]:
    """The start of each camera's first (or last) stored segment, read back from S3 (after the
    recorder exited: none of this is in its CPU figure)."""
    if not result_f.exists():
        return {}
    cfg = json.loads((result_f.parent / "config.json").read_text())
    store = S3ObjectStore(sw.endpoint, sw.access_key, sw.secret_key, cfg["bucket"])
    out = {}
    for cid, c in json.loads(result_f.read_text())["cameras"].items():
        first = c.get(which)
        if not first:
            continue
        try:
            body = store.open(first["key"], first["version_id"] or None, length=INSPECT_BYTES)
            try:
                data = body.read()
            finally:
                body.close()
        except Exception as e:  # noqa: BLE001 -- a read-back failure is reported, not fatal
            out[cid] = {"error": f"read back: {e}"[:200], "first_video_keyframe": None, "reordered": 0,
                        "video_codec": None, "audio_codec": None}
            continue
        out[cid] = inspect_recording(data)
    return out


def keeps_pace(s: dict) -> bool:
    """Uploads keep up: while recording, no segment waited a segment length to be locked."""
    c = s["close_to_locked_recording"]
    return c["max"] is None or c["max"] < s["segment_seconds"]


def judge(s: dict, allowance_s: float = OPEN_ALLOWANCE_S) -> dict:
    """Loss figures of one labwitness run (0 everywhere = nothing lost)."""
    seg_s = s["segment_seconds"]
    lost = gaps = dropped = reconnects = short = 0
    written = stored = indexed = expected = 0
    frames_idx = frames_expected = 0.0
    bad: list[str] = []
    for cid, c in s["cameras"].items():
        exp = expected_segments(c["window_s"], seg_s, allowance_s)
        cam_lost = (c["written"] - min(c["stored"], c["indexed"], c["locked"])) + c["missing_sequences"] \
            + max(0, exp - c["indexed"]) + c["left_in_spool"]
        lost += cam_lost
        gaps += c["gaps"]
        dropped += c["dropped_packets"]
        reconnects += max(0, c["sessions"] - 1)
        written += c["written"]
        stored += c["stored"]
        indexed += c["indexed"]
        expected += exp
        frames_idx += c["frames_indexed"]
        frames_expected += c["media_s"] * FPS
        if c["media_s"] < c["window_s"] - allowance_s - 1.0:
            short += 1
        if cam_lost or c["gaps"] or c["dropped_packets"] or c["sessions"] != 1:
            bad.append(f"{cid}: written {c['written']} indexed {c['indexed']} expected>={exp} gaps {c['gap_reasons']} "
                       f"sessions {c['sessions']} {c['last_error'][:120]}")
    frame_share = frames_idx / frames_expected if frames_expected else 0.0
    ok = (lost == 0 and gaps == 0 and dropped == 0 and reconnects == 0 and short == 0
          and frame_share >= MIN_FRAME_SHARE and s["drained"] and not s["stopped_early"])
    return {"expected_segments": expected, "written": written, "stored": stored, "indexed": indexed,
            "lost_segments": lost, "gaps": gaps, "dropped_packets": dropped, "reconnects": reconnects,
            "cameras_short": short, "frame_share": frame_share, "ok": ok, "problems": bad[:10]}


# -- (b) ffmpeg ---------------------------------------------------------------------
def run_ffmpeg(url: str, n: int, minutes: float, segment_s: float, stagger_s: float, run_dir: Path, *,
               sim: RtspSimulator, keep: bool, spec: SourceSpec = SOURCES["h264"]) -> dict:
    d = run_dir / f"{spec.name}-ffmpeg-n{n}"
    fmt = spec.ffmpeg_segment_format
    ext = "mkv" if fmt == "matroska" else fmt
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    procs: list[subprocess.Popen] = []
    started: list[float] = []
    errs = []
    sim_cpu0 = proc_cpu(sim.pid)
    busy = BusyMeter()
    t0 = time.time()
    try:
        for i in range(n):
            delay = t0 + stagger_s * i / n - time.time()
            if delay > 0:
                time.sleep(delay)
            cam = d / f"cam-{i:03d}"
            cam.mkdir()
            err = open(cam / "ffmpeg.log", "wb")
            errs.append(err)
            procs.append(subprocess.Popen(
                # every stream the camera sends (video and audio), copied: never transcoded
                ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url,
                 "-map", "0", "-c", "copy", "-f", "segment", "-segment_format", fmt,
                 "-segment_time", f"{segment_s:g}", "-reset_timestamps", "1", str(cam / f"out%05d.{ext}")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err))
            started.append(time.time())
        time.sleep(max(0.0, t0 + minutes * 60 - time.time()))
        t_stop = time.time()
        died_early = sum(1 for p in procs if p.poll() is not None)
        cpu_window = sum(proc_cpu(p.pid) for p in procs)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)  # ffmpeg finishes the open segment and exits
        reaped = [reap(p, timeout=30) for p in procs]
        share = busy.stop()
        sim_cpu = proc_cpu(sim.pid) - sim_cpu0
        other = busy.other_cores(sum(r.cpu_s for r in reaped) + sim_cpu)
    finally:
        for p in procs:
            if p.returncode is None and p.poll() is None:
                p.kill()
                p.wait()
        for e in errs:
            e.close()
    cpu = sum(r.cpu_s for r in reaped)
    windows = [t_stop - s for s in started]
    stream_min = sum(windows) / 60
    files = expected = short = log_lines = 0
    nbytes = 0
    starts, lasts = [], []
    for i, w in enumerate(windows):
        segs = sorted((d / f"cam-{i:03d}").glob(f"out*.{ext}"))
        files += len(segs)
        nbytes += sum(p.stat().st_size for p in segs)
        exp = expected_segments(w, segment_s, allowance(spec))
        expected += exp
        short += 1 if len(segs) < exp else 0
        if segs:
            starts.append(inspect_recording(segs[0]))
            lasts.append(inspect_recording(segs[-2 if len(segs) > 1 else -1]))  # the last complete one
        log_lines += len((d / f"cam-{i:03d}" / "ffmpeg.log").read_text(errors="replace").splitlines())
    if not keep:
        for i in range(n):
            for p in (d / f"cam-{i:03d}").glob(f"out*.{ext}"):
                p.unlink()
    return {
        "recorder": "ffmpeg", "streams": n, "minutes": minutes, "segment_seconds": segment_s, "stagger_s": stagger_s,
        "stream_minutes": stream_min, "cpu_s": cpu, "cpu_user_s": sum(r.user_s for r in reaped),
        "cpu_sys_s": sum(r.sys_s for r in reaped), "cpu_per_stream_minute": cpu / stream_min if stream_min else None,
        "cpu_recording_window_s": cpu_window,
        "cpu_window_per_stream_minute": cpu_window / stream_min if stream_min else None,
        "maxrss_mb_each": max((r.maxrss_kb for r in reaped), default=0) / 1024,
        "rtsp_server_cpu_s": sim_cpu, "machine_busy": share, "other_load_cores": other, "segments": files, "expected_segments": expected,
        "cameras_short": short, "died_early": died_early, "bytes": nbytes, "segment_format": fmt,
        "error_log_lines": log_lines, "recorded": summarise_starts(starts, lasts),
        "ok": died_early == 0 and short == 0, "dir": str(d),
    }


# -- reporting ----------------------------------------------------------------------
def _f(v, fmt: str = ".3f", none: str = "—") -> str:
    return none if v is None else format(v, fmt)


def _goal(ok: bool | None) -> str:
    return "—" if ok is None else ("[green]met[/]" if ok else "[red]missed[/]")


def _counts(d: dict | None, total: int | None = None) -> str:
    """{"native": 9, "ffmpeg": 1} -> "native 9, ffmpeg 1" (of total)."""
    if not d:
        return "—"
    return ", ".join(f"{k} {v}" + (f"/{total}" if total is not None else "") for k, v in sorted(d.items()))


def _starts(rec: dict | None) -> str:
    if not rec or not rec["inspected"]:
        return "—"
    return f"{rec['start_at_keyframe']}/{rec['inspected'] - rec['unreadable']}" + (
        f" ({rec['unreadable']} unreadable)" if rec["unreadable"] else "")


def print_compare(lw: dict | None, ff: dict | None, source: str = "h264") -> None:
    t = Table(title=f"bench/record, source {source} — {(lw or ff)['streams']} streams × {(lw or ff)['minutes']:g} min, "
                    f"{(lw or ff)['segment_seconds']:g} s segments, starts staggered over {(lw or ff)['stagger_s']:g} s")
    t.add_column("figure")
    t.add_column(f"labwitness ({(lw or {}).get('rtsp_client', '—')} RTSP client)", justify="right")
    t.add_column("ffmpeg -c copy -f segment", justify="right")
    t.add_column("goal")
    ratio = (lw["cpu_per_stream_minute"] / ff["cpu_per_stream_minute"]) if lw and ff else None
    ratio_w = (lw["cpu_window_per_stream_minute"] / ff["cpu_window_per_stream_minute"]) if lw and ff else None
    g = lambda d, k, fmt=".3f": _f(d.get(k) if d else None, fmt)  # noqa: E731
    t.add_row("stream-minutes recorded", g(lw, "stream_minutes", ".1f"), g(ff, "stream_minutes", ".1f"), "")
    t.add_row("CPU s, whole process(es)", g(lw, "cpu_s", ".1f"), g(ff, "cpu_s", ".1f"), "")
    t.add_row("[bold]CPU s per stream-minute[/]", g(lw, "cpu_per_stream_minute"), g(ff, "cpu_per_stream_minute"), "")
    t.add_row("[bold]ratio labwitness / ffmpeg[/]", _f(ratio), "", f"≤ {GOAL_RATIO} {_goal(ratio <= GOAL_RATIO if ratio else None)}")
    t.add_row("CPU s per stream-minute, recording window only", g(lw, "cpu_window_per_stream_minute"),
              g(ff, "cpu_window_per_stream_minute"), f"ratio {_f(ratio_w)}")
    if lw:
        b = lw["cpu_breakdown"]
        t.add_row("  labwitness CPU: start-up+imports / setup / recording / stop+drain",
                  f"{b['interpreter'] + b['imports']:.1f} / {b['setup']:.1f} / {b['recording']:.1f} / {b['stop_and_drain']:.1f}", "", "")
    t.add_row("SeaweedFS CPU s per stream-minute (not included above)", g(lw, "seaweed_cpu_per_stream_minute"), "n/a (local files)", "")
    t.add_row("RTSP server CPU s (load generator, not included)", g(lw, "rtsp_server_cpu_s", ".1f"), g(ff, "rtsp_server_cpu_s", ".1f"), "")
    t.add_row("machine busy (share of both cores)", _f(lw and lw["machine_busy"] * 100, ".0f") + "%" if lw else "—",
              _f(ff and ff["machine_busy"] * 100, ".0f") + "%" if ff else "—", "")
    t.add_row("load from other processes on the machine (cores)", g(lw, "other_load_cores", ".2f"), g(ff, "other_load_cores", ".2f"),
              "≈0 for a clean run")
    t.add_row("max RSS MB", g(lw, "maxrss_mb", ".0f"), (g(ff, "maxrss_mb_each", ".0f") + " each") if ff else "—", "")
    if lw:
        t.add_row("[bold]RSS MiB: base (no camera) / per camera above it / growth over the run[/]", memory_cell(lw["memory"]),
                  (g(ff, "maxrss_mb_each", ".0f") + " max each") if ff else "—",
                  f"≤ {GOAL_MIB_PER_CAMERA:g}/camera, flat {_goal(memory_ok(lw['memory']))}")
    if lw:
        t.add_row("segments expected ≥ / written / stored+locked / indexed",
                  f"{lw['expected_segments']} / {lw['written']} / {lw['stored']} / {lw['indexed']}",
                  f"{ff['expected_segments']} / {ff['segments']} files / — / —" if ff else "—", "")
        t.add_row("[bold]lost segments[/] (+ gaps, dropped packets, reconnects)",
                  f"{lw['lost_segments']} (+{lw['gaps']}, {lw['dropped_packets']}, {lw['reconnects']})",
                  (f"{ff['cameras_short']} cams short, {ff['died_early']} died") if ff else "—",
                  f"0 {_goal(lw['ok'])}")
        t.add_row("frames indexed / frames in recorded media time", f"{lw['frame_share'] * 100:.2f}%", "", "")
        c, cr = lw["close_to_locked"], lw["close_to_locked_recording"]
        t.add_row("[bold]close → locked in S3, s: p50 / p99 / max[/] (all segments)",
                  f"{_f(c['p50'], '.2f')} / {_f(c['p99'], '.2f')} / {_f(c['max'], '.2f')}", "",
                  f"p99 < {GOAL_P99} {_goal(c['p99'] < GOAL_P99 if c['p99'] is not None else None)}")
        t.add_row("  same, segments closed while recording (not the stop burst)",
                  f"{_f(cr['p50'], '.2f')} / {_f(cr['p99'], '.2f')} / {_f(cr['max'], '.2f')}", "", "")
        t.add_row("upload backlog max / at stop; drain s", f"{lw['backlog_max']:.0f} / {lw['backlog_at_stop']}; {lw['drain_s']:.1f}", "", "")
    lr, fr = (lw or {}).get("recorded"), (ff or {}).get("recorded")
    t.add_row("RTSP client that recorded (cameras)", _counts((lw or {}).get("rtsp_clients")),
              "FFmpeg's" if ff else "—", "")
    t.add_row("audio in the first stored segments (cameras)", _counts(lr and lr["audio"]), _counts(fr and fr["audio"]), "")
    t.add_row("  audio codec in the index (cameras)", _counts((lw or {}).get("audio_indexed")), "", "")
    t.add_row("first segment starts at a keyframe (cameras)", _starts(lr), _starts(fr), "")
    t.add_row("last segments with pts ≠ dts (B-frames kept)", _f(lr and lr["pts_ne_dts"], "d"),
              _f(fr and fr["pts_ne_dts"], "d"), "")
    if ff:
        t.add_row("ffmpeg segment container; error-log lines", "", f"{ff['segment_format']}; {ff['error_log_lines']}", "")
    console.print(t)
    if lw and lw["problems"]:
        console.print("[red]labwitness problems:[/]")
        for p in lw["problems"]:
            console.print(f"  {p}")


def memory_cell(m: dict | None) -> str:
    """"base 120 / 4.10 per cam / +1.2 (first→last third)" of a run's ``memory`` figures."""
    if not m or m.get("per_camera_mib") is None:
        return "—"
    return f"{m['base_mib']:.0f} / {m['per_camera_mib']:.2f} / {m['growth_mib']:+.1f}"


def memory_ok(m: dict | None) -> bool | None:
    """Per camera within the goal and no growth beyond noise (a camera's worth of memory over the run)."""
    if not m or m.get("per_camera_mib") is None:
        return None
    return m["per_camera_mib"] <= GOAL_MIB_PER_CAMERA and m["growth_mib"] <= max(GOAL_MIB_PER_CAMERA, 0.02 * m["steady_mib"])


def print_find_max(steps: list[dict], best: int | None, paced: int | None) -> None:
    t = Table(title="bench/record --find-max (labwitness)")
    for col in ("N", "0 lost", "pace", "lost", "gaps", "drop", "frames", "CPU/s-min", "busy", "other",
                "SW CPU", "p99 rec", "p99 all", "backlog", "drain", "RSS base/cam/growth"):
        t.add_column(col, justify="right")
    for s in steps:
        if "error" in s:
            t.add_row(str(s["streams"]), "[red]no[/]", "—", *(["—"] * 12))
            continue
        c, cr = s["close_to_locked"], s["close_to_locked_recording"]
        yes = lambda v: "[green]yes[/]" if v else "[red]no[/]"  # noqa: E731
        t.add_row(str(s["streams"]), yes(s["ok"]), yes(s["keeps_pace"]), str(s["lost_segments"]), str(s["gaps"]),
                  str(s["dropped_packets"]), f"{s['frame_share'] * 100:.1f}%", _f(s["cpu_per_stream_minute"]),
                  f"{s['machine_busy'] * 100:.0f}%", f"{s['other_load_cores']:.2f}", f"{s['seaweed_cpu_s']:.1f}", _f(cr["p99"], ".2f"), _f(c["p99"], ".2f"),
                  f"{s['backlog_max']:.0f}", f"{s['drain_s']:.1f}", memory_cell(s.get("memory")))
    console.print(t)
    console.print("[dim]pace = uploads kept up; drop = dropped packets; frames = indexed / media time × fps; "
                  "CPU/s-min = labwitness CPU s per stream-minute; busy = machine (both cores); other = cores used by "
                  "other processes; SW CPU = SeaweedFS CPU s; p99 rec / all = close→locked p99 s while recording / "
                  "all segments; backlog = max segments waiting; drain = s to upload at stop; RSS = recorder "
                  "process resident MiB with no camera / per camera above it / last third - first third of the run[/]")
    for s in steps:
        m = s.get("memory")
        if "error" not in s and m and m.get("per_camera_mib") is not None:
            console.print(f"[bold]RSS at N={s['streams']}:[/] {m['steady_mib']:.0f} MiB = base {m['base_mib']:.0f} + "
                          f"{m['per_camera_mib']:.2f} MiB/camera (goal ≤ {GOAL_MIB_PER_CAMERA:g}), growth {m['growth_mib']:+.1f} MiB "
                          f"over {m['growth_window_s']:.0f} s ({_goal(memory_ok(m))})")
    console.print(f"[bold]largest N with 0 lost segments:[/] {best if best is not None else 'none'} "
                  f"(goal ≥ {GOAL_MAX_N}: {_goal(best is not None and best >= GOAL_MAX_N)})")
    console.print(f"[bold]largest N with 0 lost segments and uploads keeping pace:[/] {paced if paced is not None else 'none'}")
    for s in steps:
        if "error" in s:
            console.print(f"[red]N={s['streams']} failed:[/] {s['error']}")
        elif not s["ok"] and s["problems"]:
            console.print(f"[red]N={s['streams']} failed:[/]")
            for p in s["problems"]:
                console.print(f"  {p}")


def _code_version() -> dict:
    """The commit measured, and any uncommitted change to the code on the recording path."""
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "modified": git("status", "--porcelain", "--", "recorder", "storage", "index", "labwitness").splitlines()}


# -- main ----------------------------------------------------------------------------
def prepare_source(name: str, run_dir: Path, transport: str = "tcp") -> tuple[Source, RtspSimulator, subprocess.Popen, dict]:
    """The source's clip (made once), its RTSP server started with a keeper client on it (see
    :func:`bench.source.start_keeper`), and what a joining client really receives, checked
    against what the source claims (``problems`` empty when it is)."""
    spec = SOURCES[name]
    src = ensure_source(OUT, log=_log, spec=spec)
    info = {"name": name, "summary": spec.summary, "file": src.ts.name, "bitrate_file": src.bitrate, "fps": FPS,
            "gop_s": spec.gop_s, "bframes": spec.bframes, "audio": spec.audio, "resolution": "1920x1080",
            "ffmpeg_segment_format": spec.ffmpeg_segment_format, "generate_seconds": src.generate_seconds}
    sim = RtspSimulator({"/cam": src.mount().with_protocols(transport)}, workdir=run_dir / f"rtsp-{name}")
    sim.start()
    keeper = start_keeper(sim.url("/cam"), transport)
    try:
        time.sleep(JOIN_AFTER_S)
        p = probe(sim.url("/cam"), seconds=2 * spec.gop_s + 1, transport=transport)
    except Exception:
        stop_keeper(keeper)
        sim.stop()
        raise
    info.update(probe=p, problems=check(spec, p))
    _log(f"[bold]{name}[/]: {spec.summary}")
    _log(f"  over RTSP (a client joining {JOIN_AFTER_S:g} s after the keeper): {describe(p)}")
    if info["problems"]:
        _log(f"  [red]not what it claims: {'; '.join(info['problems'])}[/]")
    return src, sim, keeper, info


def run_compare(name: str, url: str, sim: RtspSimulator, args, run_dir: Path) -> dict:
    spec = SOURCES[name]
    n, minutes, seg = args.streams, args.minutes, args.segment_seconds
    stagger = args.stagger_seconds if args.stagger_seconds is not None else min(seg, minutes * 30)
    lw = ff = None
    if not args.skip_labwitness:
        _log(f"{name}: (a) labwitness: {n} streams, {minutes:g} min, {seg:g} s segments ...")
        lw = run_labwitness(url, n, minutes, seg, stagger, run_dir, sim=sim, drain_timeout=args.drain_timeout,
                            keep=args.keep, py_spy=args.py_spy, client=args.client, profile=args.profile, spec=spec,
                            tracemalloc=args.tracemalloc, child_python=args.child_python)
    if not args.skip_ffmpeg:
        _log(f"{name}: (b) ffmpeg: {n} processes, {minutes:g} min, {seg:g} s segments ({spec.ffmpeg_segment_format}) ...")
        ff = run_ffmpeg(url, n, minutes, seg, stagger, run_dir, sim=sim, keep=args.keep, spec=spec)
    ratio = lw["cpu_per_stream_minute"] / ff["cpu_per_stream_minute"] if lw and ff else None
    p99 = lw["close_to_locked"]["p99"] if lw else None
    print_compare(lw, ff, name)
    return {"mode": "compare", "labwitness": lw, "ffmpeg": ff, "ratio": ratio, "goal": {
        "ratio": GOAL_RATIO, "ratio_met": ratio is not None and ratio <= GOAL_RATIO,
        "p99_close_to_locked_s": GOAL_P99, "p99_met": p99 is not None and p99 < GOAL_P99,
        "lost_segments_zero": bool(lw and lw["ok"])}}


def goals_met(r: dict) -> bool:
    return "goal" in r and all(v for k, v in r["goal"].items() if k.endswith("_met") or k in ("met", "lost_segments_zero"))


def print_sources(runs: list[dict]) -> None:
    """One line per source: the ratio against the goal, who recorded, audio, first segments."""
    t = Table(title=f"bench/record — per source, labwitness ({runs[0].get('client', '—')} client) vs ffmpeg -c copy, same run")
    for col in ("source", "lw CPU/s-min", "ffmpeg CPU/s-min", f"ratio (≤ {GOAL_RATIO})", "lw RTSP client",
                "audio lw / ffmpeg", "1st seg at keyframe lw / ffmpeg", "lost (gaps, reconn.)", "other load"):
        t.add_column(col, justify="right" if "CPU" in col or "ratio" in col else "left")
    for r in runs:
        if "error" in r:
            t.add_row(r["source"]["name"], "—", "—", "[red]error[/]", "—", "—", "—", "—", "—")
            continue
        lw, ff, ratio = r.get("labwitness"), r.get("ffmpeg"), r.get("ratio")
        lr, fr = (lw or {}).get("recorded"), (ff or {}).get("recorded")
        t.add_row(r["source"]["name"], _f(lw and lw["cpu_per_stream_minute"]), _f(ff and ff["cpu_per_stream_minute"]),
                  f"{_f(ratio)} {_goal(ratio <= GOAL_RATIO if ratio is not None else None)}",
                  _counts((lw or {}).get("rtsp_clients")),
                  f"{_counts(lr and lr['audio'])} / {_counts(fr and fr['audio'])}",
                  f"{_starts(lr)} / {_starts(fr)}",
                  f"{lw['lost_segments']} ({lw['gaps']}, {lw['reconnects']})" if lw else "—",
                  f"{_f(lw and lw['other_load_cores'], '.2f')} / {_f(ff and ff['other_load_cores'], '.2f')}")
    console.print(t)
    for r in runs:
        if "error" in r:
            console.print(f"[red]{r['source']['name']}: {r['error']}[/]")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.record", description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default="h264", choices=(*SOURCES, "all"),
                    help="the camera stream: " + "; ".join(f"{k}: {v.summary}" for k, v in SOURCES.items())
                         + "; all: each of them in turn, one table line per source (default h264)")
    ap.add_argument("--streams", "-n", type=int, default=10, help="streams N (default 10)")
    ap.add_argument("--minutes", "-m", type=float, default=2.0, help="minutes each recorder records (default 2)")
    ap.add_argument("--segment-seconds", "-s", type=float, default=60.0, help="segment length (default 60)")
    ap.add_argument("--stagger-seconds", type=float, default=None,
                    help="spread camera starts over this many seconds (default min(S, run/2)); 0 = all at once, "
                         "so every camera cuts its segments at the same keyframe")
    ap.add_argument("--find-max", action="store_true",
                    help="instead: step N up with short labwitness runs, report the largest N with 0 lost segments")
    ap.add_argument("--steps", default="10,25,50,75,100,125,150,200", help="N values for --find-max")
    ap.add_argument("--find-max-minutes", type=float, default=1.0)
    ap.add_argument("--find-max-segment-seconds", type=float, default=10.0)
    ap.add_argument("--skip-ffmpeg", action="store_true")
    ap.add_argument("--skip-labwitness", action="store_true")
    ap.add_argument("--drain-timeout", type=float, default=120.0, help="seconds labwitness may take to upload at stop")
    ap.add_argument("--py-spy", action="store_true", help="sample the labwitness process with py-spy (raw output in its dir)")
    ap.add_argument("--client", choices=("ffmpeg", "native"), default="native",
                    help="labwitness's RTSP client (LABWITNESS_RTSP_CLIENT): ffmpeg (PyAV) or native (recorder.rtsp_native)")
    ap.add_argument("--profile", action="store_true",
                    help="run the labwitness recorder under cProfile (profile.pstats in its dir; slows it: "
                         "do not read CPU figures from such a run)")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="trace the recorder's Python allocations (tracemalloc.txt in its dir: largest and grown "
                         "by source line; slows it: do not read CPU figures from such a run)")
    ap.add_argument("--keep", action="store_true", help="keep recorded files, spool and SeaweedFS data")
    ap.add_argument("--child-python", metavar="PATH",
                    help="run the recorder under this interpreter (same Python version; this environment's "
                         "packages), e.g. the distribution's /usr/bin/python3 against a self-built one")
    ap.add_argument("--transport", choices=("tcp", "udp"), default="tcp",
                    help="udp: the server refuses RTP over TCP, so the native client receives RTP over UDP "
                         "(recorder.rtp_udp); use with --skip-ffmpeg")
    args = ap.parse_args(argv)
    if args.find_max and args.source == "all":
        ap.error("--find-max takes one --source")
    names = list(SOURCES) if args.source == "all" else [args.source]

    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = OUT / f"run-{stamp}"
    run_dir.mkdir(parents=True)
    version = _code_version()
    _log(f"code: {version['commit'] or 'unknown commit'}"
         + (f", uncommitted: {version['modified']}" if version["modified"] else ""))
    result: dict = {"started": stamp, "argv": sys.argv[1:] if argv is None else argv, "cpus": os.cpu_count(),
                    "code": version, "client": args.client, "transport": args.transport,
                    "recorder_python": args.child_python or sys.executable}
    runs: list[dict] = []
    code = 0
    try:
        for name in names:
            sim = info = keeper = None
            try:
                src, sim, keeper, info = prepare_source(name, run_dir, args.transport)
                if info["problems"]:
                    raise RuntimeError("the source is not what it claims, not measured: " + "; ".join(info["problems"]))
                url = sim.url("/cam")
                if args.find_max:
                    r = run_find_max(url, sim, args, run_dir, SOURCES[name])
                else:
                    r = run_compare(name, url, sim, args, run_dir)
                r["source"] = info
            except RuntimeError as e:  # the source, or the recorder (died, hung): reported, the next source runs
                _log(f"[red]{name}: {e}[/]")
                r = {"source": info or {"name": name}, "error": str(e)}
            finally:
                if keeper is not None:
                    if keeper.poll() is not None:  # the stream may have restarted at a keyframe since
                        _log(f"[yellow]{name}: the keeper client ended early ({keeper.returncode})[/]")
                    if info is not None:
                        info["keeper_cpu_s"] = proc_cpu(keeper.pid)
                        info["keeper_ended_early"] = keeper.poll() is not None
                    stop_keeper(keeper)
                if sim is not None:
                    sim.stop()
            r["client"] = args.client
            runs.append(r)
            if "error" in r or not goals_met(r):
                code = 1
        if len(runs) == 1:
            result.update(runs[0])
        else:
            result.update(mode="sources", runs=runs)
        if not args.find_max:
            print_sources(runs)
    finally:
        out_f = OUT / f"record-{stamp}.json"
        out_f.write_text(json.dumps(result, indent=1, default=str))
        console.print(f"results: {out_f}")
    return code


def run_find_max(url: str, sim: RtspSimulator, args, run_dir: Path, spec: SourceSpec) -> dict:
    minutes, seg = args.find_max_minutes, args.find_max_segment_seconds
    stagger = args.stagger_seconds if args.stagger_seconds is not None else min(seg, minutes * 30)
    steps, best, paced, pace_broken = [], None, None, False
    for n in [int(x) for x in args.steps.split(",") if x.strip()]:
        _log(f"find-max, {spec.name}: labwitness N={n}, {minutes:g} min, {seg:g} s segments ...")
        try:
            s = run_labwitness(url, n, minutes, seg, stagger, run_dir, sim=sim, drain_timeout=args.drain_timeout,
                               keep=args.keep, py_spy=args.py_spy, client=args.client, profile=args.profile, spec=spec,
                               tracemalloc=args.tracemalloc)
        except RuntimeError as e:  # the recorder died or hung: that N is not sustained
            _log(f"[red]N={n}: {e}[/]")
            steps.append({"streams": n, "ok": False, "error": str(e)})
            break
        s.pop("cameras")
        steps.append(s)
        c = s["close_to_locked"]
        _log(f"  N={n}: ok={s['ok']} pace={s['keeps_pace']} lost={s['lost_segments']} gaps={s['gaps']} frames={s['frame_share'] * 100:.1f}% "
             f"cpu/stream-min={s['cpu_per_stream_minute']:.3f} busy={s['machine_busy'] * 100:.0f}% "
             f"other-load={s['other_load_cores']:.2f} cores "
             f"p99={_f(c['p99'], '.2f')}s")
        if not s["ok"]:
            break
        best = n
        if not s["keeps_pace"]:
            pace_broken = True
        elif not pace_broken:
            paced = n
    print_find_max(steps, best, paced)
    return {"mode": "find-max", "steps": steps, "max_streams": best, "max_streams_keeping_pace": paced,
            "goal": {"max_streams": GOAL_MAX_N, "met": best is not None and best >= GOAL_MAX_N}}


if __name__ == "__main__":
    sys.exit(main())
