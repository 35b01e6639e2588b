"""Retention jobs against real SeaweedFS (Object Lock) and both index databases.

Objects that must really expire are written straight through storage with a
retain-until a few seconds away and footage metadata dated months back; the
product's retention settings are never shortened.
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from index import segment_runs
from index.models import Hold, Segment
from labwitness.clock import FakeClock, SystemClock, utc_ms
from labwitness.errors import StorageUnavailableError
from retention.integrity import run_integrity
from retention.reconcile import run_reconcile
from retention.sweep import SweepConfig, run_sweep
from retention.verify import run_verify
from storage.s3 import S3ObjectStore

from conftest import ACCESS, SECRET
from retentiontools import UTC, Fixture, honest_witness, sweep


@pytest.fixture
def fx(store, index, tmp_path) -> Fixture:
    return Fixture(store, index, tmp_path)


# -- expiry sweep ------------------------------------------------------------------

def test_sweep_deletes_only_what_expired_in_index_and_storage_and_is_not_held(fx):
    long = fx.put("cam-a", seconds=600, lock_s=None, age=timedelta(days=1))  # recent, policy-locked: the bulk
    e1, e2 = fx.put("cam-a"), fx.put("cam-a")
    held_in_index = fx.put("cam-a")
    held_in_storage = fx.put("cam-a")
    storage_locked = fx.put("cam-a", lock_s=3600)  # index says expired (edited below), storage says no
    index_locked = fx.put("cam-a")  # storage expires, index says a year more
    young = fx.put("cam-a", age=timedelta(days=10))  # lock too short, but footage younger than 6 months
    fx.set_row(storage_locked, retain_until_ms=utc_ms(datetime.now(UTC) - timedelta(days=1)))
    fx.set_row(index_locked, retain_until_ms=utc_ms(datetime.now(UTC) + timedelta(days=365)))
    with Session(fx.index.engine) as s:
        s.add(Hold(segment_id=held_in_index.id, package_id="pkg-1", placed_ms=0))
        s.commit()
    fx.store.set_legal_hold(held_in_storage.key, held_in_storage.version_id, True)

    before = sweep(fx)  # nothing has expired yet: nothing goes
    assert before.status == "ok" and before.summary["deleted"] == 0
    fx.wait_expired()

    dry = sweep(fx, dry_run=True)
    assert dry.status == "ok" and dry.dry_run
    assert {w["segment_id"] for w in dry.summary["would_delete_versions"]} == {e1.id, e2.id}
    assert all(fx.exists(s) and fx.row(s).status == "stored" for s in (e1, e2))

    from index.coverage import day_of
    from index.models import CoverageDay

    with Session(fx.index.engine) as s:  # a rolled-up day of health coverage over the footage that goes
        s.add(CoverageDay(camera_id="cam-a", day_ms=day_of(e1.start_ms), recorded_ms=1, bytes=1, segments=1, computed_ms=0))
        s.commit()
    res = sweep(fx)
    assert res.status == "ok", res.summary
    assert res.summary["deleted"] == 2 and res.summary["deleted_bytes"] == e1.size + e2.size
    from index.models import JournalOutbox

    with Session(fx.index.engine) as s:  # the journal learns which versions went (a rebuild drops their rows)
        deleted = [json.loads(r.body) for r in s.exec(select(JournalOutbox).where(JournalOutbox.kind == "segment_deleted"))]
    assert sorted((d["key"], d["version_id"]) for d in deleted) == sorted((e.key, e.version_id) for e in (e1, e2))
    with Session(fx.index.engine) as s:  # ... is dropped so that health recomputes it
        assert s.exec(select(CoverageDay)).all() == []
    assert res.summary["kept"] == {"hold": 1, "legal_hold": 1, "storage_retain_until_future": 1,
                                   "below_legal_minimum": 1}, res.summary["kept"]
    for gone in (e1, e2):
        assert not fx.exists(gone) and fx.row(gone) is None
    for kept in (long, held_in_index, held_in_storage, storage_locked, index_locked, young):
        assert fx.exists(kept) and fx.row(kept).status == "stored", kept.key
    runs = fx.job_runs("sweep")
    assert [r.status for r in runs] == ["ok", "ok", "ok"] and all(r.finished_ms for r in runs)
    assert json.loads(runs[-1].summary)["deleted"] == 2 and runs[1].dry_run


def test_clock_wrong_by_a_day_deletes_nothing(fx):
    fx.put("cam-a", seconds=600, lock_s=None, age=timedelta(days=1))
    segs = [fx.put("cam-a", lock_s=3600) for _ in range(3)]  # expire in an hour (storage and index agree)
    ahead = FakeClock(datetime.now(UTC) + timedelta(days=1))
    res = sweep(fx, ahead)
    assert res.status == "refused" and res.summary["reason"] == "clock_skew"
    assert res.summary["clock_skew_s"] > 86000
    # even with the clock check switched off, "now" is the earlier clock (the store's): nothing goes
    res = sweep(fx, ahead, max_clock_skew_s=10 * 86400)
    assert res.status == "ok" and res.summary["deleted"] == 0
    assert res.summary["planned"] == {}
    # and storage itself refuses a delete asked for with the wrong "now"
    out = fx.store.delete_versions([(segs[0].key, segs[0].version_id)], datetime.now(UTC) + timedelta(days=1))
    assert out[(segs[0].key, segs[0].version_id)].startswith("locked")
    from minio.deleteobjects import DeleteObject

    errors = list(fx.store.client.remove_objects(fx.store.bucket, [DeleteObject(s.key, s.version_id) for s in segs]))
    assert {e.code for e in errors} == {"AccessDenied"} and len(errors) == 3
    assert all(fx.exists(s) and fx.row(s).status == "stored" for s in segs)


def test_empty_or_fresh_index_is_refused(fx, index):
    # storage holds expired footage the index does not know: an empty index is refused
    fx.put("cam-a", indexed=False)
    fresh = [fx.put("cam-b", age=timedelta(days=2)) for _ in range(2)]
    fx.wait_expired()
    with index.engine.begin() as c:  # an empty index first
        c.execute(Segment.__table__.delete())
    res = sweep(fx)
    assert res.status == "refused" and res.summary["reason"] == "index_empty"
    for s in fresh:  # a fresh index (oldest footage 2 days old) with "expired" rows is refused too
        index.add_segment(Segment(**{k: v for k, v in s.model_dump().items() if k != "id"}))
    res = sweep(fx, max_share=1.0)
    assert res.status == "refused" and res.summary["reason"] == "index_fresh"
    assert all(fx.exists(s) for s in fresh)
    assert len(list(fx.store.list_versions("v1/cam-a/"))) == 1


class CrashBetweenMarkAndDelete(S3ObjectStore):
    """The store as seen by a sweep that dies after marking rows, before any delete."""

    def delete_versions(self, items, now, **kw):
        raise StorageUnavailableError("injected: the sweep was killed between mark and delete")


def test_sweep_killed_between_mark_and_delete_is_finished_by_the_next_run(fx, seaweed):
    fx.put("cam-a", seconds=600, lock_s=None, age=timedelta(days=1))
    segs = [fx.put("cam-a") for _ in range(4)]
    fx.wait_expired()
    crashing = CrashBetweenMarkAndDelete(seaweed.endpoint, ACCESS, SECRET, fx.store.bucket)
    crashing.check()
    with pytest.raises(StorageUnavailableError):
        run_sweep(crashing, fx.index.engine, SystemClock(), SweepConfig(batch_size=10), witnesses=honest_witness(crashing))
    assert fx.job_runs("sweep")[-1].status == "failed"
    assert all(fx.row(s).status == "garbage" and fx.exists(s) for s in segs)  # marked, nothing deleted
    assert fx.index.footage("cam-a", segs[0].start_ms, segs[-1].end_ms).segments == []  # hidden from reports
    _runs_exact(fx)  # and from the runs the index keeps, in the marking transaction (decision 54)
    # the process also died after deleting one object but before removing its row
    fx.store.client.remove_object(fx.store.bucket, segs[0].key, version_id=segs[0].version_id)
    res = sweep(fx)
    assert res.status == "ok", res.summary
    assert res.summary["recovered_rows_removed"] == 1 and res.summary["recovered_deleted"] == 3
    assert all(fx.row(s) is None and not fx.exists(s) for s in segs)
    _runs_exact(fx)


def _runs_exact(fx) -> None:
    """The kept runs (index.segment_runs) are the stored segments' runs, nothing left to settle."""
    with fx.index.engine.connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM segment_run_dirty")).scalar_one() == 0
        assert segment_runs.stored(c) == segment_runs.expected(c)


def test_garbage_row_that_storage_still_locks_goes_back_to_stored(fx):
    fx.put("cam-a", seconds=600, lock_s=None, age=timedelta(days=1))
    locked = fx.put("cam-a", lock_s=3600)
    fx.set_row(locked, status="garbage", retain_until_ms=0)  # a wrong mark (bug, hand edit)
    res = sweep(fx)
    assert res.status == "warning" and res.summary["restored"] == 1
    assert fx.row(locked).status == "stored" and fx.exists(locked)
    _runs_exact(fx)  # back in the runs: the hand edit left it unsettled, the sweep's revert settled it
    assert [f.kind for f in fx.findings(segment_id=locked.id)] == ["lock_mismatch"]


def test_share_limit_stops_one_camera_and_alerts(fx):
    fx.put("cam-a", seconds=600, lock_s=None, age=timedelta(days=1))
    a = [fx.put("cam-a") for _ in range(2)]  # 4 s of 604 s
    fx.put("cam-b", seconds=10, lock_s=None, age=timedelta(days=1))
    b = [fx.put("cam-b") for _ in range(2)]  # 4 s of 14 s = 29 %
    fx.wait_expired()
    res = sweep(fx)
    assert res.status == "warning"
    assert set(res.summary["stopped_cameras"]) == {"cam-b"}
    assert res.summary["stopped_cameras"]["cam-b"]["share"] == pytest.approx(4 / 14, abs=0.01)
    assert res.summary["deleted"] == 2
    assert all(not fx.exists(s) for s in a) and all(fx.exists(s) and fx.row(s).status == "stored" for s in b)
    res = sweep(fx, cameras=["cam-b"], max_share=0.5)  # an admin confirms the larger share for that camera
    assert res.status == "ok" and res.summary["deleted"] == 2
    assert all(not fx.exists(s) and fx.row(s) is None for s in b)


# -- lock verification ------------------------------------------------------------------

def test_verify_checks_bucket_and_sampled_locks(fx):
    good = [fx.put("cam-v", lock_s=None, age=timedelta(days=1)) for _ in range(3)]
    short = fx.put("cam-v", lock_s=3600, age=timedelta(days=1))  # locked < end + 6 months
    overstated = fx.put("cam-v", lock_s=None, age=timedelta(days=2))
    fx.set_row(overstated, retain_until_ms=overstated.retain_until_ms + 86400_000)
    ghost = fx.index.add_segment(Segment(**{**good[0].model_dump(), "id": None, "key": good[0].key + ".ghost",
                                            "version_id": "nope"}))
    res = run_verify(fx.store, fx.index.engine, SystemClock(), sample=50, actor="test")
    assert res.status == "critical"
    assert res.summary["bucket"]["object_lock"] and res.summary["bucket"]["versioning"]
    assert res.summary["checked"] == 6 and res.summary["ok"] == 3
    kinds = {(f.segment_id, f.kind) for f in fx.findings()}
    assert kinds == {(short.id, "lock_mismatch"), (overstated.id, "lock_mismatch"), (ghost.id, "missing")}
    assert all(fx.row(s).lock_verified_ms for s in good) and fx.row(short).lock_verified_ms is None
    again = run_verify(fx.store, fx.index.engine, SystemClock(), sample=50)
    assert again.status == "critical" and len(fx.findings()) == 3  # open findings are not duplicated


def test_verify_reports_a_bucket_without_object_lock(seaweed, index):
    plain = S3ObjectStore(seaweed.endpoint, ACCESS, SECRET, f"plain-{uuid.uuid4().hex[:8]}", allow_unenforced=True)
    plain.client.make_bucket(plain.bucket)
    plain.check()
    res = run_verify(plain, index.engine, SystemClock())
    assert res.status == "critical" and res.findings[0]["kind"] == "lock_missing"


# -- integrity audit ---------------------------------------------------------------------------

def test_integrity_detects_altered_and_missing_footage(fx):
    good = [fx.put("cam-i", lock_s=None, age=timedelta(days=1)) for _ in range(2)]
    edited = fx.put("cam-i", lock_s=None, age=timedelta(days=1))
    fx.set_row(edited, sha256="0" * 64)
    rewritten = fx.put("cam-i", lock_s=None, age=timedelta(days=1))
    fake = b"not the original footage"  # same key, new version, written with the storage credentials
    fx.store.client.put_object(fx.store.bucket, rewritten.key, io.BytesIO(fake), len(fake))
    gone = fx.index.add_segment(Segment(**{**good[0].model_dump(), "id": None, "key": good[0].key + ".x",
                                           "version_id": "nope"}))
    res = run_integrity(fx.store, fx.index.engine, SystemClock(), budget_objects=1, actor="test")
    assert res.summary["checked"] == 1  # the budget holds
    res = run_integrity(fx.store, fx.index.engine, SystemClock(), budget_objects=100)
    assert res.status == "critical"
    found = {(f.segment_id, f.kind, f.severity) for f in fx.findings()}
    assert found == {(edited.id, "altered", "critical"), (rewritten.id, "altered", "critical"),
                     (gone.id, "missing", "critical")}
    assert "key rewritten" in fx.findings(segment_id=rewritten.id)[0].detail
    assert all(fx.row(s).verified_ms for s in good) and fx.row(edited).verified_ms is None


# -- reconcile ---------------------------------------------------------------------------------------

def test_reconcile_finds_orphans_both_ways_and_repairs_only_what_is_safe(fx):
    indexed = fx.put("cam-r", lock_s=None, age=timedelta(days=1))
    meta, stored = fx.put("cam-r", lock_s=None, age=timedelta(days=1), indexed=False)  # crash before the row
    junk = b"no labwitness metadata"
    junk_key = indexed.key.rsplit("/", 1)[0] + "/junk.mp4"
    fx.store.client.put_object(fx.store.bucket, junk_key, io.BytesIO(junk), len(junk))
    fx.store.client.put_object(fx.store.bucket, indexed.key, io.BytesIO(junk), len(junk))  # rewritten key
    lost = fx.index.add_segment(Segment(**{**indexed.model_dump(), "id": None, "key": indexed.key + ".lost",
                                           "version_id": "v-lost"}))
    res = run_reconcile(fx.store, fx.index.engine, SystemClock(), actor="test")
    assert res.status == "critical"
    f = {(x.key, x.kind, x.severity) for x in fx.findings()}
    assert (stored.key, "orphan_object", "warning") in f  # re-indexable, reported only without --repair
    assert (junk_key, "orphan_object", "critical") in f
    assert (indexed.key, "orphan_object", "critical") in f
    assert (lost.key, "orphan_row", "critical") in f
    assert len(f) == 4
    res = run_reconcile(fx.store, fx.index.engine, SystemClock(), repair=True)
    assert res.summary["reindexed"] == 1
    with Session(fx.index.engine) as s:
        row = s.exec(select(Segment).where(Segment.key == stored.key)).one()
        assert row.version_id == stored.version_id and row.sha256 == meta.sha256
        assert s.get(Segment, lost.id) is not None  # rows are never deleted
    assert len(list(fx.store.list_versions(junk_key))) == 1  # objects are never deleted


def test_scheduler_has_every_job_and_starts_no_earlier_than_the_delay(fx):
    from retention.runs import JobsConfig
    from retention.scheduler import build_scheduler

    sched = build_scheduler(fx.store, fx.index.engine, SystemClock(),
                            JobsConfig(start_delay_s=600, reconcile_interval_h=0, coverage_refresh_min=0))
    jobs = {j.id: j for j in sched.get_jobs()}
    pg = {"index-partitions"} if fx.index.engine.dialect.name == "postgresql" else set()  # months ahead (index.partitions)
    assert set(jobs) == {"retention-sweep", "retention-verify", "retention-integrity", "retention-content"} | pg
    assert all(j.next_run_time >= datetime.now(UTC) + timedelta(seconds=590) for j in jobs.values())
