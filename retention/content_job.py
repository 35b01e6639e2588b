"""The content-health job: sample each camera's new footage, keep events, thumbnail, state.

Procedure per camera (``run_content_check``):

1. Load :class:`~index.models.CameraContentState` (sampling mark
   ``sampled_until_ms``, detector state, reference).  A camera never sampled
   starts ``initial_lookback_s`` before now, not at the beginning of six months.
2. Take the stored segments ending after the mark, oldest first (at most
   ``max_segments_per_camera`` per run).  For each: the next sample is due
   ``sample_seconds`` after the last one; a segment that ends before it is
   passed over without a single read.  Otherwise its pictures from the due
   time on, ``sample_seconds`` apart, are judged (:func:`retention.content.judge`)
   and folded into events (:func:`retention.content.fold`): the camera's
   sub-stream samples of those times where the recorder took any
   (:mod:`retention.picture_sources`), else the segment's keyframes read by byte
   range (:mod:`retention.keyframes`); each sample says its ``source``.  Decoding is what
   costs, so a keyframe is decoded only when its bitstream shows a change since
   the last decoded one (coded size, the quiet seconds before it, a bit-exact
   repeat: :func:`retention.content_state.decode_reason`), at least once a minute,
   and always the segment's last; the others take the verdict of the next
   decoded one if it is unchanged, and are decoded after all when it is not
   (:func:`_judge_segment`), so events start and end where decoding every
   keyframe would put them.
3. Events, detector state and the new mark are written in one transaction per
   segment, so an interrupted run resumes where it stopped; the latest sample
   becomes the camera's thumbnail (320 px JPEG) with the camera's last write;
   sub-stream samples the mark has passed are deleted.
4. A segment that cannot be read (storage down) stops that camera for this run
   with the mark before it (retried next run); one that cannot be decoded at
   all is reported and passed over.
5. Late footage: a segment indexed after the mark passed its time (uploaded
   late after a storage outage) is found by ``Segment.content_checked_ms``,
   which step 3 stamps on every segment taken in (sampled or passed over), in
   the same transaction.  Late segments are judged oldest first on a detector
   state of their own (the camera's sharpness baseline carried over, so they
   never disturb the live timeline), whose runs are closed at their last
   sample.  A camera's first run marks where checking begins
   (:func:`~retention.content_index.start_checking`); what was indexed before
   and ends earlier is out of scope.  So every segment is checked exactly once.

One :class:`~index.models.JobRun` row (``job='content'``) per run.

One job, the procedure above, which reads better whole: its steps share one camera's state,
marks and per-segment transaction; what each step calls lives in its own module (detectors,
decode gate, picture sources, keyframe reads, the index's content queries).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterator

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from index.models import Camera, JobRun, Segment
from index.queries import MAX_SEGMENT_MS, db_errors
from labwitness.clock import Clock, utc_ms
from labwitness.errors import JobRefusedError, StorageError
from labwitness.media.mp4 import ParseError
from labwitness.picture_samples import SampleSpool
from retention import content_index
from retention.byte_sources import StoreSource
from retention.content import EventUpdate, Finding, fold, judge
from retention.content_detect import ContentConfig, Reference, thumbnail_jpeg
from retention.content_state import Coded, DetectorState, decode_reason
from retention.keyframe_decode import Keyframe, KeyframeDecoder, luma
from retention.keyframes import SampleStats, sample_keyframes
from retention.picture_sources import media_at_s, on_wall_ms, segment_pictures
from retention.runs import exclusive
from storage.base import ObjectStore

log = logging.getLogger(__name__)

JOB = "content"
SUB_NOTE = " [子码流 / sub stream]"


@dataclass(frozen=True)
class ContentJobConfig:
    content: ContentConfig = field(default_factory=ContentConfig)
    initial_lookback_s: float = 3600.0
    max_segments_per_camera: int = 240


@dataclass
class CameraResult:
    camera_id: str
    segments: int = 0  # segments sampled
    skipped: int = 0  # segments passed over (no sample due in them)
    samples: int = 0  # pictures sampled (read)
    sub_samples: int = 0  # of which sub-stream samples (the rest: main-stream keyframes)
    decoded: int = 0  # of which decoded and judged
    inherited: int = 0  # of which took the next decoded one's verdict (nothing changed in the bitstream)
    undecodable_samples: int = 0
    reads: int = 0  # ranged reads from storage
    bytes_read: int = 0
    fallbacks: int = 0  # segments whose boxes did not parse (full demux)
    undecodable: int = 0
    events: list[dict] = field(default_factory=list)  # opened/extended/closed this run
    ongoing: list[str] = field(default_factory=list)
    sampled_until_ms: int = 0
    late: int = 0  # of the segments, those indexed after the mark had passed their time (step 5)
    error: str = ""


@dataclass
class ContentSummary:
    run_id: int | None
    status: str  # ok | warning | failed
    started_ms: int
    finished_ms: int
    cpu_s: float
    cameras: dict[str, CameraResult]
    message: str = ""  # why a refused run did not run

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["job"] = JOB
        d["totals"] = {k: sum(getattr(c, k) for c in self.cameras.values())
                       for k in ("segments", "late", "skipped", "samples", "sub_samples", "decoded", "inherited", "reads", "bytes_read",
                                 "fallbacks", "undecodable", "undecodable_samples")}
        return d


def _engine(ix) -> Engine:
    return getattr(ix, "engine", ix)


def _cameras(engine: Engine) -> list[str]:
    with db_errors(), Session(engine) as s:
        return list(s.exec(select(Camera.id).order_by(Camera.id)))


def _segments(engine: Engine, camera_id: str, after_ms: int, limit: int) -> list[Segment]:
    with db_errors(), Session(engine, expire_on_commit=False) as s:
        return list(s.exec(
            select(Segment).where(Segment.camera_id == camera_id, Segment.status == "stored", Segment.end_ms > after_ms,
                                  Segment.start_ms > after_ms - MAX_SEGMENT_MS,  # keeps it an index range scan
                                  Segment.content_checked_ms == None)  # noqa: E711
            .order_by(col(Segment.start_ms)).limit(limit)))


def _late_segments(engine: Engine, camera_id: str, mark_ms: int, limit: int) -> list[Segment]:
    """Segments the mark passed before they were indexed (ix_segment_content_unchecked)."""
    with db_errors(), Session(engine, expire_on_commit=False) as s:
        return list(s.exec(
            select(Segment).where(Segment.camera_id == camera_id, Segment.content_checked_ms == None,  # noqa: E711
                                  Segment.status == "stored", Segment.end_ms <= mark_ms)
            .order_by(col(Segment.start_ms)).limit(limit)))


@dataclass
class _Sources:  # where pictures come from: storage (main stream) and sub-stream samples, each with its decoder
    store: ObjectStore
    samples: SampleSpool | None = None
    decoder: KeyframeDecoder = field(default_factory=KeyframeDecoder)
    sub_decoder: KeyframeDecoder = field(default_factory=KeyframeDecoder)


def check_camera(engine: Engine, store: ObjectStore, camera_id: str, now_ms: int, cfg: ContentJobConfig,
                 decoder: KeyframeDecoder | None = None, samples: SampleSpool | None = None) -> CameraResult:
    """Sample one camera's footage since its mark, then its late footage (steps 1-5 of the module docstring)."""
    c = cfg.content
    src = _Sources(store, samples, decoder or KeyframeDecoder())
    res = CameraResult(camera_id)
    row = content_index.load_state(engine, camera_id)
    state = DetectorState.from_json(row.state)
    if row.sharpness_baseline is not None and state.baseline is None:
        state.baseline = row.sharpness_baseline
    reference = None
    if row.reference_jpeg:
        try:
            reference = Reference.from_jpeg(row.reference_jpeg, c)
        except ValueError:
            log.error("camera %s: approved reference is not a readable JPEG; moved camera not checked", camera_id)
    if not row.sampled_until_ms:
        content_index.start_checking(engine, row, int(now_ms - cfg.initial_lookback_s * 1000), now_ms)
    res.sampled_until_ms = row.sampled_until_ms
    last_frame = None
    segs = _segments(engine, camera_id, row.sampled_until_ms, cfg.max_segments_per_camera)
    for i, seg, updates, frame in _taken_in(src, segs, state, c, reference, res):
        last_frame = frame or last_frame
        res.events.extend(_event_dicts(updates))
        row.sampled_until_ms = max(row.sampled_until_ms or 0, seg.end_ms)
        row.last_segment_id = seg.id
        row.sharpness_baseline = state.baseline
        row.state = state.to_json()
        if last_frame is not None and (i == len(segs) - 1 or updates):
            _thumbnail(row, last_frame, c)
            last_frame = None
        content_index.save(engine, row, updates, checked=[seg.id], at_ms=now_ms)
        res.sampled_until_ms = row.sampled_until_ms
    if last_frame is not None:  # stopped early (storage error): keep the newest picture anyway
        _thumbnail(row, last_frame, c)
        content_index.save(engine, row, [])
    if samples is not None and row.sampled_until_ms:  # taken in, or in a gap with no footage
        samples.prune(camera_id, row.sampled_until_ms)
    res.ongoing = sorted(k for k, r in state.runs.items() if r.count >= c.need(k))
    if not res.error:
        _check_late(engine, src, row, state, now_ms, cfg, reference, res)
    return res


def _thumbnail(row, frame: tuple, c: ContentConfig) -> None:  # frame: (time, picture, source)
    row.last_sample_ms, row.last_sample_source = frame[0], frame[2]
    row.thumbnail_jpeg = thumbnail_jpeg(_bgr_small(frame[1], c.thumbnail_width), c)


def _check_late(engine: Engine, src: _Sources, row, live: DetectorState, now_ms: int, cfg: ContentJobConfig,
                reference: Reference | None, res: CameraResult) -> None:
    """Step 5: the segments indexed after the mark passed them, on a timeline of their own."""
    late = _late_segments(engine, row.camera_id, row.sampled_until_ms, cfg.max_segments_per_camera)
    if not late:
        return
    c = cfg.content
    own = DetectorState(baseline=live.baseline, baseline_n=live.baseline_n)
    for i, seg, updates, _ in _taken_in(src, late, own, c, reference, res):
        if i == len(late) - 1:  # nothing of this timeline carries over: its events end at its last sample
            updates += _close_runs(own, c)
        res.late += 1
        res.events.extend(_event_dicts(updates))
        content_index.save(engine, row, updates, checked=[seg.id], at_ms=now_ms)
    if res.error:  # stopped by storage: close what the saved part opened
        content_index.save(engine, row, _close_runs(own, c))


def _taken_in(src: _Sources, segs: list[Segment], state: DetectorState, c: ContentConfig, reference: Reference | None,
              res: CameraResult) -> Iterator[tuple[int, Segment, list[EventUpdate], tuple | None]]:
    """Each segment taken in (:func:`_take_in`), in order, with its position; a segment that
    cannot be read stops the walk with ``res.error`` set (step 4: retried next run)."""
    for i, seg in enumerate(segs):
        try:
            updates, frame = _take_in(src, seg, state, c, reference, res)
        except StorageError as e:
            _stopped(res, seg, e)
            return
        yield i, seg, updates, frame


def _take_in(src: _Sources, seg: Segment, state: DetectorState, c: ContentConfig, reference: Reference | None,
             res: CameraResult) -> tuple[list[EventUpdate], tuple | None]:
    """Sample and judge one segment (step 2): its event updates and its newest decoded
    (time, frame, source).  Raises :class:`StorageError` when storage cannot be read."""
    every_ms = round(c.sample_seconds * 1000)
    due_ms = seg.start_ms if state.frame_ms is None else max(seg.start_ms, state.frame_ms + every_ms)
    # the segment's wall span, which its session's next segment starts at the end of; start + media
    # duration left a seam of a ms or two (up to 30 ms a minute) where no segment judged a sample
    span_ms = seg.end_ms - seg.start_ms
    media_ms = seg.media_duration_ms or span_ms
    if due_ms >= seg.end_ms:
        res.skipped += 1
        return [], None

    def read_main() -> list[Keyframe]:
        obj = StoreSource(src.store, seg.key, seg.version_id, seg.size)
        stats = SampleStats()
        try:
            keyframes = sample_keyframes(obj, c.sample_seconds, media_at_s(due_ms - seg.start_ms, span_ms, media_ms),
                                         decoder=src.decoder, stats=stats, lazy=True)
        except (ParseError, ValueError, OSError) as e:  # not even a full demux decodes it
            log.error("camera %s: segment %s (%s) has no decodable keyframe: %s", res.camera_id, seg.id, seg.key, e)
            keyframes = []
            res.undecodable += 1
        for k in keyframes:  # on the segment's wall span, as its sub-stream samples are
            k.media_s = on_wall_ms(k.media_s, span_ms, media_ms) / 1000
        res.reads += obj.reads
        res.bytes_read += obj.bytes_read
        res.fallbacks += int(stats.fallback)
        return keyframes

    keyframes = segment_pictures(src.samples, res.camera_id, seg.start_ms, due_ms, seg.end_ms, every_ms,
                                 read_main, src.sub_decoder, state.frame_ms)
    res.segments += 1
    res.samples += len(keyframes)
    res.sub_samples += sum(k.source == "sub" for k in keyframes)
    changed: dict[tuple[str, int], EventUpdate] = {}
    for u in _judge_segment(state, seg.start_ms, keyframes, c, reference, res):
        changed[(u.kind, u.start_ms)] = u
    newest = next((k for k in reversed(keyframes) if k.decoded), None)
    frame = (seg.start_ms + round(newest.media_s * 1000), newest.frame, newest.source) if newest is not None else None
    return list(changed.values()), frame


def _close_runs(state: DetectorState, c: ContentConfig) -> list[EventUpdate]:
    """End every event of ``state`` at its last bad sample (no footage of this timeline follows)."""
    out = [EventUpdate(kind, run.start_ms, run.last_ms, False, run.detail[:2000])
           for kind, run in state.runs.items() if run.count >= c.need(kind)]
    state.runs.clear()
    return out


def _stopped(res: CameraResult, seg: Segment, e: StorageError) -> None:
    res.error = f"segment {seg.id} ({seg.key}): {e}"[:500]
    log.warning("camera %s: content sampling stopped at segment %s: %s", res.camera_id, seg.id, e)


def _event_dicts(updates: list[EventUpdate]) -> list[dict]:
    return [{"kind": u.kind, "start_ms": u.start_ms, "end_ms": u.end_ms, "ongoing": u.ongoing, "detail": u.detail}
            for u in updates]


def _judge_segment(state: DetectorState, start_ms: int, keyframes: list[Keyframe], c: ContentConfig,
                   reference: Reference | None, res: CameraResult) -> list[EventUpdate]:
    """Judge one segment's sampled keyframes, in order, into event updates.

    Decoding is what costs, so a keyframe whose bitstream shows no change since
    the last decoded one (:func:`retention.content_state.decode_reason`) is held back.
    The next decoded keyframe settles the held ones: same verdict -> they take it
    (nothing happened in between that decoding could have shown, short of a
    change the bitstream hides for less than ``decode_at_least_every_s``);
    another verdict -> the state goes back to before it and the held keyframes
    are decoded and judged one by one, so the change is placed at the sample
    where it happened.  The segment's last keyframe is always decoded: nothing
    stays held across segments (the state is saved per segment) and it is the
    thumbnail."""
    out: list[EventUpdate] = []
    held: list[tuple[int, Keyframe, Coded]] = []

    def decoded_gray(k: Keyframe):
        try:
            return luma(k.frame)
        except ParseError as e:
            res.undecodable_samples += 1
            log.warning("camera %s: keyframe at %.1f s does not decode: %s", res.camera_id, k.media_s, e)
            return None

    def judged(t_ms: int, gray, k: Keyframe):
        j = judge(state, t_ms, gray, c, reference)
        if k.source == "main":
            return j
        return replace(j, findings=tuple(replace(f, detail=f.detail + SUB_NOTE) for f in j.findings))

    def settle(t_ms: int, j, coded: Coded) -> None:
        res.decoded += 1
        out.extend(fold(state, [(t_ms, j.findings)], c))
        state.verdict, state.coded = {f.kind: f.detail for f in j.findings}, coded

    def decode_held() -> None:
        for tp, kp, cp in held:
            g = decoded_gray(kp)
            if g is not None:
                settle(tp, judged(tp, g, kp), cp)
        held.clear()

    for n, k in enumerate(keyframes):
        t_ms = start_ms + round(k.media_s * 1000)
        repeat = state.observe(k.coded_bytes, k.digest.hex() if k.digest else None, c)
        coded = Coded(k.coded_bytes, k.activity, repeat)
        why = "decoded" if k.decoded else decode_reason(state.coded, coded, len(held), c, state.jitter)
        if why is None and n < len(keyframes) - 1:
            held.append((t_ms, k, coded))
            continue
        gray = decoded_gray(k)
        if gray is None:
            decode_held()
            continue
        if not held:
            settle(t_ms, judged(t_ms, gray, k), coded)
            continue
        before, saved = state.verdict or {}, state.copy()
        j = judged(t_ms, gray, k)  # a look ahead: kept only if nothing changed
        if {f.kind for f in j.findings} == set(before):
            res.inherited += len(held)
            out.extend(fold(state, [(tp, tuple(Finding(kind, tp, detail) for kind, detail in before.items()))
                                    for tp, _, _ in held], c))
            held.clear()
            settle(t_ms, j, coded)
        else:
            state.restore(saved)
            decode_held()
            settle(t_ms, judged(t_ms, gray, k), coded)
    return out


def _bgr_small(frame, width: int):
    """Colour picture ``width`` wide straight from the decoder's YUV (swscale does both at once)."""
    h = max(2, round(frame.height * width / frame.width) // 2 * 2)
    return frame.reformat(width=width, height=h, format="bgr24").to_ndarray()


def _refused(job: str, e: JobRefusedError) -> ContentSummary:
    return ContentSummary(None, "refused", 0, 0, 0.0, {}, message=str(e))


@exclusive(JOB, engine_arg="index", refused=_refused)
def run_content_check(index, store: ObjectStore, clock: Clock, config: ContentConfig | ContentJobConfig | None = None, *,
                      camera_id: str | None = None, actor: str = "scheduler",
                      samples: SampleSpool | None = None) -> ContentSummary:
    """Run the content check over every registered camera (or one); record a JobRun.
    ``samples``: the recorder's sub-stream samples (None: main-stream keyframes only)."""
    cfg = config if isinstance(config, ContentJobConfig) else ContentJobConfig(content=config or ContentConfig())
    engine = _engine(index)
    started = utc_ms(clock.now())
    cpu0 = time.process_time()
    with db_errors(), Session(engine) as s:
        run = JobRun(job=JOB, started_ms=started, actor=actor)
        s.add(run)
        s.commit()
        run_id = run.id
    results: dict[str, CameraResult] = {}
    status = "failed"
    try:
        cams = [camera_id] if camera_id else _cameras(engine)
        decoder = KeyframeDecoder()
        for cam in cams:
            results[cam] = check_camera(engine, store, cam, utc_ms(clock.now()), cfg, decoder, samples)
        problem = any(r.error or r.undecodable or r.ongoing for r in results.values())
        status = "warning" if problem else "ok"
    finally:
        summary = ContentSummary(run_id, status, started, utc_ms(clock.now()), time.process_time() - cpu0, results)
        try:
            with db_errors(), Session(engine) as s:
                row = s.get(JobRun, run_id)
                row.status, row.finished_ms = status, summary.finished_ms
                d = summary.to_json()
                for r in d["cameras"].values():
                    r["events"] = r["events"][-50:]  # bounded row size
                row.summary = json.dumps(d, ensure_ascii=False, default=str)
                s.add(row)
                s.commit()
        except Exception:
            log.exception("content job run %s: could not record its end", run_id)
    return summary
