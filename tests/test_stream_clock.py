"""The camera's clock from RTCP sender reports against the footage's index time
(:mod:`recorder.stream_clock`): the pure rule, table-driven, then the recorder against
the GStreamer RTSP server (its reports carry the host's clock: offset ~0) and through a
real TCP proxy that moves the reports' clock, as a camera on factory time would."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from recorder.rtcp import parse_rtcp
from recorder.spool import CameraSpool, SpoolQuota
from recorder.stream_clock import NTP_UNIX_DELTA, Report, extend, segment_offset
from recorder.worker import CameraWorker, RecorderConfig

from conftest import wait_for
from recording import Background

RATE = 90_000.0
T0 = 1_764_800_000.0  # a host wall time (epoch s)


def ntp(unix_s: float) -> float:
    return unix_s + NTP_UNIX_DELTA


@pytest.mark.parametrize("rtp32, near, expected", [
    (1000, 1000, 1000),
    (1000, 2**32 + 500, 2**32 + 1000),  # after one wrap
    (2**32 - 100, 2**32 + 50, 2**32 - 100),  # just before the wrap the segment started after
    (50, 2**32 - 100, 2**32 + 50),  # just after the wrap, segment started before it
    (0, 5 * 2**32 + 2**31 - 1, 5 * 2**32),
])
def test_extend_to_the_nearest_unwrapped_time(rtp32, near, expected):
    assert extend(rtp32, near) == expected


# (report, first_ts, end_ts, start_wall, end_wall) -> offset
@pytest.mark.parametrize("report, seg, expected", [
    # the report's instant inside the segment, camera 0.25 s ahead
    (Report(ntp(T0 + 1.25), 90_000), (0, 180_000, T0, T0 + 2.0), 0.25),
    # camera on factory time: 8 hours behind (UTC+8 local time written as UTC is the other classic)
    (Report(ntp(T0 + 1.0 - 8 * 3600), 90_000), (0, 180_000, T0, T0 + 2.0), -8 * 3600),
    # the report before the segment (the latest one is often a few seconds old): extrapolated back
    (Report(ntp(T0 - 5.0 + 3.0), 2**32 - 5 * 90_000), (2**32, 2**32 + 180_000, T0, T0 + 2.0), 3.0),
    # the timeline steered the segment (wall 2.001 s for 2 s of media): the report placed on it
    (Report(ntp(T0 + 2.001), 180_000), (0, 180_000, T0, T0 + 2.001), 0.0),
    # a wrapped 32-bit report time for a segment past the wrap
    (Report(ntp(T0 + 0.5 - 1.5), (3 * 2**32 + 45_000) & 0xFFFFFFFF), (3 * 2**32, 3 * 2**32 + 90_000, T0, T0 + 1.0), -1.5),
])
def test_offset_from_a_report_and_a_segment(report, seg, expected):
    assert segment_offset(report, *seg, RATE) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("report, seg", [
    (Report(0.0, 90_000), (0, 180_000, T0, T0 + 2.0)),  # NTP time 0: the camera has no clock set
    (Report(ntp(T0), 90_000 + 3 * 60 * 90_000), (0, 180_000, T0, T0 + 2.0)),  # 3 min away: another timeline
    (Report(ntp(T0), 90_000), (180_000, 0, T0, T0 + 2.0)),  # a segment ending before it starts
])
def test_unusable_reports_give_no_offset(report, seg):
    assert segment_offset(report, *seg, RATE) is None


def test_a_real_sender_report_packet():
    """The bytes a camera sends (RFC 3550 SR, then an SDES) read by the recorder's RTCP parser."""
    sec = int(ntp(T0 + 7.5))
    sr = struct.pack("!BBHIIIIII", 0x80, 200, 6, 0xCAFE, sec, 2**31, 123_456, 100, 10_000)
    sdes = struct.pack("!BBHI", 0x81, 202, 1, 0xCAFE)
    (report,), bye = parse_rtcp(memoryview(sr + sdes))
    assert not bye
    # the report's RTP time is 90 000 ticks (1 s) after a segment indexed at T0+6
    offset = segment_offset(report, 123_456 - 90_000, 123_456 + 90_000, T0 + 6.0, T0 + 8.0, RATE)
    assert offset == pytest.approx(0.5, abs=1e-6)


# -- the recorder, against GStreamer ------------------------------------------------------
def _worker(tmp_path, url: str) -> CameraWorker:
    (tmp_path / "spool").mkdir(exist_ok=True)
    spool = CameraSpool(tmp_path / "spool", "cam-t", SpoolQuota(tmp_path / "spool", None, 0))
    return CameraWorker("cam-t", url, spool, RecorderConfig(segment_seconds=1.0, rtsp_client="native"))


def test_gstreamer_reports_the_host_clock(tmp_path, rtsp):
    w = _worker(tmp_path, rtsp.url("/live"))
    with Background(w):
        wait_for(lambda: w.status.stream_clock_offset_s is not None, 40, what="a sender report dated on a segment")
    # gst-rtsp-server dates its reports with this host's clock; what is left is the
    # stream's encode-and-deliver delay (the index dates a frame by its arrival)
    assert abs(w.status.stream_clock_offset_s) < 0.5, w.status.stream_clock_offset_s
    assert w.status.stream_clock_at is not None


class ShiftingProxy:
    """A TCP proxy between the recorder and the RTSP server that adds ``shift_s`` to the NTP
    time of every RTCP sender report in the interleaved stream (server → client): a camera
    whose clock is off by that much, with the picture untouched."""

    def __init__(self, target: tuple[str, int], shift_s: int) -> None:
        self.target, self.shift = target, shift_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks: list[socket.socket] = []
        self.shifted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        for s in [self.listener, *self.socks]:
            try:
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.socks += [client, server]
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()
            threading.Thread(target=self._rewrite, args=(server, client), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def _rewrite(self, src: socket.socket, dst: socket.socket) -> None:
        buf = bytearray()
        try:
            while data := src.recv(65536):
                buf += data
                out = bytearray()
                while buf:
                    if buf[0] == 0x24:  # '$' channel length: an interleaved RTP/RTCP frame
                        if len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[2:4], "big"):
                            break
                        n = 4 + int.from_bytes(buf[2:4], "big")
                        frame = bytearray(buf[:n])
                        if frame[1] & 1:
                            self._shift(frame)
                        out += frame
                        del buf[:n]
                    else:  # an RTSP answer: headers, then Content-Length bytes
                        end = buf.find(b"\r\n\r\n")
                        if end < 0:
                            break
                        head = bytes(buf[:end]).lower()
                        length = int(head.split(b"content-length:")[1].split(b"\r\n")[0]) if b"content-length:" in head else 0
                        if len(buf) < end + 4 + length:
                            break
                        out += buf[:end + 4 + length]
                        del buf[:end + 4 + length]
                dst.sendall(out)
        except OSError:
            pass

    def _shift(self, frame: bytearray) -> None:
        i = 4
        while i + 4 <= len(frame):
            length = (int.from_bytes(frame[i + 2:i + 4], "big") + 1) * 4
            if frame[i + 1] == 200 and i + 28 <= len(frame):
                sec = int.from_bytes(frame[i + 8:i + 12], "big")
                frame[i + 8:i + 12] = ((sec + self.shift) & 0xFFFFFFFF).to_bytes(4, "big")
                self.shifted += 1
            i += length


@pytest.mark.parametrize("shift_s", [-8 * 3600, 97])
def test_a_camera_clock_off_is_measured_from_its_reports(tmp_path, rtsp, shift_s):
    host, port = rtsp.url("/live").split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    proxy = ShiftingProxy((host, int(port)), shift_s)
    try:
        w = _worker(tmp_path, proxy.url("/live"))
        with Background(w):
            wait_for(lambda: w.status.stream_clock_offset_s is not None, 40, what="a shifted sender report")
    finally:
        proxy.close()
    assert proxy.shifted >= 1
    assert abs(w.status.stream_clock_offset_s - shift_s) < 0.5, w.status.stream_clock_offset_s
    assert w.status.segments >= 1  # the picture was recorded as usual
