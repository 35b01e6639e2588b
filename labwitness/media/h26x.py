"""H.264 (ITU-T H.264) and H.265 (ITU-T H.265) NAL units: their types, the units of a
length-prefixed access unit, and the picture size an SPS declares.

What the recorder needs to cut and describe a stream it depacketizes (parameter sets,
keyframes, dimensions, reorder depth) and what retention needs to fingerprint a stored keyframe (its
VCL units), written once.  ``codec`` is ``"h264"`` or ``"hevc"`` throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from labwitness.media.bits import rbsp_bits

#: parameter-set NAL unit types, in the order a decoder wants them: SPS, PPS / VPS, SPS, PPS
PARAM_SET_TYPES = {"h264": (7, 8), "hevc": (32, 33, 34)}
SPS_TYPE = {"h264": 7, "hevc": 33}
#: H.264: a coded slice of an IDR picture, where decoding can start
H264_IDR = 5
#: H.265: the IRAP pictures (BLA, IDR, CRA), where decoding can start
HEVC_IRAP = range(16, 22)
#: VCL NAL unit types: the coded picture (SEI, parameter sets and filler excluded)
VCL_TYPES = {"h264": range(1, 6), "hevc": range(0, 32)}


def nal_type(codec: str, header_byte: int) -> int:
    """The NAL unit type in the first header byte of a NAL unit."""
    return (header_byte >> 1) & 0x3F if codec == "hevc" else header_byte & 0x1F


def length_size(codec: str, extradata: bytes | None) -> int:
    """Bytes of the length prefix before each NAL unit of a sample, from its
    ``avcC`` / ``hvcC`` (``lengthSizeMinusOne``); 4 when there is none."""
    if extradata:
        if codec == "h264" and len(extradata) > 4:
            return (extradata[4] & 3) + 1
        if codec == "hevc" and len(extradata) > 21:
            return (extradata[21] & 3) + 1
    return 4


def length_prefixed(data: bytes, prefix: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each NAL unit of one MP4 sample (``prefix``-byte lengths, each
    followed by its unit); stops at an empty or overrunning length."""
    pos, size = 0, len(data)
    while pos + prefix <= size:
        length = int.from_bytes(data[pos: pos + prefix], "big")
        pos += prefix
        if length <= 0 or pos + length > size:
            return
        yield pos, pos + length
        pos += length


@dataclass(frozen=True)
class SpsInfo:
    """What the recorder reads from a sequence parameter set."""

    width: int
    height: int
    #: frames that may precede a frame in decode order and follow it in presentation order
    #: (H.264 VUI ``max_num_reorder_frames``, H.265 ``sps_max_num_reorder_pics``); None when
    #: the SPS does not say (H.264 without a VUI bitstream restriction, not Baseline)
    reorder: int | None


def h264_dimensions(sps: bytes) -> tuple[int, int]:
    """(width, height) in pixels from an H.264 SPS NAL unit (ITU-T H.264 7.3.2.1.1)."""
    i = h264_sps(sps, dimensions_only=True)
    return i.width, i.height


def h265_dimensions(sps: bytes) -> tuple[int, int]:
    """(width, height) in pixels from an H.265 SPS NAL unit (ITU-T H.265 7.3.2.2)."""
    i = h265_sps(sps)
    return i.width, i.height


def sps_reorder(codec: str, sps: bytes) -> int | None:
    """The reorder depth an SPS declares (see :attr:`SpsInfo.reorder`); None when it does
    not say or cannot be read."""
    try:
        return (h265_sps if codec == "hevc" else h264_sps)(sps).reorder
    except (ValueError, IndexError):
        return None


def _skip_hrd(b) -> None:
    """H.264 hrd_parameters() (E.1.2)."""
    count = b.ue() + 1
    b.u(8)  # bit_rate_scale, cpb_size_scale
    for _ in range(count):
        b.ue()
        b.ue()
        b.u(1)
    b.u(20)  # four 5-bit delay lengths


def h264_sps(sps: bytes, dimensions_only: bool = False) -> SpsInfo:
    """Picture size and reorder depth of an H.264 SPS NAL unit (ITU-T H.264 7.3.2.1.1, E.1.1)."""
    b = rbsp_bits(sps, 1)
    profile = b.u(8)
    constraints = b.u(8)
    b.u(8)  # level
    b.ue()  # sps id
    chroma = 1
    separate = 0
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma = b.ue()
        if chroma == 3:
            separate = b.u(1)
        b.ue()
        b.ue()
        b.u(1)
        if b.u(1):  # scaling matrices present
            for i in range(12 if chroma == 3 else 8):
                if b.u(1):
                    last = nxt = 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + b.se() + 256) % 256
                        last = nxt or last
    b.ue()  # log2_max_frame_num
    poc = b.ue()
    if poc == 0:
        b.ue()
    elif poc == 1:
        b.u(1)
        b.se()
        b.se()
        for _ in range(b.ue()):
            b.se()
    b.ue()  # max refs
    b.u(1)
    w_mbs, h_units = b.ue() + 1, b.ue() + 1
    frame_mbs_only = b.u(1)
    if not frame_mbs_only:
        b.u(1)
    b.u(1)
    width, height = w_mbs * 16, (2 - frame_mbs_only) * h_units * 16
    if b.u(1):  # cropping
        l, r, t, bo = b.ue(), b.ue(), b.ue(), b.ue()
        if separate or chroma == 0:
            cx, cy = 1, 2 - frame_mbs_only
        else:
            cx, cy = (2 if chroma in (1, 2) else 1), (2 if chroma == 1 else 1) * (2 - frame_mbs_only)
        width -= cx * (l + r)
        height -= cy * (t + bo)
    # Baseline (and Constrained Baseline) has no B slices; intra-only profiles no inter prediction
    intra = profile == 44 or (profile in (100, 110, 122, 244) and constraints & 0x10)
    fallback = 0 if profile == 66 or intra else None
    if dimensions_only:
        return SpsInfo(width, height, fallback)
    try:
        reorder = _h264_vui_reorder(b)
    except ValueError:  # a truncated VUI: the size stands, the depth is not known
        reorder = None
    return SpsInfo(width, height, fallback if reorder is None else reorder)


def _h264_vui_reorder(b) -> int | None:
    """``max_num_reorder_frames`` of the VUI the reader is at (E.1.1); None when absent."""
    if not b.u(1):  # no VUI
        return None
    if b.u(1) and b.u(8) == 255:  # aspect ratio, extended SAR
        b.u(32)
    if b.u(1):  # overscan info
        b.u(1)
    if b.u(1):  # video signal type
        b.u(4)
        if b.u(1):
            b.u(24)
    if b.u(1):  # chroma location
        b.ue()
        b.ue()
    if b.u(1):  # timing info
        b.u(65)
    nal_hrd = b.u(1)
    if nal_hrd:
        _skip_hrd(b)
    vcl_hrd = b.u(1)
    if vcl_hrd:
        _skip_hrd(b)
    if nal_hrd or vcl_hrd:
        b.u(1)  # low_delay_hrd_flag
    b.u(1)  # pic_struct_present_flag
    if not b.u(1):  # no bitstream restriction
        return None
    b.u(1)
    for _ in range(4):
        b.ue()
    return b.ue()


def h265_sps(sps: bytes) -> SpsInfo:
    """Picture size and reorder depth of an H.265 SPS NAL unit (ITU-T H.265 7.3.2.2)."""
    b = rbsp_bits(sps, 2)
    b.u(4)
    max_sub = b.u(3)
    b.u(1)
    b.u(88)  # general profile space/tier/idc, compatibility and constraint flags
    b.u(8)  # general level
    present = [(b.u(1), b.u(1)) for _ in range(max_sub)]
    if max_sub > 0:
        for _ in range(max_sub, 8):
            b.u(2)
    for prof, lvl in present:
        if prof:
            b.u(88)
        if lvl:
            b.u(8)
    b.ue()  # sps id
    chroma = b.ue()
    if chroma == 3:
        b.u(1)
    width, height = b.ue(), b.ue()
    if b.u(1):  # conformance window
        l, r, t, bo = b.ue(), b.ue(), b.ue(), b.ue()
        width -= (2 if chroma in (1, 2) else 1) * (l + r)
        height -= (2 if chroma == 1 else 1) * (t + bo)
    reorder: int | None = None
    try:
        b.ue()  # bit depth luma
        b.ue()  # bit depth chroma
        b.ue()  # log2_max_pic_order_cnt_lsb_minus4
        for _ in range(0 if b.u(1) else max_sub, max_sub + 1):  # sub-layer ordering info
            b.ue()
            reorder = b.ue()  # the highest sub-layer's value holds for the whole stream
            b.ue()
    except ValueError:  # truncated after the size: the size stands
        reorder = None
    return SpsInfo(width, height, reorder)


def find_sps(codec: str, data: bytes) -> bytes | None:
    """The first SPS NAL unit in Annex B data (an access unit, FFmpeg's RTSP extradata) or in
    an ``avcC`` / ``hvcC`` record (an MP4 sample description); None when there is none."""
    want = SPS_TYPE[codec]
    if data[:1] == b"\x01":  # avcC / hvcC (ISO/IEC 14496-15)
        try:
            return _config_record_sps(codec, data, want)
        except IndexError:
            return None
    for nal in data.split(b"\x00\x00\x01"):
        if nal and nal_type(codec, nal[0]) == want:
            return nal.rstrip(b"\x00")  # trailing zeros belong to the next start code
    return None


def _config_record_sps(codec: str, d: bytes, want: int) -> bytes | None:
    if codec == "h264":
        pos = 6
        for _ in range(d[5] & 0x1F):
            n = int.from_bytes(d[pos:pos + 2], "big")
            if n:
                return d[pos + 2:pos + 2 + n]
            pos += 2 + n
        return None
    pos = 23
    for _ in range(d[22]):
        t, count = d[pos] & 0x3F, int.from_bytes(d[pos + 1:pos + 3], "big")
        pos += 3
        for _ in range(count):
            n = int.from_bytes(d[pos:pos + 2], "big")
            if t == want and n:
                return d[pos + 2:pos + 2 + n]
            pos += 2 + n
    return None
