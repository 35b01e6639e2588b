"""Start-up recovery of a camera's spool after a crash (see spool.py, "recover").

For every segment that has bytes but no commit record: keep everything up to
its last complete fragment, probe it to learn what it holds, and commit it
like any other segment.  What is cut off (the fragment being built when the
process died) is reported in the log and, through the recorder_down gap that
the next run opens from ``last_end``, in the index.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import av

from recorder.spool import CameraSpool, complete_fragments_end
from storage.hashing import file_sha256
from storage.layout import SegmentMeta, parse_iso

log = logging.getLogger(__name__)


def _probe(path: Path) -> tuple[int, float, str, int, int, str]:
    """(video frames, media seconds, codec, width, height, audio codec) of a salvaged file."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0] if c.streams.audio else None
        frames, first, last = 0, None, None
        for pkt in c.demux(v):
            if pkt.dts is None:
                continue
            frames += 1
            first = pkt.dts if first is None else first
            last = pkt.dts + (pkt.duration or 0)
        media = float((last - first) * v.time_base) if frames else 0.0
        return frames, media, v.codec_context.name, v.codec_context.width, v.codec_context.height, (a.codec_context.name if a else "")


def recover(spool: CameraSpool) -> list[dict]:
    """Salvage every unfinished segment; returns one report per segment looked at."""
    return [salvage(spool, seq) for seq in spool.unfinished()]


def salvage(spool: CameraSpool, seq: int) -> dict:
    """Keep segment ``seq`` up to its last complete fragment and commit it."""
    part, mp4, _, open_rec = spool.paths(seq)
    path = part if part.exists() else mp4
    original = path.stat().st_size
    good = complete_fragments_end(path)
    if good == 0:
        log.error("spool %s: %s held no complete fragment (%d bytes); nothing to salvage", spool.camera_id, path.name, original)
        spool.discard_part(seq)
        return {"seq": seq, "salvaged": False, "lost_bytes": original}
    if good < original:
        with open(path, "r+b") as f:
            f.truncate(good)
            f.flush()
            os.fsync(f.fileno())
        spool.quota.release(original - good)
    try:
        frames, media_s, codec, w, h, acodec = _probe(path)
    except (av.error.FFmpegError, IndexError) as e:
        log.error("spool %s: salvaged %s is not playable (%s); keeping it for manual inspection", spool.camera_id, path.name, e)
        return {"seq": seq, "salvaged": False, "lost_bytes": 0, "error": str(e)}
    info = json.loads(open_rec.read_text()) if open_rec.exists() else {}
    if "start_estimate" in info:
        start = parse_iso(info["start_estimate"])
    else:  # no open record: the file's own mtime is the best we have
        start = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc) - timedelta(seconds=media_s)
    meta = SegmentMeta(
        camera_id=spool.camera_id, start=start, end=start + timedelta(seconds=media_s),
        media_duration_ms=round(media_s * 1000), codec=codec, width=w, height=h,
        sha256=file_sha256(path), size=good, recorder_id=info.get("recorder_id", ""),
        session_id=info.get("session_id", ""), sequence=seq, area_id=info.get("area_id", ""), epoch=int(info.get("epoch", 0)),
        audio_codec=acodec, frames=frames,
    )
    if path == mp4:
        os.replace(mp4, part)  # commit() expects the .part name
    spool.commit(seq, None, meta)
    log.warning("spool %s: recovered segment %d (%d frames, %.1f s); cut %d unfinished bytes",
                spool.camera_id, seq, frames, media_s, original - good)
    return {"seq": seq, "salvaged": True, "frames": frames, "lost_bytes": original - good}
