"""Where a segment's bytes come from when only some of them are read: memory, a local file, a stored version.

A :class:`ByteSource` answers ``read(offset, length)``; the keyframe sampler
(:mod:`retention.keyframes`) reads the init segment, ``mfra``, a few ``moof`` boxes
and the sampled keyframes through it, so a stored segment costs a handful of ranged
reads, not a download.  Each source counts its reads (the tests and the benchmark
check the cost with them).
"""

from __future__ import annotations

import io
from typing import Protocol

from storage.base import ObjectStore


class ByteSource(Protocol):
    size: int

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer only at the end)."""


class BytesSource:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.reads = 0

    def read(self, offset: int, length: int) -> bytes:
        self.reads += 1
        return self.data[offset: offset + length]


class FileSource:
    def __init__(self, path) -> None:
        self.path = path
        self._f = open(path, "rb")
        self.size = self._f.seek(0, io.SEEK_END)
        self.reads = 0

    def read(self, offset: int, length: int) -> bytes:
        self.reads += 1
        self._f.seek(offset)
        return self._f.read(length)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "FileSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StoreSource:
    """One object version in an object store, read by byte ranges (``store.open``)."""

    def __init__(self, store: ObjectStore, key: str, version_id: str | None, size: int) -> None:
        self.store, self.key, self.version_id, self.size = store, key, version_id, size
        self.reads = 0
        self.bytes_read = 0

    def read(self, offset: int, length: int) -> bytes:
        length = min(length, self.size - offset)
        if length <= 0:
            return b""
        self.reads += 1
        with self.store.open(self.key, self.version_id, offset, length) as body:
            data = body.read()
        self.bytes_read += len(data)
        return data
