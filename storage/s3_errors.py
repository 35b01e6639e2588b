"""What an S3 store's failures mean, translated once into :mod:`labwitness.errors`.

Every call on the ``minio`` client runs inside :func:`s3_call`: "the store did
not answer" becomes :class:`StorageUnavailableError` (the uploader retries it
forever, a job fails and runs again), and "the store said no" becomes the
refusal its caller names.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import urllib3
from minio.error import S3Error

from labwitness.errors import ObjectNotFoundError, StorageError, StorageUnavailableError

# Errors that mean "the store is not answering", as opposed to "it said no".
TRANSIENT = (urllib3.exceptions.HTTPError, OSError, TimeoutError)
# Codes that mean "this key/version does not exist" (SeaweedFS answers NoSuchKey
# for a deleted version on HEAD, NoSuchVersion on GET).
GONE = ("NoSuchKey", "NoSuchVersion", "NoSuchObject", "ResourceNotFound")
# Answers to a legal-hold read that mean "this version has none" (SeaweedFS says
# NoSuchObjectLegalHold for a version never held; minio's client knows only the
# second).  Any other failure of a lock read is "could not read", never "none".
NO_HOLD = ("NoSuchObjectLegalHold", "NoSuchObjectLockConfiguration")
# Codes for "the body does not match the checksum or payload hash you sent".
BAD_DIGEST = ("BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest", "XAmzContentChecksumMismatch")
# Answers to an Object Lock configuration read that mean "the bucket has none".
NO_LOCK_CONFIG = ("ObjectLockConfigurationNotFoundError", "InvalidRequest")


def not_found_or_refused(key: str) -> Callable[[S3Error], StorageError]:
    """A read of ``key``: gone -> :class:`ObjectNotFoundError`, else a plain refusal."""

    def refused(e: S3Error) -> StorageError:
        if e.code in GONE:
            return ObjectNotFoundError(f"对象不存在 / {key}: {e.code}")
        return StorageError(f"{key}: {e.code}: {e.message}")

    return refused


@contextmanager
def s3_call(unreachable: str = "", refused: str | Callable[[S3Error], Exception] | None = None) -> Iterator[None]:
    """Translate the failures of the store calls inside.

    No answer -> :class:`StorageUnavailableError` ``f"{unreachable}{e}"``.  A refusal
    (:class:`S3Error`) -> ``StorageError(f"{refused}: {code}: {message}")`` when
    ``refused`` is text, ``refused(e)`` when it is a function, unchanged when None.
    """
    try:
        yield
    except TRANSIENT as e:
        raise StorageUnavailableError(f"{unreachable}{e}") from e
    except S3Error as e:
        if refused is None:
            raise
        if isinstance(refused, str):
            raise StorageError(f"{refused}: {e.code}: {e.message}") from e
        raise refused(e) from e
