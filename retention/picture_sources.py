"""Which pictures one stored segment is judged from: sub-stream samples where there are
any, the stored main stream's keyframes where there are not.

A pipeline stage of the content job (:mod:`retention.content_job`, step 2).  The
recorder's sub-stream sampler (:mod:`recorder.substream`) spools a keyframe of the
camera's sub stream every few seconds with its wall time
(:mod:`labwitness.picture_samples`); judging a 640x360 picture costs a fraction of
decoding a 1080p/4K main-stream keyframe (figures in docs/decisions.md).  The main
stream stays the evidence: a sample is judged only inside the span of a stored
main-stream segment (from its next due time to its end), so events stay on
the footage's wall-clock timeline and a period with no footage is no content.

A segment's span is the index's ``[start_ms, end_ms)``: the wall clock the recorder
gave it (:mod:`recorder.timing`).  A session's segments tile it, each starting where
the last ended, so every instant of the footage, a sample's or a keyframe's, falls in
exactly one segment.  ``start_ms + media_duration_ms`` does not tile: the wall duration
is the media duration steered by up to 500 ppm and both ends are truncated to the ms,
so it leaves seams (and overlaps) of a ms or two, up to 30 ms on a 60 s segment, and a
sample in a seam was judged by no segment.  So the main stream's keyframes, timed by
media time, are put on the span too (:func:`on_wall_ms`), as the recorder stretched it.

:func:`segment_pictures` takes the samples in ``[due, end)``; where they
leave a hole longer than ``every + slack`` after the last picture judged (sub stream
down, sampler not running, samples trimmed), it reads the main stream's keyframes (the caller's
``read_main``, ranged reads) and fills the holes with them.  A hole is reckoned from
pictures judged only: a sample no segment judges (taken where no footage was kept, or
passed over before its picture was due) covers nothing.  Each
:class:`~retention.keyframe_decode.Keyframe` says where it came from
(``source``: ``"sub"`` or ``"main"``); its ``media_s`` is its instant's offset from the
segment's start on the wall clock.
"""

from __future__ import annotations

import logging
import zlib
from typing import Callable

from labwitness.picture_samples import Sample, SampleSpool
from retention.keyframe_decode import Keyframe, KeyframeDecoder

log = logging.getLogger(__name__)


def slack_ms(every_ms: int) -> int:
    """How much later than due a sample may come and still count: the sampler takes the
    first sub-stream keyframe at or after its due time (one GOP of the sub stream, often
    1-4 s) and its due grid is not the job's."""
    return max(4000, every_ms // 2)


def holes(last_ms: int | None, due_ms: int, end_ms: int, times: list[int], every_ms: int) -> list[tuple[int, int]]:
    """Intervals of ``[due_ms, end_ms)`` the sample ``times`` (sorted; samples just before and
    after the span count: a short segment needs no sample of its own when its neighbours' are
    within reach) leave uncovered (pure).  ``last_ms``: the last picture judged (None: none
    yet; the first is due at ``due_ms``)."""
    out = []
    reach = every_ms + slack_ms(every_ms)
    prev = last_ms if last_ms is not None else due_ms - every_ms
    for t in times:
        if t <= prev:
            continue
        if t - prev > reach:
            out.append((prev + 1, t))
        prev = t
        if prev >= end_ms:
            break
    if end_ms - prev > reach:
        out.append((prev + 1, end_ms))
    clipped = [(max(a, due_ms), min(b, end_ms)) for a, b in out]
    return [(a, b) for a, b in clipped if a < b]


def on_wall_ms(media_s: float, span_ms: int, media_ms: int) -> int:
    """Where a main-stream picture ``media_s`` into its segment falls on the segment's wall span
    (``span_ms`` = end - start, of ``media_ms`` of media): ms after its start, in ``[0, span_ms)``.
    The recorder spread the media over the span (steered by up to 500 ppm, :mod:`recorder.timing`),
    so media time is stretched the same way: ``start + media`` alone ran up to 30 ms past a 60 s
    segment's end, into the next one's span, out of its own holes, and ahead of the next
    segment's first picture.  Kept inside the span even for a picture shown after the last
    decode time (a composition offset): it is this segment's picture, judged with it."""
    t = media_s * 1000 if media_ms <= 0 or media_ms == span_ms else media_s * 1000 * span_ms / media_ms
    return max(0, min(round(t), span_ms - 1))


def media_at_s(offset_ms: int, span_ms: int, media_ms: int) -> float:
    """The media time of the instant ``offset_ms`` after a segment's start (:func:`on_wall_ms`
    reversed): a keyframe at or after it lands at or after that instant on the wall."""
    if media_ms <= 0 or span_ms <= 0 or media_ms == span_ms:
        return offset_ms / 1000
    return offset_ms * media_ms / span_ms / 1000


def sub_keyframe(s: Sample, seg_start_ms: int, decoder: KeyframeDecoder) -> Keyframe | None:
    try:
        data = s.read()
    except OSError as e:  # trimmed or pruned meanwhile: the main stream covers it
        log.debug("sample %s unreadable: %s", s.path, e)
        return None
    return Keyframe((s.wall_ms - seg_start_ms) / 1000, decode=lambda: decoder.decode(s.codec, None, data),
                    coded_bytes=len(data), digest=zlib.crc32(data).to_bytes(4, "big"), source="sub")


def segment_pictures(samples: SampleSpool | None, camera_id: str, seg_start_ms: int, due_ms: int, end_ms: int,
                     every_ms: int, read_main: Callable[[], list[Keyframe]], decoder: KeyframeDecoder,
                     last_ms: int | None = None) -> list[Keyframe]:
    """The pictures to judge in ``[due_ms, end_ms)`` of one segment, oldest first (module docstring).
    ``end_ms``: the segment's wall end, where the next segment of its session starts (not its
    start + media duration: that leaves seams no segment judges).  ``read_main`` is called only
    when the samples leave a hole; with no sample anywhere near the span its keyframes are all
    there is (today's path, exactly).  ``last_ms``: the last picture judged."""
    subs: list[Keyframe] = []
    near: list[int] = []  # sample times around the span too (holes)
    if samples is not None:
        last = None
        reach = every_ms + slack_ms(every_ms)
        # from the last picture judged, as holes() reckons: a segment starting more than ``every``
        # after the sub-stream sample judged last (at the live edge, before the next is taken) is
        # covered by it within reach; a window from due - every missed that sample, found nothing
        # near and read the whole segment from the main stream (so the thumbnail said "main")
        since = due_ms - every_ms if last_ms is None else min(last_ms, due_ms - every_ms)
        for s in samples.samples(camera_id, since, end_ms + reach):
            if s.wall_ms < due_ms:
                # past the last picture judged, no earlier segment judged it; this one judges from due
                # on: so no segment does.  Taken where no footage was kept, or passed over (one picture
                # per interval), it must not cover a hole.  Up to the last picture judged it adds
                # nothing to holes() and only says the sub stream is sampled here (not today's path).
                if last_ms is not None and s.wall_ms <= last_ms:
                    near.append(s.wall_ms)
                continue
            if s.wall_ms >= end_ms:
                # ahead of the span: the next segment judges it, or none where no footage follows.
                # Either way it cannot hide a hole: holes() stops at the first sample past the end,
                # which can only find the tail beyond reach of the next picture, never within it.
                near.append(s.wall_ms)
                continue
            if last is not None and s.wall_ms - last < every_ms // 2:
                continue  # a restarted sampler's extra sample: one picture per interval is enough
            k = sub_keyframe(s, seg_start_ms, decoder)
            if k is not None:
                subs.append(k)
                near.append(s.wall_ms)
                last = s.wall_ms
    if not near:
        return read_main()
    gaps = holes(last_ms, due_ms, end_ms, sorted(near), every_ms)
    if not gaps:
        return subs
    main = read_main()
    fill = [k for k in main if any(a <= seg_start_ms + round(k.media_s * 1000) < b for a, b in gaps)]
    return sorted(subs + fill, key=lambda k: k.media_s)
