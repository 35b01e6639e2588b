"""Evidence packages built for tests: as labwitness writes them (real Ed25519 signature),
then changed as a test tells (malformed members, another key, another date)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

from api.evidence import MANIFEST, PUBKEY, QR, SIGNATURE, SigningKey


def make_package(tmp_path: Path, name: str, *, members: dict[str, bytes] | None = None, key: SigningKey | None = None,
                 compression=zipfile.ZIP_STORED) -> Path:
    """A package as labwitness writes it (real Ed25519 signature), then changed as told."""
    key = key or SigningKey.load(tmp_path / "lab")
    video = b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 40
    manifest = json.dumps({"schema": "labwitness.evidence/1", "package_id": "p1", "report_no": "JC-1",
                           "files": [{"name": "cam-1.mp4", "sha256": hashlib.sha256(video).hexdigest()}]},
                          ensure_ascii=False, indent=2).encode()
    parts = {"cam-1.mp4": video, MANIFEST: manifest, SIGNATURE: (key.sign(manifest) + "\n").encode(),
             PUBKEY: key.public_pem(), QR: b"\x89PNG"}
    parts.update(members or {})
    out = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(out, "w", compression=compression) as z:
        for n, data in parts.items():
            z.writestr(n, data)
    return out


def dated_package(tmp_path: Path, name: str, key: SigningKey, created_at: str) -> Path:
    """A package whose manifest says when it was made (as the exporter writes it), signed by ``key``."""
    src = make_package(tmp_path, name, key=key)
    with zipfile.ZipFile(src) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    manifest = json.loads(parts[MANIFEST])
    manifest["created_at"] = created_at
    parts[MANIFEST] = json.dumps(manifest).encode()
    parts[SIGNATURE] = (key.sign(parts[MANIFEST]) + "\n").encode()
    with zipfile.ZipFile(src, "w") as z:
        for n, data in parts.items():
            z.writestr(n, data)
    return src
