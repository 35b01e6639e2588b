"""Helpers for the retention job tests: footage put straight into storage (and the index)
with a retain-until a few seconds away and metadata dated months back, so it really expires
while the product's retention settings are never shortened."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import update
from sqlmodel import Session, select

from index.models import IntegrityFinding, JobRun, Segment
from labwitness.clock import SystemClock
from labwitness.errors import ObjectNotFoundError
from retention.policy import RetentionPolicy
from retention.rebuild import row_from_object
from retention.sweep import SweepConfig, run_sweep
from retention.time_sources import StoreDateSource
from storage.layout import SegmentMeta
from storage.s3 import S3ObjectStore

UTC = timezone.utc
OLD = timedelta(days=220)  # footage "recorded" 7+ months ago: past the legal minimum


class Fixture:
    """Puts footage into storage (and optionally the index) for one test."""

    def __init__(self, store: S3ObjectStore, index, tmp_path) -> None:
        self.store, self.index, self.tmp = store, index, tmp_path
        self.n = 0
        self.latest_until = datetime.now(UTC)

    def put(self, camera: str, *, age: timedelta = OLD, seconds: float = 2.0, lock_s: float | None = 3.0,
            indexed: bool = True, area: str = "lixue") -> Segment | tuple[SegmentMeta, object]:
        """One segment ending ``age`` ago; locked ``lock_s`` seconds from now (None: the real policy)."""
        self.n += 1
        data = f"{camera}-{self.n}-{uuid.uuid4().hex}".encode() * 50
        path = self.tmp / f"seg{self.n}.mp4"
        path.write_bytes(data)
        end = (datetime.now(UTC) - age).replace(microsecond=self.n * 1000)
        start = end - timedelta(seconds=seconds)
        meta = SegmentMeta(camera_id=camera, start=start, end=end, media_duration_ms=round(seconds * 1000), codec="h264",
                           width=320, height=240, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                           recorder_id="r-test", session_id="s1", sequence=self.n, area_id=area, frames=25)
        until = RetentionPolicy()(end) if lock_s is None else datetime.now(UTC) + timedelta(seconds=lock_s)
        stored = self.store.put_segment(path, meta, until)
        if lock_s is not None and lock_s < 60:  # the ones a test waits for
            self.latest_until = max(self.latest_until, stored.retain_until)
        if not indexed:
            return meta, stored
        return self.index.add_segment(row_from_object(meta, stored))

    def wait_expired(self) -> None:
        delay = (self.latest_until - datetime.now(UTC)).total_seconds() + 0.6
        if delay > 0:
            time.sleep(delay)

    def exists(self, seg: Segment) -> bool:
        try:
            self.store.stat(seg.key, seg.version_id)
            return True
        except ObjectNotFoundError:
            return False

    def row(self, seg: Segment) -> Segment | None:
        with Session(self.index.engine) as s:
            return s.get(Segment, seg.id)

    def set_row(self, seg: Segment, **values) -> None:
        with self.index.engine.begin() as c:
            c.execute(update(Segment.__table__).where(Segment.__table__.c.id == seg.id).values(**values))

    def findings(self, **where) -> list[IntegrityFinding]:
        with Session(self.index.engine) as s:
            q = select(IntegrityFinding)
            for k, v in where.items():
                q = q.where(getattr(IntegrityFinding, k) == v)
            return list(s.exec(q))

    def job_runs(self, job: str) -> list[JobRun]:
        with Session(self.index.engine) as s:
            return list(s.exec(select(JobRun).where(JobRun.job == job).order_by(JobRun.id)))


def honest_witness(store: S3ObjectStore) -> list[StoreDateSource]:
    """The time witness of a store the test started: an S3 endpoint of its own, hence
    "external" from the service's view (its ``Date`` is independent of the sweep's clock)."""
    return [StoreDateSource(store, independent=True)]


def sweep(fx: Fixture, clock=None, witnesses=None, **cfg):
    """One expiry sweep over the fixture's store and index (SweepConfig fields as keywords);
    its time witness is the store's ``Date`` unless ``witnesses`` are given."""
    return run_sweep(fx.store, fx.index.engine, clock or SystemClock(), SweepConfig(**cfg), actor="test",
                     witnesses=honest_witness(fx.store) if witnesses is None else witnesses)


class ShiftedClock(SystemClock):
    """The real clock moved by ``offset``: a host whose clock was pushed forward (or back)."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return super().now() + self.offset
