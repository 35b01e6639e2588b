"""S3 backend against real SeaweedFS with Object Lock."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest
from minio.error import S3Error

from labwitness.clock import FakeClock
from labwitness.errors import IntegrityError, ObjectLockError, StorageUnavailableError
from retention.policy import RetentionPolicy
from storage.layout import SegmentMeta, segment_key
from storage.s3 import S3ObjectStore

from conftest import ACCESS, SECRET, make_store


def _meta(path, data: bytes, start=None) -> SegmentMeta:
    start = start or datetime(2026, 11, 25, 6, 0, 0, 123000, tzinfo=timezone.utc)
    path.write_bytes(data)
    return SegmentMeta(camera_id="cam-1", start=start, end=start + timedelta(seconds=60), media_duration_ms=60000,
                       codec="h264", width=640, height=360, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                       recorder_id="r1", session_id="s1", sequence=7, area_id="力学室", frames=1500)


def test_put_is_compliance_locked_for_six_months_and_undeletable(store, tmp_path):
    meta = _meta(tmp_path / "seg.mp4", b"\x00" * 1000 + b"video")
    until = RetentionPolicy()(meta.end)
    stored = store.put_segment(tmp_path / "seg.mp4", meta, until)
    assert stored.key == "v1/cam-1/2026/11/25/06/20261125T060000.123000Z-60000.mp4"
    # read back independently with a raw client
    r = store.client.get_object_retention(store.bucket, stored.key, version_id=stored.version_id)
    assert r.mode == "COMPLIANCE"
    assert r.retain_until_date >= RetentionPolicy(6, 0)(meta.end)
    assert r.retain_until_date >= datetime(2027, 5, 25, 6, 1, tzinfo=timezone.utc)
    # the storage itself refuses: delete of the version, and shortening
    with pytest.raises(S3Error) as e:
        store.client.remove_object(store.bucket, stored.key, version_id=stored.version_id)
    assert e.value.code == "AccessDenied"
    from minio.commonconfig import COMPLIANCE
    from minio.retention import Retention

    with pytest.raises(S3Error):
        store.client.set_object_retention(store.bucket, stored.key, Retention(COMPLIANCE, datetime.now(timezone.utc) + timedelta(days=1)),
                                          version_id=stored.version_id)
    # and so does our own API, before even asking
    with pytest.raises(ObjectLockError):
        store.delete_version(stored.key, stored.version_id)
    assert store.stat(stored.key, stored.version_id)[0].size == meta.size
    # metadata alone rebuilds the row
    _, user = store.stat(stored.key, stored.version_id)
    assert SegmentMeta.from_user_metadata(user) == meta


def test_find_segment_reuses_a_version_after_a_crash(store, tmp_path):
    meta = _meta(tmp_path / "seg.mp4", b"abc" * 100)
    assert store.find_segment(meta) is None
    stored = store.put_segment(tmp_path / "seg.mp4", meta, RetentionPolicy()(meta.end))
    again = store.find_segment(meta)
    assert again is not None and again.version_id == stored.version_id


@pytest.mark.parametrize("store_has_verified", [False, True], ids=["hashed-here", "verified-by-the-store"])
def test_damaged_spool_file_is_not_uploaded(store, tmp_path, store_has_verified):
    # check() saw SeaweedFS refuse a probe PUT with a wrong x-amz-checksum-sha256, and the probe left nothing
    assert store.verifies_checksums
    assert list(store.client.list_objects(store.bucket, prefix=store.CHECKSUM_PROBE_KEY, include_version=True)) == []
    store.verifies_checksums = store_has_verified  # False: as with a store not known to verify
    meta = _meta(tmp_path / "seg.mp4", b"original bytes")
    (tmp_path / "seg.mp4").write_bytes(b"tampered bytes")
    with pytest.raises(IntegrityError, match="the store refused it" if store_has_verified else "!= recorded"):
        store.put_segment(tmp_path / "seg.mp4", meta, RetentionPolicy()(meta.end))
    # refused before anything was stored: no locked copy of damaged footage
    assert list(store.client.list_objects(store.bucket, prefix=meta.key, include_version=True)) == []


def test_a_spool_file_shorter_than_its_record_is_refused_before_the_put(store, tmp_path):
    # the single PUT sends the file mapped into memory: a short file must be an error, never SIGBUS
    assert store.verifies_checksums
    meta = _meta(tmp_path / "seg.mp4", b"x" * 10_000)
    (tmp_path / "seg.mp4").write_bytes(b"x" * 4_000)
    with pytest.raises(IntegrityError, match="4000 bytes"):
        store.put_segment(tmp_path / "seg.mp4", meta, RetentionPolicy()(meta.end))
    assert list(store.client.list_objects(store.bucket, prefix=meta.key, include_version=True)) == []


def test_the_upload_reads_the_lock_back_from_the_head_as_getobjectretention_states_it(store, tmp_path, monkeypatch):
    meta = _meta(tmp_path / "seg.mp4", b"y" * 5000)
    until = RetentionPolicy()(meta.end)
    asked = []
    real = store.client.get_object_retention
    monkeypatch.setattr(store.client, "get_object_retention", lambda *a, **k: asked.append(a) or real(*a, **k))
    stored = store.put_segment(tmp_path / "seg.mp4", meta, until)
    assert asked == []  # SeaweedFS's HEAD carries the lock headers: one request fewer
    r = real(store.bucket, stored.key, version_id=stored.version_id)
    assert (stored.mode, stored.retain_until) == (r.mode, r.retain_until_date)
    assert stored.retain_until >= until.replace(microsecond=0)


def test_a_head_without_lock_headers_falls_back_to_getobjectretention(store, tmp_path, monkeypatch):
    import storage.s3 as s3mod

    monkeypatch.setattr(s3mod, "_head_retention", lambda headers: None)  # as a store that does not send them
    meta = _meta(tmp_path / "seg.mp4", b"z" * 5000)
    stored = store.put_segment(tmp_path / "seg.mp4", meta, RetentionPolicy()(meta.end))
    assert stored.mode == "COMPLIANCE" and stored.retain_until is not None


def test_bucket_without_object_lock_is_refused_unless_opted_in(seaweed):
    plain = S3ObjectStore(seaweed.endpoint, ACCESS, SECRET, "plain-bucket-no-lock")
    if not plain.client.bucket_exists("plain-bucket-no-lock"):
        plain.client.make_bucket("plain-bucket-no-lock")
    with pytest.raises(ObjectLockError, match="Object Lock"):
        plain.check()
    opted = S3ObjectStore(seaweed.endpoint, ACCESS, SECRET, "plain-bucket-no-lock", allow_unenforced=True)
    info = opted.check()
    assert info.retention_enforced is False and "NOT enforced" in info.detail


def test_unreachable_store_is_a_clear_error():
    from conftest import free_port

    s = S3ObjectStore(f"http://127.0.0.1:{free_port()}", ACCESS, SECRET, "whatever", timeout_s=1)
    with pytest.raises(StorageUnavailableError, match="unreachable"):
        s.check()


def test_wrong_credentials_are_a_clear_error(seaweed):
    s = S3ObjectStore(seaweed.endpoint, ACCESS, "wrong-secret", "footage-x")
    with pytest.raises(Exception) as e:
        s.check()
    assert "refused" in str(e.value) or "Signature" in str(e.value) or "Access" in str(e.value)


@pytest.mark.parametrize("camera_id", ["../etc", "a/b", "", "x" * 65, "cam 1"])
def test_bad_camera_ids_never_reach_a_key(camera_id):
    with pytest.raises(ValueError):
        segment_key(camera_id, datetime(2026, 1, 1, tzinfo=timezone.utc), 1000)


def test_checksum_probe_runs_once_not_on_every_health_check(store, monkeypatch):
    assert store.verifies_checksums is True  # probed by the first check()
    calls = []
    monkeypatch.setattr(store, "_refuses_bad_checksum", lambda: calls.append(1) or True)
    store.check(create=False)  # what GET /health does on every request
    assert calls == []


def test_delete_version_takes_now_from_the_clock_the_store_was_given(seaweed, tmp_path):
    """No clock read on the deletion path: a clock a day past the lock lets our guard
    pass it (and the store's COMPLIANCE lock still refuses); one before it, the guard refuses."""
    meta = _meta(tmp_path / "seg.mp4", b"clock" * 100)
    until = datetime.now(timezone.utc) + timedelta(hours=1)
    ahead = make_store(seaweed, clock=FakeClock(until + timedelta(days=1)))
    stored = ahead.put_segment(tmp_path / "seg.mp4", meta, until)
    with pytest.raises(ObjectLockError, match=r"locked: store refused \(AccessDenied\)"):
        ahead.delete_version(stored.key, stored.version_id)
    before = make_store(seaweed, ahead.bucket, clock=FakeClock(until - timedelta(minutes=1)))
    with pytest.raises(ObjectLockError, match="locked: retain-until"):
        before.delete_version(stored.key, stored.version_id)
    assert ahead.stat(stored.key, stored.version_id)[0].size == meta.size


def test_a_refused_listing_in_find_segment_is_a_storage_error(store, tmp_path):
    """The uploader looks a segment up before a re-PUT; a store refusing that listing (here a real
    bucket policy denying ListBucketVersions) must be a StorageError the uploader backs off on and
    keeps the segment for, not a raw S3Error escaping its loop."""
    import json

    from labwitness.errors import StorageError

    p = tmp_path / "seg.mp4"
    data = b"\x00" * 1000
    p.write_bytes(data)
    meta = _meta(p, data)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*",
              "Action": ["s3:ListBucketVersions", "s3:ListBucket"], "Resource": [f"arn:aws:s3:::{store.bucket}"]}]}
    store.client.set_bucket_policy(store.bucket, json.dumps(policy))
    try:
        with pytest.raises(StorageError) as err:
            store.find_segment(meta)
        assert not isinstance(err.value.__cause__, type(None)) and isinstance(err.value.__cause__, S3Error)
    finally:
        store.client.delete_bucket_policy(store.bucket)


@pytest.mark.parametrize("headers, want", [
    ({"X-Amz-Object-Lock-Mode": "COMPLIANCE", "X-Amz-Object-Lock-Retain-Until-Date": "2027-06-01T06:01:00Z"},
     ("COMPLIANCE", datetime(2027, 6, 1, 6, 1, tzinfo=timezone.utc))),
    ({"x-amz-object-lock-mode": "GOVERNANCE", "x-amz-object-lock-retain-until-date": "2027-06-01T06:01:00.500Z"},
     ("GOVERNANCE", datetime(2027, 6, 1, 6, 1, 0, 500000, tzinfo=timezone.utc))),
    ({"X-Amz-Object-Lock-Mode": "COMPLIANCE"}, None),  # no date: ask GetObjectRetention
    ({"X-Amz-Object-Lock-Retain-Until-Date": "2027-06-01T06:01:00Z"}, None),
    ({"X-Amz-Object-Lock-Mode": "SOMETHING", "X-Amz-Object-Lock-Retain-Until-Date": "2027-06-01T06:01:00Z"}, None),
    ({"X-Amz-Object-Lock-Mode": "COMPLIANCE", "X-Amz-Object-Lock-Retain-Until-Date": "next june"}, None),
    ({}, None),
    (None, None),
], ids=["compliance", "governance-ms-lowercase", "no-date", "no-mode", "unknown-mode", "bad-date", "none", "no-headers"])
def test_head_retention_reads_the_lock_headers_or_says_it_cannot(headers, want):
    from urllib3 import HTTPHeaderDict

    from storage.s3 import _head_retention

    r = _head_retention(HTTPHeaderDict(headers) if headers is not None else None)
    assert (None if r is None else (r.mode, r.retain_until_date)) == want
