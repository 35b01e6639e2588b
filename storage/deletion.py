"""The deletion guard: the only code in labwitness that can delete stored footage.

Nothing else calls a delete on the store (``remove_objects`` appears here and in
no other module), and only the expiry sweep (``retention/sweep.py``,
docs/retention.md step 8) calls this.  A version is deleted only when, read back
from the store moments before, it exists, its lock could be read, it has no legal
hold, and its retain-until is at or before *now* -- the instant the caller
decides, never a clock read here.  The store's COMPLIANCE lock refuses again
whatever slips past (``AccessDenied``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Callable, Iterable

from minio import Minio
from minio.deleteobjects import DeleteObject

from labwitness.clock import Clock
from labwitness.errors import LockUnreadableError, ObjectLockError, ObjectNotFoundError, StorageError
from storage.base import StoredObject, StoreInfo, VersionRef
from storage.s3_errors import GONE, s3_call


def refusal(stored: StoredObject | None, now: datetime, enforced: bool) -> str | None:
    """Why the guard keeps this read-back version (``"gone"``, ``"locked: ..."``), or None: it may go."""
    if stored is None:
        return "gone"
    if stored.lock_unreadable:
        return f"locked: lock unreadable ({stored.lock_unreadable})"
    if stored.legal_hold:
        return "locked: legal hold"
    if enforced and stored.retain_until is None:
        return "locked: no retention read back (refusing to delete an unknown lock)"
    if stored.retain_until is not None and stored.retain_until > now:
        return f"locked: retain-until {stored.retain_until.isoformat()}"
    return None


class S3DeletionGuard:
    """:class:`storage.base.DeletionGuard` for :class:`storage.s3.S3ObjectStore`, its base class.

    Uses of the store: its client and bucket, what :meth:`check` found (``info``),
    its clock (for :meth:`delete_version` alone) and its :meth:`stat`."""

    client: Minio
    bucket: str
    info: StoreInfo
    clock: Clock
    stat: Callable[..., tuple[StoredObject, dict[str, str]]]

    def stat_versions(self, items: Iterable[VersionRef], workers: int = 8) -> dict[VersionRef, StoredObject | None]:
        """:meth:`stat` (with legal hold) of many versions, ``None`` for the missing
        ones.  Each costs two HTTP round trips, so they run concurrently: the sweep
        reads every version back before and again inside the deletion guard."""
        items = list(items)

        def one(item: VersionRef) -> StoredObject | None:
            try:
                return self.stat(*item)[0]
            except ObjectNotFoundError:
                return None
            except LockUnreadableError as e:  # fail closed: held, and the reason kept for the report
                return StoredObject(item[0], item[1], 0, None, None, legal_hold=True, lock_unreadable=str(e))

        if not items:
            return {}
        with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
            return dict(zip(items, pool.map(one, items), strict=True))

    def delete_versions(self, items: Iterable[VersionRef], now: datetime, *,
                        read_back: dict[VersionRef, StoredObject | None] | None = None) -> dict[VersionRef, str | None]:
        """The deletion guard: delete expired versions, in one multi-object request.

        Each version's retention and legal hold are read back first; a version
        still locked at ``now`` or held is refused here (and would be refused
        again by the store: COMPLIANCE answers AccessDenied).  Returns, per
        ``(key, version_id)``: ``None`` deleted, ``"gone"`` it did not exist,
        ``"locked: ..."`` refused by the guard or the store, ``"error: ..."`` other.
        ``read_back``: what :meth:`stat_versions` returned for these versions moments
        ago in the same run (the sweep's own check), so they are not read twice;
        the store's COMPLIANCE lock still refuses anything locked.
        Raises :class:`StorageUnavailableError` when the store does not answer.
        """
        out: dict[VersionRef, str | None] = {}
        allowed: list[VersionRef] = []
        items = list(items)
        known = read_back or {}
        read = {**known, **self.stat_versions([it for it in items if it[1] and it not in known])}
        for key, vid in items:
            if not vid:
                out[(key, vid)] = "error: no version id (would only add a delete marker)"
                continue
            why = refusal(read[(key, vid)], now, self.info.retention_enforced)
            if why is None:
                allowed.append((key, vid))
            else:
                out[(key, vid)] = why
        if allowed:
            with s3_call(refused="multi-object delete refused"):
                errors = list(self.client.remove_objects(self.bucket, [DeleteObject(k, v) for k, v in allowed]))
            failed = {(e.name, e.version_id or ""): e for e in errors}
            for k, v in allowed:
                e = failed.get((k, v))
                if e is None:
                    out[(k, v)] = None
                elif e.code in GONE:
                    out[(k, v)] = "gone"
                elif e.code == "AccessDenied":
                    out[(k, v)] = f"locked: store refused ({e.code})"
                else:
                    out[(k, v)] = f"error: {e.code}: {e.message}"
        return out

    def delete_version(self, key: str, version_id: str) -> None:
        """Delete one expired version through :meth:`delete_versions`' guard, *now*
        read from the clock the store was given (tools and tests; the sweep deletes
        in batches, at the instant it decided)."""
        res = self.delete_versions([(key, version_id)], self.clock.now())[(key, version_id)]
        if res is None:
            return
        if res == "gone":
            raise ObjectNotFoundError(f"{key}@{version_id} does not exist")
        if res.startswith("locked"):
            raise ObjectLockError(f"{key}@{version_id} is locked ({res})")
        raise StorageError(f"{key}@{version_id}: {res}")
