"""The seal half of ``labwitness verify``: each source segment's inclusion proof against the signed
seal the package carries (:mod:`api.seal_proofs` wrote them), and, online, whether a witness holds it.

Offline, for every seal document in the package (``seals/{seq}.json``):

- its Ed25519 signature over the canonical head must verify with the key it names, and that key
  must be the lab's under the same rules as the manifest's: the package's own signing key (whose
  trust ``--public-key`` / ``--keys`` decide), the ``--public-key``, or a key the published list
  (``--keys``) names as valid when the seal was made (:func:`api.trust.apply_key_list`);
- its head must be the one the signed manifest names (``seals[].hash``).

Then for every source of every file marked ``sealed``: the proof's leaf must be that source
(key, version, sha256), and its audit paths must lead to the seal's signed camera root and
all-cameras root (:func:`retention.seal_doc.check_proof`).  A proof that fails, a seal signed by
another key, or a seal missing from the package makes the package not genuine.  Sources marked
``not_yet_sealed`` are reported, not refused.

Online (``--witness URL``), for each seal: ``GET {URL}/{seal id}`` (the HTTPS witness's read API,
docs/witnesses.md: 200 with the posted JSON whose ``document`` is the base64 of the seal's head,
or 404) says whether the witness holds that very seal.
"""

from __future__ import annotations

import base64
import json
import zipfile
from urllib.parse import quote

import requests

from retention import seal_doc
from retention.seals import witness_id

from api.package_zip import read_small

MAX_SEAL_MEMBER_BYTES = 1 << 20
FETCH_TIMEOUT_S = 10.0


def _problem(rep, text: str) -> None:
    rep.problems.append(text)


def check_package_seals(zf: zipfile.ZipFile, names: set[str], rep, trusted_fp: str | None) -> None:
    """Judge the package's seals and proofs into ``rep`` (an :class:`api.evidence.VerifyReport`)."""
    manifest = rep.manifest
    listed = manifest.get("seals") or []
    heads: dict[int, dict] = {}
    for entry in listed if isinstance(listed, list) else []:
        if not isinstance(entry, dict):
            continue
        member, seq = entry.get("member"), entry.get("seq")
        if member not in names:
            _problem(rep, f"证据包缺少封印 {seq} / the package lacks seal {seq} ({member})")
            continue
        try:
            env = json.loads(read_small(zf, member, MAX_SEAL_MEMBER_BYTES))
            head, sig, pem = env["head"], env["signature"], env["public_key_pem"]
        except (ValueError, KeyError, TypeError) as e:
            _problem(rep, f"封印 {seq} 无法解析 / seal {seq} is not a seal document: {e}")
            continue
        valid, fp = seal_doc.signature_valid(head, sig, pem)
        if not valid or fp != head.get("key_id"):
            _problem(rep, f"封印 {seq} 签名无效或不是其所称密钥签署 / seal {seq}: signature invalid or not by the key it names")
            continue
        if entry.get("hash") != seal_doc.head_hash(head) or head.get("seq") != seq:
            _problem(rep, f"封印 {seq} 不是清单所指的封印 / seal {seq} is not the seal the manifest names")
            continue
        if fp != rep.key_fingerprint and fp != trusted_fp:
            # another key than the package's: trusted only if the lab's published list says so (api.trust)
            rep.seal_keys_pending.setdefault(fp, head.get("created_at") or "")
        heads[seq] = head
        rep.seals[seq] = {"sealed_at": head.get("created_at"), "key_id": fp, "root": head.get("root"), "hash": entry["hash"],
                          "head": head}
    for f in manifest.get("files", []):
        rep.sealing[f["name"]] = _file_sealing(f, heads, rep)


def _file_sealing(f: dict, heads: dict[int, dict], rep) -> dict:
    sealed: dict[int, str] = {}
    unsealed = bad = 0
    for src in f.get("sources") or []:
        proof = src.get("seal") or {"status": "not_yet_sealed"}
        if proof.get("status") != "sealed":
            unsealed += 1
            continue
        seq = proof.get("seal_seq")
        head = heads.get(seq)
        leaf = proof.get("leaf") or []
        why = ""
        if head is None:
            why = f"证明所指封印 {seq} 未随包提供或无效 / the proof's seal {seq} is not carried or not valid"
        elif list(leaf[:3]) != [src.get("key"), src.get("version_id"), src.get("sha256")] or len(leaf) != 6:
            why = "证明的叶子不是该片段 / the proof's leaf is not this segment"
        else:
            why = seal_doc.check_proof(proof, leaf, head)
        if why:
            bad += 1
            _problem(rep, f"封印证明无效 / seal proof refused: {f['name']}: {src.get('key')}: {why}")
        else:
            sealed[seq] = head["created_at"]
    status = ("invalid" if bad else "sealed" if sealed and not unsealed else "partly_sealed" if sealed
              else "not_yet_sealed")
    return {"status": status, "seals": [{"seq": s, "sealed_at": at} for s, at in sorted(sealed.items())],
            "unsealed_sources": unsealed}


def witness_holds(url: str, seq: int, head: dict) -> str:
    """``held`` (the witness returns this very seal), ``missing`` (404), ``different`` (it holds
    other bytes under the id) or ``unreachable: …`` — the states of ``retention.witness.held_by``."""
    target = f"{url.rstrip('/')}/{quote(witness_id(seq), safe='')}"
    try:
        with requests.get(target, timeout=FETCH_TIMEOUT_S, headers={"Accept": "application/json"}) as r:
            if r.status_code == 404:
                return "missing"
            if r.status_code != 200:
                return f"unreachable: HTTP {r.status_code}"
            doc = base64.b64decode(r.json()["document"], validate=True)
    except (requests.RequestException, ValueError, KeyError, TypeError) as e:
        return f"unreachable: {e}"
    return "held" if doc == seal_doc.canonical(head) else "different"
