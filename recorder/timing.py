"""Wall-clock timeline of one RTSP session (after Moonfire NVR ``design/time.md``).

* The session's origin (the wall time of media time 0) is anchored on the
  least-delayed packet: every packet gives a candidate ``arrival - media_time``
  and network/buffering delay can only make a candidate *later*, so the
  minimum over the first segment is the best estimate.
* Later segments of the same session start exactly where the previous one
  ended, so a session's segments tile time with no gaps and no overlaps.
* A later segment's wall duration is its media duration, steered towards the
  host clock's estimate but by at most ``max_ppm`` (default ±500 ppm), which
  absorbs camera clock drift without letting network jitter stretch segments.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SessionTimeline:
    max_ppm: float = 500.0
    _seg_min: float = field(default=float("inf"), init=False)
    _prev_end: float | None = field(default=None, init=False)

    def observe(self, media_s: float, arrival_s: float) -> None:
        """A packet with media time ``media_s`` (from session start) arrived at ``arrival_s``."""
        cand = arrival_s - media_s
        if cand < self._seg_min:
            self._seg_min = cand

    @property
    def anchored(self) -> bool:
        return self._prev_end is not None or self._seg_min != float("inf")

    def close_segment(self, media_start_s: float, media_end_s: float) -> tuple[float, float]:
        """Wall (start, end) in epoch seconds of the segment spanning the media interval."""
        if media_end_s < media_start_s:
            raise ValueError("segment ends before it starts")
        if self._seg_min == float("inf"):
            raise ValueError("no packet observed in this segment")
        media = media_end_s - media_start_s
        if self._prev_end is None:
            start = self._seg_min + media_start_s
            end = start + media
        else:
            start = self._prev_end
            local_end = self._seg_min + media_end_s
            lo, hi = start + media * (1 - self.max_ppm * 1e-6), start + media * (1 + self.max_ppm * 1e-6)
            end = min(max(local_end, lo), hi)
        self._prev_end = end
        self._seg_min = float("inf")
        return start, end

    def estimate_start(self, media_s: float) -> float | None:
        """Best current estimate of the wall time of ``media_s`` (for open segments)."""
        if self._prev_end is not None and self._seg_min == float("inf"):
            return self._prev_end
        if self._seg_min == float("inf"):
            return None
        return self._seg_min + media_s
