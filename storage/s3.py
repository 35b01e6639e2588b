"""S3 backend on the ``minio`` client (MinIO, SeaweedFS, Ceph RGW, AWS).

Procedure for one segment (``put_segment``):

1. The bytes sent must be the bytes the recorder hashed while writing (the
   spool copy may have been damaged since).  A segment up to
   ``SINGLE_PUT_BYTES`` goes in one PUT that carries that SHA-256 twice: as
   ``x-amz-checksum-sha256``, which the store verifies against the body it
   received and refuses (``BadDigest``) on a mismatch -> ``IntegrityError``,
   nothing stored; and as the signed payload hash, so minio does not hash the
   body again.  A store is trusted with this only once :meth:`check` has seen
   it refuse a probe PUT with a wrong checksum (SeaweedFS, MinIO and AWS do);
   any other store gets the file hashed here first, as does a multipart upload.
2. PUT the object with ``x-amz-object-lock-mode: COMPLIANCE`` and the
   retain-until date, plus the user metadata of :class:`SegmentMeta`.
3. Read the version back with one HEAD: size, metadata and its retention
   (the HEAD's ``x-amz-object-lock-*`` headers; GetObjectRetention when a store
   does not send them); all must match what was asked, or -> ``ObjectLockError``.

Network faults become :class:`StorageUnavailableError` (:mod:`storage.s3_errors`
translates every call); the uploader retries those forever with backoff.  Nothing
here deletes or shortens a retention: the only delete is the guard of
:mod:`storage.deletion`, this class's base.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import mmap
import os
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import BinaryIO, Iterator
from urllib.parse import urlsplit

import urllib3
from minio.commonconfig import COMPLIANCE, ENABLED
from minio.error import S3Error
from minio.helpers import ObjectWriteResult, genheaders
from minio.objectlockconfig import DAYS, ObjectLockConfig
from minio.retention import Retention

from labwitness.clock import Clock, SystemClock
from labwitness.errors import ConfigError, IntegrityError, LockUnreadableError, ObjectLockError, StorageError
from storage.base import LockConfig, ObjectVersion, StoredObject, StoreInfo
from storage.deletion import S3DeletionGuard
from storage.hashing import file_sha256
from storage.layout import SegmentMeta
from storage.s3_client import S3Body, _head_retention, _Minio
from storage.s3_errors import BAD_DIGEST, NO_HOLD, NO_LOCK_CONFIG, not_found_or_refused, s3_call

log = logging.getLogger(__name__)


#: Largest segment sent as one PUT; bigger ones go in parts of this size.  minio's
#: default part size (5 MiB) turns a 60 s 1080p segment (~33 MB) into a 7-part
#: multipart upload: 9 requests instead of 1, each signed and hashed on its own,
#: plus a thread pool per upload -- measured in bench/record as recorder and
#: SeaweedFS CPU.  minio holds one part in memory while sending it, so this
#: also bounds the memory of one upload.
SINGLE_PUT_BYTES = 64 * 1024 * 1024


class S3ObjectStore(S3DeletionGuard):
    """:class:`storage.base.GuardedStore` on one bucket; its deleting half is
    :class:`storage.deletion.S3DeletionGuard`."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool | None = None,
        region: str | None = None,
        allow_unenforced: bool = False,
        timeout_s: float = 10.0,
        default_retention_days: int = 190,
        clock: Clock | None = None,
    ) -> None:
        parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        if not parts.hostname:
            raise ConfigError(f"S3 地址无效 / LABWITNESS_S3_ENDPOINT {endpoint!r} is not a URL like http://127.0.0.1:8333")
        host = parts.netloc
        if secure is None:
            secure = parts.scheme == "https"
        # Bounded timeouts and no retries inside urllib3: the uploader owns the
        # retry loop, so that a dead store shows up as a backlog, not a hang.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s * 3),
            maxsize=16,
            retries=urllib3.Retry(total=0, connect=0, read=0, redirect=0),
        )
        self.client = _Minio(host, access_key=access_key, secret_key=secret_key, secure=secure, region=region,
                             http_client=http)
        self.bucket = bucket
        #: the store refused a PUT whose x-amz-checksum-sha256 did not match (:meth:`check`, once:
        #: None until then): the upload itself then proves the bytes, and the spool file need
        #: not be hashed before it
        self.verifies_checksums: bool | None = None
        self.allow_unenforced = allow_unenforced
        self.default_retention_days = default_retention_days
        #: *now* for :meth:`delete_version` (the sweep passes its own instant)
        self.clock: Clock = clock or SystemClock()
        self.info = StoreInfo("s3", f"{endpoint.rstrip('/')}/{bucket}", retention_enforced=True)

    # -- start-up ---------------------------------------------------------
    def check(self, create: bool = True) -> StoreInfo:
        """Create or validate the bucket; refuse one without Object Lock."""
        with s3_call(self._unreachable(), refused="对象存储拒绝请求 / object store refused"):
            exists = self.client.bucket_exists(self.bucket)
            if not exists:
                if not create:
                    raise ConfigError(f"存储桶不存在 / bucket {self.bucket!r} does not exist")
                try:
                    self.client.make_bucket(self.bucket, object_lock=True)
                except S3Error as e:  # nodes of a cluster starting together: another one made it first
                    if e.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
                # A bucket-level default is a second line of defence for any
                # object that reaches the bucket by another path.
                try:
                    self.client.set_object_lock_config(
                        self.bucket, ObjectLockConfig(COMPLIANCE, self.default_retention_days, DAYS)
                    )
                except S3Error as e:  # per-object retention below is what we rely on and verify
                    log.warning("bucket %s: default retention not set (%s); every object still gets its own lock",
                                self.bucket, e.code)
            enabled = self._lock_config_read() is not None
            versioning = self.client.get_bucket_versioning(self.bucket).status == ENABLED
        if not (enabled and versioning):
            if not self.allow_unenforced:
                raise ObjectLockError(
                    f"存储桶 {self.bucket!r} 未启用对象锁定，无法保证 6 个月保留，拒绝启动。"
                    f" / Bucket {self.bucket!r} has no Object Lock (versioning={versioning}); "
                    "footage could be deleted early. Use a bucket created with Object Lock, or set "
                    "LABWITNESS_ALLOW_UNENFORCED_RETENTION=true to accept that retention is NOT enforced."
                )
            self.info = StoreInfo("s3", self.info.location, False, "bucket without Object Lock: retention NOT enforced by storage")
        if self.verifies_checksums is None:  # once: health calls check() on every request
            self.verifies_checksums = self._refuses_bad_checksum()
        return self.info

    def _unreachable(self) -> str:
        return f"对象存储不可达 / object store {self.info.location} unreachable: "

    def _lock_config_read(self) -> ObjectLockConfig | None:
        """The bucket's Object Lock configuration; None when it has none."""
        try:
            return self.client.get_object_lock_config(self.bucket)
        except S3Error as e:
            if e.code not in NO_LOCK_CONFIG:
                raise
            return None

    #: where the checksum probe goes; on a store that verifies, nothing is ever stored there
    CHECKSUM_PROBE_KEY = "_labwitness/checksum-probe"

    def _refuses_bad_checksum(self) -> bool:
        """PUT a few bytes with a wrong ``x-amz-checksum-sha256``: a store that verifies
        refuses it and stores nothing.  One that stores it anyway does not verify (the
        probe object is left there, a few bytes, possibly under the bucket's default lock)."""
        body = b"labwitness checksum probe"
        wrong = base64.b64encode(hashlib.sha256(b"not " + body).digest()).decode()
        with s3_call(self._unreachable()):
            try:
                self.client.put_object(self.bucket, self.CHECKSUM_PROBE_KEY, io.BytesIO(body), len(body),
                                       metadata={"x-amz-checksum-sha256": wrong})
            except S3Error as e:
                return e.code in BAD_DIGEST
        log.warning("object store %s stored a PUT whose x-amz-checksum-sha256 did not match: it does not verify "
                    "checksums, so each segment is hashed before upload (probe left at %s)", self.info.location,
                    self.CHECKSUM_PROBE_KEY)
        return False

    # -- writes -------------------------------------------------------------
    def put_segment(self, path: Path, meta: SegmentMeta, retain_until: datetime) -> StoredObject:
        single = meta.size <= SINGLE_PUT_BYTES
        if not (single and self.verifies_checksums):
            actual = file_sha256(path)
            if actual != meta.sha256:
                raise IntegrityError(f"spool file {path} sha256 {actual} != recorded {meta.sha256}")
        key = meta.key
        retention = Retention(COMPLIANCE, retain_until) if self.info.retention_enforced else None
        checksum = base64.b64encode(bytes.fromhex(meta.sha256)).decode()
        headers = meta.to_user_metadata()
        if single:  # x-amz-* names pass through minio's metadata as headers, unprefixed
            headers = {**headers, "x-amz-checksum-sha256": checksum, "x-amz-content-sha256": meta.sha256}

        def refused(e: S3Error) -> StorageError:
            if e.code in BAD_DIGEST:
                return IntegrityError(f"spool file {path} does not match its recorded sha256 {meta.sha256}: the store "
                                      f"refused it ({e.code})")
            return StorageError(f"object store refused {key}: {e.code}: {e.message}")

        with s3_call(f"upload of {key} failed: ", refused), open(path, "rb") as f:
            if single and meta.size > 0:
                result = self._put_mapped(f, key, meta.size, headers, retention)
            else:
                result = self.client.put_object(
                    self.bucket, key, f, meta.size, content_type="video/mp4",
                    metadata=headers, retention=retention, part_size=SINGLE_PUT_BYTES,
                )
        if not result.version_id:
            raise ObjectLockError(f"store returned no version id for {key}: bucket is not versioned")
        # one HEAD reads back size, metadata and (where the store sends them) the lock headers
        stored, user = self.stat(key, result.version_id, with_hold=False, lock_from_head=True)
        self._verify(stored, user, meta, retain_until)
        return stored

    def _put_mapped(self, f: BinaryIO, key: str, size: int, metadata: dict[str, str],
                    retention: Retention | None) -> ObjectWriteResult:
        """One PUT whose body is the spool file mapped into memory, not read into it.

        minio's ``put_object`` reads the whole body into one new ``bytes`` first: a
        30-odd MB allocation per segment whose pages the kernel zeroes, then a copy
        from the page cache into it.  Sent from a read-only mapping, the kernel copies
        the file's cached pages straight into the socket.  The headers are the ones
        ``put_object`` builds for a single part (minio 7.2's ``genheaders`` and
        ``_put_object``, pinned like :class:`_Minio`).  A file shorter than its record
        is refused before mapping (reading past its end would be SIGBUS, not an error);
        nothing writes a committed spool file, so it cannot shrink while mapped."""
        have = os.fstat(f.fileno()).st_size
        if have < size:
            raise IntegrityError(f"spool file {f.name} has {have} bytes, its record says {size}")
        headers = genheaders(metadata, None, None, retention, None)
        headers["Content-Type"] = "video/mp4"
        with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as mapped:
            body = memoryview(mapped)  # a memoryview has no read(): urllib3 sends it in one sendall
            try:
                return self.client._put_object(self.bucket, key, body, headers)
            finally:
                body.release()

    def _verify(self, stored: StoredObject, user: dict[str, str], meta: SegmentMeta, retain_until: datetime) -> None:
        if stored.size != meta.size:
            raise IntegrityError(f"{stored.key}: stored size {stored.size} != {meta.size}")
        got = SegmentMeta.from_user_metadata(user) if user else None
        if got is None or got.sha256 != meta.sha256:
            raise IntegrityError(f"{stored.key}: stored metadata sha256 does not match")
        if self.info.retention_enforced:
            if stored.mode != COMPLIANCE or stored.retain_until is None or stored.retain_until < retain_until.replace(microsecond=0):
                raise ObjectLockError(
                    f"{stored.key}: retention read back as {stored.mode} until {stored.retain_until}, "
                    f"expected COMPLIANCE until >= {retain_until}"
                )

    def put_file(self, key: str, path: Path, retain_until: datetime, *, content_type: str = "application/octet-stream",
                 metadata: dict[str, str] | None = None) -> StoredObject:
        """Store any file (e.g. an evidence package) as a locked version, verified like a segment."""
        size = path.stat().st_size
        retention = Retention(COMPLIANCE, retain_until) if self.info.retention_enforced else None
        with s3_call(f"upload of {key} failed: ", refused=f"object store refused {key}"), open(path, "rb") as f:
            result = self.client.put_object(self.bucket, key, f, size, content_type=content_type,
                                            metadata=metadata or {}, retention=retention)
        stored, _ = self.stat(key, result.version_id)
        if stored.size != size or (self.info.retention_enforced and stored.mode != COMPLIANCE):
            raise ObjectLockError(f"{key}: stored as {stored.size} bytes, lock {stored.mode}")
        return stored

    def set_legal_hold(self, key: str, version_id: str, on: bool) -> None:
        """A legal hold keeps a version past its retain-until until it is released."""
        with s3_call(refused=lambda e: ObjectLockError(f"legal hold on {key}@{version_id} refused: {e.code}")):
            if on:
                self.client.enable_object_legal_hold(self.bucket, key, version_id=version_id)
            else:
                self.client.disable_object_legal_hold(self.bucket, key, version_id=version_id)

    def find_segment(self, meta: SegmentMeta) -> StoredObject | None:
        """After a crash between PUT and bookkeeping: reuse the version already stored."""
        # a refused listing is a StorageError like a refused PUT, so the uploader backs off and
        # keeps the segment in the spool instead of an untranslated S3Error escaping its loop
        with s3_call(refused=f"object store refused listing {meta.key}"):
            versions = list(self.client.list_objects(self.bucket, prefix=meta.key, include_version=True))
        for v in versions:
            if v.object_name != meta.key or v.is_delete_marker:
                continue
            stored, user = self.stat(meta.key, v.version_id)
            if user and SegmentMeta.from_user_metadata(user).sha256 == meta.sha256 and stored.size == meta.size:
                return stored
        return None

    # -- reads ----------------------------------------------------------------
    def stat(self, key: str, version_id: str | None = None, *, with_hold: bool = True,
             lock_from_head: bool = False) -> tuple[StoredObject, dict[str, str]]:
        """The version's size, retention, legal hold and user metadata.  Raises
        :class:`ObjectNotFoundError` only when the version itself is not there, and
        :class:`LockUnreadableError` when it is but its retention or hold could not be read.

        ``lock_from_head``: take the retention from the HEAD's own
        ``x-amz-object-lock-mode`` / ``-retain-until-date`` headers (S3 HeadObject
        returns them for a version with a lock; SeaweedFS, MinIO and AWS send them),
        and ask GetObjectRetention only when they are absent or unreadable.  Only the
        upload's read-back uses it (:meth:`put_segment`): one request per segment
        fewer for the store, the same lock read from the same version."""
        with s3_call(refused=not_found_or_refused(key)):
            st = self.client.stat_object(self.bucket, key, version_id=version_id)
        mode = until = None
        if self.info.retention_enforced:
            r = _head_retention(st.metadata) if lock_from_head else None
            if r is None:
                r = self._lock_read(key, st.version_id, "保留期 / retention", self.client.get_object_retention)
            if r is not None:
                mode, until = r.mode, r.retain_until_date
        # a fresh upload has no hold: skip the extra request on the hot path
        hold = with_hold and self._lock_read(key, st.version_id, "法律保全 / legal hold", self._legal_hold)
        if until is not None and until.tzinfo is None:
            until = until.replace(tzinfo=timezone.utc)
        user = {k: v for k, v in (st.metadata or {}).items() if k.lower().startswith("x-amz-meta-")}
        return StoredObject(key, st.version_id or "", st.size or 0, until, mode, hold), user

    def _legal_hold(self, bucket: str, key: str, version_id: str | None = None) -> bool:
        try:
            return self.client.is_object_legal_hold_enabled(bucket, key, version_id=version_id)
        except S3Error as e:
            # a bucket without Object Lock has no holds: it answers InvalidRequest
            if e.code in NO_HOLD or (e.code == "InvalidRequest" and not self.info.retention_enforced):
                return False
            raise

    def _lock_read(self, key: str, version_id: str | None, what: str, read):
        """One lock read of a version HEAD just found: a refusal (AccessDenied, an
        internal error, even NoSuchKey from a racing delete) is "unreadable", which
        the deletion guard treats as locked -- never as "no lock"."""
        with s3_call(refused=lambda e: LockUnreadableError(
                f"{what} 无法读取 / could not be read for {key}@{version_id}: {e.code}")):
            return read(self.bucket, key, version_id=version_id)

    def open(self, key: str, version_id: str | None = None, offset: int = 0, length: int | None = None) -> S3Body:
        with s3_call(refused=not_found_or_refused(key)):
            return S3Body(self.client.get_object(self.bucket, key, version_id=version_id, offset=offset,
                                                 length=length or 0), key)

    def list_versions(self, prefix: str) -> Iterator[ObjectVersion]:
        """Every version (and delete marker) under ``prefix``, key order."""
        with s3_call(refused=f"listing {prefix}"):
            for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True, include_version=True):
                lm = o.last_modified
                if lm is not None and lm.tzinfo is None:
                    lm = lm.replace(tzinfo=timezone.utc)
                yield ObjectVersion(o.object_name, o.version_id or "", o.size or 0,
                                    str(o.is_latest).lower() == "true", bool(o.is_delete_marker), lm)

    def list_prefixes(self, prefix: str) -> Iterator[str]:
        """The "directories" directly under ``prefix`` (e.g. camera ids under ``v1/``)."""
        with s3_call(refused=f"listing {prefix}"):
            for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=False):
                if o.is_dir:
                    yield o.object_name

    def lock_config(self) -> LockConfig:
        """Object Lock and versioning as the bucket reports them now (not as cached at start-up)."""
        with s3_call(refused="object lock configuration"):
            versioning = self.client.get_bucket_versioning(self.bucket).status == ENABLED
            cfg = self._lock_config_read()
        if cfg is None:
            return LockConfig(False, versioning, None, None)
        days = cfg.duration if cfg.duration_unit and cfg.duration_unit.lower().startswith("day") else None
        if cfg.duration and cfg.duration_unit and cfg.duration_unit.lower().startswith("year"):
            days = cfg.duration * 365
        return LockConfig(True, versioning, cfg.mode, days)

    def server_time(self) -> datetime:
        """The store's clock, from the ``Date`` header of a bucket HEAD (1 s resolution).

        S3 enforces retention against its own clock; the sweep refuses to act when
        ours disagrees with it by more than a bound."""
        with s3_call():
            try:
                resp = self.client._url_open("HEAD", self.client._get_region(self.bucket), bucket_name=self.bucket)
                date = resp.headers.get("Date")
            except S3Error as e:
                date = e.response.headers.get("Date") if e.response is not None else None
        if not date:
            raise StorageError("对象存储未返回 Date 头 / the object store sent no Date header; cannot check the clock")
        return parsedate_to_datetime(date).astimezone(timezone.utc)
