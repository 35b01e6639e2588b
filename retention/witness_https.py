"""The HTTPS witness: documents POSTed as signed JSON to an endpoint outside the box,
e.g. the adapter through which a regional supervision platform receives the seals.

One request per document (``docs/witnesses.md`` is the payload's reference)::

    POST {url}
    Content-Type: application/json
    Idempotency-Key: {doc_id}
    X-Labwitness-Signature: {base64 Ed25519 over the exact request body, lab key}
    X-Labwitness-Key-Id: {that key's id}
    Authorization: Bearer {token}             (when a token_file is configured)

    {"schema": "labwitness-witness/1", "id": ..., "media_type": "application/json",
     "document": base64 of the document's exact bytes, "document_sha256": hex,
     "signature": the document's own signature (base64 Ed25519 over those bytes),
     "signature_algorithm": "Ed25519", "key_id": ..., "sent_at": ISO 8601 UTC}

Answers: 2xx = delivered (the body is kept as the receipt); 409 = delivered when the
witness holds the same document (the answer's ``document_sha256``, else
``GET {url}/{id}``), refused otherwise; 408, 425, 429 and 5xx, timeouts and refused
connections = not answering (retried with backoff); any other status is a refusal
(:class:`WitnessRefusedError`: retried slowly, shown in health).  Redirects are not
followed: the configured URL is the witness.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Mapping
from urllib.parse import quote, urlsplit

import urllib3

from labwitness.errors import ConfigError, StorageUnavailableError, WitnessRefusedError
from retention.witness_adapters import LOOPBACK, WitnessContext, check_doc_id, read_secret

SCHEMA = "labwitness-witness/1"
#: statuses that mean "not now" rather than "no"
TRANSIENT_STATUS = {408, 425, 429}
MAX_RECEIPT_CHARS = 8000
MAX_ANSWER_BYTES = 16 << 20


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    data: bytes


def payload(doc_id: str, body: bytes, signature: str, key_id: str, sent_at: datetime) -> bytes:
    """The request body for one document (compact JSON, keys sorted: the bytes the request signature covers)."""
    return json.dumps({
        "schema": SCHEMA, "id": doc_id, "media_type": "application/json",
        "document": base64.b64encode(body).decode(), "document_sha256": hashlib.sha256(body).hexdigest(),
        "signature": signature, "signature_algorithm": "Ed25519", "key_id": key_id,
        "sent_at": sent_at.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }, sort_keys=True, separators=(",", ":")).encode()


class HttpsWitness:
    """POST each document to ``url``; read it back with ``GET {url}/{doc_id}``."""

    kind = "https"

    def __init__(self, name: str, url: str, ctx: WitnessContext, *, token: str | None = None,
                 ca_file: str | None = None, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        # plain HTTP only to a relay on this host: the request would otherwise cross the network in clear
        allowed = parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK)
        if not (allowed and parts.hostname):
            raise ConfigError(f"见证地址无效 / witness {name}: url {url!r} must be https:// (http:// only on loopback)")
        self.name = name
        self.url = url.rstrip("/")
        self.location = self.url
        self.ctx = ctx
        self.token = token
        kw: dict[str, Any] = {}
        if url.startswith("https://"):
            kw["ssl_context"] = ssl.create_default_context(cafile=ca_file)
        # no retries inside urllib3: the deliverer owns the retry schedule, so a dead witness is a backlog, not a hang
        self.http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
                                        retries=urllib3.Retry(total=0, connect=0, read=0, redirect=0), maxsize=2, **kw)

    def _request(self, method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> "Answer":
        h = dict(headers or {})
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        try:
            r = self.http.request(method, url, body=body, headers=h, redirect=False, preload_content=False)
            try:
                # bounded: an answer is a receipt or one document, never worth more memory than this
                data = r.read(MAX_ANSWER_BYTES)
            finally:
                r.release_conn()
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise StorageUnavailableError(f"见证服务不可达 / witness {self.name} ({self.url}) not answering: {e}") from e
        return Answer(r.status, r.headers, data)

    def _fail(self, r: Answer, what: str) -> None:
        text = r.data[:500].decode("utf-8", "replace")
        msg = f"witness {self.name} ({self.url}) answered {r.status} to {what}: {text}"
        if r.status >= 500 or r.status in TRANSIENT_STATUS:
            raise StorageUnavailableError(f"见证服务暂不可用 / {msg}")
        raise WitnessRefusedError(f"见证服务拒绝 / {msg}")

    def deliver(self, doc_id: str, body: bytes, signature: str, key_id: str) -> str:
        check_doc_id(doc_id)
        data = payload(doc_id, body, signature, key_id, self.ctx.clock.now())
        headers = {"Content-Type": "application/json", "Idempotency-Key": doc_id,
                   "X-Labwitness-Signature": self.ctx.sign(data), "X-Labwitness-Key-Id": self.ctx.sign_key_id()}
        r = self._request("POST", self.url, data, headers)
        if 200 <= r.status < 300:
            return self._receipt(r, duplicate=False)
        if r.status == 409 and self._holds_same(r, doc_id, body):
            return self._receipt(r, duplicate=True)
        if r.status == 409:
            raise WitnessRefusedError(f"见证服务已有不同文档 / witness {self.name} already holds a different document "
                                      f"under id {doc_id} (409): {r.data[:300].decode('utf-8', 'replace')}")
        self._fail(r, f"POST {doc_id}")
        raise AssertionError("unreachable")  # _fail always raises

    def _holds_same(self, r: Answer, doc_id: str, body: bytes) -> bool:
        """A 409 is a delivery only when what the witness holds is this very document."""
        sha = hashlib.sha256(body).hexdigest()
        try:
            said = json.loads(r.data or b"{}").get("document_sha256")
        except (ValueError, AttributeError):
            said = None
        if said is not None:
            return said == sha
        held = self.fetch(doc_id)
        return held is not None and hashlib.sha256(held).hexdigest() == sha

    def _receipt(self, r: Answer, *, duplicate: bool) -> str:
        return json.dumps({"witness": self.name, "url": self.url, "status": r.status, "duplicate": duplicate,
                           "date": r.headers.get("Date"),
                           "body": r.data.decode("utf-8", "replace")[:MAX_RECEIPT_CHARS]},
                          sort_keys=True)

    def fetch(self, doc_id: str) -> bytes | None:
        url = f"{self.url}/{quote(check_doc_id(doc_id), safe='')}"
        r = self._request("GET", url, headers={"Accept": "application/json"})
        if r.status == 404:
            return None
        if r.status != 200:
            self._fail(r, f"GET {doc_id}")
        try:
            return base64.b64decode(json.loads(r.data)["document"], validate=True)
        except (ValueError, KeyError, TypeError) as e:
            raise WitnessRefusedError(f"见证服务应答无效 / witness {self.name}: GET {doc_id} is not a witness document "
                                      f"({e})") from e

    def server_time(self) -> datetime:
        r = self._request("HEAD", self.url)
        date = r.headers.get("Date")
        if not date:
            raise StorageUnavailableError(f"见证服务未返回 Date 头 / witness {self.name} sent no Date header")
        return parsedate_to_datetime(date).astimezone(timezone.utc)


def https_witness(name: str, spec: Mapping[str, Any], ctx: WitnessContext) -> HttpsWitness:
    token_file = spec.get("token_file")
    return HttpsWitness(name, str(spec["url"]), ctx,
                        token=read_secret(token_file, f"witness {name} token_file") if token_file else None,
                        ca_file=spec.get("ca_file"), timeout_s=float(spec.get("timeout_s", 10.0)))
