"""Seals in evidence packages: each source segment's inclusion proof, and the seals they point to.

At export (:func:`attach_proofs`), every source of every file in the manifest gets ``seal``:

- ``{"status": "sealed", "seal_seq", "seal_hash", "sealed_at", "camera_id", "leaf": [key,
  version_id, sha256, size, start_ms, end_ms], "leaf_index", "leaf_count", "path": [hex…],
  "camera_root", "camera_index", "camera_count", "camera_path": [hex…], "root"}`` — the leaf's
  audit path to its camera root and the camera root's to the seal's signed all-cameras root
  (:mod:`retention.seal_doc`); or
- ``{"status": "not_yet_sealed"}`` — indexed after the newest seal (the next one takes it in;
  the package is still valid); or ``{"status": "unavailable", "reason"}`` when the index no longer
  gives the seal's signed roots (rows changed since: the seal itself says what was sealed).

The package carries each seal it refers to as ``seals/{seq:08d}.json``: ``{head, signature,
key_id, public_key_pem}`` (the head is small: roots, counts, gaps, audit head; never the leaves).
"""

from __future__ import annotations

import json
from typing import Callable

from index.seals import SealStore
from retention import seal_doc

SEAL_MEMBER = "seals/{seq:08d}.json"


def attach_proofs(seals: SealStore, files: list[dict], public_pem_of: Callable[[str], bytes | None]) -> dict[str, bytes]:
    """Add ``seal`` to every source in ``files`` (in place); return the seal members by name.
    ``public_pem_of(key_id)`` gives the PEM of a key the lab signed with (None if unknown)."""
    ids = [src["segment_id"] for f in files for src in f.get("sources", []) if src.get("segment_id") is not None]
    seg_camera = {src["segment_id"]: f["camera_id"] for f in files for src in f.get("sources", [])
                  if src.get("segment_id") is not None}
    seal_of = seals.seal_of(ids)
    by_seq: dict[int, dict[int, dict] | str] = {}
    heads: dict[int, dict] = {}
    members: dict[str, bytes] = {}
    for seq in sorted({s for s in seal_of.values() if s is not None}):
        row = seals.get(seq)
        if row is None or not row.head:
            by_seq[seq] = "该封印不在索引中 / the seal is not in the index"
            continue
        head = json.loads(row.head)
        wanted = {seg_camera[sid] for sid, sq in seal_of.items() if sq == seq}  # proofs for these cameras only
        rows = [r for r in seals.sealed_segments(seq) if r.camera_id in wanted]
        leaves: dict[str, list] = {}
        for r in rows:
            leaves.setdefault(r.camera_id, []).append((r.key, r.version_id, r.sha256, r.size, r.start_ms, r.end_ms))
        if any(head["cameras"].get(cam) != got for cam, got in seal_doc.camera_roots(leaves).items()):
            by_seq[seq] = "索引中的片段与封印不符 / the index's rows no longer give this seal's roots"
            continue
        proofs = seal_doc.proofs(head, leaves)
        index_of = {}
        for cam, items in leaves.items():
            for i, r in enumerate(x for x in rows if x.camera_id == cam):
                index_of[r.id] = (cam, i, items[i])
        by_seq[seq] = {sid: {**proofs[(cam, i)], "leaf": list(fields), "status": "sealed"}
                       for sid, (cam, i, fields) in index_of.items()}
        heads[seq] = head
        members[SEAL_MEMBER.format(seq=seq)] = seal_doc.canonical({
            "head": head, "signature": row.signature, "key_id": row.key_id,
            "public_key_pem": (public_pem_of(row.key_id) or b"").decode()})
    for f in files:
        for src in f.get("sources", []):
            seq = seal_of.get(src.get("segment_id"))
            got = by_seq.get(seq) if seq is not None else None
            if seq is None:
                src["seal"] = {"status": "not_yet_sealed"}
            elif isinstance(got, str):
                src["seal"] = {"status": "unavailable", "seal_seq": seq, "reason": got}
            else:
                src["seal"] = got[src["segment_id"]]
    return members


def seal_summary(members: dict[str, bytes]) -> list[dict]:
    """The manifest's ``seals`` list: which seal documents the package carries."""
    out = []
    for name, body in sorted(members.items()):
        head = json.loads(body)["head"]
        out.append({"seq": head["seq"], "hash": seal_doc.head_hash(head), "created_at": head["created_at"],
                    "root": head["root"], "member": name})
    return out
