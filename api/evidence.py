"""Signed evidence packages (Art. 7(七), 15: anti-counterfeit checks).

A package is a zip of: one MP4 per camera covering the report's window
(stitched by stream copy), ``manifest.json`` (SHA-256 of every file, source
object keys, version ids and hashes, windows, the test record revisions,
exporter, time), ``manifest.sig`` (Ed25519 over the exact manifest bytes,
base64), ``signing_key.pub`` (the lab's public key, PEM) and
``verify-qr.png`` (a QR code of the public verify URL).

Procedure "export":
1. stitch each camera's window into a temporary file, hashing as it is written;
2. put an S3 legal hold on every source segment version (and record a Hold),
   so the originals outlive six months while the package is relied upon;
3. write and sign the manifest, build the zip;
4. store the zip in the bucket under ``exports/`` with COMPLIANCE retention;
5. record the manifest and signature, so ``/verify/{id}`` answers without the zip.

Verification offline (:func:`verify_package`) checks the signature and every
file's hash and names any file that does not match.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from labwitness.errors import IntegrityError, LabwitnessError

MANIFEST, SIGNATURE, PUBKEY, QR = "manifest.json", "manifest.sig", "signing_key.pub", "verify-qr.png"


class SigningKey:
    """The lab's Ed25519 key: ``DATA_DIR/signing.key`` (0600), created on first use."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self.private = private
        self.public = private.public_key()

    @classmethod
    def load(cls, data_dir: Path) -> "SigningKey":
        f = data_dir / "signing.key"
        if not f.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption())
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
        return cls(serialization.load_pem_private_key(f.read_bytes(), password=None))

    def public_pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self.private.sign(data)).decode()


def fingerprint(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + hashlib.sha256(raw).hexdigest()


def signature_ok(public: Ed25519PublicKey, data: bytes, signature_b64: str) -> bool:
    try:
        public.verify(base64.b64decode(signature_b64, validate=True), data)
        return True
    except (InvalidSignature, ValueError):
        return False


def qr_png(text: str) -> bytes:
    import qrcode
    from qrcode.image.pure import PyPNGImage

    img = qrcode.make(text, image_factory=PyPNGImage, box_size=8, border=2)
    buf = io.BytesIO()
    img.save(buf)
    return buf.getvalue()


def new_package_id() -> str:
    return uuid.uuid4().hex


@dataclass
class VerifyReport:
    ok: bool
    signature_valid: bool
    key_fingerprint: str
    trusted_key: bool | None
    files: dict[str, str] = field(default_factory=dict)  # name -> ok | altered | missing | unexpected
    manifest: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def verify_package(path: Path, trusted_public_pem: bytes | None = None) -> VerifyReport:
    """Check a package offline: the signature over the manifest, and every file's SHA-256."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise IntegrityError(f"不是有效的证据包 / not a readable evidence package: {e}") from e
    with zf:
        names = set(zf.namelist())
        for required in (MANIFEST, SIGNATURE, PUBKEY):
            if required not in names:
                raise IntegrityError(f"证据包缺少 {required} / the package has no {required}")
        manifest_bytes = zf.read(MANIFEST)
        public = serialization.load_pem_public_key(zf.read(PUBKEY))
        sig_ok = signature_ok(public, manifest_bytes, zf.read(SIGNATURE).decode().strip())
        try:
            manifest = json.loads(manifest_bytes)
        except ValueError as e:
            raise IntegrityError(f"manifest.json 无法解析 / manifest.json is not JSON: {e}") from e
        trusted = None
        if trusted_public_pem is not None:
            trusted = fingerprint(serialization.load_pem_public_key(trusted_public_pem)) == fingerprint(public)
        rep = VerifyReport(ok=False, signature_valid=sig_ok, key_fingerprint=fingerprint(public), trusted_key=trusted,
                           manifest=manifest)
        if not sig_ok:
            rep.problems.append("签名无效：清单被改动或不是本实验室签发 / signature invalid: manifest altered or not signed by this key")
        if trusted is False:
            rep.problems.append("签名密钥不是受信任的实验室密钥 / signed by a key that is not the trusted lab key")
        listed = {f["name"]: f for f in manifest.get("files", [])}
        for name, meta in listed.items():
            if name not in names:
                rep.files[name] = "missing"
                rep.problems.append(f"缺少文件 / missing file: {name}")
                continue
            h = hashlib.sha256()
            with zf.open(name) as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            rep.files[name] = "ok" if h.hexdigest() == meta.get("sha256") else "altered"
            if rep.files[name] == "altered":
                rep.problems.append(f"文件被改动 / file altered: {name}")
        for extra in names - set(listed) - {MANIFEST, SIGNATURE, PUBKEY, QR}:
            rep.files[extra] = "unexpected"
            rep.problems.append(f"清单外的文件 / file not in the manifest: {extra}")
        rep.ok = sig_ok and trusted is not False and not rep.problems
        return rep


class ExportError(LabwitnessError):
    code = "export"
