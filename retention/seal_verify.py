"""``labwitness seal verify``: recompute the seals from storage and name what does not match.

From storage alone (the index only adds what it knows, clearly marked):

1. read every seal object under ``seals/`` (those of the checked range, and the one
   before it for the chain link); check each one's signature, that its key is one the
   lab published, that its leaves give its signed roots and its gap records their hash;
2. check the chain: seal *n* names the hash of seal *n−1*; a seal number that is absent
   means a deleted seal (``seal_missing``); a seal the index recorded that storage does
   not have is ``seal_missing`` too, unless it is still waiting in the local document spool;
3. for every leaf, stream the footage version and hash it (in parallel): ``segment_missing``
   (the version is gone) or ``segment_altered`` (other bytes or size), whatever happened
   behind the S3 API, root on the box included;
4. every clock hour of the range without a seal created within ``interval + grace`` of its
   start is ``hour_unsealed``;
5. footage versions in storage (``v1/`` listing) stored in a sealed period but in no seal
   (``segment_unsealed``): the last ``interval + grace`` before the newest seal is left out,
   since what was stored then may be indexed, and sealed, only by the next seal;
6. the audit head each seal anchored is compared with the index's event at that id
   (``audit_rewritten``, ``audit_event_missing``): a chain rewritten consistently in the
   database still differs from what was sealed.

Each finding is ``{kind, seq?, key?, version_id?, camera_id?, detail}`` (detail zh-CN / English).
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable

from labwitness.clock import HOUR_MS
from labwitness.errors import ObjectNotFoundError, StorageError
from retention import seal_doc
from storage.base import ObjectStore

log = logging.getLogger(__name__)

MAX_SEAL_BYTES = 256 << 20


@dataclass
class SealCheck:
    findings: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seals: list[dict] = field(default_factory=list)  # seq, key, created_at, leaves, ok
    segments_checked: int = 0
    segments_expired: int = 0  # gone after their retention ended (the expiry sweep): not a finding
    hours_checked: int = 0

    def add(self, kind: str, detail: str, **where) -> None:
        self.findings.append({"kind": kind, "detail": detail, **where})

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> dict:
        return {"ok": self.ok, "findings": self.findings, "notes": self.notes, "seals": self.seals,
                "segments_checked": self.segments_checked, "segments_expired": self.segments_expired,
                "hours_checked": self.hours_checked}


@dataclass(frozen=True)
class VerifyInput:
    since_ms: int | None
    now_ms: int
    interval_h: float
    grace_min: float
    trusted_keys: frozenset[str]
    #: the index's view, optional: (seq, object key) of the seals it recorded, the keys still in the
    #: local document spool, and the audit event hash at an id (None: no such event)
    recorded: list[tuple[int, str]] = field(default_factory=list)
    spooled_keys: frozenset[str] = frozenset()
    audit_hash_at: Callable[[int], str | None] | None = None
    #: whether footage that ended at this ms may have been deleted by the expiry sweep (its retain-until
    #: passed): gone is then no finding
    expired: Callable[[int], bool] | None = None
    workers: int = 4


def _hour_of_key(key: str) -> int | None:
    """ms of the clock hour in a ``seals/YYYY/MM/DD/HH-seq.json`` key (None if it is not one)."""
    from datetime import datetime, timezone
    try:
        y, m, d, rest = key[len(seal_doc.PREFIX):].split("/")
        return int(datetime(int(y), int(m), int(d), int(rest.split("-")[0]), tzinfo=timezone.utc).timestamp() * 1000)
    except (ValueError, IndexError):
        return None


def _read(store: ObjectStore, key: str, version_id: str) -> bytes:
    with store.open(key, version_id) as body:
        data = body.read(MAX_SEAL_BYTES + 1)
    if len(data) > MAX_SEAL_BYTES:
        raise ValueError(f"larger than {MAX_SEAL_BYTES} bytes")
    return data


def load_seals(store: ObjectStore, since_ms: int | None, rep: SealCheck) -> dict[int, list[tuple[str, dict]]]:
    """The seal objects of the range (plus one hour before, for the chain link) by number."""
    by_seq: dict[int, list[tuple[str, dict]]] = {}
    seen: set[tuple[str, str]] = set()
    lo = None if since_ms is None else since_ms - 2 * HOUR_MS
    for v in store.list_versions(seal_doc.PREFIX):
        if v.is_delete_marker:
            continue
        hour = _hour_of_key(v.key)
        if lo is not None and hour is not None and hour < lo:
            continue
        try:
            env = seal_doc.parse_envelope(_read(store, v.key, v.version_id))
        except (ValueError, StorageError) as e:
            rep.add("seal_unreadable", f"封印对象无法读取 / seal object unreadable: {e}", key=v.key, version_id=v.version_id)
            continue
        h = seal_doc.head_hash(env["head"])
        if (v.key, h) in seen:  # the same document stored twice (a retried upload): one seal
            continue
        seen.add((v.key, h))
        by_seq.setdefault(env["head"]["seq"], []).append((v.key, env))
    return by_seq


def _chain(by_seq: dict[int, list[tuple[str, dict]]], rep: SealCheck, inp: VerifyInput) -> dict[int, tuple[str, dict]]:
    """One seal per number (the one the chain goes through), findings for the rest."""
    chosen: dict[int, tuple[str, dict]] = {}
    seqs = sorted(by_seq)
    for seq in reversed(seqs):  # from the newest down: a seal is the one its successor names
        cands = by_seq[seq]
        nxt = chosen.get(seq + 1)
        want = nxt[1]["head"].get("prev_seal_hash") if nxt else None
        pick = next((c for c in cands if seal_doc.head_hash(c[1]["head"]) == want), cands[-1])
        chosen[seq] = pick
        for other in cands:
            if other is not pick:
                rep.notes.append(f"封印 {seq} 另有一份不在链上的对象（写入时中断）/ seal {seq}: another object {other[0]} "
                                 "is not part of the chain (a seal run interrupted after storing it)")
    if not seqs:
        return chosen
    first = seqs[0]
    for seq in range(first, seqs[-1] + 1):
        if seq not in chosen:
            rep.add("seal_missing", f"封印 {seq} 不在存储中（被删除）/ seal {seq} is missing from storage (deleted)", seq=seq)
            continue
        head = chosen[seq][1]["head"]
        prev = chosen.get(seq - 1)
        if seq == 1 and head.get("prev_seal_hash") != seal_doc.GENESIS:
            rep.add("seal_chain_broken", "第一个封印未从创世值开始 / seal 1 does not start the chain", seq=seq)
        if prev is not None and head.get("prev_seal_hash") != seal_doc.head_hash(prev[1]["head"]):
            rep.add("seal_chain_broken", f"封印 {seq} 未指向封印 {seq - 1} / seal {seq} does not name seal {seq - 1}'s hash",
                    seq=seq)
    stored = {(seq, key) for seq, (key, _e) in chosen.items()}
    for seq, key in inp.recorded:
        if (seq, key) in stored or key in inp.spooled_keys or seq in chosen:
            continue
        if inp.since_ms is not None and seq < first:
            continue
        rep.add("seal_missing", f"索引记录的封印 {seq} 不在存储中 / seal {seq} recorded by the index is missing from "
                                f"storage ({key})", seq=seq, key=key)
    return chosen


def _hash_version(store: ObjectStore, leaf: list) -> tuple[str, str]:
    key, version_id, sha, size = leaf[0], leaf[1], leaf[2], int(leaf[3])
    h, n = hashlib.sha256(), 0
    try:
        with store.open(key, version_id) as body:
            for chunk in body.stream(1 << 20):
                h.update(chunk)
                n += len(chunk)
    except ObjectNotFoundError:
        return "missing", "版本不存在 / the version is gone"
    except StorageError as e:
        return "unreadable", f"无法读取 / could not be read: {e}"
    if h.hexdigest() != sha or n != size:
        return "altered", f"内容被改动：sha256 {h.hexdigest()[:16]}…，{n} 字节，封印为 {sha[:16]}…，{size} 字节 / bytes altered: " \
                          f"sha256 {h.hexdigest()[:16]}… {n} B, sealed {sha[:16]}… {size} B"
    return "ok", ""


def verify_seals(store: ObjectStore, inp: VerifyInput, *, progress: Callable[[int, int], None] | None = None) -> SealCheck:
    rep = SealCheck()
    by_seq = load_seals(store, inp.since_ms, rep)
    chosen = _chain(by_seq, rep, inp)
    in_range = {seq: ke for seq, ke in chosen.items()
                if inp.since_ms is None or ke[1]["head"].get("created_ms", 0) >= inp.since_ms}
    leaves: list[tuple[int, str, list]] = []
    for seq, (key, env) in sorted(in_range.items()):
        head = env["head"]
        problems = seal_doc.check_envelope(env)
        for p in problems:
            rep.add("seal_invalid", p, seq=seq, key=key)
        if head.get("key_id") not in inp.trusted_keys:
            rep.add("seal_untrusted_key", f"封印 {seq} 的签名密钥 {head.get('key_id')} 不是实验室公布的密钥 / seal {seq} is "
                                          "signed by a key the lab never published", seq=seq, key=key)
        audit = head.get("audit_head")
        if audit and inp.audit_hash_at is not None:
            now_hash = inp.audit_hash_at(int(audit["id"]))
            if now_hash is None:
                rep.add("audit_event_missing", f"封印 {seq} 锚定的审计事件 {audit['id']} 已不在索引中 / audit event "
                                               f"{audit['id']} anchored by seal {seq} is gone from the index", seq=seq)
            elif now_hash != audit["hash"]:
                rep.add("audit_rewritten", f"审计日志被改写：事件 {audit['id']} 的哈希与封印 {seq} 不符 / audit log rewritten: "
                                           f"event {audit['id']} no longer has the hash seal {seq} sealed", seq=seq)
        for cam, items in sorted(env["leaves"].items()):
            leaves += [(seq, cam, leaf) for leaf in items if isinstance(leaf, list) and len(leaf) == 6]
        rep.seals.append({"seq": seq, "key": key, "created_at": head.get("created_at"), "leaves": head.get("leaves"),
                          "ok": not problems})
    done = 0
    with ThreadPoolExecutor(max_workers=max(1, inp.workers)) as pool:
        for (seq, cam, leaf), (state, why) in zip(leaves, pool.map(lambda x: _hash_version(store, x[2]), leaves)):
            done += 1
            if progress is not None:
                progress(done, len(leaves))
            if state == "missing" and inp.expired is not None and inp.expired(int(leaf[5])):
                rep.segments_expired += 1
            elif state != "ok":
                rep.add(f"segment_{state}", f"{leaf[0]}: {why}", seq=seq, camera_id=cam, key=leaf[0], version_id=leaf[1])
    rep.segments_checked = len(leaves)
    _unsealed_hours(rep, [ke[1]["head"].get("created_ms", 0) for ke in chosen.values()], inp)
    _unsealed_objects(store, rep, chosen, inp)
    return rep


def _unsealed_hours(rep: SealCheck, created: Iterable[int], inp: VerifyInput) -> None:
    times = sorted(created)
    if inp.interval_h <= 0:
        return
    window = int(inp.interval_h * HOUR_MS + inp.grace_min * 60_000)
    start = inp.since_ms if inp.since_ms is not None else (times[0] if times else inp.now_ms)
    hour = -(-start // HOUR_MS) * HOUR_MS  # the first whole hour of the range
    i = 0
    while hour + window <= inp.now_ms:
        while i < len(times) and times[i] < hour:
            i += 1
        rep.hours_checked += 1
        if not (i < len(times) and times[i] < hour + window):
            rep.add("hour_unsealed", f"{seal_doc.iso(hour)} 起的一小时没有封印 / the hour from {seal_doc.iso(hour)} was "
                                     "never sealed", hour=seal_doc.iso(hour))
        hour += HOUR_MS


def _unsealed_objects(store: ObjectStore, rep: SealCheck, chosen: dict[int, tuple[str, dict]], inp: VerifyInput) -> None:
    if not chosen:
        return
    sealed = {(leaf[0], leaf[1]) for _k, env in chosen.values() for items in env["leaves"].values() for leaf in items
              if isinstance(leaf, list) and len(leaf) == 6}
    newest = max(env["head"].get("created_ms", 0) for _k, env in chosen.values())
    first_start = min(env["head"].get("period", {}).get("start_ms", 0) for _k, env in chosen.values())
    lo = max(first_start, inp.since_ms or 0)
    hi = newest - int(inp.interval_h * HOUR_MS + inp.grace_min * 60_000)
    for v in store.list_versions("v1/"):
        if v.is_delete_marker or v.last_modified is None or (v.key, v.version_id) in sealed:
            continue
        t = int(v.last_modified.timestamp() * 1000)
        if lo <= t < hi:
            rep.add("segment_unsealed", f"{v.key}: 存于已封印时段却不在任何封印中 / stored in a sealed period but in no seal",
                    key=v.key, version_id=v.version_id)
