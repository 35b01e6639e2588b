"""The one exception hierarchy of labwitness.

Every error a lab admin or operator can act on is one of these; the API maps
them to RFC 9457 problem+json (``api.problems``) and the CLI prints their
message and exits with the code of its class (``api.cli.common``: 2 for bad
input or configuration, 3 refused, 1 any other failure).  Messages are written
for the person at the console: say what is wrong and what to do, in zh-CN
first, English second.  Anything that is *not* one of these reaching the API
is a bug: a 500 problem with an error id that is also in the log.

    LabwitnessError
    ├── ConfigError                 settings refused at start-up (exit 2)
    │   └── RetentionTooShortError  retention below the legal 6 months
    ├── ValidationError             input refused at the door: a camera URL, an id,
    │                               a time window, a month (HTTP 422, CLI exit 2);
    │                               also a ValueError, so pydantic validators may raise it
    │   └── InvalidIdentifierError  an id or number outside its grammar (labwitness.ids)
    ├── StorageError                object store
    │   ├── StorageUnavailableError store unreachable (retried, never dropped)
    │   ├── ObjectLockError         bucket/object lacks the COMPLIANCE lock
    │   │   └── LockUnreadableError a version's retention or legal hold could not be
    │   │                           read: treated as locked, never as "no lock"
    │   ├── IntegrityError          bytes or metadata do not match their hash
    │   ├── ObjectNotFoundError     the key or version does not exist (any more)
    │   └── WitnessRefusedError     an external witness refused a document (4xx, a
    │                               different document under its id): retried
    │                               slowly, shown in health until an admin acts
    ├── IndexUnavailableError       database unreachable (spool keeps the rows)
    ├── JobRefusedError             a retention job refused to run (empty or fresh
    │                               index, clock disagreeing with the store)
    ├── NotFoundError               a camera/segment that does not exist
    ├── ConflictError               creating something that already exists
    ├── StreamError                 a camera stream could not be recorded
    │   (``reason`` is the gap reason that is stored: timeout, refused,
    │   auth_failed, not_rtsp, no_video, stream_ended, decode_error, ...)
    ├── SpoolError                  local spool cannot take more data
    └── DiscoveryError              a camera scan could not run (bad host/range)
        └── DeviceError             one device failed; the scan reports it, goes on
            ├── DeviceUnreachableError  refused, reset, or no answer in time
            ├── DeviceAuthError         credentials missing/refused, clock too far off
            └── DeviceProtocolError     malformed/HTML/DTD/oversized answer
                └── SoapFaultError      a SOAP fault (``subcodes``: ActionNotSupported, ...)
                    └── DeviceSettingRefusedError  a setting (NTP, time) refused by the device
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


class ValidationError(LabwitnessError, ValueError):
    """What a person or client sent is not acceptable (a malformed camera URL, an
    unknown area, a window that ends before it starts).  Only these become 422:
    any other ``ValueError`` reaching the API is a bug and answers 500."""

    code = "invalid-input"


class StorageError(LabwitnessError):
    code = "storage"


class StorageUnavailableError(StorageError):
    code = "storage-unavailable"


class ObjectLockError(StorageError):
    code = "object-lock"


class LockUnreadableError(ObjectLockError):
    """The store found the version but would not tell its retention or legal hold
    (AccessDenied, an internal error): whoever deletes must treat it as locked."""

    code = "lock-unreadable"


class IntegrityError(StorageError):
    code = "integrity"


class ObjectNotFoundError(StorageError):
    """The object version is not in the store (deleted, or never written)."""

    code = "object-not-found"


class WitnessRefusedError(StorageError):
    """A witness outside the box answered, and said no (HTTP 4xx other than 409 with
    the same document, a bucket without Object Lock, a different document already
    under the id): waiting alone will not help, an admin has to act."""

    code = "witness-refused"


class IndexUnavailableError(LabwitnessError):
    code = "index-unavailable"


class JobRefusedError(LabwitnessError):
    """A retention job saw a condition under which acting would be unsafe and
    changed nothing; ``reason`` is a slug (index_empty, index_fresh, clock_skew)."""

    code = "job-refused"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class NotFoundError(LabwitnessError):
    code = "not-found"


class InvalidIdentifierError(ValidationError):
    """An id or number that breaks its rule (``labwitness.ids``): bad input, 422."""

    code = "invalid-identifier"
    status = 422


class ConflictError(LabwitnessError):
    code = "conflict"


class StreamError(LabwitnessError):
    """A stream failed; ``reason`` is the gap reason recorded for it."""

    code = "stream"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SpoolError(LabwitnessError):
    code = "spool"


class DiscoveryError(LabwitnessError):
    """A camera scan could not run as asked (bad host or range, socket refused)."""

    code = "discovery"


class DeviceError(DiscoveryError):
    """One device failed to answer usefully; a scan reports it and goes on."""

    code = "device"
    #: what was learned before the failure (a ``camera_discovery.models.DeviceInfo``)
    partial: object | None = None


class DeviceUnreachableError(DeviceError):
    """Connection refused or reset, or no answer within the time limit."""

    code = "device-unreachable"


class DeviceAuthError(DeviceError):
    """Credentials missing or refused (or the device clock too far off to sign)."""

    code = "device-auth"


class DeviceProtocolError(DeviceError):
    """The answer is not usable SOAP: malformed, HTML, DTD/entities, too large,
    not a SOAP envelope."""

    code = "device-protocol"


class SoapFaultError(DeviceProtocolError):
    """The device answered with a SOAP fault other than "not authorized"."""

    code = "device-fault"

    def __init__(self, message: str, subcodes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        #: local names of the fault code and subcodes, e.g. ("Receiver", "ActionNotSupported")
        self.subcodes = subcodes


class DeviceSettingRefusedError(SoapFaultError):
    """The device refused a setting asked of it (SetNTP, SetSystemDateAndTime): it does not
    support it, or does not take the value."""

    code = "device-setting-refused"
