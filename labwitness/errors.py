"""The one exception hierarchy of labwitness.

Every error a lab admin or operator can act on is one of these; the API maps
them to RFC 9457 problem+json (``api.problems``) and the CLI prints their
message and exits non-zero.  Messages are written for the person at the
console: say what is wrong and what to do, in zh-CN first, English second.

    LabwitnessError
    ├── ConfigError                 settings refused at start-up (exit 2)
    │   └── RetentionTooShortError  retention below the legal 6 months
    ├── StorageError                object store
    │   ├── StorageUnavailableError store unreachable (retried, never dropped)
    │   ├── ObjectLockError         bucket/object lacks the COMPLIANCE lock
    │   └── IntegrityError          bytes or metadata do not match their hash
    ├── IndexUnavailableError       database unreachable (spool keeps the rows)
    ├── NotFoundError               a camera/segment that does not exist
    ├── StreamError                 a camera stream could not be recorded
    │   (``reason`` is the gap reason that is stored: timeout, refused,
    │   auth_failed, not_rtsp, no_video, stream_ended, decode_error, ...)
    └── SpoolError                  local spool cannot take more data
"""

from __future__ import annotations


class LabwitnessError(Exception):
    """Base class; ``str(err)`` is the message shown to people."""

    #: short machine-readable slug, used in problem+json ``type`` URIs
    code = "error"


class ConfigError(LabwitnessError):
    code = "config"


class RetentionTooShortError(ConfigError):
    code = "retention-too-short"


class StorageError(LabwitnessError):
    code = "storage"


class StorageUnavailableError(StorageError):
    code = "storage-unavailable"


class ObjectLockError(StorageError):
    code = "object-lock"


class IntegrityError(StorageError):
    code = "integrity"


class IndexUnavailableError(LabwitnessError):
    code = "index-unavailable"


class NotFoundError(LabwitnessError):
    code = "not-found"


class StreamError(LabwitnessError):
    """A stream failed; ``reason`` is the gap reason recorded for it."""

    code = "stream"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SpoolError(LabwitnessError):
    code = "spool"
