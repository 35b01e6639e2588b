"""Runs the workers of a set of cameras and the uploader, in threads of one process.

Start-up order: recover every camera's spool (salvage unfinished segments),
start the uploader, then the workers.  ``sync()`` follows a changing camera
list (added, removed, URL changed) without a restart.

A camera with a sub stream (``CameraSpec.sub_url``) and a service given a
sample spool also gets a :class:`recorder.substream.SubStreamSampler` in a
thread of its own: pictures for the content-health job, never recorded.  It
samples only while the camera's main-stream worker is recording, and its
failures never reach the worker (docs/decisions.md, "sub-stream pictures").
"""

from __future__ import annotations

import fcntl
from datetime import datetime, timezone
import logging
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from index.queries import IndexStore
from labwitness.clock import Clock, SystemClock
from labwitness.errors import SpoolError
from labwitness.picture_samples import SampleSpool
from labwitness.private_fs import private_dir
from recorder.malloc_arenas import bound_arenas
from recorder.metrics import RecorderMetrics
from recorder.recovery import recover
from recorder.spool import CameraSpool, SpoolQuota
from recorder.stop_report import StopReport
from recorder.substream import SubStreamSampler
from recorder.uploader import RetainUntil, Uploader
from recorder.worker import CameraWorker, RecorderConfig
from storage.base import ObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraSpec:
    camera_id: str
    url: str = field(repr=False)  # with the camera's credentials: never in a log line
    area_id: str = ""
    sub_url: str = field(default="", repr=False)  # the sub stream (pictures for content health), if any
    epoch: int = 0  # the camera lease's epoch on a cluster (recorder.leases); a new epoch is a new worker


class RecorderService:
    def __init__(self, spool_dir: Path, store: ObjectStore, index: IndexStore, retain_until: RetainUntil,
                 cfg: RecorderConfig, *, clock: Clock | None = None, metrics: RecorderMetrics | None = None,
                 spool_max_bytes: int | None = None, spool_reserve_bytes: int = 256 * 1024 * 1024,
                 samples: SampleSpool | None = None, sample_seconds: float = 10.0) -> None:
        bound_arenas()  # before any camera thread allocates (recorder.malloc_arenas)
        self.spool_dir = Path(spool_dir)
        private_dir(self.spool_dir)  # footage not yet stored: owner only (labwitness.private_fs)
        # One recorder process per spool: two would salvage each other's open segments.
        self._lockf = open(self.spool_dir / ".lock", "a+")
        try:
            fcntl.flock(self._lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockf.close()
            raise SpoolError(f"另一个 labwitness 进程正在使用本地缓存 / another labwitness process is recording into "
                             f"{self.spool_dir}; stop it or use a different LABWITNESS_SPOOL_DIR") from None
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.metrics = metrics or RecorderMetrics()
        self.quota = SpoolQuota(self.spool_dir, spool_max_bytes, spool_reserve_bytes)
        self._spools: dict[str, CameraSpool] = {}
        self._workers: dict[str, tuple[CameraSpec, CameraWorker, threading.Thread, threading.Event]] = {}
        #: sub-stream samplers, by camera: started and stopped with the camera's worker
        self.samples = samples
        self.sample_seconds = sample_seconds
        self._samplers: dict[str, tuple[SubStreamSampler, threading.Thread, threading.Event]] = {}
        self._crashes: dict[str, str] = {}  # camera -> the failure that last ended its worker, logged once
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self.uploader = Uploader(self.spools, store, index, retain_until, clock=self.clock, stop=self._stop,
                                 metrics=self.metrics, backoff_cap_s=cfg.backoff_cap_s)
        self._uploader_thread: threading.Thread | None = None
        self.stop_report: StopReport | None = None  # set by stop(): what was uploaded, what is left
        # Every camera that still has footage in the spool is uploaded, whether
        # or not it is configured any more (a removed camera's footage is kept).
        for d in sorted(self.spool_dir.iterdir()):
            if d.is_dir():
                self.spool(d.name)

    def spool(self, camera_id: str) -> CameraSpool:
        with self._lock:
            sp = self._spools.get(camera_id)
            if sp is None:
                sp = self._spools[camera_id] = CameraSpool(self.spool_dir, camera_id, self.quota)
                for report in recover(sp):
                    log.info("spool recovery %s: %s", camera_id, report)
            return sp

    def spools(self) -> list[CameraSpool]:
        with self._lock:
            return list(self._spools.values())

    def start(self) -> "RecorderService":
        self._uploader_thread = threading.Thread(target=self.uploader.run, name="uploader", daemon=True)
        self._uploader_thread.start()
        return self

    def sync(self, cameras: list[CameraSpec]) -> None:
        # Serialised: the API's immediate re-sync and the periodic one must
        # never both start a worker for the same camera.
        with self._sync_lock:
            self._sync(cameras)

    def _sync(self, cameras: list[CameraSpec]) -> None:
        wanted = {c.camera_id: c for c in cameras}
        for cid in list(self._workers):
            spec, worker, thread, stop = self._workers[cid]
            # a thread that ended by itself died of a bug (see _run_worker): start the camera again
            if cid not in wanted or replace(wanted[cid], sub_url="") != replace(spec, sub_url="") or not thread.is_alive():
                self._stop_worker(cid)
                if cid not in wanted and self.samples is not None:
                    self.samples.prune(cid, 2 ** 62)  # pictures of a camera no longer recorded (never footage)
                continue
            sampler = self._samplers.get(cid)
            if wanted[cid].sub_url != spec.sub_url or (sampler is not None and not sampler[1].is_alive()):
                # only the sub stream changed (or its sampler died of a bug): recording goes on untouched
                self._stop_sampler(cid)
                self._workers[cid] = (wanted[cid], worker, thread, stop)
                self._start_sampler(wanted[cid], worker, stop)
            if worker.status.state == "recording":
                self._crashes.pop(cid, None)  # recovered: the next crash is news again
        for cid, spec in wanted.items():
            if cid not in self._workers:
                self._start_worker(spec)

    def _start_worker(self, spec: CameraSpec) -> None:
        stop = threading.Event()
        w = CameraWorker(spec.camera_id, spec.url, self.spool(spec.camera_id), self.cfg, clock=self.clock, stop=stop,
                         metrics=self.metrics, on_commit=self.uploader.notify, area_id=spec.area_id, epoch=spec.epoch)
        t = threading.Thread(target=self._run_worker, args=(w,), name=f"camera-{spec.camera_id}", daemon=True)
        self._workers[spec.camera_id] = (spec, w, t, stop)
        t.start()
        self._start_sampler(spec, w, stop)

    def _start_sampler(self, spec: CameraSpec, w: CameraWorker, worker_stop: threading.Event) -> None:
        if not spec.sub_url or self.samples is None:
            return
        stop = threading.Event()
        sampler = SubStreamSampler(spec.camera_id, spec.sub_url, self.samples, self.sample_seconds,
                                   clock=self.clock, stop=stop,
                                   # never outlives its camera's worker, samples only while it records
                                   may_run=lambda: w.status.state == "recording" and not worker_stop.is_set(),
                                   client=self.cfg.rtsp_client, open_timeout_s=self.cfg.open_timeout_s,
                                   read_timeout_s=self.cfg.read_timeout_s)
        st = threading.Thread(target=self._run_sampler, args=(sampler,), name=f"sub-{spec.camera_id}", daemon=True)
        self._samplers[spec.camera_id] = (sampler, st, stop)
        st.start()

    def _stop_sampler(self, camera_id: str, timeout: float = 15.0) -> None:
        entry = self._samplers.pop(camera_id, None)
        if entry is not None:
            entry[2].set()
            entry[1].join(timeout)

    @staticmethod
    def _run_sampler(s: SubStreamSampler) -> None:
        try:
            s.run()
        except Exception:  # only pictures are lost; the camera's recording is another thread
            log.exception("camera %s: sub-stream sampler stopped", s.camera_id)

    def _run_worker(self, w: CameraWorker) -> None:
        """A worker's thread.  ``run()`` rides out every camera failure and logs each
        change itself; what escapes it is a bug (a spool that cannot be written, ...).
        It is logged with its traceback once per kind, not on every restart; the next
        ``sync()`` starts the camera again."""
        try:
            w.run()
        except Exception as e:
            kind = f"{type(e).__name__}: {e}"
            w.status.last_error = kind
            if self._crashes.get(w.camera_id) == kind:
                log.debug("camera %s: recorder stopped again: %s", w.camera_id, kind)
            else:
                self._crashes[w.camera_id] = kind
                log.error("camera %s: recorder stopped by an unexpected failure; restarting it at the next sync: %s",
                          w.camera_id, kind, exc_info=e)

    def _stop_worker(self, camera_id: str, timeout: float = 15.0) -> None:
        spec, w, t, stop = self._workers.pop(camera_id)
        stop.set()
        t.join(timeout)
        if t.is_alive():
            log.error("camera %s: worker did not stop within %.0fs", camera_id, timeout)
        self._stop_sampler(camera_id, timeout)

    def note_takeover(self, camera_id: str, since_ms: int, reason: str, detail: str) -> None:
        """Before a camera taken over from another node starts here: the time since the previous
        holder's last indexed segment is an open gap (``failover`` or ``handover``) that the first
        segment recorded here closes.  A gap this spool has open already counts first."""
        sp = self.spool(camera_id)
        if sp.pending_open_gap() is None:
            since = datetime.fromtimestamp(since_ms / 1000, timezone.utc)
            if sp.last_end is not None and sp.last_end > since:  # this spool's own footage, not indexed yet
                since = sp.last_end
            sp.open_gap(since, reason, detail)

    def workers(self) -> dict[str, CameraWorker]:
        return {cid: v[1] for cid, v in self._workers.items()}

    def samplers(self) -> dict[str, SubStreamSampler]:
        return {cid: v[0] for cid, v in self._samplers.items()}

    def stop(self, drain_timeout: float = 0.0) -> bool:
        """Stop workers (closing their segments), then upload what is left."""
        with self._sync_lock:
            for _, _, _, stop in self._workers.values():  # signal all first: cameras stop together
                stop.set()
            for _, _, stop in self._samplers.values():
                stop.set()
            for cid in list(self._workers):
                self._stop_worker(cid)
        drained = self.uploader.drain(drain_timeout) if drain_timeout > 0 else False
        self._stop.set()
        self.uploader.wake.set()
        if self._uploader_thread is not None:
            self._uploader_thread.join(10)
        self.stop_report = StopReport.of(self.spools(), self.spool_dir, self.uploader.done_segments, self.uploader.done_bytes)
        self._lockf.close()
        return drained
