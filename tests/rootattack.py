"""What root on the box can do to the embedded store without the S3 API (issue 14): remove a
locked version through the filer, overwrite its chunk through the volume server, or patch the
bytes in the volume file on disk.  For the tests that show ``labwitness seal verify`` names it.

The HTTP APIs are open on loopback today; once they require signed JWTs (``security.toml`` in
the store's directory, storage.seaweed), root reads the keys from that file, and so does this
helper (HS256 tokens as weed checks them: the volume's with the file id, the filer's plain).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import tomllib
import urllib.request
import uuid
from pathlib import Path


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(key: str, claims: dict) -> str:
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps({**claims, "exp": int(time.time()) + 60}).encode())
    sig = hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def _keys(store_dir: Path) -> dict:
    """The store's JWT keys, as root reads them from its directory (empty while there are none)."""
    f = Path(store_dir) / "security.toml"
    if not f.exists():
        return {}
    doc = tomllib.loads(f.read_text())
    jwt = doc.get("jwt", {})
    return {"volume": jwt.get("signing", {}).get("key"), "filer": jwt.get("filer_signing", {}).get("key"),
            "filer_read": jwt.get("filer_signing", {}).get("read", {}).get("key")}


def _request(url: str, method: str = "GET", data: bytes | None = None, headers: dict | None = None) -> bytes:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


def version_path(bucket: str, key: str, version_id: str) -> str:
    return f"/buckets/{bucket}/{key}.versions/v_{version_id}"


def _filer_auth(sw, which: str = "filer") -> dict:
    k = _keys(sw.data_dir).get(which)
    return {"Authorization": f"Bearer {_jwt(k, {})}"} if k else {}


def remove_version(sw, bucket: str, key: str, version_id: str) -> None:
    """DELETE the version's file through the filer (the Object Lock lives in the S3 layer only)."""
    _request(f"http://127.0.0.1:{sw.ports['filer']}{version_path(bucket, key, version_id)}", "DELETE",
             headers=_filer_auth(sw))


def chunk_ids(sw, bucket: str, key: str, version_id: str) -> list[str]:
    """The volume file ids holding the version's bytes (the filer's directory listing names them)."""
    folder = f"/buckets/{bucket}/{key}.versions/"
    listing = json.loads(_request(f"http://127.0.0.1:{sw.ports['filer']}{folder}",
                                  headers={"Accept": "application/json", **_filer_auth(sw, "filer_read")}))
    entry = next(e for e in listing["Entries"] if e["FullPath"].endswith(f"v_{version_id}"))
    return [c["file_id"] for c in entry["chunks"]]


def overwrite_chunk(sw, fid: str, data: bytes) -> None:
    """Replace a chunk's bytes on the volume server (multipart POST to its file id)."""
    k = _keys(sw.data_dir).get("volume")
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if k:
        headers["Authorization"] = f"Bearer {_jwt(k, {'fid': fid})}"
    _request(f"http://127.0.0.1:{sw.ports['volume']}/{fid}", "POST", body, headers)


def patch_on_disk(sw, old: bytes, new: bytes) -> int:
    """Overwrite ``old`` with ``new`` (same length) wherever it is in the store's volume files; how many."""
    assert len(old) == len(new)
    n = 0
    for dat in Path(sw.data_dir).rglob("*.dat"):
        blob = dat.read_bytes()
        at = blob.find(old)
        while at >= 0:
            with open(dat, "r+b") as f:
                f.seek(at)
                f.write(new)
            n += 1
            at = blob.find(old, at + 1)
    return n


def alter_version(sw, bucket: str, key: str, version_id: str, original: bytes) -> str:
    """Give a locked version other bytes behind the S3 API: its chunk overwritten on the volume
    server when the filer names the chunk, else its bytes patched in the volume file on disk
    (root can always do the latter).  Returns how."""
    try:
        fids = chunk_ids(sw, bucket, key, version_id)
    except (OSError, KeyError, ValueError, StopIteration):
        fids = []
    if fids:
        for fid in fids:
            overwrite_chunk(sw, fid, bytes(len(original)))
        return "volume"
    assert patch_on_disk(sw, original[:64], b"X" * 64) >= 1, "the version's bytes are not in any volume file"
    return "disk"
