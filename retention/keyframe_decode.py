"""One keyframe, from its bytes to what the detectors look at: its coded picture's size and
digest, its decoded picture, and that picture's luma plane.

A keyframe is one IDR access unit (length-prefixed NAL units) located by
:mod:`retention.keyframe_locate`; :class:`KeyframeDecoder` decodes it alone with a
PyAV codec context opened with the track's ``avcC``/``hvcC`` as extradata.
:class:`Keyframe` holds what its bitstream says (cheap) and decodes its picture on
first use (what costs, see :mod:`retention.content_job`).
"""

from __future__ import annotations

import zlib
from typing import Callable

import av
import numpy as np

from labwitness.media.h26x import VCL_TYPES, length_prefixed, length_size, nal_type
from labwitness.media.mp4 import ParseError
from retention.keyframe_locate import MOOF_READ


class KeyframeDecoder:
    """Decodes single intra access units; one codec context per configuration."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        #: how many bytes to read from a fragment's start (learnt: moof + keyframe, see locate_keyframes)
        self.read_hint = MOOF_READ
        self._ctx: av.CodecContext | None = None
        self._key: tuple[str, bytes] | None = None

    def _context(self, codec: str, extradata: bytes | None) -> av.CodecContext:
        key = (codec, extradata or b"")
        if self._ctx is None or self._key != key:
            ctx = av.CodecContext.create(codec, "r")
            if extradata:
                ctx.extradata = extradata
            ctx.thread_count = self.threads
            ctx.thread_type = "SLICE"  # frame threads would delay output; slices don't
            self._ctx, self._key = ctx, key
        return self._ctx

    def decode(self, codec: str, extradata: bytes | None, data: bytes) -> av.VideoFrame:
        ctx = self._context(codec, extradata)
        try:
            frames = ctx.decode(av.Packet(data))
            if not frames:  # a decoder that holds pictures back for reordering: drain it
                frames = ctx.decode(None)
                self._ctx = None  # a drained context is not reused
        except av.error.FFmpegError as e:
            self._ctx = None
            raise ParseError(f"keyframe does not decode: {e}") from e
        if not frames:
            raise ParseError("keyframe decoded to no picture")
        return frames[0]


def luma(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane as a (height, width) uint8 array, without colour conversion
    (4:2:0 / 4:2:2 / 4:4:4 8-bit pixel formats; others go through swscale)."""
    if frame.format.name in ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "gray"):
        plane = frame.planes[0]
        arr = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        return arr[:, : frame.width]
    return frame.to_ndarray(format="gray")


def coded_picture(codec: str, extradata: bytes | None, data: bytes) -> tuple[int, bytes]:
    """(bytes, digest) of the coded picture in one access unit (length-prefixed NAL
    units, the length size from ``avcC``/``hvcC``), counting only VCL NAL units, so
    that a camera's SEI timestamps or CBR filler change neither."""
    vcl = VCL_TYPES.get(codec, range(0, 0))
    crc = 0  # CRC-32: four times cheaper than a cryptographic hash, and a collision only costs one more decode
    total = 0
    view = memoryview(data)
    for start, end in length_prefixed(data, length_size(codec, extradata)):
        if nal_type(codec, data[start]) in vcl:
            crc = zlib.crc32(view[start:end], crc)
            total += end - start
    return total, crc.to_bytes(4, "big")


class Keyframe:
    """One sampled keyframe: its time, what its bitstream says (:attr:`coded_bytes`,
    :attr:`digest`, :attr:`activity`) and its picture, decoded on first use of
    :attr:`frame` (raises :class:`ParseError` if it does not decode).  Reading a
    keyframe is cheap; decoding it is what costs (see :mod:`retention.content_job`)."""

    __slots__ = ("media_s", "_frame", "_decode", "coded_bytes", "digest", "activity", "source")

    def __init__(self, media_s: float, frame: av.VideoFrame | None = None, *,
                 decode: Callable[[], av.VideoFrame] | None = None, coded_bytes: int = 0, digest: bytes = b"",
                 activity: int | None = None, source: str = "main") -> None:
        if frame is None and decode is None:
            raise ValueError("a keyframe needs a frame or a way to decode one")
        self.media_s = media_s
        self._frame, self._decode = frame, decode
        self.coded_bytes, self.digest, self.activity = coded_bytes, digest, activity
        self.source = source  # "main": the stored main stream; "sub": a sub-stream sample (picture_samples)

    @property
    def decoded(self) -> bool:
        return self._frame is not None

    @property
    def frame(self) -> av.VideoFrame:
        if self._frame is None:
            self._frame = self._decode()
            self._decode = None
        return self._frame

    def __repr__(self) -> str:
        return f"Keyframe({self.media_s:.3f}s, {self.source}, {self.coded_bytes} B, decoded={self.decoded})"
