"""What a camera's DESCRIBE answer offers: SDP media and their control URLs (RFC 4566, pure).

Only what the native RTSP client (:mod:`recorder.rtsp_native`) needs to choose
and set up its tracks: per ``m=`` line the payload type, ``rtpmap`` encoding,
clock rate and channels, ``fmtp`` parameters, ``control`` and ``framerate``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class SdpMedia:
    kind: str  # video | audio | ...
    payload_type: int
    encoding: str = ""  # upper case, e.g. H264, MPEG4-GENERIC
    clock_rate: int = 0
    channels: int = 1
    fmtp: dict[str, str] = field(default_factory=dict)
    control: str = ""
    framerate: float = 0.0


def parse_sdp(text: str) -> tuple[str, list[SdpMedia]]:
    """(session-level control, media) of an SDP description (RFC 4566)."""
    session_control = ""
    media: list[SdpMedia] = []
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "m":
            parts = value.split()
            if len(parts) >= 4:
                try:
                    pt = int(parts[3])
                except ValueError:
                    pt = -1
                media.append(SdpMedia(kind=parts[0], payload_type=pt))
            continue
        if kind != "a":
            continue
        name, _, arg = value.partition(":")
        cur = media[-1] if media else None
        if name == "control":
            if cur is None:
                session_control = arg.strip()
            else:
                cur.control = arg.strip()
        elif cur is None:
            continue
        elif name == "rtpmap":
            pt, _, enc = arg.partition(" ")
            if parse_int(pt) == cur.payload_type:
                bits = enc.strip().split("/")
                cur.encoding = bits[0].upper()
                cur.clock_rate = parse_int(bits[1]) if len(bits) > 1 else 0
                cur.channels = parse_int(bits[2]) if len(bits) > 2 else 1
        elif name == "fmtp":
            pt, _, params = arg.partition(" ")
            if parse_int(pt) == cur.payload_type:
                for item in params.split(";"):
                    k, sep, v = item.strip().partition("=")
                    if sep:
                        cur.fmtp[k.strip().lower()] = v.strip()
        elif name == "framerate":
            try:
                cur.framerate = float(arg)
            except ValueError:
                pass
    for m in media:  # static payload types carry no rtpmap
        if not m.encoding and m.payload_type in (0, 8):
            m.encoding, m.clock_rate = ("PCMU" if m.payload_type == 0 else "PCMA"), 8000
    return session_control, media


def parse_int(s: str) -> int:
    """A decimal number in SDP or an RTSP header; -1 when it is not one."""
    try:
        return int(s.strip())
    except ValueError:
        return -1


def control_url(base: str, control: str) -> str:
    """A track's control URL: absolute as given, else relative to the base (as FFmpeg joins it)."""
    if not control or control == "*":
        return base
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", control):
        return control
    return base.rstrip("/") + "/" + control.lstrip("/")
