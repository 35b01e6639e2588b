"""When a camera's burned-in OSD time disagrees with its footage's index time (pure policy).

Owns :func:`camera_clock` (which offset counts), :func:`osd_off` (the bound) and
:func:`clock_warning` (what an admin reads).  The footage is indexed by the
host's clock (recorder.timing); the camera draws its OSD from its own clock, so
a viewer sees the two differ by the camera's offset.  The stream's RTCP sender
reports (recorder.stream_clock) measure that offset on the footage itself, every
segment; the ONVIF reading (camera_discovery) is the fallback.
"""

from __future__ import annotations

#: an OSD shows whole seconds, so up to 1 s of difference is rounding, and the ONVIF
#: reading is known to ±0.5 s: beyond 2 s the difference is real, and a viewer sees it
OSD_BOUND_S = 2.0


def camera_clock(stream_offset_s: float | None, onvif_offset_s: float | None) -> tuple[float | None, str]:
    """The camera's clock offset an OSD shows, and where it is from: the stream's sender reports
    when known (measured on the footage itself), else the ONVIF reading."""
    if stream_offset_s is not None:
        return stream_offset_s, "RTCP"
    return onvif_offset_s, "ONVIF"


def osd_off(offset_s: float | None, bound_s: float = OSD_BOUND_S) -> bool:
    """True when the OSD time disagrees with the footage's index time by more than the bound."""
    return offset_s is not None and abs(offset_s) > bound_s


def clock_warning(camera_id: str, offset_s: float, source: str) -> str:
    """What an admin reads when a camera's OSD time would disagree with the index (zh-CN, then English)."""
    return (f"{camera_id}: 摄像机时钟偏差 {offset_s:+.1f} 秒（{source}），画面叠加时间（OSD）与录像索引时间不一致；"
            f"请为该摄像机设置 NTP 服务器或同步时间（摄像机页面，或 labwitness camera time set-ntp / sync） / "
            f"camera clock off by {offset_s:+.1f} s ({source}): its burned-in OSD time disagrees with the footage's "
            f"index time; set the camera's NTP server or sync its time (cameras page, or "
            f"`labwitness camera time set-ntp|sync`)")
