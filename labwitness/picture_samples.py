"""Pictures sampled from a camera's sub stream, kept on local disk until the content job takes them.

The recorder's sub-stream sampler (:mod:`recorder.substream`) writes one file per
sample; the content job (:mod:`retention.content_job`) judges them in time order
for the periods its stored main-stream segments cover, and deletes them once the
camera's sampling mark has passed them.  This module owns only the layout, so
that neither package imports the other.

Layout: ``<root>/<camera_id>/<wall_ms:013d>.<codec>`` (codec ``h264`` or
``hevc``); a file is one Annex B access unit: an IDR with its parameter sets,
decodable alone.  ``wall_ms`` is the wall-clock time of the picture on the
session timeline (:mod:`recorder.timing`), so samples and main-stream segments
share one timeline.  Files are written atomically (:func:`labwitness.private_fs.write_atomic`),
owner-only: they show the lab.

A sample is only a cheaper picture of the same sensor, never evidence: the
spool is bounded (:meth:`SampleSpool.trim`, oldest dropped first) and losing a
sample costs only a fallback to the stored main stream's keyframes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from labwitness.private_fs import private_dir, write_atomic

log = logging.getLogger(__name__)

CODECS = ("h264", "hevc")
#: default bound per camera: ~30 min of 640x360 IDRs at one per 2 s, ~a day at one per 10 s (~40 KB each)
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Sample:
    camera_id: str
    wall_ms: int
    codec: str
    path: Path

    def read(self) -> bytes:
        return self.path.read_bytes()


class SampleSpool:
    """The sample files of every camera under ``root``."""

    def __init__(self, root: Path | str, max_bytes_per_camera: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes_per_camera

    def _dir(self, camera_id: str) -> Path:
        if not camera_id or "/" in camera_id or camera_id.startswith("."):
            raise ValueError(f"bad camera id {camera_id!r}")
        return self.root / camera_id

    def put(self, camera_id: str, wall_ms: int, codec: str, data: bytes) -> Sample:
        if codec not in CODECS:
            raise ValueError(f"unsupported codec {codec!r}")
        private_dir(self.root)
        d = private_dir(self._dir(camera_id))
        path = d / f"{int(wall_ms):013d}.{codec}"
        write_atomic(path, data)
        return Sample(camera_id, int(wall_ms), codec, path)

    def samples(self, camera_id: str, start_ms: int | None = None, end_ms: int | None = None) -> list[Sample]:
        """The camera's samples with ``start_ms <= wall_ms < end_ms``, oldest first."""
        d = self._dir(camera_id)
        out = []
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return []
        for name in names:
            stem, dot, codec = name.partition(".")
            if not dot or codec not in CODECS or not stem.isdigit():
                continue  # *.tmp of a write in progress, strangers
            t = int(stem)
            if (start_ms is None or t >= start_ms) and (end_ms is None or t < end_ms):
                out.append(Sample(camera_id, t, codec, d / name))
        out.sort(key=lambda s: s.wall_ms)
        return out

    def prune(self, camera_id: str, before_ms: int) -> int:
        """Delete the camera's samples older than ``before_ms`` (taken in, or passed over); how many."""
        n = 0
        for s in self.samples(camera_id, end_ms=before_ms):
            s.path.unlink(missing_ok=True)
            n += 1
        return n

    def trim(self, camera_id: str) -> int:
        """Keep the camera's samples within ``max_bytes`` by dropping the oldest; how many went.
        (Those periods are then judged from the main stream's keyframes, as without a sub stream.)"""
        samples = self.samples(camera_id)
        sizes = []
        for s in samples:
            try:
                sizes.append(s.path.stat().st_size)
            except FileNotFoundError:
                sizes.append(0)
        total, n = sum(sizes), 0
        for s, size in zip(samples, sizes):
            if total <= self.max_bytes:
                break
            s.path.unlink(missing_ok=True)
            total -= size
            n += 1
        if n:
            log.info("camera %s: sub-stream sample spool over %d bytes: dropped the %d oldest samples "
                     "(those periods fall back to main-stream keyframes)", camera_id, self.max_bytes, n)
        return n
