"""The labwitness side of ``bench.record``, run as its own process.

    python -m bench.recorder_child CONFIG.json

Runs the real recording path -- :class:`recorder.service.RecorderService`
(workers + uploader) into :class:`storage.s3.S3ObjectStore` against the
benchmark's embedded SeaweedFS, a SQLite index and the default
:class:`retention.policy.RetentionPolicy` -- for N cameras, then stops the
service (closing the open segments and uploading what is left) and writes a
JSON summary to ``CONFIG["result"]`` (per camera also the RTSP client that
recorded it in the end, the codecs indexed and its first and last segments' objects,
which the parent inspects after this process has exited).  Its own CPU time is what the parent
reports as labwitness CPU, so nothing else runs in this process.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


CPU_AT_START = _cpu()  # interpreter start-up, before the project's imports

from bench.procstat import percentile  # noqa: E402
from index.db import make_engine, sqlite_url  # noqa: E402
from index.migrate import upgrade  # noqa: E402
from index.queries import IndexStore  # noqa: E402
from recorder.service import CameraSpec, RecorderService  # noqa: E402
from recorder.worker import RecorderConfig  # noqa: E402
from retention.policy import RetentionPolicy  # noqa: E402
from storage.s3 import S3ObjectStore  # noqa: E402

log = logging.getLogger("bench.recorder_child")


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's live threads, grouped by Python thread name."""
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    groups: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            raw = (task / "stat").read_text()
        except OSError:
            continue
        f = raw[raw.rindex(")") + 2:].split()
        name = names.get(int(task.name), "native (FFmpeg/other)")
        group = "camera workers" if name.startswith("camera-") else name
        groups[group] = groups.get(group, 0.0) + (int(f[11]) + int(f[12])) / tick
    return {k: round(v, 2) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])}


def rss_mib() -> float:
    """This process's resident memory (VmRSS), MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def memory_summary(samples: list[tuple[float, int, float]], base_mib: float, n: int, full_at: float | None,
                   end: float) -> dict:
    """RSS figures from ``(time, cameras started, rss MiB)`` samples.

    ``per_camera_mib`` is the mean RSS once every camera runs (from ``full_at``) above
    ``base_mib`` (the process with its recorder service up and no camera), per camera;
    ``growth_mib`` the mean of the last third of that window minus the mean of its first third
    (0 for memory that is flat over the run)."""
    steady = [r for t, k, r in samples if full_at is not None and k == n and t >= full_at]
    out = {"base_mib": round(base_mib, 1), "samples": len(samples), "steady_samples": len(steady),
           "max_mib": round(max((r for _, _, r in samples), default=base_mib), 1)}
    if len(steady) < 3 or not n:
        return {**out, "steady_mib": None, "per_camera_mib": None, "growth_mib": None, "growth_window_s": None}
    third = len(steady) // 3
    first, last = steady[:third], steady[-third:]
    mean = sum(steady) / len(steady)
    return {**out, "steady_mib": round(mean, 1), "per_camera_mib": round((mean - base_mib) / n, 3),
            "first_third_mib": round(sum(first) / len(first), 1), "last_third_mib": round(sum(last) / len(last), 1),
            "growth_mib": round(sum(last) / len(last) - sum(first) / len(first), 1),
            "growth_window_s": round(end - full_at, 1)}


class TraceMemory:
    """``--tracemalloc`` (``cfg["tracemalloc"]``, a path): Python's allocations by source line, once
    every camera runs and at the stop, and what grew between the two, written to that path.
    (FFmpeg's own buffers are not Python allocations: RSS minus the traced total is theirs.)"""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.first = None
        if path:
            import tracemalloc

            tracemalloc.start(4)

    def mark_first(self) -> None:
        if self.path and self.first is None:
            import tracemalloc

            self.first = tracemalloc.take_snapshot()

    def write(self, n: int) -> None:
        if not self.path:
            return
        import tracemalloc

        last = tracemalloc.take_snapshot()
        lines = [f"RSS {rss_mib():.1f} MiB; traced {tracemalloc.get_traced_memory()[0] / 2**20:.1f} MiB; {n} cameras", "",
                 "== largest at the stop (by line) =="]
        lines += [str(st) for st in last.statistics("lineno")[:40]]
        if self.first is not None:
            lines += ["", "== grown between all cameras running and the stop (by line) =="]
            lines += [str(st) for st in last.compare_to(self.first, "lineno")[:40]]
            lines += ["", "== grown, by traceback (top 8) =="]
            for st in last.compare_to(self.first, "traceback")[:8]:
                lines += [str(st)] + ["    " + ln for ln in st.traceback.format()]
        Path(self.path).write_text("\n".join(lines) + "\n")
        tracemalloc.stop()


def _backlog(service: RecorderService) -> float:
    # The gauge's own value: registry.get_sample_value() collects every metric of the registry
    # (per-camera counters included) to find one sample, ~0.5 ms a call, five calls a second,
    # which was 1.2 CPU-s of harness in an 8-minute 10-camera run, counted as the recorder's.
    return service.metrics.spool_backlog._value.get()


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    q = {p: percentile(values, p) for p in (50, 90, 99)}
    return {"n": len(values), "p50": q[50], "p90": q[90], "p99": q[99], "max": max(values), "mean": sum(values) / len(values)}


def main(config_path: str) -> int:
    cfg = json.loads(Path(config_path).read_text())
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    for noisy in ("urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stop_early = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_early.set())
    signal.signal(signal.SIGINT, lambda *_: stop_early.set())

    cpu_imports = _cpu()
    rss_imports = rss_mib()
    trace = TraceMemory(cfg.get("tracemalloc"))
    work = Path(cfg["workdir"])
    store = S3ObjectStore(cfg["endpoint"], cfg["access_key"], cfg["secret_key"], cfg["bucket"])
    store.check()
    engine = make_engine(sqlite_url(work / "index.sqlite3"))
    upgrade(engine)
    index = IndexStore(engine)
    n, seg_s = cfg["streams"], float(cfg["segment_seconds"])
    service = RecorderService(work / "spool", store, index, RetentionPolicy(),
                              RecorderConfig(segment_seconds=seg_s, recorder_id="bench",
                                             rtsp_client=cfg.get("rtsp_client", "native")))
    specs = [CameraSpec(f"bench-{i:03d}", cfg["url"]) for i in range(n)]
    service.start()
    cpu_ready = _cpu()
    main_ready = time.thread_time()  # this thread's own share of the window: the harness's polling (+ sync)
    rss_ready = rss_mib()  # the fixed base: service, uploader, store and index up, no camera

    # Cameras start spread over ``stagger`` seconds, like real cameras whose
    # GOPs (and so segment cuts) are not aligned; all stop together.
    t0 = time.time()
    duration, stagger = float(cfg["duration_s"]), float(cfg["stagger_s"])
    started: dict[str, float] = {}
    backlog_max = 0.0
    next_i = 0
    deadline = t0 + duration
    # resident memory once a second: (seconds since t0, cameras started, MiB)
    rss: list[tuple[float, int, float]] = [(0.0, 0, rss_ready)]
    full_at: float | None = None
    while not stop_early.is_set():
        now = time.time()
        while next_i < n and now >= t0 + stagger * next_i / n:
            service.sync(specs[: next_i + 1])
            started[specs[next_i].camera_id] = time.time()
            next_i += 1
            if next_i == n:
                # memory settles once every camera has cut and uploaded a few segments (the
                # allocator's arenas fill up to their working size): the steady window starts then
                full_at = time.time() - t0 + min(3 * seg_s, 30.0)
        if now >= deadline:
            break
        backlog_max = max(backlog_max, _backlog(service))
        if now - t0 >= rss[-1][0] + 1.0:
            rss.append((round(now - t0, 2), next_i, round(rss_mib(), 2)))
        if full_at is not None and now - t0 >= full_at:
            trace.mark_first()
        stop_early.wait(min(0.2, max(0.0, deadline - now)))
    t_stop = time.time()
    cpu_stop = _cpu()
    main_window = time.thread_time() - main_ready
    trace.write(n)
    # written before the stop, which may take long (or be killed) with hundreds of cameras
    memory = {**memory_summary(rss, rss_ready, n, full_at, t_stop - t0), "after_imports_mib": round(rss_imports, 1),
              "series": rss}
    Path(cfg["result"]).with_name("memory.json").write_text(json.dumps(memory))
    threads_at_stop = _thread_cpu()
    # the uploader's own gauge: Uploader.backlog() lists the spool while the
    # uploader thread may be releasing records (it can raise FileNotFoundError)
    backlog_at_stop = _backlog(service)
    lat_recording = list(service.uploader.latencies)  # (the most recent, recorder.uploader.LATENCIES_KEPT)
    workers = service.workers()
    drained = service.stop(drain_timeout=float(cfg["drain_timeout_s"]))
    t_drained = time.time()
    cpu_drained = _cpu()

    cameras = {}
    all_frames = 0
    for spec in specs:
        cid = spec.camera_id
        w = workers.get(cid)
        rows = list(index.iter_segments(cid))
        gaps = index.gaps(cid)
        sp = service.spool(cid)
        pending_gap = sp.pending_open_gap()
        unindexed_gaps = sum(1 for _ in sp.finished_gaps())
        seqs = sorted(r.sequence for r in rows)
        written = w.status.segments if w else 0
        missing_seq = (seqs[-1] - seqs[0] + 1 - len(set(seqs))) if seqs else 0
        media_s = sum(r.media_duration_ms for r in rows) / 1000
        frames_idx = sum(r.frames for r in rows)
        all_frames += frames_idx
        window = (t_stop - started[cid]) if cid in started else 0.0
        cameras[cid] = {
            "window_s": round(window, 3),
            "written": written,
            "stored": sum(1 for r in rows if r.version_id),
            "locked": sum(1 for r in rows if r.lock_mode == "COMPLIANCE" and r.retain_until_ms),
            "indexed": len(rows),
            "left_in_spool": len(sp.committed()),
            "missing_sequences": missing_seq,
            "gaps": len(gaps) + (1 if pending_gap else 0) + unindexed_gaps,
            "gap_reasons": sorted({g.reason for g in gaps} | ({pending_gap["reason"]} if pending_gap else set())),
            "sessions": w.status.sessions if w else 0,
            # footage lost; the frames a session drops before its first keyframe (joining a
            # shared stream mid-GOP) cannot be decoded and are reported apart
            "dropped_packets": (w.status.dropped_packets - w.status.before_keyframe) if w else 0,
            "before_keyframe": w.status.before_keyframe if w else 0,
            "frames_received": w.status.frames if w else 0,
            "frames_indexed": frames_idx,
            "media_s": round(media_s, 3),
            "span_s": round((rows[-1].end_ms - rows[0].start_ms) / 1000, 3) if rows else 0.0,
            "bytes": sum(r.size for r in rows),
            "last_error": w.status.last_error if w else "not started",
            # which RTSP client recorded in the end: "native" may have handed the camera over
            # to FFmpeg's (B-frames, a session it could not set up): recorder.worker.CameraWorker
            "rtsp_client": w.rtsp_client if w else None,
            "video_codecs": sorted({r.codec for r in rows}),
            "audio_codecs": sorted({r.audio_codec for r in rows}),
            # the first and last stored segments, for the parent to read their starts (keyframe?
            # codecs? B-frames kept?)
            "first_segment": {"key": rows[0].key, "version_id": rows[0].version_id} if rows else None,
            # (the last complete one: the very last is cut short by the stop)
            "last_segment": {"key": rows[-2 if len(rows) > 1 else -1].key,
                             "version_id": rows[-2 if len(rows) > 1 else -1].version_id} if rows else None,
        }
    lat = list(service.uploader.latencies)
    if service.uploader.locked_segments > len(lat):
        log.warning("close -> locked percentiles over the last %d of %d segments", len(lat),
                    service.uploader.locked_segments)
    summary = {
        "streams": n,
        "segment_seconds": seg_s,
        "duration_s": duration,
        "stagger_s": stagger,
        "stopped_early": stop_early.is_set() and t_stop < deadline - 0.5,
        "stream_seconds": sum(c["window_s"] for c in cameras.values()),
        "cpu": {
            "interpreter": CPU_AT_START,
            "imports": cpu_imports - CPU_AT_START,
            "setup": cpu_ready - cpu_imports,
            "recording": cpu_stop - cpu_ready,
            # of which this main thread (the loop above: backlog gauge polled every 0.2 s, cameras started)
            "recording_main_thread": main_window,
            "stop_and_drain": cpu_drained - cpu_stop,
            "total_self": cpu_drained,
            "threads_at_stop": threads_at_stop,
        },
        "drained": drained,
        "drain_s": round(t_drained - t_stop, 3),
        "backlog_at_stop": backlog_at_stop,
        "backlog_max": backlog_max,
        "close_to_locked": _percentiles(lat),
        # while recording only: the last segments of every camera all close at
        # stop, and the uploader then works through them in one burst
        "close_to_locked_recording": _percentiles(lat_recording),
        "frames_indexed": all_frames,
        "memory": {**memory, "after_drain_mib": round(rss_mib(), 1)},
        "cameras": cameras,
    }
    Path(cfg["result"]).write_text(json.dumps(summary, indent=1, default=str))
    engine.dispose()
    return 0


def _profiled(config_path: str) -> int:
    """main() under cProfile, all threads (threading.setprofile), written as pstats."""
    import cProfile
    import pstats

    cfg = json.loads(Path(config_path).read_text())
    profiles: list[cProfile.Profile] = []

    def per_thread(frame, event, arg):  # the first event of each new thread swaps in its own profiler
        p = cProfile.Profile()
        profiles.append(p)
        p.enable()

    threading.setprofile(per_thread)
    main_prof = cProfile.Profile()
    main_prof.enable()
    try:
        return main(config_path)
    finally:
        main_prof.disable()
        for p in profiles:
            p.disable()
        stats = pstats.Stats(main_prof)
        for p in profiles:
            stats.add(p)
        stats.dump_stats(cfg["profile"])


if __name__ == "__main__":
    _cfg = json.loads(Path(sys.argv[1]).read_text())
    sys.exit(_profiled(sys.argv[1]) if _cfg.get("profile") else main(sys.argv[1]))
