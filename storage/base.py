"""The object-store interface: what the recorder, the retention jobs and the API call.

Two protocols, so that a second backend implements only what it is asked for:

- :class:`ObjectStore`: write a locked version, read it back, list, hold, and
  tell the bucket's lock and clock.  Nothing in it deletes.
- :class:`DeletionGuard`: the guarded delete, used by the expiry sweep alone
  (:mod:`storage.deletion` for S3).  :class:`GuardedStore` is both.

A read hands out a :class:`Body` that gives its connection back when closed:
use it as a context manager.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator, Protocol, Self

from storage.layout import SegmentMeta

#: one version of one key
VersionRef = tuple[str, str]


@dataclass(frozen=True)
class StoredObject:
    key: str
    version_id: str
    size: int
    retain_until: datetime | None  # None only for a store that does not enforce retention
    mode: str | None  # "COMPLIANCE" when enforced
    legal_hold: bool = False
    #: why the lock could not be read back (then ``legal_hold`` is True: fail closed); "" when it was
    lock_unreadable: str = ""


@dataclass(frozen=True)
class StoreInfo:
    backend: str  # "s3"
    location: str
    retention_enforced: bool
    detail: str = ""


@dataclass(frozen=True)
class ObjectVersion:
    """One entry of a versioned listing."""

    key: str
    version_id: str
    size: int
    is_latest: bool
    is_delete_marker: bool
    last_modified: datetime | None


@dataclass(frozen=True)
class LockConfig:
    """The bucket's Object Lock state as the store reports it."""

    enabled: bool
    versioning: bool
    mode: str | None  # default retention mode, if any
    days: int | None  # default retention in days, if any


class Body(Protocol):
    """(A byte range of) one stored version, open for reading.  Closing it gives
    the connection back; ``with store.open(...) as body:`` always does."""

    def read(self, amt: int | None = None) -> bytes:
        """Up to ``amt`` bytes (all the rest when None); b"" at the end."""

    def stream(self, chunk: int) -> Iterator[bytes]:
        """The rest of the body in pieces of up to ``chunk`` bytes."""

    def close(self) -> None:
        """Give the connection back (twice is harmless)."""

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


class ObjectStore(Protocol):
    info: StoreInfo
    #: the bucket's name, for messages
    bucket: str

    def check(self, create: bool = True) -> StoreInfo:
        """Validate the store at start-up (bucket exists, Object Lock on); ``create`` a missing bucket."""

    # -- writes: each a new version, locked, read back and verified
    def put_segment(self, path: Path, meta: SegmentMeta, retain_until: datetime) -> StoredObject:
        """Store the segment file as a new locked version; read the lock back; verify."""

    def find_segment(self, meta: SegmentMeta) -> StoredObject | None:
        """The version of ``meta.key`` whose sha256 and size match, if already stored."""

    def put_file(self, key: str, path: Path, retain_until: datetime, *, content_type: str = "application/octet-stream",
                 metadata: dict[str, str] | None = None) -> StoredObject:
        """Store any file (an evidence package) as a new locked version, verified."""

    def set_legal_hold(self, key: str, version_id: str, on: bool) -> None:
        """Place or release a version's legal hold (it outlasts the retain-until)."""

    # -- reads
    def stat(self, key: str, version_id: str | None = None, *, with_hold: bool = True) -> tuple[StoredObject, dict[str, str]]:
        """Lock state and user metadata of one version (``with_hold=False``: the hold is not read)."""

    def open(self, key: str, version_id: str | None = None, offset: int = 0, length: int | None = None) -> Body:
        """(A byte range of) one version."""

    def list_versions(self, prefix: str) -> Iterator[ObjectVersion]:
        """Every version and delete marker under ``prefix``, in key order."""

    def list_prefixes(self, prefix: str) -> Iterator[str]:
        """The "directories" directly under ``prefix``."""

    def lock_config(self) -> LockConfig:
        """The bucket's Object Lock and versioning, read now."""

    def server_time(self) -> datetime:
        """The store's own clock, against which it enforces retention."""


class DeletionGuard(Protocol):
    """The only way to delete a stored version; used by the expiry sweep alone."""

    def stat_versions(self, items: Iterable[VersionRef]) -> dict[VersionRef, StoredObject | None]:
        """Many :meth:`ObjectStore.stat` calls at once (hold included); ``None`` for versions that do not exist."""

    def delete_versions(self, items: Iterable[VersionRef], now: datetime, *,
                        read_back: dict[VersionRef, StoredObject | None] | None = None) -> dict[VersionRef, str | None]:
        """Re-read each version's lock, delete only expired, unheld ones (see :mod:`storage.deletion`)."""


class GuardedStore(ObjectStore, DeletionGuard, Protocol):
    """A store the retention jobs may delete through."""
