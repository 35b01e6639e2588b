"""Helpers shared by the recorder tests: build the real pipeline, inspect results."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path

import av

from index.db import make_engine, sqlite_url
from index.migrate import upgrade
from index.queries import IndexStore
from recorder.metrics import RecorderMetrics
from recorder.spool import CameraSpool, SpoolQuota
from recorder.uploader import Uploader
from recorder.worker import CameraWorker, RecorderConfig
from retention.policy import RetentionPolicy


@dataclass
class Pipeline:
    spool: CameraSpool
    worker: CameraWorker
    uploader: Uploader
    index: IndexStore


def pipeline(tmp: Path, store, url: str, *, camera_id: str = "cam-1", segment_seconds: float = 2.0,
             db_url: str | None = None, index: IndexStore | None = None, **cfg) -> Pipeline:
    if index is None:
        engine = make_engine(db_url or sqlite_url(tmp / "index.sqlite3"))
        upgrade(engine)
        index = IndexStore(engine)
    quota = SpoolQuota(tmp / "spool", None, 0) if (tmp / "spool").exists() else None
    (tmp / "spool").mkdir(exist_ok=True)
    quota = quota or SpoolQuota(tmp / "spool", None, 0)
    spool = CameraSpool(tmp / "spool", camera_id, quota)
    metrics = RecorderMetrics()
    uploader = Uploader(lambda: [spool], store, index, RetentionPolicy(), metrics=metrics, backoff_cap_s=2)
    worker = CameraWorker(camera_id, url, spool, RecorderConfig(segment_seconds=segment_seconds, **cfg),
                          metrics=metrics, on_commit=uploader.notify)
    return Pipeline(spool, worker, uploader, index)


def decode_object(store, key: str, version_id: str) -> dict:
    """Download one stored segment and decode every frame of it."""
    with store.open(key, version_id) as body:
        data = body.read()
    out = {"frames": 0, "first_is_key": None, "audio_packets": 0, "errors": 0, "codec": None, "bytes": data}
    with av.open(io.BytesIO(data)) as c:
        v = c.streams.video[0]
        out["codec"] = v.codec_context.name
        for pkt in c.demux():
            if pkt.size == 0:
                continue
            if pkt.stream.type == "audio":
                out["audio_packets"] += 1
                continue
            if out["first_is_key"] is None:
                out["first_is_key"] = pkt.is_keyframe
            try:
                out["frames"] += len(pkt.decode())
            except av.error.InvalidDataError:
                out["errors"] += 1
        try:
            out["frames"] += len(v.codec_context.decode(None))
        except av.error.FFmpegError:
            pass
    return out


class Background:
    """Run worker.run() in a thread; stop and join on exit."""

    def __init__(self, worker: CameraWorker) -> None:
        self.worker = worker
        self.thread = threading.Thread(target=worker.run, daemon=True)

    def __enter__(self) -> "Background":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.worker.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "worker did not stop"
