"""S3 backend on the ``minio`` client (MinIO, SeaweedFS, Ceph RGW, AWS).

Procedure for one segment (``put_segment``):

1. Check the file's SHA-256 against the one recorded while it was written;
   a mismatch means the spool copy was damaged -> ``IntegrityError``.
2. PUT the object with ``x-amz-object-lock-mode: COMPLIANCE`` and the
   retain-until date, plus the user metadata of :class:`SegmentMeta`.
3. Read the version's retention back (GetObjectRetention) and its metadata
   (HEAD); both must match what was asked, or -> ``ObjectLockError``.

Network faults become :class:`StorageUnavailableError`; the uploader retries
those forever with backoff.  Nothing here deletes or shortens anything that is
still locked.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Iterator
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.commonconfig import COMPLIANCE, ENABLED
from minio.error import S3Error
from minio.objectlockconfig import DAYS, ObjectLockConfig
from minio.retention import Retention

from labwitness.errors import (
    ConfigError,
    IntegrityError,
    ObjectLockError,
    StorageError,
    StorageUnavailableError,
)
from storage.base import StoredObject, StoreInfo
from storage.layout import SegmentMeta

# Errors that mean "the store is not answering", as opposed to "it said no".
_TRANSIENT = (urllib3.exceptions.HTTPError, OSError, TimeoutError)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class S3ObjectStore:
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
        self.client = Minio(host, access_key=access_key, secret_key=secret_key, secure=secure, region=region, http_client=http)
        self.bucket = bucket
        self.allow_unenforced = allow_unenforced
        self.default_retention_days = default_retention_days
        self.info = StoreInfo("s3", f"{endpoint.rstrip('/')}/{bucket}", retention_enforced=True)

    # -- start-up ---------------------------------------------------------
    def check(self, create: bool = True) -> StoreInfo:
        """Create or validate the bucket; refuse one without Object Lock."""
        try:
            exists = self.client.bucket_exists(self.bucket)
            if not exists:
                if not create:
                    raise ConfigError(f"存储桶不存在 / bucket {self.bucket!r} does not exist")
                self.client.make_bucket(self.bucket, object_lock=True)
                # A bucket-level default is a second line of defence for any
                # object that reaches the bucket by another path.
                try:
                    self.client.set_object_lock_config(
                        self.bucket, ObjectLockConfig(COMPLIANCE, self.default_retention_days, DAYS)
                    )
                except S3Error:
                    pass  # per-object retention below is what we rely on and verify
            try:
                cfg = self.client.get_object_lock_config(self.bucket)
                enabled = cfg is not None
            except S3Error as e:
                if e.code not in ("ObjectLockConfigurationNotFoundError", "InvalidRequest"):
                    raise
                enabled = False
            versioning = self.client.get_bucket_versioning(self.bucket).status == ENABLED
        except _TRANSIENT as e:
            raise StorageUnavailableError(f"对象存储不可达 / object store {self.info.location} unreachable: {e}") from e
        except S3Error as e:
            raise StorageError(f"对象存储拒绝请求 / object store refused: {e.code}: {e.message}") from e
        if not (enabled and versioning):
            if not self.allow_unenforced:
                raise ObjectLockError(
                    f"存储桶 {self.bucket!r} 未启用对象锁定，无法保证 6 个月保留，拒绝启动。"
                    f" / Bucket {self.bucket!r} has no Object Lock (versioning={versioning}); "
                    "footage could be deleted early. Use a bucket created with Object Lock, or set "
                    "LABWITNESS_ALLOW_UNENFORCED_RETENTION=true to accept that retention is NOT enforced."
                )
            self.info = StoreInfo("s3", self.info.location, False, "bucket without Object Lock: retention NOT enforced by storage")
        return self.info

    # -- writes -------------------------------------------------------------
    def put_segment(self, path: Path, meta: SegmentMeta, retain_until: datetime) -> StoredObject:
        actual = file_sha256(path)
        if actual != meta.sha256:
            raise IntegrityError(f"spool file {path} sha256 {actual} != recorded {meta.sha256}")
        key = meta.key
        retention = Retention(COMPLIANCE, retain_until) if self.info.retention_enforced else None
        try:
            with open(path, "rb") as f:
                result = self.client.put_object(
                    self.bucket, key, f, meta.size, content_type="video/mp4",
                    metadata=meta.to_user_metadata(), retention=retention,
                )
        except _TRANSIENT as e:
            raise StorageUnavailableError(f"upload of {key} failed: {e}") from e
        except S3Error as e:
            raise StorageError(f"object store refused {key}: {e.code}: {e.message}") from e
        if not result.version_id:
            raise ObjectLockError(f"store returned no version id for {key}: bucket is not versioned")
        stored, user = self.stat(key, result.version_id, with_hold=False)
        self._verify(stored, user, meta, retain_until)
        return stored

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
        try:
            with open(path, "rb") as f:
                result = self.client.put_object(self.bucket, key, f, size, content_type=content_type,
                                                metadata=metadata or {}, retention=retention)
        except _TRANSIENT as e:
            raise StorageUnavailableError(f"upload of {key} failed: {e}") from e
        except S3Error as e:
            raise StorageError(f"object store refused {key}: {e.code}: {e.message}") from e
        stored, _ = self.stat(key, result.version_id)
        if stored.size != size or (self.info.retention_enforced and stored.mode != COMPLIANCE):
            raise ObjectLockError(f"{key}: stored as {stored.size} bytes, lock {stored.mode}")
        return stored

    def set_legal_hold(self, key: str, version_id: str, on: bool) -> None:
        """A legal hold keeps a version past its retain-until until it is released."""
        try:
            if on:
                self.client.enable_object_legal_hold(self.bucket, key, version_id=version_id)
            else:
                self.client.disable_object_legal_hold(self.bucket, key, version_id=version_id)
        except _TRANSIENT as e:
            raise StorageUnavailableError(str(e)) from e
        except S3Error as e:
            raise ObjectLockError(f"legal hold on {key}@{version_id} refused: {e.code}") from e

    def find_segment(self, meta: SegmentMeta) -> StoredObject | None:
        """After a crash between PUT and bookkeeping: reuse the version already stored."""
        try:
            versions = list(self.client.list_objects(self.bucket, prefix=meta.key, include_version=True))
        except _TRANSIENT as e:
            raise StorageUnavailableError(str(e)) from e
        for v in versions:
            if v.object_name != meta.key or v.is_delete_marker:
                continue
            stored, user = self.stat(meta.key, v.version_id)
            if user and SegmentMeta.from_user_metadata(user).sha256 == meta.sha256 and stored.size == meta.size:
                return stored
        return None

    # -- reads ----------------------------------------------------------------
    def stat(self, key: str, version_id: str | None = None, *, with_hold: bool = True) -> tuple[StoredObject, dict[str, str]]:
        try:
            st = self.client.stat_object(self.bucket, key, version_id=version_id)
            mode = until = None
            if self.info.retention_enforced:
                r = self.client.get_object_retention(self.bucket, key, version_id=st.version_id)
                if r is not None:
                    mode, until = r.mode, r.retain_until_date
            hold = False
            if with_hold:  # a fresh upload has none: skip the extra request on the hot path
                try:
                    hold = self.client.is_object_legal_hold_enabled(self.bucket, key, version_id=st.version_id)
                except S3Error:
                    pass
        except _TRANSIENT as e:
            raise StorageUnavailableError(str(e)) from e
        except S3Error as e:
            raise StorageError(f"{key}: {e.code}: {e.message}") from e
        if until is not None and until.tzinfo is None:
            until = until.replace(tzinfo=timezone.utc)
        user = {k: v for k, v in (st.metadata or {}).items() if k.lower().startswith("x-amz-meta-")}
        return StoredObject(key, st.version_id or "", st.size or 0, until, mode, hold), user

    def open(self, key: str, version_id: str | None = None, offset: int = 0, length: int | None = None) -> BinaryIO:
        try:
            return self.client.get_object(self.bucket, key, version_id=version_id, offset=offset, length=length or 0)
        except _TRANSIENT as e:
            raise StorageUnavailableError(str(e)) from e
        except S3Error as e:
            raise StorageError(f"{key}: {e.code}: {e.message}") from e

    def list_keys(self, prefix: str) -> Iterator[str]:
        try:
            for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                yield o.object_name
        except _TRANSIENT as e:
            raise StorageUnavailableError(str(e)) from e

    # -- deletion (retention sweeps only) -------------------------------------
    def delete_version(self, key: str, version_id: str, now: datetime | None = None) -> None:
        """Delete one expired version. Refuses locally while it is still locked,
        and the store refuses again (AccessDenied) if asked anyway."""
        stored, _ = self.stat(key, version_id)
        now = now or datetime.now(timezone.utc)
        if stored.legal_hold or (stored.retain_until is not None and stored.retain_until > now):
            raise ObjectLockError(f"{key}@{version_id} is locked until {stored.retain_until} (hold={stored.legal_hold})")
        try:
            self.client.remove_object(self.bucket, key, version_id=version_id)
        except _TRANSIENT as e:
            raise StorageUnavailableError(str(e)) from e
        except S3Error as e:
            raise ObjectLockError(f"store refused to delete {key}@{version_id}: {e.code}") from e
