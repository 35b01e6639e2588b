"""Pure parts of storage: the S3 failure translation, the deletion guard's rule, the
self-closing body.  No store runs; the S3 ends are tested in test_storage_s3.py."""

from __future__ import annotations

import ast
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import urllib3
from minio.error import S3Error

from labwitness.errors import (
    IntegrityError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
)
from storage.base import StoredObject
from storage.deletion import refusal
from storage.s3 import S3Body
from storage.s3_errors import GONE, not_found_or_refused, s3_call

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2027, 6, 1, 12, 0, tzinfo=timezone.utc)


def _refusal(code: str) -> S3Error:
    return S3Error(None, code, f"the store said {code}", "/b/k", "req", "host")


# -- s3_call ------------------------------------------------------------------
@pytest.mark.parametrize("fault", [urllib3.exceptions.ProtocolError("reset"), ConnectionRefusedError("refused"),
                                   TimeoutError("slow")], ids=["urllib3", "os", "timeout"])
def test_no_answer_is_unavailable_with_the_callers_words(fault):
    with pytest.raises(StorageUnavailableError, match=r"^upload of k failed: ") as e:
        with s3_call("upload of k failed: ", refused="never used"):
            raise fault
    assert e.value.__cause__ is fault


def test_a_refusal_named_by_text_is_a_storage_error():
    with pytest.raises(StorageError) as e:
        with s3_call(refused="listing v1/"):
            raise _refusal("AccessDenied")
    assert type(e.value) is StorageError
    assert str(e.value) == "listing v1/: AccessDenied: the store said AccessDenied"


def test_a_refusal_named_by_a_function_is_what_it_returns():
    with pytest.raises(IntegrityError, match="BadDigest"):
        with s3_call(refused=lambda err: IntegrityError(f"refused ({err.code})")):
            raise _refusal("BadDigest")


def test_without_a_refusal_the_store_error_passes_unchanged():
    err = _refusal("InternalError")
    with pytest.raises(S3Error) as e:
        with s3_call():
            raise err
    assert e.value is err


def test_other_errors_pass_untouched():
    with pytest.raises(KeyError):
        with s3_call("x: ", refused="y"):
            raise KeyError("not the store's")


@pytest.mark.parametrize("code", GONE)
def test_gone_codes_are_not_found(code):
    assert isinstance(not_found_or_refused("v1/k")(_refusal(code)), ObjectNotFoundError)


def test_other_read_refusals_are_not_not_found():
    err = not_found_or_refused("v1/k")(_refusal("AccessDenied"))
    assert type(err) is StorageError and str(err) == "v1/k: AccessDenied: the store said AccessDenied"


# -- the deletion guard's rule ---------------------------------------------------
def _obj(**kw) -> StoredObject:
    base = dict(key="v1/k", version_id="v", size=1, retain_until=NOW - timedelta(seconds=1), mode="COMPLIANCE")
    return StoredObject(**{**base, **kw})


@pytest.mark.parametrize("stored, enforced, why", [
    (None, True, "gone"),
    (_obj(), True, None),
    (_obj(retain_until=NOW), True, None),  # at now: expired
    (_obj(retain_until=NOW + timedelta(seconds=1)), True, "locked: retain-until 2027-06-01T12:00:01+00:00"),
    (_obj(legal_hold=True), True, "locked: legal hold"),
    (_obj(legal_hold=True, lock_unreadable="AccessDenied"), True, "locked: lock unreadable (AccessDenied)"),
    (_obj(retain_until=None, mode=None), True, "locked: no retention read back (refusing to delete an unknown lock)"),
    (_obj(retain_until=None, mode=None), False, None),  # a bucket without Object Lock (allowed unenforced)
    (_obj(retain_until=NOW + timedelta(days=1)), False, "locked: retain-until 2027-06-02T12:00:00+00:00"),
], ids=["gone", "expired", "expires-now", "locked", "held", "unreadable", "no-lock-read", "unenforced",
        "unenforced-but-locked"])
def test_guard_refuses_what_is_not_expired_and_unheld(stored, enforced, why):
    assert refusal(stored, NOW, enforced) == why


def test_only_the_deletion_module_calls_a_delete():
    """storage/deletion.py is the one file that can delete a stored version."""
    deleting = {"remove_objects", "remove_object", "delete_objects", "delete_object"}
    callers = set()
    for pkg in ("labwitness", "recorder", "camera_discovery", "storage", "index", "retention", "api", "simulator"):
        for p in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in deleting:
                    callers.add(str(p.relative_to(ROOT)))
    # storage/lock_probe.py (labwitness doctor) tries to delete the 1-byte object it has just put under
    # doctor/ and passes only when the store refuses: it never names another key
    assert callers == {"storage/deletion.py", "storage/lock_probe.py"}
    probe = (ROOT / "storage/lock_probe.py").read_text(encoding="utf-8")
    assert probe.count("remove_object(") == 1 and "remove_object(bucket, key, version_id=version)" in probe
    assert 'key = f"{PROBE_PREFIX}lock-probe-' in probe


# -- the body that closes itself ----------------------------------------------------
class _Response:
    """The part of urllib3's response a body uses; counts how it was handed back."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.closed, self.released = data, 0, 0, 0

    def read(self, amt=None) -> bytes:
        end = len(self.data) if amt is None else self.pos + amt
        out, self.pos = self.data[self.pos:end], min(end, len(self.data))
        return out

    def stream(self, amt):
        while chunk := self.read(amt):
            yield chunk

    def close(self) -> None:
        self.closed += 1

    def release_conn(self) -> None:
        self.released += 1


def test_body_gives_its_connection_back_once_when_the_block_ends():
    resp = _Response(b"abcdefg")
    with S3Body(resp) as body:
        assert list(body.stream(3)) == [b"abc", b"def", b"g"]
    body.close()  # again: harmless
    assert (resp.closed, resp.released) == (1, 1)


def test_body_is_given_back_when_the_reader_fails():
    resp = _Response(b"abc")
    with pytest.raises(OSError):
        with S3Body(resp) as body:
            body.read(1)
            raise OSError("disk full while copying")
    assert (resp.closed, resp.released) == (1, 1)
