"""The minio client as :mod:`storage.s3` uses it: a PUT signed with the SHA-256 the
recorder already computed, the retention a HEAD's headers state, and a GET's body that
returns its connection when closed."""

from __future__ import annotations

from typing import Iterator, Self

import urllib3
from minio import Minio
from minio.retention import Retention
from minio.time import from_iso8601utc

from storage.s3_errors import s3_call


class _Minio(Minio):
    """minio's client, told a PUT body's SHA-256 instead of computing it.

    Over plain HTTP, minio signs the SHA-256 of every body it sends, one more
    pass over 30-odd MB per segment; the recorder computed that hash while
    writing the segment.  A request whose headers already carry
    ``x-amz-content-sha256`` (only :meth:`S3ObjectStore.put_segment` sets it)
    is signed with that value, so the store checks the body against it where it
    checks payload hashes, and minio never reads the body for it.  Relies on
    minio 7.2's ``_build_headers`` (pinned in pyproject.toml; every upload test
    goes through it)."""

    def _build_headers(self, host, headers=None, body=None, creds=None):
        known = headers.get("x-amz-content-sha256") if headers else None
        if not known or not body:
            return super()._build_headers(host, headers, body, creds)
        had_md5 = "Content-MD5" in headers
        headers, date = super()._build_headers(host, headers, b"", creds)
        headers["Content-Length"] = str(len(body))
        if not had_md5:
            headers.pop("Content-MD5", None)  # of b"", not of the body; the sha256 checksum stands instead
        if headers.get("x-amz-content-sha256") != "UNSIGNED-PAYLOAD":
            headers["x-amz-content-sha256"] = known
        return headers, date


def _head_retention(headers) -> Retention | None:
    """The retention a HEAD's headers state (case-insensitive), or None when they state
    none or cannot be read (the caller then asks GetObjectRetention)."""
    if not headers:
        return None
    mode, date = headers.get("x-amz-object-lock-mode"), headers.get("x-amz-object-lock-retain-until-date")
    if not (mode and date):
        return None
    try:  # (a mode Retention does not know is a ValueError too)
        return Retention(mode, from_iso8601utc(date))
    except ValueError:
        return None


class S3Body:
    """:class:`storage.base.Body` over a GET's urllib3 response: closing it also
    returns the connection to the pool, so a caller never has to.  A connection that
    breaks while the body is read (the store restarted, a body cut short) is the
    store not answering, as at the request: :class:`StorageUnavailableError` naming
    the object, not urllib3's ``ProtocolError``."""

    def __init__(self, response: urllib3.BaseHTTPResponse, key: str = "") -> None:
        self._response = response
        self._unreachable = f"{key}: " if key else ""
        self._closed = False

    def read(self, amt: int | None = None) -> bytes:
        with s3_call(self._unreachable):
            return self._response.read(amt)

    def stream(self, chunk: int) -> Iterator[bytes]:
        with s3_call(self._unreachable):
            yield from self._response.stream(chunk)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._response.close()
            self._response.release_conn()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
