"""One RTSP 1.0 connection over TCP or TLS: requests and answers, the receive buffer, keep-alive, TEARDOWN.

The connection owns the socket and one receive buffer that RTSP text messages
and interleaved ``$`` frames share (RTP over TCP, RFC 2326 10.12).  Requests
carry the CSeq, the user agent and the camera's credentials (:mod:`recorder.rtsp_auth`);
every failure of the camera or the network is a :class:`StreamError` with the
worker's gap reason and the redacted URL.

The packet loop of :class:`recorder.rtsp_native.NativeRtspInput` walks the
buffer itself (``buf``/``mv`` between ``pos`` and ``end``) for speed, handing
text messages back to :meth:`RtspConnection.take_message`; during set-up
:meth:`RtspConnection.request` skips any frame that comes before an answer.

``rtsps://`` wraps the connection in TLS.  Cameras carry self-signed
certificates, so trust is pinned on first use: the SHA-256 fingerprint of the
camera's certificate is handed to ``on_new_pin`` the first time (the worker
keeps it in the camera's spool state) and every later connection must show the
same certificate, else :class:`StreamError` ``tls_untrusted`` (docs/decisions.md).

Keep-alives go at a third of the session timeout the camera advertises, and
never more than 20 s apart (:func:`keepalive_interval`): some cameras drop a
session at *half* their advertised timeout without a request.

With RTP over UDP (:mod:`recorder.rtp_udp`) this connection only carries the
requests; the UDP receiver fills the same buffer with ``$``-framed packets.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import logging
import select
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import unquote, urlsplit

from labwitness.errors import StreamError
from labwitness.url_secrets import redact_text, redact_url
from recorder.rtsp_auth import Auth
from recorder.sdp import parse_int

log = logging.getLogger(__name__)

BUFFER_BYTES = 256 * 1024
USER_AGENT = "labwitness"
_MAX_HEADER = 64 * 1024
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322}
#: keep-alives go at this fraction of the advertised session timeout, and at least this often
KEEPALIVE_FRACTION = 1 / 3
KEEPALIVE_MAX_S = 20.0
#: 3xx answers to these methods are redirects the session follows (recorder.rtsp_redirect)
REDIRECT_METHODS = ("OPTIONS", "DESCRIBE")


def keepalive_interval(session_timeout_s: float) -> float:
    """Seconds between keep-alives: a third of the camera's session timeout, at most 20 s."""
    return max(0.5, min(session_timeout_s * KEEPALIVE_FRACTION, KEEPALIVE_MAX_S))


def cert_fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate, as ``AB:CD:...`` (what ``openssl x509 -fingerprint -sha256`` shows)."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        v = self.headers.get(name.lower())
        return v[0] if v else default


class RtspConnection:
    """The TCP connection of one RTSP session, with the session's id and keep-alive."""

    def __init__(self, url: str, open_timeout_s: float, read_timeout_s: float, *,
                 tls_pins: dict[str, str] | None = None,
                 on_new_pin: Callable[[str, str], None] | None = None,
                 keepalive_max_s: float | None = None) -> None:
        p = urlsplit(url)
        if p.scheme not in DEFAULT_PORTS:
            raise StreamError("stream_error", f"内置 RTSP 客户端不支持 {p.scheme} / the native RTSP client supports "
                                              f"rtsp:// and rtsps:// only")
        self.scheme = p.scheme
        self.host = p.hostname or ""
        self.port = p.port or DEFAULT_PORTS[p.scheme]
        host = f"[{self.host}]" if ":" in self.host else self.host
        # the request URL never carries the user:password part; a query may still hold a
        # password (?user=u&password=…): messages and logs show ``shown``, never ``url``
        self.url = f"{p.scheme}://{host}:{self.port}{p.path or '/'}" + (f"?{p.query}" if p.query else "")
        self.shown = redact_url(self.url)
        self.auth = Auth(unquote(p.username) if p.username is not None else None,
                         unquote(p.password) if p.password is not None else None)
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.sock: socket.socket | None = None
        #: received bytes waiting to be parsed are ``buf[pos:end]``
        self.buf = bytearray(BUFFER_BYTES)
        self.mv = memoryview(self.buf)
        self.pos = self.end = 0
        self._cseq = 0
        #: set up by SETUP (recorder.rtsp_session); sent with every later request
        self.session = ""
        self.session_timeout_s = 60.0
        self.keepalive_method = "OPTIONS"
        self.next_keepalive = float("inf")  # time.monotonic() of the next keep-alive
        #: a shorter keep-alive period for a camera seen resetting sessions (recorder.session_resets)
        self.keepalive_max_s = keepalive_max_s
        #: "tcp" (interleaved) or "udp" (recorder.rtp_udp), chosen by SETUP
        self.transport = "tcp"
        self.udp = None  # recorder.rtp_udp.UdpReceiver once a track is set up over UDP
        #: rtsps: pinned certificate fingerprints by "host:port", and who keeps a new one
        self.tls_pins = tls_pins if tls_pins is not None else {}
        self.on_new_pin = on_new_pin or (lambda key, fp: None)
        self.tls_fingerprint = ""

    def fail(self, reason: str, message: str) -> StreamError:
        return StreamError(reason, redact_text(f"{message} [{self.url}]"))

    def connect(self) -> None:
        """Open the TCP connection (open timeout); requests then wait that long for answers."""
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.open_timeout_s)
        except socket.gaierror as e:
            raise self.fail("unreachable", f"无法解析主机名 / cannot resolve the camera's host name {self.host!r}: {e}") from e
        except ConnectionRefusedError as e:
            raise self.fail("refused", f"连接被拒绝 / connection refused: {e}") from e
        except TimeoutError as e:
            raise self.fail("timeout", f"超时：连接未建立 / timed out connecting after {self.open_timeout_s:g}s") from e
        except OSError as e:
            if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL):
                raise self.fail("unreachable", f"主机不可达 / host unreachable: {e}") from e
            raise self.fail("stream_error", f"连接失败 / cannot connect: {e}") from e
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(self.open_timeout_s)
        if self.scheme == "rtsps":
            self._start_tls()

    def _start_tls(self) -> None:
        """TLS with trust on first use: the certificate is pinned by fingerprint, not checked
        against a CA (cameras' certificates are self-signed; docs/decisions.md)."""
        assert self.sock is not None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the pin below is the check
        server_name = None if _is_address(self.host) else self.host
        try:
            self.sock = ctx.wrap_socket(self.sock, server_hostname=server_name)
        except TimeoutError as e:
            raise self.fail("timeout", "超时：TLS 握手未完成 / timed out in the TLS handshake") from e
        except (ssl.SSLError, OSError) as e:
            raise self.fail("stream_error", f"TLS 握手失败 / TLS handshake failed: {e}") from e
        der = self.sock.getpeercert(binary_form=True) or b""
        fp = self.tls_fingerprint = cert_fingerprint(der)
        key = f"{self.host}:{self.port}"
        pinned = self.tls_pins.get(key)
        if pinned is None:
            log.warning("%s: trusting the camera's TLS certificate on first use (SHA-256 %s)", self.shown, fp)
            self.tls_pins[key] = fp
            self.on_new_pin(key, fp)
        elif pinned != fp:
            raise self.fail("tls_untrusted", f"摄像机的 TLS 证书已更改，停止录制，需管理员重新信任 / the camera's TLS certificate "
                                             f"changed: pinned SHA-256 {pinned}, now {fp}; nothing is recorded until an "
                                             f"administrator re-trusts it (labwitness camera retrust-tls CAMERA)")
        self.recv = self._recv_tls  # type: ignore[method-assign]
        self._poll = select.poll()
        self._poll.register(self.sock.fileno(), select.POLLIN)

    def keepalive_period(self) -> float:
        period = keepalive_interval(self.session_timeout_s)
        return min(period, self.keepalive_max_s) if self.keepalive_max_s else period

    def playing(self) -> None:
        """After PLAY: reads wait the read timeout, keep-alives go at a third of the session timeout."""
        assert self.sock is not None
        self.sock.settimeout(self.read_timeout_s)
        self.next_keepalive = time.monotonic() + self.keepalive_period()
        if self.udp is not None:
            self.udp.start()
            self.recv = self.udp.recv  # type: ignore[method-assign]

    def close(self, teardown: bool = True) -> None:
        if self.udp is not None:
            self.udp.close()
        sock, self.sock = self.sock, None
        if sock is None:
            return
        try:
            if teardown and self.session:
                sock.settimeout(1.0)  # best effort: a dead camera must not hold up the reconnect
                sock.sendall(self._request_bytes("TEARDOWN", self.url, {"Session": self.session}))
        except OSError:
            log.debug("%s: TEARDOWN not sent (the connection is gone)", self.shown)
        finally:
            sock.close()

    # -- requests ---------------------------------------------------------------------
    def _request_bytes(self, method: str, uri: str, headers: dict[str, str]) -> bytes:
        self._cseq += 1
        lines = [f"{method} {uri} RTSP/1.0", f"CSeq: {self._cseq}", f"User-Agent: {USER_AGENT}"]
        auth = self.auth.header(method, uri)
        if auth:
            lines.append(f"Authorization: {auth}")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def request(self, method: str, uri: str, headers: dict[str, str] | None = None,
                accept: tuple[int, ...] = ()) -> Response:
        """Send one request and read its answer; a 401 is answered once with the URL's credentials.
        A status in ``accept``, or a 3xx to OPTIONS/DESCRIBE (a redirect), is handed back as it is."""
        headers = dict(headers or {})
        for attempt in range(2):
            self._send(self._request_bytes(method, uri, headers))
            resp = self._read_response()
            if resp.status != 401:
                break
            if attempt == 0 and self.auth.challenge(resp.headers.get("www-authenticate", [])):
                continue
            raise self.fail("auth_failed", f"摄像机拒绝了用户名或密码 / camera rejected the credentials "
                                           f"(401 {resp.reason}) on {method}"
                                           + ("" if self.auth.user is not None else "; the URL has no user name"))
        if resp.status in accept or (300 <= resp.status < 400 and method in REDIRECT_METHODS):
            return resp
        if resp.status == 403:
            raise self.fail("auth_failed", f"摄像机拒绝访问 / camera refused access (403 {resp.reason}) on {method}")
        if resp.status == 404:
            raise self.fail("not_found", f"码流地址不存在 / stream not found on camera (404 {resp.reason})")
        if resp.status == 461:
            raise self.fail("stream_error", f"摄像机不支持所请求的传输方式 / the camera refused the transport "
                                            f"(461 {resp.reason})")
        if not 200 <= resp.status < 300:
            raise self.fail("stream_error", f"摄像机返回错误 / camera answered {method} with {resp.status} {resp.reason}")
        return resp

    def keepalive(self) -> None:
        """Send the keep-alive (its answer is skipped by the packet loop) and schedule the next."""
        self.next_keepalive = time.monotonic() + self.keepalive_period()
        self._send(self._request_bytes(self.keepalive_method, self.url, {"Session": self.session}))

    def _send(self, data: bytes) -> None:
        assert self.sock is not None
        try:
            self.sock.sendall(data)
        except TimeoutError as e:
            raise self.fail("timeout", "超时：摄像机不接收请求 / timed out sending to the camera") from e
        except OSError as e:
            raise self.fail("stream_ended", f"连接中断 / connection lost: {e}") from e

    # -- receiving --------------------------------------------------------------------
    def recv(self) -> int:
        """Receive into the buffer after ``end``; compact first if little room is left."""
        assert self.sock is not None
        if self.pos == self.end:
            self.pos = self.end = 0
        elif len(self.buf) - self.end < 65540:  # room for at least one whole $ frame
            n = self.end - self.pos
            if n > len(self.buf) // 2:
                raise self.fail("decode_error", "数据帧过大 / interleaved frame larger than the receive buffer")
            self.buf[:n] = self.buf[self.pos:self.end]
            self.pos, self.end = 0, n
        try:
            n = self.sock.recv_into(self.mv[self.end:])
        except TimeoutError as e:
            raise self.fail("timeout", f"超时：摄像机 {self.sock.gettimeout():g}s 无数据 / timed out: no data from "
                                       f"the camera for {self.sock.gettimeout():g}s") from e
        except ConnectionResetError as e:
            raise self.fail("stream_ended", f"码流结束 / stream ended: the camera reset the connection ({e})") from e
        except OSError as e:
            raise self.fail("stream_ended", f"码流结束 / stream ended: {e}") from e
        self.end += n
        return n

    def _recv_tls(self) -> int:
        """:meth:`recv` over TLS: one TLS read returns at most one record (16 KiB), so read
        on while the TLS layer or the socket holds more, for the same batches as plain TCP."""
        total = self._plain_recv()
        sock, poll = self.sock, self._poll
        assert sock is not None
        while total and len(self.buf) - self.end > 65540 and (sock.pending() or poll.poll(0)):
            n = self._plain_recv()
            if n == 0:
                break  # the close is seen by the next read
            total += n
        return total

    def _plain_recv(self) -> int:
        return RtspConnection.recv(self)

    def _read_response(self) -> Response:
        """The next RTSP response; interleaved frames before it are skipped (handshake only)."""
        first = True
        while True:
            buf, pos, end = self.buf, self.pos, self.end
            if end - pos >= 4 and buf[pos] == 0x24:
                size = (buf[pos + 2] << 8) | buf[pos + 3]
                if end - pos >= 4 + size:
                    self.pos = pos + 4 + size
                    continue
            elif end - pos >= 5:
                if first and bytes(buf[pos:pos + 5]) != b"RTSP/":
                    raise self.fail("not_rtsp", "设备未按 RTSP 协议应答 / the device did not answer as an RTSP server "
                                                f"(it sent {bytes(buf[pos:pos + 16])!r})")
                msg = self.take_message()
                if msg is not None:
                    return msg
            first = first and end - pos < 5
            if self.recv() == 0:  # as FFmpeg reports it: end of stream, whatever the peer is
                raise self.fail("stream_ended", "摄像机关闭了连接 / the camera closed the connection without an RTSP answer")

    def take_message(self) -> Response | None:
        """Parse one text message (a response, or a request from the server) at ``pos``; None if incomplete."""
        buf, pos, end = self.buf, self.pos, self.end
        hdr_end = buf.find(b"\r\n\r\n", pos, end)
        if hdr_end < 0:
            if end - pos > _MAX_HEADER:
                raise self.fail("not_rtsp", "RTSP 应答头过长 / RTSP header too long")
            return None
        lines = bytes(buf[pos:hdr_end]).decode("utf-8", "replace").split("\r\n")
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            if sep:
                headers.setdefault(k.strip().lower(), []).append(v.strip())
        length = parse_int(headers.get("content-length", ["0"])[0])
        body_start = hdr_end + 4
        if length > 0 and end - body_start < length:
            if length > len(buf) // 2:
                raise self.fail("not_rtsp", "RTSP 应答过长 / RTSP message body too large")
            return None
        length = max(length, 0)
        body = bytes(buf[body_start:body_start + length])
        self.pos = body_start + length
        status_line = lines[0].split(" ", 2)
        if status_line[0].startswith("RTSP/") and len(status_line) >= 2 and status_line[1].isdigit():
            return Response(int(status_line[1]), status_line[2] if len(status_line) > 2 else "", headers, body)
        if len(status_line) == 3 and status_line[2].startswith("RTSP/"):
            return Response(0, status_line[0], headers, body)  # a request from the server (ignored)
        raise self.fail("not_rtsp" if self._cseq <= 1 else "decode_error",
                        f"无法解析的 RTSP 消息 / unparsable RTSP message {lines[0][:80]!r}")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
        return True
    except ValueError:
        return False
