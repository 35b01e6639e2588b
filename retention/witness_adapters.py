"""Witnesses outside the box: the adapter interface, the registry of adapter kinds,
and the S3 witness (a second bucket with Object Lock in another administrative domain).

An adapter is anything with the :class:`Witness` shape.  Its ``deliver`` returns a
receipt (JSON text, kept as proof) or raises :class:`StorageUnavailableError` (not
answering: retried with backoff) or any other :class:`StorageError`, above all
:class:`WitnessRefusedError` (it answered no: retried slowly, shown in health).
Kinds are registered by name in :mod:`retention.witness_config` and configured in the
settings' ``witnesses`` list; ``docs/witnesses.md`` describes the interface and the
payload.  The HTTPS adapter is :mod:`retention.witness_https`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from labwitness.clock import Clock
from labwitness.errors import (ConfigError, ObjectLockError, ObjectNotFoundError, StorageError, ValidationError,
                               WitnessRefusedError)
from storage.s3 import S3ObjectStore

#: a document id becomes an object key and a URL path segment: keep it plain
DOC_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")
#: a witness's name is a label in health and metrics and a column in the outbox
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
#: hosts that are this box (a witness there shares the host clock and the host's fate)
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_doc_id(doc_id: str) -> str:
    if not DOC_ID.fullmatch(doc_id):
        raise ValidationError(f"见证文档编号无效 / witness document id {doc_id!r}: letters, digits and . _ : - only "
                              "(at most 200), starting with a letter or digit")
    return doc_id


class Witness(Protocol):
    """One witness outside the box."""

    name: str  # unique among the configured witnesses
    kind: str  # the registry name it was built from ("s3", "https", ...)

    def deliver(self, doc_id: str, body: bytes, signature: str, key_id: str) -> str:
        """Hand the document over; return the witness's receipt (JSON text) once it
        holds the document.  Delivering the same document again must be harmless."""

    def fetch(self, doc_id: str) -> bytes | None:
        """The document's bytes as the witness holds them, None when it does not."""

    def server_time(self) -> datetime:
        """The witness's own clock (its HTTP ``Date``): a time source off this host."""


@dataclass(frozen=True)
class WitnessContext:
    """What every adapter may need from the installation (wired in ``api.runtime``)."""

    clock: Clock
    #: retain-until for a document made at the given instant (the footage retention)
    retain_until: Callable[[datetime], datetime]
    #: the lab key: base64 Ed25519 signature of some bytes, and that key's id (read when first needed)
    sign: Callable[[bytes], str]
    sign_key_id: Callable[[], str]


def read_secret(path: str | os.PathLike, what: str) -> str:
    """A secret from its file (first line, stripped); missing, empty or open to others: refused."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
        value = p.read_text(encoding="utf-8").strip().splitlines()
    except OSError as e:
        raise ConfigError(f"密钥文件无法读取 / {what}: cannot read {p}: {e}") from e
    if not value or not value[0].strip():
        raise ConfigError(f"密钥文件为空 / {what}: {p} is empty")
    if mode & 0o077:
        raise ConfigError(f"密钥文件权限过宽 / {what}: {p} is readable by others (mode {mode & 0o777:o}); "
                          f"chmod 600 {p}")
    return value[0].strip()


# -- the S3 witness -------------------------------------------------------------------------
class S3Witness:
    """A second bucket with Object Lock, in another administrative domain: each document
    is stored as ``{prefix}{doc_id}.json`` in COMPLIANCE mode until the footage
    retention, its signature beside it as ``{prefix}{doc_id}.sig.json``; both are read
    back (lock and bytes) before the delivery counts.  Storage calls go through
    :class:`storage.s3.S3ObjectStore`, the footage store's own client."""

    kind = "s3"

    def __init__(self, name: str, store: S3ObjectStore, ctx: WitnessContext, *, create_bucket: bool = False,
                 prefix: str = "seals/") -> None:
        self.name = name
        self.store = store
        self.ctx = ctx
        self.create_bucket = create_bucket
        self.prefix = prefix
        self.location = store.info.location  # endpoint/bucket, shown in health and the sweep's time witnesses
        self._checked = False

    def _check(self) -> None:
        """Once, at the first delivery (a witness down at start-up must not stop the service):
        the bucket exists with Object Lock; without it every delivery is refused."""
        if self._checked:
            return
        try:
            self.store.check(create=self.create_bucket)
        except (ConfigError, ObjectLockError) as e:
            raise WitnessRefusedError(f"见证存储桶不可用 / witness bucket {self.store.info.location}: {e}") from e
        self._checked = True

    def _keys(self, doc_id: str) -> tuple[str, str]:
        check_doc_id(doc_id)
        return f"{self.prefix}{doc_id}.json", f"{self.prefix}{doc_id}.sig.json"

    def deliver(self, doc_id: str, body: bytes, signature: str, key_id: str) -> str:
        self._check()
        key, sig_key = self._keys(doc_id)
        sha = hashlib.sha256(body).hexdigest()
        until = self.ctx.retain_until(self.ctx.clock.now())
        sig_doc = json.dumps({"id": doc_id, "document_key": key, "document_sha256": sha, "signature": signature,
                              "signature_algorithm": "Ed25519", "key_id": key_id}, sort_keys=True).encode()
        meta = {"labwitness-doc-id": doc_id, "labwitness-sha256": sha, "labwitness-key-id": key_id}
        doc_v = self._put(key, body, until, "application/json", meta)
        sig_v = self._put(sig_key, sig_doc, until, "application/json", meta)
        return json.dumps({"witness": self.name, "location": self.location, "key": key, "version_id": doc_v[0],
                           "signature_key": sig_key, "signature_version_id": sig_v[0], "retain_until": doc_v[1],
                           "sha256": sha}, sort_keys=True)

    def _put(self, key: str, data: bytes, until: datetime, content_type: str, meta: dict[str, str]) -> tuple[str, str]:
        """Store ``data`` locked (unless the latest version already is exactly it, locked long
        enough: a delivery repeated after a crash adds no version), read lock and bytes back."""
        held = self._latest(key)
        if held is not None and held[1] == data and held[0].mode == "COMPLIANCE" and held[0].retain_until \
                and held[0].retain_until >= until.replace(microsecond=0):
            return held[0].version_id, held[0].retain_until.isoformat()
        # S3ObjectStore writes locked versions from files; a seal is a few kB, a temporary file costs nothing
        with tempfile.NamedTemporaryFile(prefix="labwitness-witness-") as f:
            f.write(data)
            f.flush()
            stored = self.store.put_file(key, Path(f.name), until, content_type=content_type, metadata=meta)
        got, _ = self.store.stat(key, stored.version_id, with_hold=False)
        if got.mode != "COMPLIANCE" or got.retain_until is None or got.retain_until < until.replace(microsecond=0):
            raise ObjectLockError(f"见证对象锁定不符 / witness {self.name}: {key} locked {got.mode} until "
                                  f"{got.retain_until}, expected COMPLIANCE until >= {until}")
        with self.store.open(key, stored.version_id) as b:
            back = b.read()
        if back != data:
            raise StorageError(f"见证对象读回不一致 / witness {self.name}: {key}@{stored.version_id} read back "
                               f"{len(back)} bytes that differ from the {len(data)} sent")
        return stored.version_id, got.retain_until.isoformat()

    def _latest(self, key: str):
        try:
            stored, _ = self.store.stat(key, with_hold=False)
            with self.store.open(key, stored.version_id) as b:
                return stored, b.read()
        except ObjectNotFoundError:
            return None

    def fetch(self, doc_id: str) -> bytes | None:
        held = self._latest(self._keys(doc_id)[0])
        return held[1] if held else None

    def server_time(self) -> datetime:
        return self.store.server_time()


def s3_witness(name: str, spec: Mapping[str, Any], ctx: WitnessContext) -> S3Witness:
    where = f"witness {name}"
    store = S3ObjectStore(
        str(spec["endpoint"]), read_secret(spec["access_key_file"], f"{where} access_key_file"),
        read_secret(spec["secret_key_file"], f"{where} secret_key_file"), str(spec["bucket"]),
        secure=spec.get("secure"), region=spec.get("region"), allow_unenforced=False,
        timeout_s=float(spec.get("timeout_s", 10.0)), clock=ctx.clock)
    return S3Witness(name, store, ctx, create_bucket=bool(spec.get("create_bucket", False)),
                     prefix=str(spec.get("prefix", "seals/")))

