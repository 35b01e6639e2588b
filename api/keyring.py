"""The lab's published signing keys: what ``labwitness key export`` writes and
``GET /.well-known/labwitness-keys.json`` serves, so a verifier can get ``lab.pub``.

Only the current private key exists (``DATA_DIR/signing.key``, see
:class:`api.evidence.SigningKey`); the public half of every key the lab has signed
with is kept in ``DATA_DIR/signing-keys.json`` with its validity, as a list:

    {"keys": [{"key_id": "SHA256:…", "algorithm": "Ed25519", "public_key_pem": "…",
               "valid_from": "2026-…Z", "valid_until": null}]}

``key_id`` is the fingerprint that every manifest names as ``signing_key``.  A key is
valid from the moment its key file was written (the file is written once); a key
that is no longer ``signing.key`` (replaced by hand today, rotated by a command
later) stays listed, closed with ``valid_until`` = the next key's ``valid_from``, so
packages signed before the change still verify against the published list.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from api.evidence import SigningKey
from api.installation import write_json
from labwitness.errors import IntegrityError

KEYRING = "signing-keys.json"
WELL_KNOWN = "/.well-known/labwitness-keys.json"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _entry(key: SigningKey, valid_from: str) -> dict:
    raw = key.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"key_id": key.fingerprint, "algorithm": "Ed25519", "use": "evidence-package-signature",
            "public_key_pem": key.public_pem().decode(), "public_key": base64.b64encode(raw).decode(),
            "valid_from": valid_from, "valid_until": None}


def published_keys(data_dir: Path, key: SigningKey | None = None) -> list[dict]:
    """Every key the lab has signed with, the current one last; records the current key on first sight."""
    key = key or SigningKey.load(data_dir)
    path = data_dir / KEYRING
    try:
        keys = json.loads(path.read_text(encoding="utf-8"))["keys"] if path.exists() else []
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise IntegrityError(f"公钥列表无法读取 / cannot read the published key list {path}: {e}") from e
    if not any(k["key_id"] == key.fingerprint for k in keys):
        since = _iso((data_dir / "signing.key").stat().st_mtime)
        for k in keys:
            if k["valid_until"] is None:
                k["valid_until"] = since
        keys.append(_entry(key, since))
        write_json(path, {"keys": keys}, mode=0o644)  # public halves only
    return keys


def well_known(data_dir: Path, key: SigningKey | None = None) -> dict:
    """The body of ``/.well-known/labwitness-keys.json``."""
    return {"issuer": "labwitness", "keys": published_keys(data_dir, key)}
