"""The seal document: what it holds, its exact bytes, its checks and inclusion proofs (pure).

A seal object (``seals/{YYYY}/{MM}/{DD}/{HH}-{seq}.json``, locked like footage) is JSON:

    {"head": {...}, "signature": "<base64 Ed25519 over canonical(head)>", "key_id": "SHA256:…",
     "public_key_pem": "…", "leaves": {"<camera>": [[key, version_id, sha256, size, start_ms, end_ms], …]}}

The **head** is what is signed, chained, sent to the witnesses and carried by evidence packages:

- ``schema`` ``labwitness.seal/1``, ``seq`` (1, 2, …), ``period`` ``{start, end}`` (ISO, ms: from the
  previous seal's end to this seal's creation), ``created_at`` (host clock), ``key_id``;
- ``prev_seal_hash``: SHA-256 (hex) of the previous seal's canonical head (64 zeros for seal 1):
  a deleted seal breaks the chain;
- ``cameras``: per camera ``{root, leaves}``: the Merkle root (:mod:`retention.merkle`) over its
  leaves in document order (segment row id ascending);
- ``root``: the Merkle root over the cameras in camera-id order, camera leaf data
  ``canonical([camera_id, camera_root_hex, leaf_count])``; ``leaves``: the total;
- ``gaps``: the gap records sealed ``[camera, start_ms, end_ms, reason]`` and ``gaps_hash`` (SHA-256
  of their canonical JSON);
- ``audit_head``: ``{id, hash}`` of the newest audit event at seal time, or null.

A segment's leaf data is ``canonical([key, version_id, sha256, size, start_ms, end_ms])``;
canonical JSON is sorted keys, no spaces, UTF-8 (no floats anywhere, so it re-encodes exactly).
The leaves are in the object so that a seal can be re-checked from storage alone; they are not
signed directly: the signed camera roots commit to them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from retention import merkle

SCHEMA = "labwitness.seal/1"
GENESIS = "0" * 64
PREFIX = "seals/"

#: one leaf as the document lists it: key, version_id, sha256, size, start_ms, end_ms
LeafFields = tuple[str, str, str, int, int, int]


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seal_key(created_ms: int, seq: int) -> str:
    t = datetime.fromtimestamp(created_ms / 1000, timezone.utc)
    return f"{PREFIX}{t:%Y/%m/%d/%H}-{seq:08d}.json"


def leaf_hash(fields: Sequence) -> bytes:
    key, version_id, sha, size, start_ms, end_ms = fields
    return merkle.leaf_hash(canonical([key, version_id, sha, int(size), int(start_ms), int(end_ms)]))


def camera_leaf(camera_id: str, camera_root_hex: str, count: int) -> bytes:
    return merkle.leaf_hash(canonical([camera_id, camera_root_hex, count]))


def head_hash(head: dict) -> str:
    return hashlib.sha256(canonical(head)).hexdigest()


def camera_roots(leaves: dict[str, list]) -> dict[str, dict]:
    """``{camera: {root, leaves}}`` of per-camera leaf lists, as a head lists them."""
    return _roots(leaves)[0]


def _roots(leaves: dict[str, list]) -> tuple[dict[str, dict], str, list[bytes]]:
    cams = {}
    cam_leaves = []
    for cam in sorted(leaves):
        r = merkle.root([leaf_hash(f) for f in leaves[cam]]).hex()
        cams[cam] = {"root": r, "leaves": len(leaves[cam])}
        cam_leaves.append(camera_leaf(cam, r, len(leaves[cam])))
    return cams, merkle.root(cam_leaves).hex(), cam_leaves


@dataclass
class SealDoc:
    head: dict
    leaves: dict[str, list[list]]

    @property
    def head_bytes(self) -> bytes:
        return canonical(self.head)

    @property
    def hash(self) -> str:
        return head_hash(self.head)

    def envelope(self, signature: str, public_pem: bytes) -> bytes:
        return canonical({"head": self.head, "signature": signature, "key_id": self.head["key_id"],
                          "public_key_pem": public_pem.decode(), "leaves": self.leaves})


def build(seq: int, period_start_ms: int, created_ms: int, prev_hash: str, key_id: str,
          leaves: dict[str, list[LeafFields]], gaps: list[tuple[str, int, int, str]],
          audit_head: tuple[int, str] | None) -> SealDoc:
    """The seal of ``leaves`` (per camera, in order) and ``gaps``, ready to sign."""
    leaf_lists = {cam: [list(f) for f in fs] for cam, fs in leaves.items() if fs}
    cams, root, _ = _roots(leaf_lists)
    gap_list = [[c, int(s), int(e), r] for c, s, e, r in gaps]
    head = {
        "schema": SCHEMA, "seq": seq, "key_id": key_id,
        "period": {"start": iso(period_start_ms), "end": iso(created_ms), "start_ms": period_start_ms, "end_ms": created_ms},
        "created_at": iso(created_ms), "created_ms": created_ms, "prev_seal_hash": prev_hash,
        "cameras": cams, "root": root, "leaves": sum(c["leaves"] for c in cams.values()),
        "gaps": gap_list, "gaps_hash": hashlib.sha256(canonical(gap_list)).hexdigest(),
        "audit_head": {"id": audit_head[0], "hash": audit_head[1]} if audit_head else None,
    }
    return SealDoc(head, leaf_lists)


def public_key(pem: str | bytes) -> Ed25519PublicKey | None:
    try:
        key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return key if isinstance(key, Ed25519PublicKey) else None


def key_fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + hashlib.sha256(raw).hexdigest()


def signature_valid(head: dict, signature: str, pem: str | bytes) -> tuple[bool, str]:
    """(valid, key fingerprint) of ``signature`` over ``canonical(head)`` by the PEM key."""
    key = public_key(pem)
    if key is None:
        return False, ""
    try:
        key.verify(base64.b64decode(signature, validate=True), canonical(head))
        return True, key_fingerprint(key)
    except (InvalidSignature, ValueError, TypeError):
        return False, key_fingerprint(key)


def parse_envelope(body: bytes) -> dict:
    """The seal object's JSON; ValueError when it is not one."""
    env = json.loads(body)
    if not (isinstance(env, dict) and isinstance(env.get("head"), dict) and isinstance(env.get("leaves"), dict)
            and isinstance(env.get("signature"), str) and isinstance(env["head"].get("seq"), int)):
        raise ValueError("not a labwitness seal object")
    return env


def check_envelope(env: dict) -> list[str]:
    """What is wrong inside one seal object (roots, counts, gap hash, signature), zh / en."""
    head, problems = env["head"], []
    ok, fp = signature_valid(head, env["signature"], env.get("public_key_pem", ""))
    if not ok:
        problems.append(f"封印 {head.get('seq')} 签名无效 / seal {head.get('seq')}: signature invalid")
    elif fp != head.get("key_id"):
        problems.append(f"封印 {head.get('seq')} 的签名密钥与其 key_id 不符 / seal {head.get('seq')}: signed by {fp}, "
                        f"not its key_id {head.get('key_id')}")
    try:
        cams, root, _ = _roots(env["leaves"])
    except (TypeError, ValueError, KeyError):
        return problems + [f"封印 {head.get('seq')} 的叶子格式错误 / seal {head.get('seq')}: malformed leaves"]
    if cams != head.get("cameras") or root != head.get("root"):
        problems.append(f"封印 {head.get('seq')} 的叶子与签名的根不符 / seal {head.get('seq')}: the listed leaves do not "
                        "give the signed roots")
    if hashlib.sha256(canonical(head.get("gaps", []))).hexdigest() != head.get("gaps_hash"):
        problems.append(f"封印 {head.get('seq')} 的缺口记录被改动 / seal {head.get('seq')}: gap records do not match their hash")
    return problems


# -- inclusion proofs (evidence packages) ---------------------------------------------
def proofs(head: dict, leaves: dict[str, list[LeafFields]]) -> dict[tuple[str, int], dict]:
    """The inclusion proof of every leaf of ``leaves`` (some or all of the head's cameras, each
    camera's leaves complete), by (camera, index): leaf -> camera root -> seal root."""
    cams = sorted(head["cameras"])
    cam_leaves = [camera_leaf(c, head["cameras"][c]["root"], head["cameras"][c]["leaves"]) for c in cams]
    cam_paths = merkle.all_proofs(cam_leaves)
    out = {}
    for ci, cam in enumerate(cams):
        if cam not in leaves:
            continue
        hashed = [leaf_hash(f) for f in leaves[cam]]
        for li, path in enumerate(merkle.all_proofs(hashed)):
            out[(cam, li)] = {
                "seal_seq": head["seq"], "seal_hash": head_hash(head), "sealed_at": head["created_at"],
                "camera_id": cam, "leaf_index": li, "leaf_count": len(hashed), "path": [p.hex() for p in path],
                "camera_root": head["cameras"][cam]["root"], "camera_index": ci, "camera_count": len(cams),
                "camera_path": [p.hex() for p in cam_paths[ci]], "root": head["root"],
            }
    return out


def check_proof(proof: dict, fields: Sequence, head: dict) -> str:
    """"" when ``proof`` shows the leaf ``fields`` under ``head``'s signed root, else why not."""
    try:
        cam = proof["camera_id"]
        if head.get("seq") != proof["seal_seq"] or head_hash(head) != proof["seal_hash"]:
            return "证明指向的封印不是所附封印 / the proof names another seal than the one carried"
        signed = head["cameras"].get(cam)
        if signed is None or signed["root"] != proof["camera_root"] or head["root"] != proof["root"]:
            return "证明中的根与签名的封印不符 / the proof's roots are not the signed seal's"
        if not merkle.verify_inclusion(leaf_hash(fields), proof["leaf_index"], signed["leaves"],
                                       [bytes.fromhex(p) for p in proof["path"]], bytes.fromhex(signed["root"])):
            return "片段不在封印的摄像机树中 / the segment is not in the seal's camera tree (proof fails)"
        if not merkle.verify_inclusion(camera_leaf(cam, signed["root"], signed["leaves"]), proof["camera_index"],
                                       len(head["cameras"]), [bytes.fromhex(p) for p in proof["camera_path"]],
                                       bytes.fromhex(head["root"])):
            return "摄像机根不在封印总根下 / the camera root is not under the seal's root (proof fails)"
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        return f"证明格式错误 / malformed proof: {e}"
    return ""
