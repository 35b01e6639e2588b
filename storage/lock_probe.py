"""The probe ``labwitness doctor`` runs against the bucket: can *these* credentials destroy footage early?

It puts one harmless object -- one byte under ``doctor/``, locked COMPLIANCE for
:data:`PROBE_RETENTION` (the shortest span that outlives the probe itself) --
and then tries what an attacker holding the service's keys would try:

- delete that version (``DeleteObject`` with its version id), and
- shorten its retention (``PutObjectRetention`` with an earlier date).

Both must be refused.  If either succeeds the store does not protect footage
from the service's own credentials, and the answer says so.  The probe object
is never footage: it lies outside ``footage/`` (reconcile and the sweep only
look there) and expires a day later like any other locked object.
"""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from minio.commonconfig import COMPLIANCE
from minio.error import S3Error
from minio.retention import Retention

PROBE_PREFIX = "doctor/"
PROBE_RETENTION = timedelta(days=1)


@dataclass(frozen=True)
class ProbeResult:
    key: str
    version_id: str
    delete_refused: bool
    shorten_refused: bool
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.delete_refused and self.shorten_refused


def probe_lock(client, bucket: str, now: datetime | None = None) -> ProbeResult:
    """Put the probe object, try to delete and to shorten it; ``client`` is a minio client.
    An error putting the probe itself (unreachable, refused) propagates as the S3 error it is."""
    now = now or datetime.now(timezone.utc)
    key = f"{PROBE_PREFIX}lock-probe-{now:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
    put = client.put_object(bucket, key, io.BytesIO(b"."), 1,
                            retention=Retention(COMPLIANCE, now + PROBE_RETENTION))
    version = put.version_id or ""
    notes = []
    try:
        client.set_object_retention(bucket, key, Retention(COMPLIANCE, now + timedelta(minutes=5)), version_id=version)
        shorten_refused = False
        notes.append("retention shortened")
    except S3Error as e:
        shorten_refused = True
        notes.append(f"shorten refused: {e.code}")
    try:
        client.remove_object(bucket, key, version_id=version)
        delete_refused = not _version_gone_check(client, bucket, key, version)
        if not delete_refused:
            notes.append("version deleted")
    except S3Error as e:
        delete_refused = True
        notes.append(f"delete refused: {e.code}")
    return ProbeResult(key, version, delete_refused, shorten_refused, "; ".join(notes))


def _version_gone_check(client, bucket: str, key: str, version: str) -> bool:
    """True when the version really is gone (some stores answer a refused delete with 204)."""
    try:
        client.stat_object(bucket, key, version_id=version)
        return False
    except S3Error as e:
        return e.code in ("NoSuchKey", "NoSuchVersion", "NoSuchObject", "ResourceNotFound")
