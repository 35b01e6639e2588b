"""A witness endpoint for the tests: a real HTTPS server on 127.0.0.1 (http.server in a
thread, TLS with a self-signed certificate made here) that checks what a regional
platform would: the bearer token, the request signature against the lab's public key,
the idempotency key, the document's hash and its own signature.  Its answers can be
turned: 503 for the next N posts, 400 for chosen ids."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import ssl
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import NameOID


class LabKey:
    """An Ed25519 key standing in for the lab's signing key."""

    def __init__(self) -> None:
        self.private = Ed25519PrivateKey.generate()
        self.public = self.private.public_key()
        raw = self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = "SHA256:" + hashlib.sha256(raw).hexdigest()

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self.private.sign(data)).decode()


def verifies(public: Ed25519PublicKey, data: bytes, signature: str) -> bool:
    try:
        public.verify(base64.b64decode(signature, validate=True), data)
        return True
    except (InvalidSignature, ValueError):
        return False


def self_signed(dir: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and its key), valid for a day: the CA file of the test."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "labwitness test witness")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = dir / "witness-cert.pem", dir / "witness-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class WitnessServer:
    """``POST /seals``, ``GET /seals/{id}``, ``HEAD /seals``; what it accepted is in ``docs``."""

    def __init__(self, lab_public: Ed25519PublicKey, token: str, tls_dir: Path) -> None:
        self.lab_public = lab_public
        self.token = token
        self.cert, self.key = self_signed(tls_dir)
        self.docs: dict[str, dict] = {}  # id -> the accepted payload
        self.answers: list[tuple[str, int, str]] = []  # (method, status, why) of every request
        self.unavailable = 0  # answer 503 to this many more posts
        self.reject: set[str] = set()  # ids answered 400
        self.lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}/seals"

    def start(self) -> "WitnessServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:
                pass

            def _answer(self, status: int, body: dict | None = None, why: str = "") -> None:
                data = json.dumps(body or {}).encode()
                with server.lock:
                    server.answers.append((self.command, status, why))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def do_HEAD(self) -> None:
                self._answer(200)

            def do_GET(self) -> None:
                doc_id = self.path.rsplit("/", 1)[-1]
                with server.lock:
                    held = server.docs.get(doc_id)
                self._answer(200, held) if held else self._answer(404, {"error": "not found"})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/seals" or self.headers.get("Authorization") != f"Bearer {server.token}":
                    return self._answer(401, {"error": "unauthorized"}, "token")
                if not verifies(server.lab_public, raw, self.headers.get("X-Labwitness-Signature", "")):
                    return self._answer(401, {"error": "bad request signature"}, "request signature")
                p = json.loads(raw)
                doc = base64.b64decode(p["document"])
                if self.headers.get("Idempotency-Key") != p["id"]:
                    return self._answer(400, {"error": "idempotency key is not the document id"}, "idempotency key")
                if hashlib.sha256(doc).hexdigest() != p["document_sha256"] or not verifies(server.lab_public, doc,
                                                                                           p["signature"]):
                    return self._answer(400, {"error": "document does not match its hash or signature"}, "document")
                with server.lock:
                    if server.unavailable > 0:
                        server.unavailable -= 1
                        busy = True
                    else:
                        busy = False
                    rejected = p["id"] in server.reject
                    held = server.docs.get(p["id"])
                    if not (busy or rejected or held):
                        server.docs[p["id"]] = p
                if busy:
                    return self._answer(503, {"error": "maintenance"}, "busy")
                if rejected:
                    return self._answer(400, {"error": "schema not accepted"}, "rejected")
                if held:
                    return self._answer(409, {"id": p["id"], "document_sha256": held["document_sha256"]}, "duplicate")
                self._answer(201, {"id": p["id"], "accepted": True}, "accepted")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, name="witness-server", daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    def statuses(self, method: str = "POST") -> list[int]:
        with self.lock:
            return [s for m, s, _ in self.answers if m == method]
