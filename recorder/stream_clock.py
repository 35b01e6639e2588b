"""The camera's clock as its stream tells it: RTCP sender reports against the footage's index time.

Owns :func:`segment_offset` (pure) and :func:`input_offset` (the same for a
closed segment of a recorder input, from its latest video report).  A sender report (RFC 3550 §6.4.1) pairs an
RTP timestamp with the camera's wall clock (NTP format) at that instant; the
recorder's timeline (:mod:`recorder.timing`) gives the same RTP time a wall time
on the *host's* clock — the time the footage is indexed under.  Their difference,
camera minus host, is what a viewer sees between the camera's burned-in OSD
time (drawn from the same camera clock) and the player's time for that frame.

Unlike the ONVIF reading (``camera_discovery.onvif_client.read_clock``), this
needs no credentials and no extra connection, is measured on every segment,
and includes the network delay of the footage itself (tens of milliseconds on
a LAN): it is the offset *of the footage*, not of a SOAP answer.  Cameras that
send no sender reports, or a zero NTP time (no clock set), give none.
"""

from __future__ import annotations

from typing import NamedTuple

#: seconds from the NTP epoch (1900) to the Unix epoch (1970)
NTP_UNIX_DELTA = 2_208_988_800
#: a report whose RTP time lies further than this outside the segment is not used:
#: it predates a timestamp discontinuity, or the camera sent nonsense
MAX_DISTANCE_S = 120.0


class Report(NamedTuple):
    """A sender report's two clocks (``recorder.rtcp.SenderReport`` has these fields)."""

    ntp: float  # seconds since 1900
    rtp: int  # 32-bit RTP timestamp


def extend(rtp32: int, near: int) -> int:
    """The 64-bit (unwrapped) RTP time nearest ``near`` whose low 32 bits are ``rtp32``."""
    delta = ((rtp32 - near + 2**31) & 0xFFFFFFFF) - 2**31
    return near + delta


def segment_offset(report: Report, first_ts: int, end_ts: int, start_wall: float, end_wall: float,
                   clock_rate: float, *, max_distance_s: float = MAX_DISTANCE_S) -> float | None:
    """Camera clock minus index time (seconds) from one sender report and one closed segment.

    The segment spans unwrapped RTP times ``first_ts``..``end_ts`` of the stream
    (``clock_rate`` Hz) and was indexed at ``start_wall``..``end_wall`` (host epoch
    seconds).  The report's RTP time is placed on that span (linearly, also a little
    outside it); None when the report cannot be used.
    """
    if report.ntp <= 0 or clock_rate <= 0 or end_ts < first_ts or end_wall < start_wall:
        return None
    ts = extend(report.rtp & 0xFFFFFFFF, first_ts)
    margin = max_distance_s * clock_rate
    if not first_ts - margin <= ts <= end_ts + margin:
        return None
    media_s = (end_ts - first_ts) / clock_rate
    scale = (end_wall - start_wall) / media_s if media_s > 0 else 1.0
    host_wall = start_wall + (ts - first_ts) / clock_rate * scale
    return (report.ntp - NTP_UNIX_DELTA) - host_wall


def input_offset(src: object, first_ts: int, end_ts: int, start_wall: float, end_wall: float) -> float | None:
    """:func:`segment_offset` with the latest video sender report of ``src`` (a StreamInput).  Only
    the native client's timestamps are the RTP times reports refer to: FFmpeg's client has none here."""
    report = getattr(src, "video_sender_report", None)
    if report is None:
        return None
    return segment_offset(report, first_ts, end_ts, start_wall, end_wall, float(1 / src.time_base))  # type: ignore[attr-defined]
