"""RTP and RTCP over UDP for one RTSP session: the sockets, batched reads, in-batch reordering, receiver reports.

Used when a camera refuses RTP interleaved in the RTSP connection (461, or a
SETUP answer without ``interleaved``).  Each track gets a pair of UDP sockets
bound on the host's address toward the camera (the RTSP connection's local
address) and ``connect()``-ed to the camera's ``server_port`` pair: the kernel
then drops every datagram from any other address or port, so a host on the
LAN cannot inject RTP into the recording by guessing our ports.

:meth:`UdpReceiver.recv` stands in for :meth:`recorder.rtsp_conn.RtspConnection.recv`:
it drains every socket without blocking and writes each datagram into the
connection's receive buffer framed as an interleaved ``$`` frame (channel 0/1
video RTP/RTCP, 2/3 audio), so the packet loop of
:class:`recorder.rtsp_native.NativeRtspInput` is the same for TCP and UDP.
Within one drain, RTP packets that arrived out of order are put back in
sequence-number order (UDP may reorder; the depacketizer counts a packet
arriving after its successor as lost).  The loop's pause between reads batches
the datagrams as it batches TCP reads.  The RTSP connection is still read, for
the answers to keep-alives and to notice the camera closing it.

Receiver reports (RFC 3550 6.4.2, with SDES CNAME) go to each track's RTCP
port every few seconds: many cameras end a UDP session that sends none.

Cost (bench/README.md, ``bench.record --transport udp``): ~0.35 against ~0.31
CPU-s per stream-minute over TCP: one system call per datagram, but no thread
wake-up per datagram (the loop's pause batches them).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import ssl
import struct
import time

from labwitness.errors import StreamError

log = logging.getLogger(__name__)

#: how often receiver reports are sent (RFC 3550 suggests ~5 s for a small session)
RR_INTERVAL_S = 5.0
#: asked for each RTP socket: holds the loop's pause between reads at camera rates
RCVBUF_BYTES = 4 * 1024 * 1024
_MAX_DATAGRAM = 65536
_HALF = 0x8000


class UdpTrack:
    """One track's RTP/RTCP socket pair and the reception counts its receiver reports give."""

    def __init__(self, channel: int, rtp: socket.socket, rtcp: socket.socket) -> None:
        self.channel = channel
        self.rtp, self.rtcp = rtp, rtcp
        self.ssrc = -1
        self.base_seq = -1  # first sequence number, extended
        self.max_seq = -1  # highest sequence number, extended (cycles << 16 | seq)
        self.received = 0
        self.expected_prior = self.received_prior = 0
        self.lsr = 0  # middle 32 bits of the last sender report's NTP time
        self.lsr_at = 0.0

    @property
    def ports(self) -> tuple[int, int]:
        return self.rtp.getsockname()[1], self.rtcp.getsockname()[1]

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()

    def saw(self, seq: int) -> None:
        """Count one RTP packet for the receiver report (extended sequence number, RFC 3550 A.1 simplified)."""
        self.received += 1
        if self.max_seq < 0:
            self.base_seq = self.max_seq = seq
            return
        delta = (seq - self.max_seq) & 0xFFFF
        if 0 < delta < _HALF:
            self.max_seq += delta


def bind_pair(local_ip: str, tries: int = 50) -> tuple[socket.socket, socket.socket]:
    """Two UDP sockets on consecutive ports, the first even (RFC 3550 11), bound on ``local_ip``."""
    family = socket.AF_INET6 if ":" in local_ip else socket.AF_INET
    for _ in range(tries):
        rtp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            rtp.bind((local_ip, 0))
            port = rtp.getsockname()[1]
            if port % 2 == 0 and port < 65535:
                rtcp = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    rtcp.bind((local_ip, port + 1))
                    return rtp, rtcp
                except OSError:
                    rtcp.close()
        except OSError:
            pass
        rtp.close()
    raise StreamError("stream_error", f"无法分配 UDP 端口 / no free pair of UDP ports on {local_ip}")


def reorder(packets: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """(seq, start, stop) triples of one batch in sequence order (pure); sequence numbers
    wrap at 65536, so each is placed relative to the batch's first packet."""
    first = packets[0][0]
    return sorted(packets, key=lambda p: (p[0] - first + _HALF) & 0xFFFF)


def receiver_report(own_ssrc: int, track: UdpTrack, now: float, cname: bytes = b"labwitness") -> bytes:
    """A compound RTCP packet: RR with one report block for the track's sender, then SDES CNAME (pure)."""
    if track.ssrc < 0:
        rr = struct.pack("!BBHI", 0x80, 201, 1, own_ssrc)  # no sender seen yet: an empty RR
    else:
        expected = track.max_seq - track.base_seq + 1
        lost = max(0, expected - track.received)
        exp_i, rec_i = expected - track.expected_prior, track.received - track.received_prior
        track.expected_prior, track.received_prior = expected, track.received
        lost_i = exp_i - rec_i
        fraction = (lost_i << 8) // exp_i if exp_i > 0 and lost_i > 0 else 0
        dlsr = int((now - track.lsr_at) * 65536) & 0xFFFFFFFF if track.lsr else 0
        rr = struct.pack("!BBHII", 0x81, 201, 7, own_ssrc, track.ssrc) + struct.pack(
            "!IIIII", (min(fraction, 255) << 24) | min(lost, 0x7FFFFF), track.max_seq & 0xFFFFFFFF, 0, track.lsr, dlsr)
    item = bytes((1, len(cname))) + cname
    chunk = struct.pack("!I", own_ssrc) + item + b"\x00"
    chunk += b"\x00" * (-len(chunk) % 4)
    sdes = struct.pack("!BBH", 0x81, 202, len(chunk) // 4) + chunk
    return rr + sdes


class UdpReceiver:
    """The UDP tracks of one session, read into the RTSP connection's buffer."""

    def __init__(self, conn) -> None:  # conn: recorder.rtsp_conn.RtspConnection (no import: it imports us not)
        self.conn = conn
        self.tracks: list[UdpTrack] = []
        self.own_ssrc = int.from_bytes(os.urandom(4), "big")
        self.next_rr = 0.0
        self.datagrams = 0
        self._poll = select.poll()
        self._cpoll = select.poll()
        self._control = bytearray()

    def add_track(self, channel: int) -> UdpTrack:
        """A socket pair for one track, on the local address of the RTSP connection."""
        local_ip = self.conn.sock.getsockname()[0]
        rtp, rtcp = bind_pair(local_ip)
        for s in (rtp, rtcp):
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
            except OSError:
                pass
        t = UdpTrack(channel, rtp, rtcp)
        self.tracks.append(t)
        return t

    def connect(self, track: UdpTrack, server_rtp: int, server_rtcp: int) -> None:
        """Accept datagrams from the camera's ports only: the camera is the RTSP connection's peer."""
        peer = self.conn.sock.getpeername()[0]
        track.rtp.connect((peer, server_rtp))
        track.rtcp.connect((peer, server_rtcp))

    def start(self) -> None:
        """After PLAY: non-blocking sockets, one poll set, a first receiver report (opens NATs and firewalls)."""
        for t in self.tracks:
            for s in (t.rtp, t.rtcp):
                s.setblocking(False)
                self._poll.register(s.fileno(), select.POLLIN)
        self._poll.register(self.conn.sock.fileno(), select.POLLIN)
        self._cpoll.register(self.conn.sock.fileno(), select.POLLIN)
        self._send_reports(time.monotonic())

    def room(self) -> float:
        """Bytes of datagrams the kernel holds per socket before dropping; a datagram's
        kernel accounting (~2.3 KiB for a 1.4 KB packet) is about twice its payload."""
        try:
            return min(t.rtp.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) for t in self.tracks) / 4
        except OSError:
            return 64 * 1024

    def close(self) -> None:
        for t in self.tracks:
            t.close()
        self.tracks = []

    # -- reading -------------------------------------------------------------------------
    def recv(self) -> int:
        """Drain the sockets into the connection's buffer as ``$`` frames; bytes added.
        Waits (up to the read timeout) only when nothing at all is queued."""
        conn = self.conn
        deadline = time.monotonic() + conn.read_timeout_s
        while True:
            if conn.pos == conn.end:
                conn.pos = conn.end = 0
            elif len(conn.buf) - conn.end < 2 * _MAX_DATAGRAM:
                n = conn.end - conn.pos
                conn.buf[:n] = conn.buf[conn.pos:conn.end]
                conn.pos, conn.end = 0, n
            self._read_control()
            got = 0
            for t in self.tracks:
                got += self._drain(t, t.rtp, t.channel, True)
                got += self._drain(t, t.rtcp, t.channel + 1, False)
            now = time.monotonic()
            if now >= self.next_rr:
                self._send_reports(now)
            if got:
                return got
            left = deadline - now
            if left <= 0:
                raise conn.fail("timeout", f"超时：摄像机 {conn.read_timeout_s:g}s 无数据 / timed out: no RTP over "
                                           f"UDP from the camera for {conn.read_timeout_s:g}s")
            self._poll.poll(max(1, int(min(left, RR_INTERVAL_S) * 1000)))

    def _drain(self, t: UdpTrack, sock: socket.socket, channel: int, rtp: bool) -> int:
        conn = self.conn
        buf, mv = conn.buf, conn.mv
        start = end = conn.end
        seqs: list[tuple[int, int, int]] = []
        ordered = True
        last = -1
        while len(buf) - end >= _MAX_DATAGRAM + 4:
            try:
                n = sock.recv_into(mv[end + 4:end + 4 + _MAX_DATAGRAM])
            except BlockingIOError:
                break
            except ConnectionRefusedError:
                continue  # an ICMP port-unreachable for a report we sent: not data, not fatal
            except OSError as e:
                raise conn.fail("stream_ended", f"码流结束 / stream ended: UDP receive failed: {e}") from e
            if n < (12 if rtp else 4):
                continue  # too short for an RTP/RTCP header: dropped (the depacketizer would too)
            buf[end] = 0x24
            buf[end + 1] = channel
            buf[end + 2] = n >> 8
            buf[end + 3] = n & 0xFF
            stop = end + 4 + n
            if rtp:
                seq = (buf[end + 6] << 8) | buf[end + 7]
                if t.ssrc < 0:
                    t.ssrc = int.from_bytes(buf[end + 12:end + 16], "big")
                t.saw(seq)
                if last >= 0 and ((seq - last) & 0xFFFF) >= _HALF:
                    ordered = False
                last = seq
                seqs.append((seq, end, stop))
            elif n >= 20 and buf[end + 5] == 200:  # a sender report: its NTP time for our reports' LSR
                t.lsr = int.from_bytes(buf[end + 14:end + 18], "big")
                t.lsr_at = time.monotonic()
            end = stop
        if not ordered:
            region = bytes(buf[start:end])
            at = start
            for _, a, b in reorder(seqs):
                buf[at:at + b - a] = region[a - start:b - start]
                at += b - a
        self.datagrams += len(seqs)
        conn.end = end
        return end - start

    def _read_control(self) -> None:
        """Answers to keep-alives on the RTSP connection are read and dropped; its close ends the session."""
        sock = self.conn.sock
        tls = isinstance(sock, ssl.SSLSocket)
        # (a socket with a timeout waits in recv even with MSG_DONTWAIT: ask poll first)
        while (tls and sock.pending()) or self._cpoll.poll(0):
            try:
                data = self._tls_read(sock) if tls else sock.recv(4096)
            except (BlockingIOError, TimeoutError):
                break
            except OSError as e:
                raise self.conn.fail("stream_ended", f"码流结束 / stream ended: the RTSP connection failed ({e})") from e
            if data is None:
                break
            if not data:
                raise self.conn.fail("stream_ended", "码流结束 / stream ended: the camera closed the RTSP connection")
            self._control += data
            while True:  # drop whole messages; a half message waits for its rest
                head = self._control.find(b"\r\n\r\n")
                if head < 0:
                    if len(self._control) > 64 * 1024:
                        self._control.clear()
                    break
                length = 0
                for line in bytes(self._control[:head]).split(b"\r\n"):
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length" and v.strip().isdigit():
                        length = int(v.strip())
                if len(self._control) < head + 4 + length:
                    break
                del self._control[:head + 4 + length]

    def _tls_read(self, sock) -> bytes | None:
        sock.setblocking(False)
        try:
            return sock.recv(4096)
        except (ssl.SSLWantReadError, BlockingIOError):
            return None
        finally:
            sock.settimeout(self.conn.read_timeout_s)

    def _send_reports(self, now: float) -> None:
        self.next_rr = now + RR_INTERVAL_S
        for t in self.tracks:
            try:
                t.rtcp.send(receiver_report(self.own_ssrc, t, now))
            except OSError:
                log.debug("%s: receiver report not sent", self.conn.shown, exc_info=True)
