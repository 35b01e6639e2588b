"""Decode timestamps for video frames that arrive in decode order with presentation times.

RTP carries one timestamp per frame, its presentation time (RFC 3550; RFC 6184 /
7798), and sends frames in decode order.  Without B-frames the two orders are
the same and dts = pts.  With B-frames a frame may be sent before frames it is
shown after, so the MP4 needs a separate, strictly increasing decode timestamp
(dts <= pts; pts - dts is the sample's composition offset).

The rule (FFmpeg's ``pts_buffer``, libavformat ``compute_pkt_fields``): with a
reorder depth ``D`` (at most ``D`` frames precede a frame in decode order and
follow it in presentation order), a frame's dts is the (D+1)-th largest pts of
the frames up to it.  For a stream that keeps to ``D`` that value is
<= the frame's own pts (at most ``D`` earlier frames are shown after it) and
grows strictly with every frame (each new frame is among the D+1 largest).
Before D+1 frames were seen, ``D`` virtual frames one frame duration apart just
before the first one stand in, so the first frame's dts is its pts - D frames.

Where ``D`` comes from:

* the SPS, where it says (H.264 VUI ``max_num_reorder_frames``, H.265
  ``sps_max_num_reorder_pics``, Baseline = 0: :func:`labwitness.media.h26x.sps_reorder`);
  frames are released at once;
* otherwise it is learned: every frame that has more larger-pts predecessors
  than the depth so far proves it deeper, and frames are held back
  ``LOOKAHEAD`` frames so that the proof arrives before their dts is given.
  A stream whose reordering outruns what was declared or learned (a camera
  lying in its SPS) grows the depth at once; the frames already given a dts
  cannot be changed, so a frame may then get dts > pts (counted in ``late``;
  the muxer shows it at its dts) and dts steps by one tick until it is back
  on the rule.  dts never goes backwards.

A presentation time far below every recent one (more than ``JUMP_FRAMES``
frame durations: deeper than any reordering) is not reordering but the
camera's clock going back (an encoder restart, FFmpeg re-basing its times):
from there on the times are shifted to go on one frame after the largest pts so
far (counted in ``jumps``), so that the order stays and no depth is learned
from it.  A jump forward needs nothing here (the worker cuts the segment).

Frames without a presentation time (FFmpeg's RTSP demuxer hands the first one
so) are placed by the frame duration: leading ones just before the smallest
pts of the frames that follow (the next in presentation order), later ones one
frame after the largest pts so far.

Pure code: no I/O, no PyAV; items are opaque (the packets).
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections import deque
from typing import Generic, TypeVar

#: deepest reordering believed (H.264 and H.265 allow at most 16 frames in the DPB)
MAX_DEPTH = 16
#: frames held back while the depth is learned: enough for 3 B-frames in a pyramid
LOOKAHEAD = 4
#: a pts this many frame durations below the largest so far is a clock going back, not reordering
JUMP_FRAMES = 2 * (MAX_DEPTH + 1)

T = TypeVar("T")


class DecodeTimes(Generic[T]):
    """Feed frames in decode order with :meth:`push`; take ``(item, dts, pts)`` back in the same order."""

    def __init__(self, frame_ticks: int, depth: int | None = None, lookahead: int = LOOKAHEAD) -> None:
        self.frame_ticks = max(1, frame_ticks)
        #: reorder depth in use (declared, or learned so far)
        self.depth = min(depth, MAX_DEPTH) if depth is not None else 0
        #: True while the depth is being learned (frames are held back)
        self.learning = depth is None
        self.lookahead = lookahead
        #: frames whose dts could not be kept <= pts (reordering deeper than declared)
        self.late = 0
        #: times the camera's clock went back (see the module docstring)
        self.jumps = 0
        self._shift = 0  # added to every pts since the last jump back
        self._held: deque[list] = deque()  # [item, pts or None], oldest first
        self._seen: list[int] = []  # the MAX_DEPTH+1 largest pts pushed, ascending
        self._given: list[int] = []  # the MAX_DEPTH+1 largest pts released (with the virtual ones), ascending
        self._max_pts: int | None = None
        self._last_dts: int | None = None
        self._leading = 0  # held frames at the front still without a pts

    def declare(self, depth: int | None) -> list[tuple[T, int, int]]:
        """The SPS says the depth (a parameter set seen after the first frames): stop learning."""
        if depth is None or not self.learning:
            return []
        self.learning = False
        self.depth = max(self.depth, min(depth, MAX_DEPTH))
        return self._release(final=False)

    def push(self, item: T, pts: int | None) -> list[tuple[T, int, int]]:
        """One frame, the next in decode order; returns the frames whose dts is now known."""
        if pts is None:
            if self._max_pts is None:
                self._held.append([item, None])
                self._leading += 1
                return []
            pts = self._max_pts + self.frame_ticks
        else:
            pts += self._shift
            if self._max_pts is not None and pts < self._max_pts - JUMP_FRAMES * self.frame_ticks:
                self.jumps += 1
                back = self._max_pts + self.frame_ticks - pts
                self._shift += back
                pts += back
        self._learn(pts)
        self._held.append([item, pts])
        return self._release(final=False)

    def flush(self) -> list[tuple[T, int, int]]:
        """End of stream: every held frame, with what is known."""
        return self._release(final=True)

    # -- internals ------------------------------------------------------------------
    def _learn(self, pts: int) -> None:
        seen = self._seen
        later = len(seen) - bisect_right(seen, pts)  # earlier frames shown after this one
        if later > self.depth:
            self.depth = min(later, MAX_DEPTH)
        insort(seen, pts)
        if len(seen) > MAX_DEPTH + 1:
            del seen[0]
        if self._max_pts is None or pts > self._max_pts:
            self._max_pts = pts

    def _release(self, final: bool) -> list[tuple[T, int, int]]:
        held = self._held
        if self._leading:
            known = len(held) - self._leading
            if not final and known < (self.lookahead if self.learning else self.depth) + 1:
                return []
            self._place_leading()
        keep = 0 if final or not self.learning else self.lookahead
        out = []
        while len(held) > keep:
            item, pts = held.popleft()
            out.append((item, self._dts(pts), pts))
        return out

    def _place_leading(self) -> None:
        """Leading frames without a pts: one frame duration apart, just before the next in presentation order."""
        held, n = self._held, self._leading
        real = [p for _, p in list(held)[n:]]
        if real:
            nxt = min(real)
        else:  # nothing ever had a pts: count from 0
            nxt = n * self.frame_ticks
        for i in range(n):
            held[i][1] = nxt - (n - i) * self.frame_ticks
        for i in range(n):  # first in decode order, and below every later pts: they prove no depth
            insort(self._seen, held[i][1])
        del self._seen[:max(0, len(self._seen) - MAX_DEPTH - 1)]
        self._leading = 0

    def _dts(self, pts: int) -> int:
        given = self._given
        if not given:
            ft = self.frame_ticks
            given.extend(pts - k * ft for k in range(MAX_DEPTH, 0, -1))
        insort(given, pts)
        if len(given) > MAX_DEPTH + 1:
            del given[0]
        dts = given[-(self.depth + 1)]
        last = self._last_dts
        if last is not None and dts <= last:
            dts = last + 1
        if dts > pts:
            self.late += 1
        self._last_dts = dts
        return dts
