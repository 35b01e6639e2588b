"""What a camera worker is configured with and what it reports (:mod:`recorder.worker`).

Kept apart from the worker's loop so the loop stays one job: the settings one
camera is recorded with (:class:`RecorderConfig`), the status it shows
(:class:`WorkerStatus`) and the fixed limits both obey.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from labwitness.segment_limits import MAX_SEGMENT_MS, MAX_TARGET_FACTOR
from recorder.inputs import RTSP_CLIENTS

#: Hard cut in media seconds, whatever the configuration: the index finds no segment
#: longer than MAX_SEGMENT_MS (wall clock), and a segment's wall length may exceed its
#: media length by the timeline's drift allowance (500 ppm, recorder.timing): 0.1 % below.
HARD_CUT_S = MAX_SEGMENT_MS / 1000 * (1 - 1e-3)


@dataclass(frozen=True)
class RecorderConfig:
    segment_seconds: float = 60.0
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    backoff_cap_s: float = 10.0
    recorder_id: str = "recorder-1"
    #: a segment longer than this many targets is cut even without a keyframe
    max_segment_factor: float = MAX_TARGET_FACTOR
    #: how often a camera that refused connections is probed with a bare TCP connect
    probe_interval_s: float = 0.5
    #: RTSP client: "native" (recorder.rtsp_native) or "ffmpeg" (FFmpeg's, through PyAV)
    rtsp_client: str = "native"
    #: target length of the first segment a worker records (0: ``segment_seconds``); the demo
    #: shows stored footage seconds after it starts instead of a whole segment later
    first_segment_seconds: float = 0.0

    def __post_init__(self) -> None:
        if not self.segment_seconds > 0:
            raise ValueError(f"分段时长必须大于 0 / segment length must be > 0 seconds, got {self.segment_seconds}")
        if not 0 <= self.first_segment_seconds <= self.segment_seconds:
            raise ValueError(f"首段时长必须在 0 与分段时长之间 / first segment length must be 0..{self.segment_seconds:g} "
                             f"seconds, got {self.first_segment_seconds}")
        if self.rtsp_client not in RTSP_CLIENTS:
            raise ValueError(f"未知的 RTSP 客户端 / unknown RTSP client {self.rtsp_client!r}; use one of {', '.join(RTSP_CLIENTS)}")


@dataclass
class WorkerStatus:
    state: str = "starting"  # starting | recording | reconnecting | spool_full | stopped
    last_segment_at: datetime | None = None
    last_error: str = ""
    sessions: int = 0
    segments: int = 0
    frames: int = 0
    dropped_packets: int = 0
    #: camera clock minus the footage's index time (recorder.stream_clock), and when last measured
    stream_clock_offset_s: float | None = None
    stream_clock_at: datetime | None = None
    #: of dropped_packets: frames before a session's first keyframe (they cannot be decoded)
    before_keyframe: int = 0
    #: what an administrator should know that is no error (it resets sessions on a period), or ""
    notice: str = ""
    #: the camera's audio codec (FFmpeg's name, "" none) and what the segments carry of it
    #: ("aac": copied or transcoded; "": not recorded)
    audio_codec: str = ""
    audio_recorded: str = ""
    #: why the camera's audio is not recorded (中文 / English); "" when it is, or there is none
    audio_note: str = ""


#: session set-up failures that may be the native client's own limits rather than the
#: camera's (refused, timeout, auth_failed, not_found, unreachable are the camera's for both)
NATIVE_DOUBTS = frozenset({"stream_error", "not_rtsp", "decode_error", "no_video", "unsupported_codec"})
