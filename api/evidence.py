"""Signed evidence packages (Art. 7(七), 15: anti-counterfeit checks).

A package is a zip of: one MP4 per camera covering the report's window
(stitched by stream copy), ``manifest.json`` (SHA-256 of every file, source
object keys, version ids and hashes, windows, the test record revisions,
exporter, time), ``manifest.sig`` (Ed25519 over the exact manifest bytes,
base64), ``signing_key.pub`` (the lab's public key, PEM) and
``verify-qr.png`` (a QR code of the public verify URL).

Procedure "export" (in full, with its invariants and crash points: docs/exports.md):
1. stitch each camera's window into a temporary file, hashing as it is written;
2. hold every source segment version — Hold rows (pending) first, then the S3
   legal holds, then confirmed — so the originals outlive six months while the
   package is relied upon;
3. write and sign the manifest, build the zip;
4. store the zip in the bucket under ``exports/`` with COMPLIANCE retention;
5. record the manifest and signature, so ``/verify/{id}`` answers without the zip.

Verification offline (:func:`verify_package`) checks the signature and every
file's hash and names any file that does not match, and each source segment's
inclusion proof against the signed hourly seal the package carries
(``seals/{seq}.json``; :mod:`api.seal_check`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from labwitness.errors import IntegrityError, LabwitnessError, ValidationError
from labwitness.private_fs import private_dir, private_file

from api.package_zip import member_sha256, open_package, read_small
from api.seal_check import check_package_seals

MANIFEST, SIGNATURE, PUBKEY, QR = "manifest.json", "manifest.sig", "signing_key.pub", "verify-qr.png"
#: what a genuine package's small members can be (a manifest of a long multi-camera export stays far below)
MAX_MANIFEST_BYTES, MAX_SIGNATURE_BYTES, MAX_KEY_BYTES = 16 << 20, 4096, 16384


class SigningKey:
    """The lab's Ed25519 key: ``DATA_DIR/signing.key`` (0600), created on first use."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self.private = private
        self.public = private.public_key()

    @classmethod
    def load(cls, data_dir: Path) -> "SigningKey":
        f = data_dir / "signing.key"
        if not f.exists():
            private_dir(data_dir)
            pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption())
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
        return cls(serialization.load_pem_private_key(private_file(f).read_bytes(), password=None))

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
    files: dict[str, str] = field(default_factory=dict)  # name -> ok | altered | unreadable | missing | unexpected
    manifest: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: per file: {status: sealed | partly_sealed | not_yet_sealed | invalid, seals: [{seq, sealed_at}], unsealed_sources}
    sealing: dict[str, dict] = field(default_factory=dict)
    seals: dict[int, dict] = field(default_factory=dict)  # seq -> {sealed_at, key_id, root, hash, head}
    #: seal keys other than the package's and the trusted one: judged by the published key list (api.trust)
    seal_keys_pending: dict[str, str] = field(default_factory=dict)  # key id -> when its first seal was made

    @property
    def genuine(self) -> bool:
        """Intact, validly signed *and* signed by a key the verifier trusts (api.trust): a
        package carries its own public key, so a signature alone proves nothing of its issuer.
        Every seal it carries must be signed by a trusted key too."""
        return self.ok and self.trusted_key is True and not self.seal_keys_pending


def verify_package(path: Path, trusted_public_pem: bytes | None = None) -> VerifyReport:
    """Check a package offline: the signature over the manifest, and every file's SHA-256.

    A package that is not even well-formed (not a zip, unsafe member names, a zip
    bomb, a key that is not Ed25519, a manifest without a file list) raises
    :class:`IntegrityError` saying what is wrong; a ``trusted_public_pem`` that is
    not an Ed25519 public key raises :class:`ValidationError` (the caller's input)."""
    trusted_key = None
    if trusted_public_pem is not None:
        trusted_key = load_public_key(trusted_public_pem, ValidationError, "--public-key")
    with open_package(path) as zf:
        names = set(zf.namelist())
        for required in (MANIFEST, SIGNATURE, PUBKEY):
            if required not in names:
                raise IntegrityError(f"证据包缺少 {required} / the package has no {required}")
        manifest_bytes = read_small(zf, MANIFEST, MAX_MANIFEST_BYTES)
        public = load_public_key(read_small(zf, PUBKEY, MAX_KEY_BYTES), IntegrityError, PUBKEY)
        sig_text = read_small(zf, SIGNATURE, MAX_SIGNATURE_BYTES)
        sig_ok = sig_text.isascii() and signature_ok(public, manifest_bytes, sig_text.decode("ascii").strip())
        manifest, listed = _manifest_files(manifest_bytes)
        trusted = None if trusted_key is None else fingerprint(trusted_key) == fingerprint(public)
        rep = VerifyReport(ok=False, signature_valid=sig_ok, key_fingerprint=fingerprint(public), trusted_key=trusted,
                           manifest=manifest)
        if not sig_text.isascii():
            rep.problems.append("manifest.sig 不是 base64 文本 / manifest.sig is not base64 text")
        if not sig_ok:
            rep.problems.append("签名无效：清单被改动或不是本实验室签发 / signature invalid: manifest altered or not signed by this key")
        if trusted is False:
            rep.problems.append("签名密钥不是受信任的实验室密钥 / signed by a key that is not the trusted lab key")
        for name, meta in listed.items():
            if name not in names:
                rep.files[name] = "missing"
                rep.problems.append(f"缺少文件 / missing file: {name}")
                continue
            digest = member_sha256(zf, name)
            rep.files[name] = "unreadable" if digest is None else ("ok" if digest == meta.get("sha256") else "altered")
            if rep.files[name] == "altered":
                rep.problems.append(f"文件被改动 / file altered: {name}")
            elif rep.files[name] == "unreadable":
                rep.problems.append(f"文件无法读取（损坏） / file unreadable (corrupt): {name}")
        check_package_seals(zf, names, rep, fingerprint(trusted_key) if trusted_key is not None else None)
        listed_seals = manifest.get("seals") if isinstance(manifest.get("seals"), list) else []
        seal_members = {e.get("member") for e in listed_seals if isinstance(e, dict)}
        for extra in names - set(listed) - seal_members - {MANIFEST, SIGNATURE, PUBKEY, QR}:
            rep.files[extra] = "unexpected"
            rep.problems.append(f"清单外的文件 / file not in the manifest: {extra}")
        rep.ok = sig_ok and trusted is not False and not rep.problems
        return rep


def load_public_key(pem: bytes, error: type[LabwitnessError], what: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM, or ``error`` naming what it is instead."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise error(f"{what} 不是 PEM 格式的公钥 / {what} is not a PEM public key ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise error(f"{what} 不是 Ed25519 公钥 / {what} is not an Ed25519 key (it is {type(key).__name__.lstrip('_')}); "
                    "labwitness signs with Ed25519")
    return key


def _manifest_files(manifest_bytes: bytes) -> tuple[dict, dict[str, dict]]:
    """The manifest and its file list by name; IntegrityError when the manifest is not one."""
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError as e:
        raise IntegrityError(f"manifest.json 无法解析 / manifest.json is not JSON: {e}") from e
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(f.get("name"), str) for f in files):
        raise IntegrityError("manifest.json 缺少文件清单 / manifest.json has no valid \"files\" list")
    return manifest, {f["name"]: f for f in files}


class ExportError(LabwitnessError):
    code = "export"
