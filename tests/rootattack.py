"""What root on the box can do to the embedded store without the S3 API (issue 14): remove a
locked version's file entry, overwrite its chunk through the volume server, or patch the bytes
in the volume file on disk.  For the tests that show ``labwitness seal verify`` names it.

The locked-down store (storage.seaweed_secrets) serves its filer only over gRPC with mutual TLS
and its volume server only with signed JWTs; root reads the certificates and keys from the
store's directory (``security.toml``), and so does this helper: ``weed shell`` run from that
directory (``fs.rm``, ``fs.meta.cat``), volume requests with an HS256 token carrying the file id.
A store from before the lockdown (no ``security.toml``) is attacked over its open filer HTTP API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
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


def _locked(sw) -> bool:
    return (Path(sw.data_dir) / "security.toml").exists()


def weed_shell(sw, commands: str) -> str:
    """``weed shell`` as root runs it: from the store's directory, holding its security.toml."""
    from storage.seaweed import GRPC_OFFSET, weed_binary

    m, f = sw.ports["master"], sw.ports["filer"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEED_", "AWS_"))}
    done = subprocess.run([weed_binary(), "shell", f"-master=127.0.0.1:{m}.{m + GRPC_OFFSET}",
                           f"-filer=127.0.0.1:{f}.{f + GRPC_OFFSET}"], input=commands, cwd=sw.data_dir,
                          env={**env, "HOME": str(sw.data_dir)}, capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr


def remove_version(sw, bucket: str, key: str, version_id: str) -> None:
    """Remove the version's file entry behind the S3 API (the Object Lock lives in the S3 layer only)."""
    path = version_path(bucket, key, version_id)
    if _locked(sw):
        weed_shell(sw, f"fs.rm {path}\n")
        return
    _request(f"http://127.0.0.1:{sw.ports['filer']}{path}", "DELETE", headers=_filer_auth(sw))


def chunk_ids(sw, bucket: str, key: str, version_id: str) -> list[str]:
    """The volume file ids holding the version's bytes (from the filer's entry)."""
    if _locked(sw):
        out = weed_shell(sw, f"fs.meta.cat {version_path(bucket, key, version_id)}\n")
        return re.findall(r'"fileId":\s*"([0-9]+,[0-9a-f]+)"', out)
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
