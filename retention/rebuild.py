"""Index rebuild from object metadata alone (the contract of ``storage.layout``).

Lists every version under ``v1/``, reads each one's user metadata and
retention, and inserts idempotently: one Segment row per version (the same
fields the uploader writes), a Camera per camera id (disabled, no URL: those
are not in storage), an Area per area id, and Gaps inferred between
consecutive segments with reason ``unknown``.  See ``docs/retention.md``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from index.models import Area, Camera, Gap, Segment
from index.queries import IndexStore, db_errors
from labwitness.clock import Clock, utc_ms
from labwitness.errors import ObjectNotFoundError
from retention.runs import JobRecorder, JobResult, exclusive
from storage.base import ObjectStore, StoredObject
from storage.layout import SegmentMeta

log = logging.getLogger(__name__)

FOOTAGE_PREFIX = "v1/"
#: consecutive segments further apart than this leave a gap
GAP_TOLERANCE_MS = 1000
GAP_REASON = "unknown"
GAP_DETAIL = "inferred by index rebuild (the reason is not stored with the footage)"

Progress = Callable[[int, int], None]  # (done, total)


def row_from_object(meta: SegmentMeta, stored: StoredObject) -> Segment:
    """The Segment row the uploader would have written for this stored version."""
    return Segment(
        camera_id=meta.camera_id, start_ms=utc_ms(meta.start), end_ms=utc_ms(meta.end),
        media_duration_ms=meta.media_duration_ms, key=stored.key, version_id=stored.version_id, size=meta.size,
        sha256=meta.sha256, retain_until_ms=utc_ms(stored.retain_until) if stored.retain_until else None,
        lock_mode=stored.mode, codec=meta.codec, audio_codec=meta.audio_codec, width=meta.width, height=meta.height,
        frames=meta.frames, session_id=meta.session_id, sequence=meta.sequence, recorder_id=meta.recorder_id,
    )


def read_meta(store: ObjectStore, key: str, version_id: str) -> tuple[SegmentMeta | None, StoredObject | None, str]:
    """(metadata, lock state, problem) of one version; metadata None when it is not labwitness footage."""
    try:
        stored, user = store.stat(key, version_id, with_hold=False)
    except ObjectNotFoundError:
        return None, None, "gone"
    if not user:
        return None, stored, "no user metadata"
    try:
        meta = SegmentMeta.from_user_metadata(user)
    except (TypeError, ValueError) as e:
        return None, stored, f"metadata unreadable: {e}"
    return meta, stored, ""


def infer_gaps(spans: Iterable[tuple[int, int]], camera_id: str, tolerance_ms: int = GAP_TOLERANCE_MS) -> list[Gap]:
    """Gaps between consecutive (start_ms, end_ms) spans of one camera (overlaps merged)."""
    gaps: list[Gap] = []
    reach: int | None = None
    for start, end in sorted(spans):
        if reach is not None and start > reach + tolerance_ms:
            gaps.append(Gap(camera_id=camera_id, start_ms=reach, end_ms=start, reason=GAP_REASON, detail=GAP_DETAIL))
        reach = end if reach is None else max(reach, end)
    return gaps


@exclusive("rebuild")
def run_rebuild(store: ObjectStore, engine: Engine, clock: Clock, *, progress: Progress | None = None, workers: int = 8,
                actor: str = "scheduler") -> JobResult:
    index = IndexStore(engine)
    with JobRecorder(engine, clock, "rebuild", actor=actor) as run:
        versions = [v for v in store.list_versions(FOOTAGE_PREFIX) if not v.is_delete_marker]
        total = len(versions)
        if progress:
            progress(0, total)
        stats = {"versions": total, "segments_added": 0, "segments_present": 0, "skipped": 0, "gaps_added": 0,
                 "cameras_added": 0, "areas_added": 0}
        cams: dict[str, str] = {}  # camera id -> area id of its newest segment
        newest: dict[str, int] = {}
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for done, (v, (meta, stored, problem)) in enumerate(
                    zip(versions, pool.map(lambda v: read_meta(store, v.key, v.version_id), versions)), start=1):
                if meta is None or meta.key != v.key:
                    stats["skipped"] += 1
                    if problem != "gone":
                        run.finding("orphan_object", severity="warning", key=v.key, version_id=v.version_id,
                                    detail=f"not re-indexed: {problem or f'metadata names key {meta.key}'}")
                else:
                    row = row_from_object(meta, stored)
                    got = index.add_segment(row)
                    stats["segments_added" if got is row else "segments_present"] += 1
                    if meta.end.timestamp() * 1000 >= newest.get(meta.camera_id, -1):
                        newest[meta.camera_id] = utc_ms(meta.end)
                        cams[meta.camera_id] = meta.area_id
                if progress:
                    progress(done, total)
        now_ms = utc_ms(clock.now())
        with db_errors(), Session(engine) as s:
            for cam_id, area_id in sorted(cams.items()):
                if area_id and s.get(Area, area_id) is None:
                    s.add(Area(id=area_id, name=area_id, description="restored by index rebuild", created_ms=now_ms))
                    stats["areas_added"] += 1
                if s.get(Camera, cam_id) is None:
                    s.add(Camera(id=cam_id, name=cam_id, rtsp_url="", area_id=area_id or None, enabled=False,
                                 created_ms=now_ms))
                    stats["cameras_added"] += 1
            s.commit()
        for cam_id in sorted(cams):
            with db_errors(), Session(engine) as s:
                spans = list(s.exec(select(Segment.start_ms, Segment.end_ms).where(
                    Segment.camera_id == cam_id, Segment.status == "stored").order_by(col(Segment.start_ms))))
            known = index.gaps(cam_id)
            for g in infer_gaps(spans, cam_id):
                if any(k.start_ms < g.end_ms and k.end_ms > g.start_ms for k in known):
                    continue  # the recorder's own record of this gap (with its reason) is better
                stats["gaps_added"] += index.add_gap(g) is g
        stats["cameras"] = sorted(cams)
        return run.finish(run.status(), stats)
