"""Audio packets -> the segment their time belongs to, whichever order they come in.

The worker cuts segments at video keyframes; audio packets of the same instant
do not come with the video.  The native client interleaves a receive batch's
audio and video by time (a batch holds half a second, more after a stall), an
AAC encoder holds a frame or two (:mod:`recorder.audio_transcode`), and FFmpeg's client may hand out audio
a little *before* the video of its time.  Written as it came, audio from
before a cut would land at the start of the next segment (stacked at 0 by the
muxer's monotonic timestamps) and audio after it in the segment before.

So, one session at a time, :class:`AudioRouter`:

* keeps a cut segment (the *tail*) open for the audio before its cut, until an
  audio packet passes the cut or the video is ``wait_s`` past it;
* holds audio at or past the latest video frame until the video reaches it (a
  keyframe may yet cut the segment before it), at most ``wait_s`` of audio;
* leaves out audio from before a *fresh* segment (the first of a session, or
  the first after footage was dropped): no picture of that time was recorded.

Every segment's audio then ends within one audio frame after its video and
the next segment's starts there: no gap, no overlap, no drift.
"""

from __future__ import annotations

import math
from collections import deque
from fractions import Fraction
from typing import Callable, Generic, Protocol, TypeVar

import av

from recorder.segmenter import SegmentWriter

#: how long (media time) a cut segment waits for its audio, and audio waits for its video
AUDIO_WAIT_S = 2.0


class OpenSegment(Protocol):
    writer: SegmentWriter
    fresh: bool  # nothing before it was recorded in this session


S = TypeVar("S", bound=OpenSegment)


class AudioRouter(Generic[S]):
    """One session's audio into its segments; ``current()`` is the open segment (None: none is),
    ``finish(s)`` closes and commits a cut one."""

    def __init__(self, video_tb: Fraction, audio_tb: Fraction, current: Callable[[], S | None],
                 finish: Callable[[S], None], wait_s: float = AUDIO_WAIT_S) -> None:
        v2a = video_tb / audio_tb
        self._num, self._den = v2a.numerator, v2a.denominator  # video ticks -> audio ticks, integer maths
        self._current, self._finish = current, finish
        self._wait_v, self._wait_a = int(wait_s / video_tb), int(wait_s / audio_tb)
        self._tail: S | None = None
        self._tail_end = self._tail_end_a = 0  # its cut in video and in audio ticks
        self._held: deque[av.Packet] = deque()
        self._video_a: int | None = None  # the latest video frame's time in audio ticks

    def cut(self, s: S, end_dts: int) -> None:
        """``s`` was cut at ``end_dts`` (video ticks): it takes the audio before that until it is finished."""
        self.finish_tail()
        self._tail, self._tail_end = s, end_dts
        self._tail_end_a = math.ceil(Fraction(end_dts * self._num, self._den))

    def video(self, dts: int) -> None:
        """The worker has handled a video frame at ``dts``: the audio held up to it goes out."""
        if self._tail is not None and dts - self._tail_end >= self._wait_v:
            self.finish_tail()  # its audio is later than the wait: it is finished without it
        v = self._video_a = (dts * self._num) // self._den
        held = self._held
        while held and held[0].dts < v:
            self._route(held.popleft())

    def audio(self, pkt: av.Packet) -> None:
        t = pkt.dts
        if t is None:
            return
        held = self._held
        if held or self._video_a is None or t >= self._video_a:
            held.append(pkt)
            if t - held[0].dts > self._wait_a:  # the video has stalled: do not hold audio for it
                self._route(held.popleft())
            return
        self._route(pkt)

    def drain(self, last: list[av.Packet]) -> None:
        """The session ended: what is held, then ``last`` (an encoder's final packets), to their segments."""
        self._held.extend(last)
        while self._held:
            self._route(self._held.popleft())

    def finish_tail(self) -> None:
        if self._tail is not None:
            t, self._tail = self._tail, None
            self._finish(t)

    def _route(self, pkt: av.Packet) -> None:
        t = pkt.dts
        if self._tail is not None:
            if t < self._tail_end_a:
                self._tail.writer.write_audio(pkt)
                return
            self.finish_tail()  # the audio has passed the cut: the tail is complete
        seg = self._current()
        if seg is not None and not (seg.fresh and t < seg.writer.a_base):
            seg.writer.write_audio(pkt)
