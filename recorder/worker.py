"""One camera: ``run()`` (reconnect with backoff) around ``run_once()`` (one RTSP session).

A session reads packets from an RTSP input (:mod:`recorder.inputs`: FFmpeg's
RTSP client through PyAV, or labwitness's own, over TCP with bounded open/read
timeouts), stream-copies them into fMP4 segments cut at the first keyframe
after the target length, and commits each segment to the spool.  A segment
starts with a keyframe: what a session gets before its first keyframe cannot
be decoded and is dropped, counted (``before_keyframe``); that time is inside
the opening gap, if any.  Every later packet received lands in exactly one
segment; every interruption becomes a gap whose
reason is the first cause (timeout, refused, auth_failed, not_rtsp, no_video,
unsupported_codec, stream_ended, decode_error, spool_full, recorder_down,
recorder_stopped).

Audio goes through :class:`recorder.audio_transcode.AudioStage` (AAC copied,
G.711 transcoded to AAC, other codecs not recorded: ``WorkerStatus.audio_note``
says so, logged once a camera) and :class:`recorder.audio_route.AudioRouter`,
which puts each audio packet in the segment its time belongs to (a cut segment
stays open a little for the audio before its cut).

Health is output, not liveness: ``last_segment_at`` and the gap journal say
whether this camera is really being recorded.  Each closed segment also dates
the camera's clock against its index time (``stream_clock_offset_s``, RTCP).

What a camera needs from the native client (UDP, certificate pins, a shorter
keep-alive) is learned in :mod:`recorder.camera_needs`; ``status.notice`` tells.

One job that reads better whole: a session's loop, its cuts and its commits
share the session's state (timeline, origin, open and cut segments, spool
room); split into modules they would hand all of it back and forth.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable
from urllib.parse import urlsplit

import av

from labwitness.clock import Clock, SystemClock
from labwitness.errors import SpoolError, StreamError, ValidationError
from labwitness.url_secrets import redact_text
from recorder.audio_route import AudioRouter
from recorder.audio_transcode import AudioStage, shown_codec
from recorder.backoff import Backoff
from recorder.inputs import StreamInput, check_rtsp_url, classify, open_input, redact
from recorder.metrics import RecorderMetrics
from recorder.recovery import salvage
from recorder.segmenter import SegmentWriter
from recorder.camera_needs import CameraNeeds
from recorder.spool import CameraSpool, Committed, HashingFile
from recorder.stream_clock import input_offset
from recorder.timing import SessionTimeline
from recorder.worker_config import HARD_CUT_S, NATIVE_DOUBTS, RecorderConfig, WorkerStatus
from storage.layout import SegmentMeta, iso_ms

log = logging.getLogger(__name__)

__all__ = ["CameraWorker", "RecorderConfig", "WorkerStatus", "check_rtsp_url", "classify", "redact"]


@dataclass
class _Open:
    seq: int
    out: HashingFile
    writer: SegmentWriter
    first_dts: int
    frames: int = 0
    #: nothing before it was recorded in this session (its start, or after dropping footage)
    fresh: bool = False
    #: set at the cut: its end (video ticks) and its wall (start, end)
    end_dts: int | None = None
    wall: tuple[float, float] | None = None


class CameraWorker:
    def __init__(self, camera_id: str, url: str, spool: CameraSpool, cfg: RecorderConfig, *,
                 clock: Clock | None = None, stop: threading.Event | None = None,
                 metrics: RecorderMetrics | None = None,
                 on_commit: Callable[[Committed], None] | None = None, area_id: str = "", epoch: int = 0) -> None:
        self.camera_id = camera_id
        # the camera lease's epoch this worker records under (docs/cluster.md); 0: no leases (one box)
        self.epoch = epoch
        spool.node_id, spool.epoch = cfg.recorder_id, epoch
        self.url = url
        self.spool = spool
        self.cfg = cfg
        # per camera: "native" falls back to "ffmpeg" for what only FFmpeg's client does
        # (nothing today but a camera whose session the native client cannot set up)
        self.rtsp_client = cfg.rtsp_client
        self.needs = CameraNeeds(camera_id, url, spool)
        self.clock = clock or SystemClock()
        self.stop = stop or threading.Event()
        self.metrics = metrics or RecorderMetrics()
        self.on_commit = on_commit or (lambda c: None)
        self.area_id = area_id
        self.status = WorkerStatus()
        self._backoff = Backoff(cap_s=cfg.backoff_cap_s)
        #: (reason, exception type) of the failure last logged; None while recording
        self._failing: tuple[str, str] | None = None
        #: the camera's audio as last logged (codec, recorded, note): logged again only when it changes
        self._audio_logged: tuple[str, str, str] | None = None
        #: segments this worker has cut; the first is cut at ``cfg.first_segment_seconds`` when set
        self._cuts = 0

    def stalled(self) -> bool:
        """Health by output: "recording" but no segment for longer than any segment may last."""
        last = self.status.last_segment_at
        if self.status.state != "recording" or last is None:
            return False
        limit = self.cfg.segment_seconds * self.cfg.max_segment_factor + self.cfg.read_timeout_s
        return (self.clock.now() - last).total_seconds() > limit

    def shown_state(self) -> str:
        """The state people see (API, web UI, health): ``stalled`` rather than a "recording" that produces nothing."""
        return "stalled" if self.stalled() else self.status.state

    # -- the loop ----------------------------------------------------------------
    def run(self) -> None:
        spool = self.spool
        last_end = spool.last_end
        if last_end is not None and spool.pending_open_gap() is None:
            reason = "recorder_stopped" if spool.clean_stop else "recorder_down"
            spool.open_gap(last_end, reason, "录像服务未运行 / the recorder was not running"
                           + ("" if spool.clean_stop else " (it stopped without a clean shutdown)"))
        spool.mark_running()
        try:
            while not self.stop.is_set():
                produced_before = self.status.segments
                unexpected: Exception | None = None
                try:
                    self.run_once()
                    reason, message = "stream_ended", "码流结束 / the camera ended the stream"
                except StreamError as e:
                    reason, message = e.reason, str(e)
                except Exception as e:  # an unknown failure must not end recording of this camera
                    reason, message, unexpected = "recorder_error", self._scrub(f"{type(e).__name__}: {e}"), e
                if self.stop.is_set():
                    break
                if self.status.segments > produced_before:
                    self._backoff.reset()
                self._interrupted(reason, message, unexpected)
                self._wait_to_retry(reason)
        finally:
            self.status.state = "stopped"
            self.metrics.camera_up.labels(self.camera_id).set(0)
            spool.mark_stopped()

    def _interrupted(self, reason: str, message: str, unexpected: Exception | None = None) -> None:
        self.status.state = "reconnecting"
        self.status.last_error = message
        self.metrics.camera_up.labels(self.camera_id).set(0)
        start = self.spool.last_end or self.clock.now()
        if self.spool.pending_open_gap() is None:
            self.metrics.gaps.labels(self.camera_id, reason).inc()
        self._log_failure(reason, message, unexpected)
        self.spool.open_gap(start, reason, message)  # retries failing alike are counted in the gap

    def _log_failure(self, reason: str, message: str, unexpected: Exception | None) -> None:
        """One line per change of state, not per retry: the first failure after recording,
        then only a failure of another kind.  An unexpected one is a bug in labwitness,
        not the camera: its traceback is logged with that one line."""
        kind = (reason, type(unexpected).__name__ if unexpected is not None else "")
        if kind == self._failing:
            log.debug("camera %s: retry failed again (%s): %s", self.camera_id, reason, message)
            return
        self._failing = kind
        if unexpected is None:
            log.warning("camera %s: recording interrupted (%s): %s", self.camera_id, reason, message)
        else:
            log.error("camera %s: unexpected recorder failure, retrying (%s): %s", self.camera_id, reason, message,
                      exc_info=unexpected)

    def _wait_to_retry(self, reason: str) -> None:
        delay = self._backoff.next_delay()
        deadline = self.clock.monotonic() + delay
        # A refused connection is cheap to re-check: probe the port and retry as
        # soon as it accepts, so a camera that comes back records again at once
        # even when the backoff has grown to its cap.
        while not self.stop.is_set():
            left = deadline - self.clock.monotonic()
            if left <= 0:
                return
            if reason in ("refused", "stream_ended", "timeout") and self._port_open():
                if reason == "refused" or self._backoff.failures <= 3:
                    return
            if self.clock.sleep(min(left, self.cfg.probe_interval_s), self.stop):
                return

    def _port_open(self) -> bool:
        p = urlsplit(self.url)
        try:
            with socket.create_connection((p.hostname, p.port or 554), timeout=0.3):
                return True
        except OSError:
            return False

    # -- one session ---------------------------------------------------------------
    def run_once(self) -> None:
        """Record one RTSP session until it ends; raise StreamError with the reason."""
        native = self.needs.native_options() if self.rtsp_client == "native" else {}
        try:
            src = open_input(self.url, self.rtsp_client, self.cfg.open_timeout_s, self.cfg.read_timeout_s,
                             on_loss=self._rtp_lost, **native)
        except StreamError as e:
            # (a URL failing labwitness's own check is no doubt about the client; nor is rtsps://:
            # FFmpeg checks no certificate, a broken handshake must not hand it the credentials)
            if (self.rtsp_client == "native" and e.reason in NATIVE_DOUBTS and not isinstance(e.__cause__, ValidationError)
                    and urlsplit(self.url).scheme == "rtsp"):
                # an answer the native client did not understand: FFmpeg's client may; the
                # next attempt (immediate) uses it, and the camera keeps it from then on
                self.rtsp_client = "ffmpeg"
                log.warning("camera %s: the native RTSP client could not open the session (%s: %s); "
                            "trying the FFmpeg RTSP client from now on", self.camera_id, e.reason, e)
            raise
        self.needs.opened(src)
        started, ended = self.clock.monotonic(), "stream_ended"
        try:
            self._record(src)
        except StreamError as e:
            ended = e.reason
            raise
        except BaseException:
            ended = "error"  # (not the camera's end: breaks a run of periodic resets)
            raise
        finally:
            try:
                src.close()
            except Exception:
                log.debug("close of %s failed", redact(self.url), exc_info=True)
            if not self.stop.is_set():
                notice = self.needs.session_ended(self.clock.monotonic() - started, ended, self.rtsp_client)
                self.status.notice = notice or self.status.notice  # (said once, then kept)

    def _record(self, src: StreamInput) -> None:
        vcodec = src.video_codec
        tb = src.time_base
        tb_num, tb_den = tb.numerator, tb.denominator  # per frame: int arithmetic, exactly float(x * tb)
        frame_ticks = src.frame_ticks
        target_ticks = int(self.cfg.segment_seconds / tb)
        first_ticks = int((self.cfg.first_segment_seconds or self.cfg.segment_seconds) / tb)
        max_ticks = int(min(self.cfg.segment_seconds * self.cfg.max_segment_factor, HARD_CUT_S) / tb)
        session_id = uuid.uuid4().hex
        self.status.sessions += 1
        timeline = SessionTimeline()
        origin: int | None = None
        last_dts: int | None = None
        unkeyed: list[int] = [0, 0]  # frames dropped before this session's first keyframe, first one's dts
        seg: _Open | None = None
        dropping_since: datetime | None = None
        est_bytes = 512 * 1024  # room wanted before a segment opens; grows to 2x the largest seen
        audio = AudioStage.open(src.audio_codec, src.audio)
        self._note_audio(audio)

        def cut(end_dts: int) -> _Open:
            """End the open segment's media at ``end_dts``; its file stays open (see ``finish``)."""
            nonlocal seg
            assert seg is not None and origin is not None
            s, seg = seg, None
            self._cuts += 1
            # a camera's clock jumping ahead must not stretch the segment past the cut: its
            # content ends before the packet that jumped, which opens the next segment
            s.end_dts = end_dts = min(end_dts, s.first_dts + max_ticks)
            s.wall = timeline.close_segment(float((s.first_dts - origin) * tb), float((end_dts - origin) * tb))
            return s

        def close(end_dts: int) -> None:
            if router is not None:
                router.finish_tail()
            finish(cut(end_dts))

        def finish(s: _Open) -> None:
            """Close a cut segment's file and commit it (or salvage what reached the disk)."""
            nonlocal est_bytes
            assert s.end_dts is not None and s.wall is not None
            end_dts = s.end_dts
            failure: BaseException | None = None
            try:
                s.writer.close()
            except (SpoolError, OSError, av.error.FFmpegError) as e:
                failure = e
            # FFmpeg does not always report a failed write when it closes, so
            # the writer's own record of a refused write is checked too.
            failure = failure or s.out.failed
            if failure is not None:
                # The spool filled (or the disk failed) while writing: keep what
                # reached the disk, up to the last complete fragment, and commit that.
                log.error("camera %s: writing segment %d failed (%s); salvaging its complete fragments",
                          self.camera_id, s.seq, failure)
                s.out.close()
                report = salvage(self.spool, s.seq)
                if report.get("salvaged"):
                    for c in self.spool.committed():
                        if c.seq == s.seq:
                            self.status.segments += 1
                            self.on_commit(c)
                return
            start_w, end_w = s.wall
            if (offset := input_offset(src, s.first_dts, end_dts, start_w, end_w)) is not None:
                self.status.stream_clock_offset_s, self.status.stream_clock_at = round(offset, 3), self.clock.now()
            start = datetime.fromtimestamp(start_w, timezone.utc)
            end = datetime.fromtimestamp(end_w, timezone.utc)
            meta = SegmentMeta(
                camera_id=self.camera_id, start=start, end=end,
                media_duration_ms=round(float((end_dts - s.first_dts) * tb) * 1000),
                codec=vcodec, width=src.width, height=src.height,
                sha256=s.out.sha.hexdigest(), size=s.out.size, recorder_id=self.cfg.recorder_id,
                session_id=session_id, sequence=s.seq, area_id=self.area_id,
                audio_codec=audio.recorded, frames=s.writer.stats.frames, epoch=self.epoch,
            )
            committed = self.spool.commit(s.seq, s.out, meta)
            est_bytes = max(est_bytes, s.out.size * 2)
            self.spool.close_gap(start)  # no-op unless an interruption is open
            self.status.segments += 1
            self.status.last_segment_at = self.clock.now()
            self.metrics.segments.labels(self.camera_id).inc()
            self.on_commit(committed)

        def open_segment(first_dts: int, arrival: float) -> bool:
            nonlocal seg, dropping_since, timeline
            fresh = origin == first_dts or dropping_since is not None
            if not self.spool.quota.has_room(est_bytes):
                if dropping_since is None:
                    dropping_since = datetime.fromtimestamp(
                        timeline.estimate_start(float((first_dts - origin) * tb)) or arrival, timezone.utc)
                    self._spool_full(dropping_since)
                return False
            if dropping_since is not None:
                # footage was dropped: the next run is a new timeline, re-anchored
                timeline = SessionTimeline()
                dropping_since = None
                self.metrics.spool_full.labels(self.camera_id).set(0)
            seq = self.spool.next_seq()
            est = timeline.estimate_start(float((first_dts - origin) * tb))
            out = self.spool.open_segment(seq, {
                "camera_id": self.camera_id, "session_id": session_id, "sequence": seq,
                "start_estimate": iso_ms(datetime.fromtimestamp(est or arrival, timezone.utc)),
                "recorder_id": self.cfg.recorder_id, "area_id": self.area_id, "epoch": self.epoch,
            })
            seg = _Open(seq, out, SegmentWriter(out, src.video, audio.track, first_dts), first_dts,
                        fresh=fresh)
            return True

        def handle_video(pkt: av.Packet, dts: int, pts: int, arrival: float) -> None:
            nonlocal origin, last_dts
            if origin is None:
                if not pkt.is_keyframe:
                    # joined mid-GOP: undecodable.  An open gap ends where the first segment starts,
                    # so it covers this time; a camera's first session gets no gap for it, a log line
                    unkeyed[1] = dts if not unkeyed[0] else unkeyed[1]
                    unkeyed[0] += 1
                    return self._dropped(1, "before_keyframe")
                origin = dts
                if unkeyed[0]:
                    log.info("camera %s: %d frames (%.2f s) before the first keyframe could not be decoded and "
                             "were not recorded", self.camera_id, unkeyed[0], float((dts - unkeyed[1]) * tb))
            if last_dts is not None and dts <= last_dts:
                dts = last_dts + 1  # non-monotonic camera timestamps: keep order, never drop
            last_dts = dts
            if seg is not None:
                span = dts - seg.first_dts
                if (pkt.is_keyframe and span >= (target_ticks if self._cuts else first_ticks)) or span >= max_ticks:
                    if router is None:
                        close(dts)
                    else:  # the audio before the cut is still to come: keep the file open for it
                        cut_seg = cut(dts)
                        router.cut(cut_seg, cut_seg.end_dts)
            if seg is None:
                # after dropping for a full spool, recording resumes only at a keyframe
                resumable = dropping_since is None or pkt.is_keyframe
                if not (resumable and open_segment(dts, arrival)):
                    self._dropped(1)
                    return
            # the wall clock is anchored on presentation times: a frame is sent after it is
            # captured (with B-frames a frame's dts is earlier than its capture)
            timeline.observe((max(pts, dts) - origin) * tb_num / tb_den, arrival)  # = float(… * tb), no Fraction
            seg.writer.write_video(pkt, dts, pts)
            self.status.frames += 1
            if self.status.state != "recording" and self.status.segments > 0:
                self.status.state = "recording"
                self.metrics.camera_up.labels(self.camera_id).set(1)
                if self._failing is not None:
                    log.info("camera %s: recording again", self.camera_id)
                    self._failing = None

        router: AudioRouter[_Open] | None = None
        if audio.time_base is not None:
            router = AudioRouter(tb, audio.time_base, lambda: seg, finish)
        try:
            for is_audio, pkt, dts, pts in src.packets():
                if self.stop.is_set():
                    break
                if is_audio:
                    if router is not None:
                        for a in audio.convert(pkt):
                            router.audio(a)
                    continue
                handle_video(pkt, dts, pts, self.clock.now().timestamp())
                if router is not None and last_dts is not None:  # (None: no keyframe yet, nothing kept)
                    router.video(last_dts)
        except SpoolError as e:
            if router is not None:
                router.finish_tail()
            if seg is not None and last_dts is not None:
                close(last_dts + frame_ticks)  # salvages what reached the disk
            self._spool_full(self.spool.last_end or self.clock.now(), str(e))
            raise StreamError("spool_full", f"本地缓存已满 / local spool full: {e}") from e
        except (av.error.FFmpegError, OSError) as e:  # the muxer or the spool file failed
            reason, message = classify(e)
            raise StreamError(reason, self._scrub(message)) from e
        finally:
            try:
                if router is not None:
                    try:  # the session ended, however: what the audio encoder and the router still hold
                        router.drain(audio.flush())
                    except (SpoolError, OSError, av.error.FFmpegError) as e:
                        log.warning("camera %s: the last audio of the session was not written: %s", self.camera_id, e)
                    router.finish_tail()
                if seg is not None and last_dts is not None:
                    close(last_dts + frame_ticks)
            finally:
                audio.close()
                self.metrics.camera_up.labels(self.camera_id).set(0)
        if self.stop.is_set():
            return
        if self.status.segments == 0 and last_dts is None:
            raise StreamError("stream_ended", f"码流没有可解码的视频 / the stream ended before any decodable video arrived "
                                              f"({unkeyed[0]} frames before a keyframe)")

    def _note_audio(self, audio: AudioStage) -> None:
        """The camera's audio in its status; logged when it changes, not at every reconnect."""
        st = self.status
        st.audio_codec, st.audio_recorded, st.audio_note = audio.codec, audio.recorded, audio.note
        seen = (audio.codec, audio.recorded, audio.note)
        if seen == self._audio_logged:
            return
        self._audio_logged = seen
        if audio.note:
            log.warning("camera %s: %s", self.camera_id, audio.note)
        elif audio.recorded and audio.recorded != audio.codec:
            log.info("camera %s: audio %s is recorded as %s", self.camera_id, shown_codec(audio.codec),
                     shown_codec(audio.recorded))

    def _scrub(self, text: str) -> str:
        """FFmpeg quotes the URL in its errors (in other spellings too): never let a password through."""
        return redact_text(text.replace(self.url, redact(self.url)))

    def _spool_full(self, since: datetime, detail: str = "") -> None:
        msg = ("本地缓存空间不足，停止录制新画面，直到上传腾出空间 / local spool is full: new footage is NOT being "
               f"recorded until uploads free space (camera {self.camera_id}) {detail}")
        log.error(msg)
        self.status.state = "spool_full"
        self.metrics.spool_full.labels(self.camera_id).set(1)
        self.spool.open_gap(since, "spool_full", msg)

    def _dropped(self, n: int, reason: str = "spool_full") -> None:
        self.status.dropped_packets += n
        self.status.before_keyframe += n if reason == "before_keyframe" else 0
        self.metrics.dropped_packets.labels(self.camera_id, reason).inc(n)

    def _rtp_lost(self, n: int) -> None:
        """RTP packets the camera sent that never arrived (native client): footage lost, counted."""
        self.status.dropped_packets += n
        self.metrics.dropped_packets.labels(self.camera_id, "rtp_loss").inc(n)
