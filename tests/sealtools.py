"""Helpers for the seal tests: a lab key as the seal job's signer, a document spool on the
test's store, one seal run uploaded, and the verifier's input."""

from __future__ import annotations

import json
from pathlib import Path

from api.evidence import SigningKey
from labwitness.clock import Clock, SystemClock, utc_ms
from retention import seal_doc
from retention.policy import RetentionPolicy
from retention.seal_verify import VerifyInput, verify_seals
from retention.seals import SealSigner, run_seal
from storage.doc_spool import DocumentSpool


def signer(key: SigningKey) -> SealSigner:
    return SealSigner(key.fingerprint, key.public_pem(), key.sign)


class Sealer:
    def __init__(self, store, engine, tmp: Path, clock: Clock | None = None) -> None:
        self.store, self.engine, self.clock = store, engine, clock or SystemClock()
        self.key = SigningKey.load(tmp / "keydir")
        self.spool = DocumentSpool(tmp / "documents", store, RetentionPolicy(), self.clock)

    def seal(self, upload: bool = True, **kw):
        res = run_seal(self.engine, self.clock, self.spool, signer(self.key), actor="test", **kw)
        if upload:
            self.spool.upload_once()
        return res

    def envelope(self, seq: int) -> dict:
        key = next(v.key for v in self.store.list_versions("seals/") if v.key.endswith(f"-{seq:08d}.json"))
        with self.store.open(key) as body:
            return seal_doc.parse_envelope(body.read())

    def verify(self, now_ms: int | None = None, **kw):
        from index.audit import AuditLog
        audit = AuditLog(self.engine, lambda: 0)
        inp = VerifyInput(since_ms=kw.pop("since_ms", None), now_ms=now_ms or utc_ms(self.clock.now()),
                          interval_h=kw.pop("interval_h", 1.0), grace_min=kw.pop("grace_min", 15.0),
                          trusted_keys=frozenset([self.key.fingerprint]), audit_hash_at=audit.hash_at, **kw)
        return verify_seals(self.store, inp)


def kinds(rep) -> list[str]:
    return sorted(f["kind"] for f in rep.findings)


def dump(rep) -> str:
    return json.dumps(rep.to_json(), ensure_ascii=False, indent=1)[:4000]
