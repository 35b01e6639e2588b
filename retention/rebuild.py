"""Index rebuild from storage alone: the journal first, then the footage itself.

Procedure (``docs/retention.md``; every step idempotent, into an empty or partial index):

1. replay every ``journal/`` object (``retention.journal_replay``): segments with
   their ids, gaps with their reasons, test records with every revision, the audit
   log (same ids, hashes and MACs), export packages, holds, the registry's
   revisions and the registry they describe (cameras enabled, no credentials);
2. per camera, list the footage versions the journal may not know: those in hour
   prefixes up to the hour the journal began (``v1/{camera}/YYYY/MM/DD/HH/``, found by
   walking the prefixes, not by listing everything); each one not in the index
   (footage from before the journal existed) is read from its user metadata, one HEAD
   each, as the rebuild always did.  Versions the sweep deleted were journaled by the
   sweep (``segment_deleted``) and dropped in step 1.  With ``check_footage`` (or no
   journal at all) every version is listed, and a row whose version is gone is
   dropped when its retention had expired and nothing held it, and reported
   ``missing`` (critical) otherwise;
3. cameras and areas seen only in such metadata come back disabled (no URL: it is
   not in storage), and gaps between metadata-read segments are inferred with
   reason ``unknown``.

Without a journal this is the rebuild it always was (step 2 alone).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Iterable

from sqlalchemy import delete, select as sa_select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from index.models import Area, Camera, Gap, Hold, Segment
from index.queries import IndexStore, db_errors
from index.restore import Restorer
from index.segment_runs import settle as settle_runs
from labwitness.clock import Clock, utc_ms
from labwitness.errors import ObjectNotFoundError
from retention.journal_replay import Progress, bounded_map, replay_journal
from retention.runs import JobRecorder, JobResult, exclusive
from storage.base import ObjectStore, ObjectVersion, StoredObject
from storage.layout import SegmentMeta

log = logging.getLogger(__name__)

FOOTAGE_PREFIX = "v1/"
#: consecutive segments further apart than this leave a gap
GAP_TOLERANCE_MS = 1000
GAP_REASON = "unknown"
GAP_DETAIL = "inferred by index rebuild (the reason is not stored with the footage)"



def row_from_object(meta: SegmentMeta, stored: StoredObject) -> Segment:
    """The Segment row the uploader would have written for this stored version."""
    return Segment(
        camera_id=meta.camera_id, start_ms=utc_ms(meta.start), end_ms=utc_ms(meta.end),
        media_duration_ms=meta.media_duration_ms, key=stored.key, version_id=stored.version_id, size=meta.size,
        sha256=meta.sha256, retain_until_ms=utc_ms(stored.retain_until) if stored.retain_until else None,
        lock_mode=stored.mode, codec=meta.codec, audio_codec=meta.audio_codec, width=meta.width, height=meta.height,
        frames=meta.frames, session_id=meta.session_id, sequence=meta.sequence, recorder_id=meta.recorder_id,
        node_id=meta.recorder_id or None, epoch=meta.epoch or None,
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


SEG = Segment.__table__


def footage_cameras(store: ObjectStore, engine: Engine) -> list[str]:
    """Camera ids with footage in storage or rows in the index."""
    listed = {p[len(FOOTAGE_PREFIX):].strip("/") for p in store.list_prefixes(FOOTAGE_PREFIX)}
    with db_errors(), engine.connect() as conn:
        indexed = set(conn.execute(sa_select(SEG.c.camera_id).distinct()).scalars())
    return sorted(c for c in listed | indexed if c)


def _list_camera(store: ObjectStore, camera_id: str, before_ms: int | None) -> tuple[str, list[ObjectVersion]]:
    """The camera's footage versions: all of them (``before_ms`` None), or only those in hour
    prefixes up to the one holding ``before_ms`` (footage the journal may not know), found by
    walking the key layout's ``YYYY/MM/DD/HH/`` prefixes instead of listing every version."""
    root = f"{FOOTAGE_PREFIX}{camera_id}/"
    if before_ms is None:
        return camera_id, [v for v in store.list_versions(root) if not v.is_delete_marker]
    cutoff = f"{datetime.fromtimestamp(before_ms / 1000, timezone.utc):%Y/%m/%d/%H}"
    out: list[ObjectVersion] = []

    def walk(prefix: str, depth: int) -> None:
        for p in store.list_prefixes(prefix):
            path = p[len(root):].strip("/")
            if path > cutoff[:len(path)]:
                continue  # entirely after the journal began
            if depth == 3:
                out.extend(v for v in store.list_versions(p) if not v.is_delete_marker)
            else:
                walk(p, depth + 1)

    walk(root, 0)
    return camera_id, out


class _FootagePass:
    """Step 2 for one camera at a time: the index against what storage lists."""

    def __init__(self, store: ObjectStore, engine: Engine, run: JobRecorder, now_ms: int, stats: dict,
                 pool: ThreadPoolExecutor, workers: int) -> None:
        self.store, self.engine, self.run, self.now_ms, self.stats = store, engine, run, now_ms, stats
        self.pool, self.workers = pool, workers
        self.index = IndexStore(engine)
        self.cams: dict[str, str] = {}  # camera id -> area id of its newest metadata-read segment
        self.newest: dict[str, int] = {}
        self.read_spans: dict[str, tuple[int, int]] = {}  # camera -> time range of metadata-read segments

    def camera(self, camera_id: str, versions: list[ObjectVersion], *, check_gone: bool) -> None:
        if not versions and not check_gone:
            return
        cols = (SEG.c.id, SEG.c.key, SEG.c.version_id, SEG.c.retain_until_ms)
        with db_errors(), self.engine.connect() as conn:
            if check_gone:  # every row of the camera against every listed version
                found = conn.execute(sa_select(*cols).where(SEG.c.camera_id == camera_id)).all()
            else:  # only the listed versions' rows
                keys = sorted({v.key for v in versions})
                found = [r for i in range(0, len(keys), 500)
                         for r in conn.execute(sa_select(*cols).where(SEG.c.key.in_(keys[i:i + 500])))]
            rows = {(k, v): (i, ru) for i, k, v, ru in found}
            held = set(conn.execute(sa_select(Hold.__table__.c.segment_id).where(
                Hold.__table__.c.released_ms.is_(None))).scalars()) if rows else set()
        listed = {(v.key, v.version_id) for v in versions}
        self.stats["versions"] += len(listed)
        self.stats["segments_present"] += len(listed & rows.keys())
        swept = []
        for kv in (rows.keys() - listed) if check_gone else ():
            sid, retain_until = rows[kv]
            if retain_until is not None and retain_until <= self.now_ms and sid not in held:
                swept.append(sid)  # expired and deleted by the sweep after it was journaled
            else:
                self.run.finding("missing", camera_id=camera_id, segment_id=sid, key=kv[0], version_id=kv[1],
                                 detail="journaled segment whose version is not in storage although its retention "
                                        "had not expired (or a hold kept it): footage lost")
        if swept:
            with db_errors(), self.engine.begin() as conn:
                for i in range(0, len(swept), 500):
                    conn.execute(delete(SEG).where(SEG.c.id.in_(swept[i:i + 500])))
                settle_runs(conn)
            self.stats["segments_dropped_expired"] += len(swept)
        todo = [v for v in versions if (v.key, v.version_id) not in rows]
        for v, (meta, stored, problem) in zip(todo, bounded_map(
                self.pool, lambda v: read_meta(self.store, v.key, v.version_id), todo, ahead=4 * self.workers)):
            if meta is None or meta.key != v.key:
                self.stats["skipped"] += 1
                if problem != "gone":
                    self.run.finding("orphan_object", severity="warning", key=v.key, version_id=v.version_id,
                                     detail=f"not re-indexed: {problem or f'metadata names key {meta.key}'}")
                continue
            row = row_from_object(meta, stored)
            got = self.index.add_segment(row)
            self.stats["segments_added" if got is row else "segments_present"] += 1
            lo, hi = self.read_spans.get(meta.camera_id, (row.start_ms, row.end_ms))
            self.read_spans[meta.camera_id] = (min(lo, row.start_ms), max(hi, row.end_ms))
            if row.end_ms >= self.newest.get(meta.camera_id, -1):
                self.newest[meta.camera_id] = row.end_ms
                self.cams[meta.camera_id] = meta.area_id


@exclusive("rebuild")
def run_rebuild(store: ObjectStore, engine: Engine, clock: Clock, *, progress: Progress | None = None, workers: int = 8,
                actor: str = "scheduler", check_footage: bool = False) -> JobResult:
    """Restore the index from storage (module docstring).  ``check_footage``: list every
    footage version and compare (slow: SeaweedFS lists ~2 000 versions/s, over two hours for
    a six-month, 64-camera installation; ``retention reconcile`` does the same comparison)."""
    with JobRecorder(engine, clock, "rebuild", actor=actor) as run:
        stats = {"versions": 0, "segments_added": 0, "segments_present": 0, "segments_dropped_expired": 0,
                 "skipped": 0, "gaps_added": 0, "cameras_added": 0, "areas_added": 0}
        journal = replay_journal(store, Restorer(engine), workers=workers, progress=progress)
        stats["journal_objects"] = journal.objects
        stats["journal_entries"] = dict(sorted(journal.entries.items()))
        for key in journal.unreadable:
            run.finding("journal_unreadable", key=key, detail="journal object could not be read: its entries are "
                                                              "not restored")
        if journal.holds_without_version:
            run.finding("hold_without_version", severity="warning",
                        detail=f"{journal.holds_without_version} journaled holds name a version not in the index")
        now_ms = utc_ms(clock.now())
        cameras = footage_cameras(store, engine)
        with ThreadPoolExecutor(max(1, workers)) as pool, ThreadPoolExecutor(max(1, min(4, workers))) as lister:
            fp = _FootagePass(store, engine, run, now_ms, stats, pool, max(1, workers))
            if progress:
                progress(0, len(cameras), phase="footage")
            before = None if check_footage or journal.first_ms is None else journal.first_ms
            for done, (cam, versions) in enumerate(bounded_map(lister, lambda c: _list_camera(store, c, before), cameras,
                                                               ahead=2), start=1):
                fp.camera(cam, versions, check_gone=check_footage or journal.first_ms is None)
                if progress:
                    progress(done, len(cameras), phase="footage")
        with db_errors(), Session(engine) as s:
            for cam_id, area_id in sorted(fp.cams.items()):
                if cam_id in journal.registry_cameras:
                    continue  # the registry's history says what this camera is (or that it was removed)
                if area_id and s.get(Area, area_id) is None:
                    s.add(Area(id=area_id, name=area_id, description="restored by index rebuild", created_ms=now_ms))
                    stats["areas_added"] += 1
                if s.get(Camera, cam_id) is None:
                    s.add(Camera(id=cam_id, name=cam_id, rtsp_url="", area_id=area_id or None, enabled=False,
                                 created_ms=now_ms))
                    stats["cameras_added"] += 1
            s.commit()
        for cam_id, (lo, hi) in sorted(fp.read_spans.items()):
            stats["gaps_added"] += _infer_camera_gaps(engine, index=fp.index, camera_id=cam_id, lo=lo, hi=hi)
        stats["cameras"] = sorted(fp.cams)
        return run.finish(run.status(), stats)


def _infer_camera_gaps(engine: Engine, *, index: IndexStore, camera_id: str, lo: int, hi: int) -> int:
    """Gaps with reason ``unknown`` between stored segments within [lo, hi] (where segments
    were read from metadata), unless a recorded gap already covers them."""
    with db_errors(), Session(engine) as s:
        spans = list(s.exec(select(Segment.start_ms, Segment.end_ms).where(
            Segment.camera_id == camera_id, Segment.status == "stored", Segment.end_ms >= lo,
            Segment.start_ms <= hi).order_by(col(Segment.start_ms))))
    known = index.gaps(camera_id)
    added = 0
    for g in infer_gaps(spans, camera_id):
        if any(k.start_ms < g.end_ms and k.end_ms > g.start_ms for k in known):
            continue  # the recorder's own record of this gap (with its reason) is better
        added += index.add_gap(g) is g
    return added
