"""Synthetic test clips: small MP4 files with known frame and keyframe counts.

The simulator serves these over RTSP (see :mod:`simulator.rtsp`)
so recorder tests can compare what they stored against exactly what was sent.

Frames are generated straight into YUV 4:2:0 planes with numpy (a moving bar,
plus the frame number drawn as 16 black/white blocks), so every frame differs and
the encoder cannot collapse the clip into skip frames, yet generation costs
almost nothing next to the (ultrafast) encode.

``corrupt_at`` scrambles the slice data of a few inter frames as they leave the
encoder, before muxing: the MP4 boxes, the NAL unit framing and the start of
each slice header stay intact, so demuxers, parsers and RTP payloaders still
see the same well-formed access units and only a decoder notices.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

Codec = Literal["h264", "hevc"]

_ENCODERS: dict[str, str] = {"h264": "libx264", "hevc": "libx265"}
# Size of the NAL unit header, which is left intact when corrupting.
_NAL_HEADER_BYTES: dict[str, int] = {"h264": 1, "hevc": 2}
_CORRUPT_PACKETS = 3
_KEEP_SLICE_HEADER_BYTES = 3
_AUDIO_RATE = 8000
_AUDIO_FRAME_SAMPLES = 1024  # AAC-LC frame size
_BIT_BLOCK = 16  # pixels per side of one frame-number block


@dataclass(frozen=True)
class ClipInfo:
    path: Path
    frames: int
    """Video packets written (one per frame)."""
    keyframes: int
    fps: int
    seconds: float
    codec: Codec
    has_audio: bool
    corrupted: tuple[int, ...] = ()
    """Indices of the video frames whose sample data was damaged."""


def make_clip(
    path: str | Path,
    *,
    seconds: float,
    fps: int = 25,
    width: int = 640,
    height: int = 360,
    codec: Codec = "h264",
    gop: int | None = None,
    bitrate: int | None = None,
    audio: bool = False,
    corrupt_at: float | None = None,
) -> ClipInfo:
    """Encode a synthetic clip to ``path`` (MP4) and describe what was written.

    ``gop`` is the keyframe interval in frames (default ``fps``: one IDR per
    second; GOPs are closed and there are no B-frames, like most IP cameras).
    ``bitrate`` is in bits per second; ``None`` leaves the encoder in its
    default constant-quality mode. ``audio`` adds a mono 8 kHz AAC tone track.
    ``corrupt_at`` (seconds) damages the first few non-key video frames at or
    after that time.
    """
    if codec not in _ENCODERS:
        raise ValueError(f"unsupported codec {codec!r}; use one of {sorted(_ENCODERS)}")
    if seconds <= 0 or fps <= 0:
        raise ValueError("seconds and fps must be positive")
    if width % 2 or height % 2:
        raise ValueError("width and height must be even for 4:2:0 video")
    gop = fps if gop is None else gop
    if gop <= 0:
        raise ValueError("gop must be positive")
    if corrupt_at is not None and not 0 <= corrupt_at < seconds:
        raise ValueError(f"corrupt_at={corrupt_at} is outside the clip (0..{seconds})")

    path = Path(path)
    total_frames = max(1, round(seconds * fps))
    corrupt_from = None if corrupt_at is None else int(corrupt_at * fps)

    frames = keyframes = 0
    corrupted: list[int] = []
    with av.open(str(path), mode="w", format="mp4") as container:
        video = _add_video_stream(container, codec, fps, width, height, gop, bitrate)
        sound = _add_audio_stream(container) if audio else None
        painter = _Painter(width, height)
        audio_samples_total = round(seconds * _AUDIO_RATE)
        audio_samples_done = 0

        def mux_video(packets: list[av.Packet]) -> None:
            nonlocal frames, keyframes
            for packet in packets:
                index = frames
                frames += 1
                if packet.is_keyframe:
                    keyframes += 1
                elif (
                    corrupt_from is not None
                    and index >= corrupt_from
                    and len(corrupted) < _CORRUPT_PACKETS
                ):
                    _corrupt_sample(packet, _NAL_HEADER_BYTES[codec])
                    corrupted.append(index)
                container.mux(packet)

        for i in range(total_frames):
            frame = av.VideoFrame.from_ndarray(painter.paint(i), format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            mux_video(video.encode(frame))
            if sound is not None:
                # Keep audio roughly level with video so the muxer interleaves
                # without buffering the whole track.
                audio_target = min(audio_samples_total, round((i + 1) * _AUDIO_RATE / fps))
                while audio_samples_done < audio_target:
                    n = min(_AUDIO_FRAME_SAMPLES, audio_samples_total - audio_samples_done)
                    container.mux(sound.encode(_tone(audio_samples_done, n)))
                    audio_samples_done += n
        mux_video(video.encode(None))
        if sound is not None:
            container.mux(sound.encode(None))

    return ClipInfo(
        path=path,
        frames=frames,
        keyframes=keyframes,
        fps=fps,
        seconds=total_frames / fps,
        codec=codec,
        has_audio=audio,
        corrupted=tuple(corrupted),
    )


def _add_video_stream(
    container: av.container.OutputContainer,
    codec: Codec,
    fps: int,
    width: int,
    height: int,
    gop: int,
    bitrate: int | None,
) -> av.VideoStream:
    gop_params = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0:open-gop=0"
    options = {"preset": "ultrafast", "tune": "zerolatency"}
    if codec == "h264":
        options["x264-params"] = gop_params
    else:
        # x265 prints a banner per encoder instance unless told otherwise.
        options["x265-params"] = f"{gop_params}:log-level=error"
    stream = container.add_stream(_ENCODERS[codec], rate=fps, options=options)
    stream.width = width
    stream.height = height
    stream.pix_fmt = "yuv420p"
    stream.codec_context.gop_size = gop
    stream.codec_context.max_b_frames = 0
    if bitrate is not None:
        stream.codec_context.bit_rate = bitrate
    return stream


def _add_audio_stream(container: av.container.OutputContainer) -> av.AudioStream:
    stream = container.add_stream("aac", rate=_AUDIO_RATE, layout="mono")
    stream.codec_context.bit_rate = 24_000
    return stream


def _tone(first_sample: int, count: int) -> av.AudioFrame:
    t = (np.arange(first_sample, first_sample + count, dtype=np.float32)) / _AUDIO_RATE
    samples = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
    frame.sample_rate = _AUDIO_RATE
    frame.pts = first_sample
    frame.time_base = Fraction(1, _AUDIO_RATE)
    return frame


class _Painter:
    """Draws frame ``i`` into one reusable yuv420p buffer (Y plane then U, V)."""

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self.buffer = np.empty((height * 3 // 2, width), dtype=np.uint8)
        # A static diagonal gradient gives the encoder some texture to code.
        ys, xs = np.mgrid[0:height, 0:width]
        self.background = (40 + (xs + ys) * 120 // (width + height)).astype(np.uint8)
        self.bar = max(8, width // 40)
        self.buffer[height:] = 128  # neutral chroma everywhere

    def paint(self, i: int) -> np.ndarray:
        luma = self.buffer[: self.height]
        luma[:] = self.background
        x = (i * 8) % max(1, self.width - self.bar)
        luma[:, x : x + self.bar] = 235
        b = _BIT_BLOCK
        for bit in range(min(16, self.width // b)):
            value = 235 if (i >> bit) & 1 else 16
            luma[0:b, bit * b : (bit + 1) * b] = value
        return self.buffer


def _corrupt_sample(packet: av.Packet, nal_header_bytes: int) -> None:
    """Scramble the slice data of every NAL unit in an encoded sample, in place.

    NAL boundaries survive: start codes / length prefixes, NAL headers and the
    first bytes of each slice header (first_mb_in_slice / first_slice_segment
    flag, slice type, PPS id) are kept, so parsers such as GStreamer's
    ``h264parse`` still find the same access units and the frame count is
    unchanged. The scrambled bytes are forced to >= 4 so they can never form a
    new Annex B start code (00 00 01) that would split a NAL unit.
    """
    data = np.frombuffer(memoryview(packet), dtype=np.uint8)
    raw = data.tobytes()
    for start, end in _nal_units(raw):
        first = start + nal_header_bytes + _KEEP_SLICE_HEADER_BYTES
        if first < end:
            region = data[first:end] ^ 0xA5
            region[region < 4] |= 0x80
            data[first:end] = region


def _nal_units(raw: bytes) -> list[tuple[int, int]]:
    """(start, end) of each NAL unit (header included, framing excluded).

    FFmpeg's libx264/libx265 wrappers emit Annex B byte streams; the MP4 muxer
    converts them to length-prefixed samples only when writing. Length-prefixed
    input is handled too, in case an encoder ever hands those out directly.
    """
    if raw.startswith(b"\x00\x00\x01") or raw.startswith(b"\x00\x00\x00\x01"):
        starts: list[int] = []
        found = raw.find(b"\x00\x00\x01")
        while found != -1:
            starts.append(found + 3)
            found = raw.find(b"\x00\x00\x01", found + 3)
        units = []
        for k, start in enumerate(starts):
            end = starts[k + 1] - 3 if k + 1 < len(starts) else len(raw)
            while end > start and raw[end - 1] == 0:  # next start code's leading zero
                end -= 1
            units.append((start, end))
        return units
    units = []
    pos = 0
    while pos + 4 <= len(raw):
        length = int.from_bytes(raw[pos : pos + 4], "big")
        units.append((pos + 4, min(pos + 4 + length, len(raw))))
        pos += 4 + length
    return units
