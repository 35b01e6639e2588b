"""What a spool holds that the index does not know yet, read from its files.

:class:`SpoolReader` implements :class:`index.tiling.SpoolView`: per camera, the
segments waiting to be stored and indexed (and the one being written), finished
gaps not indexed yet, and the open gap of an outage still going on — so that a
footage window can say "recorded, waiting for storage" or "camera offline since
…" instead of leaving the time unexplained.

Read-only: it never writes, never creates a directory and never takes the
recorder's lock, so the API and a CLI process beside the running service may
both use it.  Files released by the uploader while being read are skipped (the
footage is then in the index).  Layout and invariants: :mod:`recorder.spool`.
"""

from __future__ import annotations

import json
import logging
import os
from fnmatch import fnmatchcase
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

from index.tiling import OpenGap, Span, SpoolState
from labwitness.errors import LabwitnessError
from recorder.spool import FINISHED_GAP_GLOB, OPEN_GAP, OPEN_GLOB, RECORD_GLOB
from storage.layout import check_camera_id, parse_iso

log = logging.getLogger(__name__)

#: A segment file written to this recently is being recorded now: the muxer writes
#: a fragment a second, so its last write trails the present by up to about that.
LIVE_WRITE_MS = 5_000


def _ms(text: str) -> int:
    return round(parse_iso(text).timestamp() * 1000)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


class SpoolReader:
    def __init__(self, root: Path, now_ms: Callable[[], int] | None = None) -> None:
        self.root = Path(root)
        # file times are the host's wall clock, so "now" is too unless a test hands one in
        self.now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        # A commit record's segment times never change (the uploader rewrites only
        # its state), so each is parsed once: an outage can leave thousands.
        self._spans: dict[str, dict[str, Span]] = {}  # camera -> commit record name -> span

    def state(self, camera_ids: Sequence[str]) -> Mapping[str, SpoolState]:
        out = {}
        for cam in camera_ids:
            try:
                check_camera_id(cam)
            except (ValueError, LabwitnessError):
                continue  # no spool can have that name
            try:
                st = self._camera(cam)
            except (OSError, ValueError, KeyError, LabwitnessError) as e:
                # A spool we cannot read leaves its time unexplained ("unknown"), never a failed query.
                log.warning("spool of camera %s unreadable for the footage view: %s", cam, e)
                continue
            if st is not None:
                out[cam] = st
        return out

    def _camera(self, cam: str) -> SpoolState | None:
        d = self.root / cam
        # The open gap first: one that closes while the directory is listed then
        # shows up as its journaled gap file and the segment that ended it.
        og = _read(d / OPEN_GAP)
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return None
        pending: list[Span] = []
        gaps: list[tuple[int, int, str]] = []
        cached = self._spans.get(cam, {})
        spans: dict[str, Span] = {}  # replaces the cache: records released since are forgotten
        for name in names:
            if fnmatchcase(name, RECORD_GLOB):
                span = cached.get(name)
                if span is None:
                    rec = _read(d / name)
                    if rec is None:
                        continue  # released between the listing and the read: indexed by now
                    span = (_ms(rec["meta"]["start"]), _ms(rec["meta"]["end"]))
                spans[name] = span
                pending.append(span)
            elif fnmatchcase(name, OPEN_GLOB):
                # the segment being written: from its start estimate to its last write,
                # or to now while it is being written (a stale one, left by a killed
                # recorder and not recovered yet, ends at its last write)
                info = _read(d / name)
                try:
                    last_write = (d / name.replace(".open.json", ".mp4.part")).stat().st_mtime_ns // 1_000_000
                except FileNotFoundError:
                    continue
                now = self.now_ms()
                end = now if 0 <= now - last_write <= LIVE_WRITE_MS else last_write
                if info is not None and info.get("start_estimate"):
                    pending.append((_ms(info["start_estimate"]), end))
            elif fnmatchcase(name, FINISHED_GAP_GLOB):
                g = _read(d / name)
                if g is not None:
                    gaps.append((_ms(g["start"]), _ms(g["end"]), g["reason"]))
        self._spans[cam] = spans
        open_gap = OpenGap(_ms(og["start"]), og["reason"], og.get("detail", "")) if og else None
        return SpoolState(tuple(sorted(pending)), tuple(sorted(gaps)), open_gap)
