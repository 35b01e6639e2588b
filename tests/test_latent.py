"""Latent bugs found in review (issue 12): each test failed on the code before its fix."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import av
import pytest
from sqlmodel import Session, select

from index.coverage import CoverageStore
from index.models import Area, Camera, Segment, TestRecord
from index.records import RecordStore
from labwitness.clock import FakeClock, utc_ms
from labwitness.segment_limits import MAX_SEGMENT_MS
from recorder.inputs import PyAVInput
from recorder.spool import CameraSpool, SpoolQuota
from recorder.worker import CameraWorker, RecorderConfig
from retention.compliance import compliance_report
from retention import content_index
from retention.content_job import _segments as content_segments
from retention.content_job import run_content_check
from retention.policy import may_delete
from simulator.clip import make_clip

from contenttools import JOB_CFG, SCENE, SEG_S, T0, encode_fmp4, flat, put_segment
from retentiontools import Fixture, sweep

UTC = timezone.utc


# -- one bound on a segment's length, for the recorder and every query -----------------------

def _long_segment(camera_id: str, start_ms: int, length_ms: int) -> Segment:
    return Segment(camera_id=camera_id, start_ms=start_ms, end_ms=start_ms + length_ms, media_duration_ms=length_ms,
                   key=f"v1/{camera_id}/{start_ms}.mp4", version_id="v1", size=1000, sha256="0" * 64,
                   retain_until_ms=start_ms + 200 * 86_400_000, lock_mode="COMPLIANCE", codec="h264")


@pytest.fixture
def fx(store, index, tmp_path) -> Fixture:
    return Fixture(store, index, tmp_path)


def test_long_segment_is_found_by_footage_report_coverage_compliance_and_content_queries(index):
    """A segment as long as the recorder may write (40 min: 600 s x 4 without a keyframe) that
    starts 39 min before a window: every query must still see it (the old 30 min bound lost it)."""
    month = datetime(2026, 11, 1, tzinfo=UTC)
    lo = utc_ms(month)
    seg = index.add_segment(_long_segment("cam-long", lo - MAX_SEGMENT_MS + 60_000, MAX_SEGMENT_MS))
    assert seg.end_ms - seg.start_ms == MAX_SEGMENT_MS == 40 * 60_000
    in_window = seg.end_ms - lo  # one minute of it lies in November
    with Session(index.engine) as s:
        s.add(Area(id="mech", name="力学室", created_ms=0))
        s.add(Camera(id="cam-long", rtsp_url="rtsp://x/", area_id="mech", created_ms=0))
        s.add(TestRecord(record_id="r1", report_no="R-LONG", started_ms=lo, ended_ms=seg.end_ms,
                         area_ids=json.dumps(["mech"]), equipment_ids="[]", updated_ms=0))
        s.commit()

    assert [x.id for x in index.footage("cam-long", lo, seg.end_ms).segments] == [seg.id]
    window = RecordStore(index.engine, lambda: 0).report_footage("R-LONG", margin_ms=0).windows[0]
    assert [c[0] for c in window.clips] == [seg.id] and window.coverage == 1.0
    now_ms = lo + 3 * 86_400_000
    assert CoverageStore(index.engine, lambda: now_ms).totals(["cam-long"], lo, seg.end_ms)["cam-long"].recorded_ms \
        == in_window
    report = compliance_report(index.engine, "2026-11", ZoneInfo("UTC"), now_ms)
    assert {c.camera_id: c.recorded_ms for c in report.cameras}["cam-long"] == in_window
    assert [x.id for x in content_segments(index.engine, "cam-long", lo, 10)] == [seg.id]


class JumpingClock(PyAVInput):
    """A real clip whose camera clock jumps an hour ahead after ``at`` frames (seen on
    cameras that resync their clock): the timestamps the recorder gets, nothing faked."""

    def __init__(self, path, at: int, jump_s: int) -> None:
        super().__init__(str(path), av.open(str(path)), 10.0)
        self.at, self.jump = at, int(jump_s / self.time_base)

    def packets(self):
        n = 0
        for is_audio, pkt, dts, pts in super().packets():
            n += not is_audio
            shift = self.jump if n > self.at else 0
            yield is_audio, pkt, dts + shift, pts + shift


def test_recorder_cuts_every_segment_within_the_bound_the_index_relies_on(tmp_path):
    """One keyframe in 45 minutes (1 fps), at the longest target the settings allow: without a
    keyframe the recorder cuts at 4 x 600 s, never past MAX_SEGMENT_MS of wall time, and a
    camera clock jumping ahead does not stretch a segment past it either."""
    clip = make_clip(tmp_path / "one-gop.mp4", seconds=2700, fps=1, width=64, height=64, gop=100_000)
    spool = CameraSpool(tmp_path / "spool", "cam-1", SpoolQuota(tmp_path / "spool", None, 0))
    clock = FakeClock(datetime(2026, 11, 1, tzinfo=UTC))
    worker = CameraWorker("cam-1", "rtsp://camera/ch1", spool, RecorderConfig(segment_seconds=600), clock=clock)
    worker._record(JumpingClock(clip.path, at=2000, jump_s=3600))
    segs = [c.meta for c in spool.committed()]
    lengths = [(m.end - m.start) / timedelta(milliseconds=1) for m in segs]
    assert len(segs) >= 2 and sum(m.frames for m in segs) == 2700
    assert all(x <= MAX_SEGMENT_MS for x in lengths), lengths
    assert lengths[0] > 39 * 60_000  # cut by the 4 x target rule, not earlier


# -- the deletion guard fails closed: a lock it cannot read is a lock ---------------------------

def _deny_lock_reads(store, denied: dict[str, list[str]]) -> None:
    """A bucket policy that makes SeaweedFS refuse (AccessDenied) one kind of lock read on some
    keys, to the sweep's own credentials too, while HEAD still finds the versions: a real store
    answering a lock read with an error, as a misconfigured policy or a store fault would."""
    statements = [{"Effect": "Deny", "Principal": "*", "Action": [action],
                   "Resource": [f"arn:aws:s3:::{store.bucket}/{k}" for k in keys]} for action, keys in denied.items()]
    store.client.set_bucket_policy(store.bucket, json.dumps({"Version": "2012-10-17", "Statement": statements}))


def _in_storage(store, seg) -> bool:
    from minio.error import S3Error

    try:
        store.client.stat_object(store.bucket, seg.key, version_id=seg.version_id)
        return True
    except S3Error as e:
        assert e.code in ("NoSuchKey", "NoSuchVersion"), e.code
        return False


def test_unreadable_legal_hold_or_retention_stops_that_deletion_and_is_reported(fx):
    fx.put("cam-a", seconds=600, lock_s=None, age=timedelta(days=1))  # keeps one run's share under the limit
    held, hold_unreadable, retention_unreadable, expired = (fx.put("cam-a") for _ in range(4))
    fx.store.set_legal_hold(held.key, held.version_id, True)
    _deny_lock_reads(fx.store, {"s3:GetObjectLegalHold": [hold_unreadable.key],
                                "s3:GetObjectRetention": [retention_unreadable.key]})
    fx.wait_expired()
    # the guard itself: an unreadable hold is not "no hold"
    item = (hold_unreadable.key, hold_unreadable.version_id)
    assert fx.store.delete_versions([item], datetime.now(UTC))[item].startswith("locked: lock unreadable")
    assert _in_storage(fx.store, hold_unreadable)

    res = sweep(fx)
    assert res.status == "warning", res.summary
    assert res.summary["deleted"] == 1 and not _in_storage(fx.store, expired)  # the rest of the run went on
    assert res.summary["kept"] == {"legal_hold": 1, "storage_lock_unreadable": 2}, res.summary["kept"]
    for seg in (held, hold_unreadable, retention_unreadable):
        assert _in_storage(fx.store, seg) and fx.row(seg).status == "stored"
    found = {f.segment_id: f.detail for f in fx.findings(kind="lock_unreadable")}
    assert set(found) == {hold_unreadable.id, retention_unreadable.id}
    assert "AccessDenied" in found[hold_unreadable.id] and "not deleted" in found[hold_unreadable.id]

    # a garbage row left by an interrupted sweep is not deleted either: back to stored, reported
    fx.set_row(hold_unreadable, status="garbage")
    res = sweep(fx)
    assert fx.row(hold_unreadable).status == "stored" and _in_storage(fx.store, hold_unreadable)
    assert res.summary["restored"] == 1 and res.summary["kept"]["storage_lock_unreadable"] == 2


def test_a_version_never_held_reads_as_no_hold_not_as_unreadable(store, tmp_path):
    """SeaweedFS answers NoSuchObjectLegalHold for a version that never had a hold: that is
    "no hold" (the old code swallowed every error to get this one right)."""
    f = Fixture(store, None, tmp_path)
    meta, stored = f.put("cam-a", indexed=False)
    obj, _ = store.stat(meta.key, stored.version_id)
    assert obj.legal_hold is False and obj.lock_unreadable == "" and obj.mode == "COMPLIANCE"
    store.set_legal_hold(meta.key, stored.version_id, True)
    assert store.stat(meta.key, stored.version_id)[0].legal_hold is True


@pytest.mark.parametrize("unreadable, legal_hold, ok", [(True, False, False), (True, True, False), (False, False, True)])
def test_policy_an_unreadable_lock_is_a_lock(unreadable, legal_hold, ok):
    now = utc_ms(datetime(2027, 6, 1, tzinfo=UTC))
    v = may_delete(now_ms=now, end_ms=now - 300 * 86_400_000, retain_until_ms=now - 1000, held=False,
                   stored_retain_until_ms=now - 1000, legal_hold=legal_hold, lock_unreadable=unreadable)
    assert v.ok is ok and (ok or v.reason == ("storage_lock_unreadable" if unreadable else "legal_hold"))


# -- content health: a segment indexed late is checked, once -----------------------------------

def test_content_check_takes_in_a_segment_indexed_after_its_mark_passed(store, index, tmp_path):
    """A storage outage holds one segment back: the next run's mark passes its time before it is
    uploaded.  It is still checked (its blackout found and closed), and no segment twice."""
    healthy = encode_fmp4(tmp_path / "healthy.mp4", lambda t: SCENE.view(t), SEG_S)
    black = encode_fmp4(tmp_path / "black.mp4", lambda t: flat(17, 1.0), SEG_S)
    with Session(index.engine) as s:
        s.add(Camera(id="cam-late", rtsp_url="rtsp://127.0.0.1/late", created_ms=0))
        s.commit()
    clock = FakeClock(T0 + timedelta(seconds=3 * SEG_S + 5))
    at = [T0 + timedelta(seconds=i * SEG_S) for i in range(3)]
    put_segment(store, index, healthy, "cam-late", at[0], SEG_S, 1)
    put_segment(store, index, healthy, "cam-late", at[2], SEG_S, 3)
    first = run_content_check(index, store, clock, JOB_CFG).cameras["cam-late"]
    assert first.sampled_until_ms == utc_ms(at[2]) + SEG_S * 1000 and first.events == []

    late = put_segment(store, index, black, "cam-late", at[1], SEG_S, 2)  # the held-back segment arrives
    second = run_content_check(index, store, clock, JOB_CFG)
    r = second.cameras["cam-late"]
    assert (r.late, r.segments, r.samples) == (1, 1, SEG_S // 2), r
    (event,) = content_index.events(index.engine, "cam-late")
    assert event.kind == "blackout" and not event.ongoing
    assert utc_ms(at[1]) <= event.start_ms < event.end_ms <= late.end_ms
    assert second.status == "ok" and r.ongoing == []  # the live timeline was not disturbed

    third = run_content_check(index, store, clock, JOB_CFG).cameras["cam-late"]
    assert (third.late, third.segments, third.reads) == (0, 0, 0)  # checked exactly once
    with Session(index.engine) as s:
        stamps = s.exec(select(Segment.content_checked_ms).where(Segment.camera_id == "cam-late")).all()
    assert len(stamps) == 3 and None not in stamps
