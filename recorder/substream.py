"""One camera's sub stream: a keyframe every ``every_s`` seconds, with its wall time, into the sample spool.

The main stream is what is recorded (evidence); a camera's sub stream (ONVIF's
second, smaller profile) is only a cheaper picture of the same sensor, which the
content job judges instead of decoding a 1080p/4K main-stream keyframe
(docs/decisions.md, "sub-stream pictures").  :class:`SubStreamSampler`:

* ``run()`` reconnects with backoff (:class:`recorder.backoff.Backoff`) around
  ``run_once()`` (one RTSP session), until ``stop`` is set;
* it opens a session only while ``may_run()`` (the camera's main-stream worker is
  recording) and closes it as soon as that stops being true: a camera with few
  RTSP sessions gives its slot back to the main stream's reconnect first;
* it keeps no video but the first keyframe at or after each due time
  (``every_s`` apart), written as one Annex B access unit with its parameter sets
  (:mod:`labwitness.picture_samples`), at the keyframe's wall time on the
  session's timeline (:class:`recorder.timing.SessionTimeline`: the least-delayed
  packet anchors it), the same rule that times the main stream's segments;
* it decodes nothing (the content job does), so its cost is the RTSP client's
  on a low-rate stream;
* a sub stream that fails costs no footage and opens no gap: its periods are
  judged from the stored main stream's keyframes; the failure is logged once
  per kind and shown in :attr:`SamplerStatus.last_error`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable

from labwitness.clock import Clock, SystemClock
from labwitness.errors import StreamError
from labwitness.picture_samples import SampleSpool
from labwitness.url_secrets import redact_text
from recorder.backoff import Backoff
from recorder.inputs import StreamInput, open_input
from recorder.timing import SessionTimeline
from recorder.worker_config import NATIVE_DOUBTS

log = logging.getLogger(__name__)

#: a keyframe whose estimated wall time is this far from its arrival means the camera's
#: media clock jumped (or the session's anchor is wrong): the timeline is anchored anew
REANCHOR_S = 5.0


@dataclass
class SamplerStatus:
    state: str = "starting"  # starting | waiting (main not recording) | sampling | reconnecting | stopped
    last_sample_ms: int | None = None
    last_error: str = ""
    samples: int = 0
    sessions: int = 0


class SubStreamSampler:
    def __init__(self, camera_id: str, url: str, samples: SampleSpool, every_s: float, *,
                 clock: Clock | None = None, stop: threading.Event | None = None,
                 may_run: Callable[[], bool] = lambda: True, client: str = "native",
                 open_timeout_s: float = 10.0, read_timeout_s: float = 10.0, backoff_cap_s: float = 30.0) -> None:
        if not every_s > 0:
            raise ValueError("every_s must be > 0")
        self.camera_id = camera_id
        self.url = url
        self.samples = samples
        self.every_s = every_s
        self.clock = clock or SystemClock()
        self.stop = stop or threading.Event()
        self.may_run = may_run
        self.client = client
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.status = SamplerStatus()
        self._backoff = Backoff(initial_s=1.0, cap_s=backoff_cap_s)
        self._failing: str | None = None
        self._next_due: float | None = None  # wall seconds

    # -- the loop ----------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self.stop.is_set():
                if not self.may_run():
                    self.status.state = "waiting"
                    self.clock.sleep(1.0, self.stop)
                    continue
                before = self.status.samples
                try:
                    self.run_once()
                    reason, message = "stream_ended", "码流结束 / the sub stream ended"
                except StreamError as e:
                    reason, message = e.reason, str(e)
                except Exception as e:  # a sampler's bug must not end the thread, nor touch recording
                    reason, message = "sampler_error", f"{type(e).__name__}: {e}"
                    log.debug("camera %s: sub-stream sampler failure", self.camera_id, exc_info=True)
                if self.stop.is_set():
                    break
                if self.status.samples > before:
                    self._backoff.reset()
                self._failed(reason, redact_text(message))
                self.clock.sleep(self._backoff.next_delay(), self.stop)
        finally:
            self.status.state = "stopped"

    def _failed(self, reason: str, message: str) -> None:
        self.status.state = "reconnecting"
        if reason == "main_not_recording":
            return
        self.status.last_error = message
        if self._failing != reason:
            self._failing = reason
            log.warning("camera %s: sub stream unavailable (%s): %s; content health uses the recorded main stream "
                        "until it is back", self.camera_id, reason, message)

    # -- one session -------------------------------------------------------------
    def run_once(self, max_samples: int | None = None) -> None:
        """Sample one RTSP session until it ends (StreamError with the reason), ``stop``,
        ``may_run()`` turns false, or ``max_samples`` were written."""
        try:
            src = open_input(self.url, self.client, self.open_timeout_s, self.read_timeout_s)
        except StreamError as e:
            if self.client == "native" and e.reason in NATIVE_DOUBTS:
                self.client = "ffmpeg"  # an answer the native client did not understand: FFmpeg's may
            raise
        try:
            self._sample(src, max_samples)
        finally:
            try:
                src.close()
            except Exception:
                log.debug("camera %s: closing the sub stream failed", self.camera_id, exc_info=True)

    def _sample(self, src: StreamInput, max_samples: int | None) -> None:
        codec = src.video_codec
        tb = src.time_base
        self.status.sessions += 1
        timeline = SessionTimeline()
        origin: int | None = None
        written = 0
        for is_audio, pkt, dts, pts in src.packets():
            if is_audio:
                continue
            if self.stop.is_set():
                return
            arrival = self.clock.now().timestamp()
            if origin is None:
                origin = pts
            media_s = float((pts - origin) * tb)
            timeline.observe(media_s, arrival)
            if not pkt.is_keyframe or pkt.is_corrupt:
                continue
            if not self.may_run():
                raise StreamError("main_not_recording", "主码流未在录像 / the main stream is not recording")
            wall = timeline.estimate_start(media_s) or arrival
            if abs(arrival - wall) > REANCHOR_S:
                timeline = SessionTimeline()
                origin = pts
                timeline.observe(0.0, arrival)
                wall = arrival
            if self._next_due is not None and wall < self._next_due:
                continue
            data = _with_params(src, bytes(pkt))
            wall_ms = round(wall * 1000)
            self.samples.put(self.camera_id, wall_ms, codec, data)
            if self.status.samples % 32 == 0:
                self.samples.trim(self.camera_id)  # bounded: a content job that is not running loses only samples
            self._next_due = wall + self.every_s
            self.status.samples += 1
            self.status.last_sample_ms = wall_ms
            self.status.state = "sampling"
            if self._failing is not None:
                log.info("camera %s: sub stream sampled again", self.camera_id)
                self._failing = None
            written += 1
            if max_samples is not None and written >= max_samples:
                return
        raise StreamError("stream_ended", "码流结束 / the sub stream ended")


def _with_params(src: StreamInput, data: bytes) -> bytes:
    """The keyframe with the track's Annex B parameter sets in front, unless it carries them:
    a sample must decode alone.  (The native client puts them in front of every keyframe
    already; FFmpeg's keeps them in the stream's extradata when the SDP had them.)"""
    try:
        extra = bytes(getattr(src.video, "extradata", b"") or b"")
    except (AttributeError, TypeError, ValueError):  # a PyAV stream: the codec context has it
        extra = b""
    if not extra:
        ctx = getattr(src.video, "codec_context", None)
        extra = bytes(getattr(ctx, "extradata", b"") or b"")
    if not extra.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01")) or data.startswith(extra):
        return data
    return extra + data

