"""Which lab key a verifier trusts: the issuer check of ``labwitness verify``.

A package carries its own public key, so its signature alone proves nothing about
who made it: anyone can sign a forged package with a fresh key and include that
key.  A package is *genuine* only when its signing key is one the verifier trusts:

- given as a file (``--public-key lab.pub``, from ``labwitness key export``), or
- found in the lab's published key list (``--keys keys.json`` or ``--keys
  https://lab.example/.well-known/labwitness-keys.json``; :mod:`api.keyring`),
  where the key must have been valid when the package was made (``created_at``
  within ``valid_from`` .. ``valid_until``), so a retired key cannot sign new
  packages.

Never the URL inside the package (a forger writes their own).  Pure, except
:func:`load_key_list`, which reads the file or fetches the URL.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import requests

from labwitness.errors import ValidationError

from api.evidence import VerifyReport, fingerprint, load_public_key

MAX_KEY_LIST_BYTES = 1 << 20
FETCH_TIMEOUT_S = 10.0


def _instant(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def trusted_pem(key_list: dict, key_id: str, created_at: str | None) -> tuple[bytes | None, str]:
    """The PEM of the listed key named ``key_id`` if it was valid at ``created_at``,
    else ``(None, why)`` in zh-CN / English."""
    keys = key_list.get("keys") if isinstance(key_list, dict) else None
    if not isinstance(keys, list):
        return None, "公钥列表格式无效 / the key list has no \"keys\" list"
    entry = next((k for k in keys if isinstance(k, dict) and k.get("key_id") == key_id), None)
    if entry is None or not isinstance(entry.get("public_key_pem"), str):
        return None, f"签名密钥 {key_id} 不在实验室公布的公钥列表中 / signing key {key_id} is not in the lab's published keys"
    made = _instant(created_at)
    since, until = _instant(entry.get("valid_from")), _instant(entry.get("valid_until"))
    if made is None:
        return None, "证据包没有可读的生成时间 / the package has no readable created_at"
    if (since is not None and made < since) or (until is not None and made >= until):
        return None, (f"证据包生成时（{created_at}）该密钥不在有效期内 / the key was not valid when the package was made "
                      f"({created_at}; valid {entry.get('valid_from')} .. {entry.get('valid_until') or 'now'})")
    return entry["public_key_pem"].encode(), ""


def load_key_list(source: str) -> dict:
    """The key list from a file path or an http(s) URL; a clear ValidationError otherwise."""
    try:
        if source.startswith(("https://", "http://")):
            with requests.get(source, timeout=FETCH_TIMEOUT_S, stream=True) as r:
                r.raise_for_status()
                body = r.raw.read(MAX_KEY_LIST_BYTES + 1, decode_content=True)
        else:
            with open(Path(source), "rb") as f:
                body = f.read(MAX_KEY_LIST_BYTES + 1)
    except (OSError, requests.RequestException) as e:
        raise ValidationError(f"无法读取公钥列表 / cannot read the key list {source}: {e}") from e
    if len(body) > MAX_KEY_LIST_BYTES:
        raise ValidationError(f"公钥列表过大 / the key list {source} is larger than {MAX_KEY_LIST_BYTES} bytes")
    try:
        data = json.loads(body)
    except ValueError as e:
        raise ValidationError(f"公钥列表不是 JSON / the key list {source} is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValidationError(f"公钥列表格式无效 / the key list {source} is not a JSON object")
    return data


def apply_key_list(rep: VerifyReport, key_list: dict) -> None:
    """Judge ``rep``'s signing key against the lab's published list (in place): trusted
    only when listed, valid when the package was made, and the listed PEM really is
    that key; otherwise the reason is added to ``rep.problems``."""
    pem, why = trusted_pem(key_list, rep.key_fingerprint, rep.manifest.get("created_at"))
    if pem is not None and fingerprint(load_public_key(pem, ValidationError, "--keys")) != rep.key_fingerprint:
        pem, why = None, f"公钥列表中 {rep.key_fingerprint} 的公钥与其编号不符 / the listed key does not match its key_id"
    listed = pem is not None
    rep.trusted_key = listed if rep.trusted_key is None else (rep.trusted_key and listed)
    if not listed:
        rep.problems.append(why)
        rep.ok = False
    # a seal signed by another key than the package's (a rotation between them): listed, and valid then
    for key_id, made in list(rep.seal_keys_pending.items()):
        pem, why = trusted_pem(key_list, key_id, made)
        if pem is not None and fingerprint(load_public_key(pem, ValidationError, "--keys")) == key_id:
            del rep.seal_keys_pending[key_id]
        else:
            rep.problems.append(f"封印签名密钥未获信任 / a seal's signing key is not trusted: {why or key_id}")
            rep.ok = False
