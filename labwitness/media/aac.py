"""AAC headers: the AudioSpecificConfig a stream announces and the ADTS header of one raw frame.

An RTSP camera announces its AAC configuration in SDP (RFC 3640 ``config=``) and sends raw
frames; the recorder hands them to the segment muxer with ADTS headers.
"""

from __future__ import annotations

from labwitness.media.bits import Bits

#: samplingFrequencyIndex -> Hz (ISO/IEC 14496-3 1.6.3.4)
_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def aac_config(config_hex: str) -> tuple[bytes, int, int]:
    """(AudioSpecificConfig, sample rate, channels) from the SDP ``config=`` hex string."""
    asc = bytes.fromhex(config_hex)
    if len(asc) < 2:
        raise ValueError("AAC config too short")
    b = Bits(asc)
    aot = b.u(5)
    if aot == 31:
        aot = 32 + b.u(6)
    idx = b.u(4)
    rate = b.u(24) if idx == 15 else _RATES[idx] if idx < len(_RATES) else 0
    channels = b.u(4)
    return asc, rate, channels


def adts_header(asc: bytes, payload_len: int) -> bytes:
    """A 7-byte ADTS header for one raw AAC frame described by ``asc`` (profile/rate/channels)."""
    aot = asc[0] >> 3
    sfi = ((asc[0] & 7) << 1) | (asc[1] >> 7)
    ch = (asc[1] >> 3) & 15
    n = payload_len + 7
    return bytes((0xFF, 0xF1, ((max(aot, 1) - 1) << 6) | (sfi << 2) | (ch >> 2), ((ch & 3) << 6) | (n >> 11),
                  (n >> 3) & 0xFF, ((n & 7) << 5) | 0x1F, 0xFC))
