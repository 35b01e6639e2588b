"""Local spool: where a segment lives from its first byte until it is safe.

Layout, per camera::

    SPOOL/{camera}/state.json            next sequence, last segment end, clean stop
    SPOOL/{camera}/{seq:012d}.open.json  segment being written: session, start estimate
    SPOOL/{camera}/{seq:012d}.mp4.part   bytes being written
    SPOOL/{camera}/{seq:012d}.mp4        finished bytes
    SPOOL/{camera}/{seq:012d}.json       commit record: SegmentMeta + upload state
    SPOOL/{camera}/gap-open.json         an interruption that has not ended yet
    SPOOL/{camera}/gap-{start_ms}-{reason}.json  a finished gap, not yet indexed

Invariants:

I1. ``N.json`` exists only after ``N.mp4`` is complete and fsynced; its sha256
    and size describe exactly those bytes.
I2. ``N.mp4`` is deleted only after its object is stored with verified
    retention (``state == "stored"``: in the uploader's hands, written to
    ``N.json`` only when the index row has to wait) *and* its index row is
    committed (``indexed``); ``N.json`` is deleted after ``N.mp4``.
I3. Nothing else ever deletes a spool file, except a ``.part`` from which no
    complete fragment could be salvaged (it held no playable video).

Procedure "commit a segment" (:meth:`CameraSpool.commit`):

1. the muxer writes ``N.mp4.part`` through :class:`HashingFile` (SHA-256 and
   size computed while writing); 2. fsync the file; 3. rename to ``N.mp4``;
4. write ``N.json.tmp``, fsync, rename to ``N.json``; 5. fsync the directory;
6. remove ``N.open.json``; update ``state.json``.

Procedure "recover" (:meth:`CameraSpool.recover`, at start-up): a
``.part`` (or an ``.mp4`` without its ``.json``) is truncated after its last
complete ``moof``+``mdat`` pair, probed, and committed as above with the start
from its ``open.json``; at most the unfinished last fragment is lost.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterator

from labwitness.errors import SpoolError
from labwitness.media import mp4 as mp4_boxes
from labwitness.private_fs import FILE_MODE, fsync_dir, private_dir, write_atomic
from storage.layout import SegmentMeta, check_camera_id, iso_ms, parse_iso

log = logging.getLogger(__name__)

# The file names of the layout above, one definition for this module and the
# read-only view of the spool (recorder.spool_view): glob patterns, as fnmatch reads them too.
_SEQ = "[0-9]" * 12
RECORD_GLOB = f"{_SEQ}.json"  # commit record
OPEN_GLOB = f"{_SEQ}.open.json"  # segment being written
FINISHED_GAP_GLOB = "gap-[0-9]*.json"  # gap-{start_ms}-{reason}.json
OPEN_GAP = "gap-open.json"


def forget_tls_pins(root: Path, camera_id: str) -> dict[str, str]:
    """Remove a camera's pinned rtsps:// certificates (``labwitness camera retrust-tls``); the
    pins that were there.  A running recorder pins the certificate it sees at its next retry."""
    f = Path(root) / check_camera_id(camera_id) / CameraSpool.TLS_PINS
    try:
        pins = json.loads(f.read_text())
    except FileNotFoundError:
        return {}
    except (ValueError, OSError):
        pins = {"?": "unreadable"}
    f.unlink(missing_ok=True)
    return {str(k): str(v) for k, v in pins.items()} if isinstance(pins, dict) else {}


def write_json_atomic(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, ensure_ascii=False).encode())


class HashingFile(io.RawIOBase):
    """Write-only, non-seekable file for the muxer: hashes and counts as it writes.

    Non-seekable on purpose: the fragmented-MP4 muxer then never rewrites
    earlier bytes, so the hash computed on the way out is the file's hash.
    Writes go straight to the kernel (no user-space buffer), so a killed
    process loses nothing that the muxer has already handed over.
    """

    def __init__(self, path: Path, quota: "SpoolQuota") -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        self.sha = hashlib.sha256()
        self.size = 0
        self._quota = quota
        self.failed: SpoolError | None = None

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, b) -> int:
        if self.failed is not None:
            # Once a write was refused the file must stay a clean prefix: a
            # later, smaller write that would fit must not land after a hole.
            raise self.failed
        view = memoryview(b)
        n = len(view)
        try:
            self._quota.charge(n)
        except SpoolError as e:
            self.failed = e
            raise
        written = 0
        try:
            while written < n:
                written += os.write(self._fd, view[written:])
        except OSError as e:  # disk full or failing: same rule as a refused quota
            self.failed = SpoolError(f"write to {self.path} failed: {e}")
            raise self.failed from e
        self.sha.update(view)
        self.size += n
        return n

    def fsync_close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        super().close()


class SpoolQuota:
    """Bytes the spool may hold: a configured cap and the disk's real free space.

    ``charge`` raises :class:`SpoolError` *before* bytes are written past the
    cap, so a full spool never half-writes footage it then cannot keep.
    """

    def __init__(self, root: Path, max_bytes: int | None, reserve_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.reserve_bytes = reserve_bytes
        self._lock = threading.Lock()
        self.used = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0

    def room(self) -> int:
        free = shutil.disk_usage(self.root).free - self.reserve_bytes
        if self.max_bytes is not None:
            free = min(free, self.max_bytes - self.used)
        return free

    def has_room(self, want: int) -> bool:
        return self.room() >= want

    def charge(self, n: int) -> None:
        with self._lock:
            if self.max_bytes is not None and self.used + n > self.max_bytes:
                raise SpoolError(f"spool quota of {self.max_bytes} bytes reached")
            self.used += n

    def release(self, n: int) -> None:
        with self._lock:
            self.used = max(0, self.used - n)


@dataclass
class Committed:
    seq: int
    mp4: Path
    record: Path
    meta: SegmentMeta
    state: str  # pending | stored
    version_id: str | None
    retain_until: datetime | None
    lock_mode: str | None
    indexed: bool


class CameraSpool:
    def __init__(self, root: Path, camera_id: str, quota: SpoolQuota) -> None:
        self.camera_id = check_camera_id(camera_id)
        self.dir = Path(root) / camera_id
        private_dir(self.dir)
        self.quota = quota
        self._lock = threading.Lock()
        self._state = self._read_state()

    # -- state ---------------------------------------------------------------
    def _read_state(self) -> dict:
        f = self.dir / "state.json"
        state = {"next_seq": 0, "last_end": None, "clean_stop": True}
        if f.exists():
            try:
                state.update(json.loads(f.read_text()))
            except (ValueError, OSError):
                log.error("spool state %s unreadable; rebuilding from files", f)
        seqs = [int(p.name[:12]) for p in self.dir.glob(f"{_SEQ}.*")]
        state["next_seq"] = max([state["next_seq"], *(s + 1 for s in seqs)])
        return state

    def _save_state(self) -> None:
        write_json_atomic(self.dir / "state.json", self._state)

    @property
    def last_end(self) -> datetime | None:
        v = self._state.get("last_end")
        return parse_iso(v) if v else None

    @property
    def clean_stop(self) -> bool:
        return bool(self._state.get("clean_stop", True))

    def mark_running(self) -> None:
        with self._lock:
            self._state["clean_stop"] = False
            self._save_state()

    def mark_stopped(self) -> None:
        with self._lock:
            self._state["clean_stop"] = True
            self._save_state()

    # -- rtsps:// certificate pins (recorder.rtsp_conn: trust on first use) ---------------
    #: a file of its own, read at every connection: an administrator re-trusts a camera's
    #: new certificate by removing it (the running recorder then pins what it sees next)
    TLS_PINS = "tls_pins.json"

    def tls_pins(self) -> dict[str, str]:
        """Pinned SHA-256 certificate fingerprints of this camera, by "host:port"."""
        f = self.dir / self.TLS_PINS
        try:
            pins = json.loads(f.read_text())
        except FileNotFoundError:
            return {}
        except (ValueError, OSError) as e:
            # not an empty dict: an unreadable pin must not turn into trusting anything
            raise SpoolError(f"证书指纹文件无法读取 / cannot read the camera's certificate pins {f}: {e}") from e
        return {str(k): str(v) for k, v in pins.items()} if isinstance(pins, dict) else {}

    def set_tls_pin(self, hostport: str, fingerprint: str) -> None:
        with self._lock:
            pins = self.tls_pins()
            pins[hostport] = fingerprint
            write_json_atomic(self.dir / self.TLS_PINS, pins)

    def forget_tls_pins(self) -> dict[str, str]:
        """Re-trust: the next connection pins the certificate it sees.  The pins forgotten."""
        return forget_tls_pins(self.dir.parent, self.camera_id)

    def next_seq(self) -> int:
        with self._lock:
            seq = self._state["next_seq"]
            self._state["next_seq"] = seq + 1
            self._save_state()
            return seq

    # -- writing -------------------------------------------------------------
    def paths(self, seq: int) -> tuple[Path, Path, Path, Path]:
        base = self.dir / f"{seq:012d}"
        return (base.with_suffix(".mp4.part"), base.with_suffix(".mp4"), base.with_suffix(".json"), base.with_suffix(".open.json"))

    def open_segment(self, seq: int, info: dict) -> HashingFile:
        part, _, _, open_rec = self.paths(seq)
        write_json_atomic(open_rec, info)
        return HashingFile(part, self.quota)

    def commit(self, seq: int, out: HashingFile | None, meta: SegmentMeta) -> Committed:
        part, mp4, rec, open_rec = self.paths(seq)
        if out is not None:
            out.fsync_close()
        os.replace(part, mp4)
        write_json_atomic(rec, {"meta": meta.to_json(), "state": "pending", "indexed": False})
        fsync_dir(self.dir)
        open_rec.unlink(missing_ok=True)
        with self._lock:
            if self.last_end is None or meta.end > self.last_end:
                self._state["last_end"] = iso_ms(meta.end)
            self._save_state()
        return self.load(rec)

    def discard_part(self, seq: int) -> None:
        """Drop a segment that holds no complete fragment (I3)."""
        part, mp4, _, open_rec = self.paths(seq)
        for p in (part, mp4):
            if p.exists():
                self.quota.release(p.stat().st_size)
                p.unlink()
        open_rec.unlink(missing_ok=True)

    # -- reading back ------------------------------------------------------------
    def load(self, rec: Path) -> Committed:
        d = json.loads(rec.read_text())
        seq = int(rec.name[:12])
        until = d.get("retain_until")
        return Committed(
            seq=seq, mp4=rec.with_name(f"{seq:012d}.mp4"), record=rec, meta=SegmentMeta.from_json(d["meta"]),
            state=d.get("state", "pending"), version_id=d.get("version_id"),
            retain_until=parse_iso(until) if until else None, lock_mode=d.get("lock_mode"),
            indexed=bool(d.get("indexed")),
        )

    def committed(self) -> list[Committed]:
        """Finished segments still in the spool, oldest first."""
        out = []
        for r in sorted(self.dir.glob(RECORD_GLOB)):
            try:
                out.append(self.load(r))
            except FileNotFoundError:
                continue  # released by an upload worker between the listing and the read
        return out

    def mark_stored(self, c: Committed, version_id: str, retain_until: datetime | None, lock_mode: str | None) -> None:
        write_json_atomic(c.record, {
            "meta": c.meta.to_json(), "state": "stored", "version_id": version_id,
            "retain_until": iso_ms(retain_until) if retain_until else None, "lock_mode": lock_mode, "indexed": False,
        })
        c.state, c.version_id, c.retain_until, c.lock_mode = "stored", version_id, retain_until, lock_mode

    def release(self, c: Committed) -> None:
        """I2: called only once stored *and* indexed. Bytes first, record last."""
        if not (c.state == "stored" and c.indexed):
            raise SpoolError(f"refusing to release {c.mp4}: state={c.state} indexed={c.indexed}")
        if c.mp4.exists():
            size = c.mp4.stat().st_size
            c.mp4.unlink()
            self.quota.release(size)
        c.record.unlink(missing_ok=True)

    # -- gaps -------------------------------------------------------------------
    #: who writes this camera's gaps now (docs/cluster.md): set by its worker from the camera's lease
    node_id: str = ""
    epoch: int = 0

    def writer(self) -> dict:
        return {"node_id": self.node_id, "epoch": self.epoch} if self.epoch else {}

    def open_gap(self, start: datetime, reason: str, detail: str) -> None:
        f = self.dir / OPEN_GAP
        if f.exists():  # the first cause of an outage is the one that counts
            cur = json.loads(f.read_text())
            cur["attempts"] = cur.get("attempts", 0) + 1
            cur["last_error"] = detail[:500]
            write_json_atomic(f, cur)
            return
        write_json_atomic(f, {"start": iso_ms(start), "reason": reason, "detail": detail[:1000], "attempts": 1})

    def pending_open_gap(self) -> dict | None:
        f = self.dir / OPEN_GAP
        return json.loads(f.read_text()) if f.exists() else None

    def close_gap(self, end: datetime) -> dict | None:
        """End the open gap at ``end`` and journal it for the index."""
        f = self.dir / OPEN_GAP
        if not f.exists():
            return None
        g = json.loads(f.read_text())
        start = parse_iso(g["start"])
        if end < start:
            end = start
        detail = g["detail"]
        if g.get("attempts", 1) > 1:
            detail += f" (reconnect attempts: {g['attempts']}; last: {g.get('last_error', '')})"
        rec = {"camera_id": self.camera_id, "start": g["start"], "end": iso_ms(end), "reason": g["reason"], "detail": detail[:2000],
               **self.writer()}
        ms = round(start.timestamp() * 1000)
        write_json_atomic(self.dir / f"gap-{ms}-{g['reason']}.json", rec)
        f.unlink()
        fsync_dir(self.dir)
        return rec

    def record_gap(self, start: datetime, end: datetime, reason: str, detail: str) -> None:
        ms = round(start.timestamp() * 1000)
        write_json_atomic(self.dir / f"gap-{ms}-{reason}.json", {
            "camera_id": self.camera_id, "start": iso_ms(start), "end": iso_ms(end), "reason": reason, "detail": detail[:2000],
            **self.writer(),
        })

    def finished_gaps(self) -> Iterator[tuple[Path, dict]]:
        for p in sorted(self.dir.glob(FINISHED_GAP_GLOB)):
            yield p, json.loads(p.read_text())

    # -- recovery ---------------------------------------------------------------
    def unfinished(self) -> list[int]:
        """Sequences with bytes but no commit record (killed mid-write)."""
        seqs = set()
        for p in self.dir.glob(f"{_SEQ}.mp4*"):
            seq = int(p.name[:12])
            if not (self.dir / f"{seq:012d}.json").exists():
                seqs.add(seq)
        return sorted(seqs)


def complete_fragments_end(path: Path) -> int:
    """Byte offset just after the last complete ``moof``+``mdat`` pair of the file at
    ``path``, or 0 (see :func:`labwitness.media.mp4.complete_fragments_end`: only the
    box headers are read)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        def read(offset: int, length: int) -> bytes:
            f.seek(offset)
            return f.read(length)

        return mp4_boxes.complete_fragments_end(read, size)
