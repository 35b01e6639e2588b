"""The object-store interface the recorder's uploader writes through."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Protocol

from storage.layout import SegmentMeta


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
    backend: str  # "s3" | "filesystem"
    location: str
    retention_enforced: bool
    detail: str = ""


class ObjectStore(Protocol):
    info: StoreInfo

    def check(self) -> StoreInfo:
        """Validate the store at start-up (bucket exists, Object Lock on)."""

    def put_segment(self, path: Path, meta: SegmentMeta, retain_until: datetime) -> StoredObject:
        """Store the file as a new locked version; read the lock back; verify."""

    def find_segment(self, meta: SegmentMeta) -> StoredObject | None:
        """The version of ``meta.key`` whose sha256 matches, if already stored."""

    def stat(self, key: str, version_id: str | None = None) -> tuple[StoredObject, dict[str, str]]:
        """Lock state and user metadata of one version."""

    def open(self, key: str, version_id: str | None = None, offset: int = 0, length: int | None = None) -> BinaryIO:
        """A readable stream of (a byte range of) one version."""

    def delete_version(self, key: str, version_id: str) -> None:
        """Ask the store to delete a version. A locked version must be refused by the store."""

    def stat_versions(self, items: Iterable[tuple[str, str]]) -> dict[tuple[str, str], StoredObject | None]:
        """Many :meth:`stat` calls at once; ``None`` for versions that do not exist."""

    def delete_versions(self, items: Iterable[tuple[str, str]], now: datetime, *,
                        read_back: dict[tuple[str, str], StoredObject | None] | None = None) -> dict[tuple[str, str], str | None]:
        """Guarded batch delete: re-read each version's lock, delete only expired, unheld ones."""

    def list_keys(self, prefix: str) -> Iterator[str]:
        ...
