"""labwitness's own RTSP 1.0 client: RTP interleaved over TCP, into PyAV packets.

Why hand-written when FFmpeg has an RTSP client: cost.  FFmpeg's RTSP/RTP
demuxer (used through PyAV by :class:`recorder.inputs.PyAVInput`) reads every
interleaved RTP packet with small reads and runs its generic RTP machinery per
packet; measured in ``bench/record`` it costs ~0.58 CPU-s per stream-minute
of 1080p 4 Mbit/s by itself, more than the rest of the recording path.  This
client receives into one 256 KiB buffer (``recv_into``, one system call per
~100 packets), walks the ``$`` frames with a memoryview and does only a
struct unpack and one copy per RTP packet (:mod:`recorder.rtp_depacketize`).
No Python RTSP library fits: the ones on PyPI are UDP-only, asyncio
frameworks, or wrap FFmpeg/GStreamer themselves.

Scope (a camera recorder's, not a general RTSP stack):

* OPTIONS, DESCRIBE (SDP), SETUP ``RTP/AVP/TCP;unicast;interleaved``, PLAY,
  keep-alive (GET_PARAMETER when the camera lists it, else OPTIONS) at half
  the session timeout, TEARDOWN on close.
* Basic and Digest (MD5, ``qop=auth`` or none) with the URL's credentials.
* Video H.264/H.265; audio AAC (MPEG4-GENERIC AAC-hbr/lbr) only -- other audio
  (G.711, ...) is not recorded: recording the video is what matters.
* Errors are :class:`StreamError` with the worker's gap reasons.
* A/V alignment from PLAY's ``RTP-Info`` (rtptime per track); without it
  audio is aligned to video by arrival.  RTCP sender reports are parsed and
  kept (``sender_reports``); RTCP BYE ends the stream like FFmpeg's EOF.
* Not supported: RTSP over TLS (``rtsps``), UDP transport, RTSP over HTTP
  tunnelling, redirects (3xx).  Use ``LABWITNESS_RTSP_CLIENT=ffmpeg`` for those.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import logging
import os
import re
import socket
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Iterator
from urllib.parse import unquote, urlsplit

import av

from labwitness.errors import StreamError
from labwitness.url_secrets import redact_text, redact_url
from recorder.rtp_depacketize import (
    AacDepacketizer,
    SenderReport,
    VideoDepacketizer,
    aac_config,
    adts_header,
    h264_dimensions,
    h264_param_sets,
    h265_dimensions,
    h265_param_sets,
    parse_rtcp,
)
from recorder.segmenter import TrackTemplate

log = logging.getLogger(__name__)

BUFFER_BYTES = 256 * 1024
#: After a small read, wait this long before the next one so that each receive
#: takes a batch of packets.  A camera sends its ~400 packets/s as they are
#: made; receiving them as they come costs one thread wake-up and one GIL
#: hand-over per packet or two, which on a 2-core box with dozens of camera
#: threads was most of the recorder's CPU (perf: futex waits, context switches
#: and the scheduler, over half of the process).  bench/record, 10 streams,
#: CPU-s per stream-minute in the recording window, same day: 100 ms 0.36,
#: 250 ms 0.25, 500 ms 0.21 (plain ``ffmpeg -c copy``: 0.40).  Half a second of
#: delay is nothing to a recorder: the session's wall clock is anchored on the
#: least-delayed packet (recorder.timing), which the last packet of some batch
#: always is; a segment closes at most this much later; and the kernel's
#: receive buffer holds the half second, so the camera never waits on us: the
#: pause is shortened to what half the socket's current receive buffer holds
#: at the session's measured rate (:meth:`NativeRtspInput._pause`), which on a
#: LAN starts near 128 KiB and grows as Linux autotunes it.
BATCH_WAIT_S = 0.5
#: shortest pause, and the pause for the first second, before the rate is known
_MIN_WAIT_S = 0.05
_FIRST_WAIT_S = 0.1
#: a read at least this large means packets are queued: read again at once
_BATCH_BYTES = 16 * 1024
VIDEO_TB = Fraction(1, 90000)
USER_AGENT = "labwitness"
_MAX_HEADER = 64 * 1024
_VIDEO_ENCODINGS = {"H264": "h264", "H265": "hevc", "HEVC": "hevc"}


# -- SDP ------------------------------------------------------------------------------
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
            if _int(pt) == cur.payload_type:
                bits = enc.strip().split("/")
                cur.encoding = bits[0].upper()
                cur.clock_rate = _int(bits[1]) if len(bits) > 1 else 0
                cur.channels = _int(bits[2]) if len(bits) > 2 else 1
        elif name == "fmtp":
            pt, _, params = arg.partition(" ")
            if _int(pt) == cur.payload_type:
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


def _int(s: str) -> int:
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


# -- authentication ---------------------------------------------------------------------
class Auth:
    """Basic or Digest (RFC 2617, MD5) credentials answering a camera's challenge."""

    def __init__(self, user: str | None, password: str | None) -> None:
        self.user = user
        self.password = password or ""
        self.scheme = ""
        self.params: dict[str, str] = {}
        self._nc = 0

    def challenge(self, values: list[str]) -> bool:
        """Take the WWW-Authenticate headers; False if there is nothing to answer with."""
        if self.user is None:
            return False
        digest = next((v for v in values if v.lower().startswith("digest")), None)
        if digest is not None:
            self.scheme = "digest"
            self.params = {k.lower(): (q if q else u) for k, q, u in
                           re.findall(r'(\w+)\s*=\s*(?:"([^"]*)"|([^,\s]*))', digest[6:])}
            self._nc = 0
            alg = self.params.get("algorithm", "MD5").upper()
            return alg in ("MD5", "")
        if any(v.lower().startswith("basic") for v in values):
            self.scheme = "basic"
            return True
        return False

    def header(self, method: str, uri: str) -> str | None:
        if self.scheme == "basic":
            return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if self.scheme == "digest":
            return self.digest(method, uri, os.urandom(8).hex())
        return None

    def digest(self, method: str, uri: str, cnonce: str) -> str:
        p = self.params
        realm, nonce = p.get("realm", ""), p.get("nonce", "")
        h = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731  (MD5 is what RFC 2617 digest is)
        ha1, ha2 = h(f"{self.user}:{realm}:{self.password}"), h(f"{method}:{uri}")
        parts = [f'username="{self.user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
        qops = [q.strip() for q in p.get("qop", "").split(",") if q.strip()]
        if "auth" in qops:
            self._nc += 1
            nc = f"{self._nc:08x}"
            resp = h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
            parts += [f'response="{resp}"', "qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
        else:
            parts.append(f'response="{h(f"{ha1}:{nonce}:{ha2}")}"')
        if "opaque" in p:
            parts.append(f'opaque="{p["opaque"]}"')
        parts.append("algorithm=MD5")
        return "Digest " + ", ".join(parts)


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        v = self.headers.get(name.lower())
        return v[0] if v else default


# -- the client --------------------------------------------------------------------------
class NativeRtspInput:
    """One RTSP session; a :class:`recorder.inputs.StreamInput`."""

    def __init__(self, url: str, open_timeout_s: float, read_timeout_s: float,
                 on_loss: Callable[[int], None] | None = None) -> None:
        p = urlsplit(url)
        if p.scheme != "rtsp":
            raise StreamError("stream_error", f"内置 RTSP 客户端不支持 {p.scheme} / the native RTSP client supports rtsp:// only "
                                              f"(set LABWITNESS_RTSP_CLIENT=ffmpeg for {p.scheme}://)")
        self.host = p.hostname or ""
        self.port = p.port or 554
        host = f"[{self.host}]" if ":" in self.host else self.host
        # the request URL never carries the user:password part; a query may still hold a
        # password (?user=u&password=…): messages and logs show ``shown``, never ``url``
        self.url = f"rtsp://{host}:{self.port}{p.path or '/'}" + (f"?{p.query}" if p.query else "")
        self.shown = redact_url(self.url)
        self.auth = Auth(unquote(p.username) if p.username is not None else None,
                         unquote(p.password) if p.password is not None else None)
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.on_loss = on_loss or (lambda n: None)
        self.sock: socket.socket | None = None
        self._buf = bytearray(BUFFER_BYTES)
        self._mv = memoryview(self._buf)
        self._pos = self._end = 0
        self._cseq = 0
        self.session = ""
        self.session_timeout_s = 60.0
        self._keepalive_method = "OPTIONS"
        self._next_keepalive = float("inf")
        self.sender_reports: dict[int, SenderReport] = {}  # by RTCP channel
        self.video_codec = ""
        self.audio_codec = ""
        self.width = self.height = 0
        self.time_base = VIDEO_TB
        self.frame_ticks = 3600
        self._vdep: VideoDepacketizer | None = None
        self._adep: AacDepacketizer | None = None
        self._asc = b""
        self._arate = 0
        self._achannels = 0
        self._vch, self._ach = 0, -1
        self._rtp_info: dict[int, int] = {}  # channel -> rtptime at PLAY
        self._a_shift: int | None = None
        self._last_vts: int | None = None
        self._templates: dict[str, TrackTemplate] = {}
        self._template_inputs: list = []
        self._video_track: TrackTemplate | None = None
        self.skipped_before_params = 0
        self.batch_wait_s = BATCH_WAIT_S

    # -- StreamInput -------------------------------------------------------------------
    @classmethod
    def open(cls, url: str, open_timeout_s: float, read_timeout_s: float, *,
             on_loss: Callable[[int], None] | None = None) -> "NativeRtspInput":
        self = cls(url, open_timeout_s, read_timeout_s, on_loss)
        try:
            self._start()
        except BaseException:
            self.close(teardown=False)
            raise
        return self

    @property
    def video(self) -> TrackTemplate:
        dep = self._vdep
        assert dep is not None
        if self._video_track is None or dep.params_changed:
            dep.params_changed = False
            self._update_dimensions()
            self._video_track = TrackTemplate(self._template(self.video_codec), VIDEO_TB, dep.annexb_params(),
                                              width=self.width, height=self.height)
        return self._video_track

    @property
    def audio(self) -> TrackTemplate | None:
        if self._adep is None:
            return None
        layout = {1: "mono", 2: "stereo"}.get(self._achannels, "")
        return TrackTemplate(self._template("aac"), Fraction(1, self._arate), self._asc,
                             sample_rate=self._arate, layout=layout)

    def close(self, teardown: bool = True) -> None:
        for c in self._template_inputs:
            c.close()
        self._template_inputs.clear()
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

    # -- connection and requests ---------------------------------------------------------
    def _fail(self, reason: str, message: str) -> StreamError:
        return StreamError(reason, redact_text(f"{message} [{self.url}]"))

    def _connect(self) -> None:
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.open_timeout_s)
        except socket.gaierror as e:
            raise self._fail("unreachable", f"无法解析主机名 / cannot resolve the camera's host name {self.host!r}: {e}") from e
        except ConnectionRefusedError as e:
            raise self._fail("refused", f"连接被拒绝 / connection refused: {e}") from e
        except TimeoutError as e:
            raise self._fail("timeout", f"超时：连接未建立 / timed out connecting after {self.open_timeout_s:g}s") from e
        except OSError as e:
            if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL):
                raise self._fail("unreachable", f"主机不可达 / host unreachable: {e}") from e
            raise self._fail("stream_error", f"连接失败 / cannot connect: {e}") from e
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _request_bytes(self, method: str, uri: str, headers: dict[str, str]) -> bytes:
        self._cseq += 1
        lines = [f"{method} {uri} RTSP/1.0", f"CSeq: {self._cseq}", f"User-Agent: {USER_AGENT}"]
        auth = self.auth.header(method, uri)
        if auth:
            lines.append(f"Authorization: {auth}")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def request(self, method: str, uri: str, headers: dict[str, str] | None = None) -> Response:
        """Send one request and read its answer; a 401 is answered once with the URL's credentials."""
        headers = dict(headers or {})
        for attempt in range(2):
            self._send(self._request_bytes(method, uri, headers))
            resp = self._read_response()
            if resp.status != 401:
                break
            if attempt == 0 and self.auth.challenge(resp.headers.get("www-authenticate", [])):
                continue
            raise self._fail("auth_failed", f"摄像机拒绝了用户名或密码 / camera rejected the credentials "
                                            f"(401 {resp.reason}) on {method}"
                                            + ("" if self.auth.user is not None else "; the URL has no user name"))
        if resp.status == 403:
            raise self._fail("auth_failed", f"摄像机拒绝访问 / camera refused access (403 {resp.reason}) on {method}")
        if resp.status == 404:
            raise self._fail("not_found", f"码流地址不存在 / stream not found on camera (404 {resp.reason})")
        if resp.status == 461:
            raise self._fail("stream_error", f"摄像机不支持 RTP over TCP / the camera refused RTP over TCP (461 {resp.reason}); "
                                             "try LABWITNESS_RTSP_CLIENT=ffmpeg")
        if not 200 <= resp.status < 300:
            raise self._fail("stream_error", f"摄像机返回错误 / camera answered {method} with {resp.status} {resp.reason}")
        return resp

    def _send(self, data: bytes) -> None:
        assert self.sock is not None
        try:
            self.sock.sendall(data)
        except TimeoutError as e:
            raise self._fail("timeout", "超时：摄像机不接收请求 / timed out sending to the camera") from e
        except OSError as e:
            raise self._fail("stream_ended", f"连接中断 / connection lost: {e}") from e

    def _recv(self) -> int:
        """Receive into the buffer after ``_end``; compact first if little room is left."""
        assert self.sock is not None
        if self._pos == self._end:
            self._pos = self._end = 0
        elif len(self._buf) - self._end < 65540:  # room for at least one whole $ frame
            n = self._end - self._pos
            if n > len(self._buf) // 2:
                raise self._fail("decode_error", "数据帧过大 / interleaved frame larger than the receive buffer")
            self._buf[:n] = self._buf[self._pos:self._end]
            self._pos, self._end = 0, n
        try:
            n = self.sock.recv_into(self._mv[self._end:])
        except TimeoutError as e:
            raise self._fail("timeout", f"超时：摄像机 {self.sock.gettimeout():g}s 无数据 / timed out: no data from "
                                        f"the camera for {self.sock.gettimeout():g}s") from e
        except ConnectionResetError as e:
            raise self._fail("stream_ended", f"码流结束 / stream ended: the camera reset the connection ({e})") from e
        except OSError as e:
            raise self._fail("stream_ended", f"码流结束 / stream ended: {e}") from e
        self._end += n
        return n

    def _read_response(self) -> Response:
        """The next RTSP response; interleaved frames before it are skipped (handshake only)."""
        first = True
        while True:
            buf, pos, end = self._buf, self._pos, self._end
            if end - pos >= 4 and buf[pos] == 0x24:
                size = (buf[pos + 2] << 8) | buf[pos + 3]
                if end - pos >= 4 + size:
                    self._pos = pos + 4 + size
                    continue
            elif end - pos >= 5:
                if first and bytes(buf[pos:pos + 5]) != b"RTSP/":
                    raise self._fail("not_rtsp", "设备未按 RTSP 协议应答 / the device did not answer as an RTSP server "
                                                 f"(it sent {bytes(buf[pos:pos + 16])!r})")
                msg = self._take_message()
                if msg is not None:
                    return msg
            first = first and end - pos < 5
            if self._recv() == 0:  # as FFmpeg reports it: end of stream, whatever the peer is
                raise self._fail("stream_ended", "摄像机关闭了连接 / the camera closed the connection without an RTSP answer")

    def _take_message(self) -> Response | None:
        """Parse one text message (a response, or a request from the server) at ``_pos``; None if incomplete."""
        buf, pos, end = self._buf, self._pos, self._end
        hdr_end = buf.find(b"\r\n\r\n", pos, end)
        if hdr_end < 0:
            if end - pos > _MAX_HEADER:
                raise self._fail("not_rtsp", "RTSP 应答头过长 / RTSP header too long")
            return None
        lines = bytes(buf[pos:hdr_end]).decode("utf-8", "replace").split("\r\n")
        headers: dict[str, list[str]] = {}
        for line in lines[1:]:
            k, sep, v = line.partition(":")
            if sep:
                headers.setdefault(k.strip().lower(), []).append(v.strip())
        length = _int(headers.get("content-length", ["0"])[0])
        body_start = hdr_end + 4
        if length > 0 and end - body_start < length:
            if length > len(buf) // 2:
                raise self._fail("not_rtsp", "RTSP 应答过长 / RTSP message body too large")
            return None
        length = max(length, 0)
        body = bytes(buf[body_start:body_start + length])
        self._pos = body_start + length
        status_line = lines[0].split(" ", 2)
        if status_line[0].startswith("RTSP/") and len(status_line) >= 2 and status_line[1].isdigit():
            return Response(int(status_line[1]), status_line[2] if len(status_line) > 2 else "", headers, body)
        if len(status_line) == 3 and status_line[2].startswith("RTSP/"):
            return Response(0, status_line[0], headers, body)  # a request from the server (ignored)
        raise self._fail("not_rtsp" if self._cseq <= 1 else "decode_error",
                         f"无法解析的 RTSP 消息 / unparsable RTSP message {lines[0][:80]!r}")

    # -- session set-up ----------------------------------------------------------------
    def _start(self) -> None:
        self._connect()
        assert self.sock is not None
        self.sock.settimeout(self.open_timeout_s)
        opts = self.request("OPTIONS", self.url)
        if "GET_PARAMETER" in opts.header("public").upper():
            self._keepalive_method = "GET_PARAMETER"
        desc = self.request("DESCRIBE", self.url, {"Accept": "application/sdp"})
        base = desc.header("content-base") or desc.header("content-location") or self.url
        session_control, media = parse_sdp(desc.body.decode("utf-8", "replace"))
        if session_control and session_control != "*":
            base = control_url(base, session_control)
        video = next((m for m in media if m.kind == "video"), None)
        if video is None:
            raise self._fail("no_video", "码流中没有视频 / the stream has no video track")
        codec = _VIDEO_ENCODINGS.get(video.encoding)
        if codec is None:
            raise self._fail("unsupported_codec", f"不支持的视频编码 / video codec {video.encoding or video.payload_type!r} "
                                                  "is not H.264/H.265")
        self.video_codec = codec
        params = h264_param_sets(video.fmtp) if codec == "h264" else h265_param_sets(video.fmtp)
        self._vdep = VideoDepacketizer(codec, params)
        self._update_dimensions()
        if video.framerate > 0:
            self.frame_ticks = max(1, round(90000 / video.framerate))
        audio = next((m for m in media if m.kind == "audio"), None)
        if audio is not None and not self._audio_supported(audio):
            log.info("%s: audio %s is not recorded (the native client records AAC only)", self.shown, audio.encoding)
            audio = None

        self._vch = self._setup(control_url(base, video.control), 0)
        if audio is not None:
            try:
                self._ach = self._setup(control_url(base, audio.control), 2)
                self._adep = AacDepacketizer(_int(audio.fmtp.get("sizelength", "13")),
                                             max(0, _int(audio.fmtp.get("indexlength", "3"))),
                                             max(0, _int(audio.fmtp.get("indexdeltalength", "3"))))
                self.audio_codec = "aac"
            except StreamError as e:  # video is what matters: record it without the audio
                if e.reason in ("auth_failed", "timeout", "stream_ended"):
                    raise
                log.warning("%s: audio track not set up, recording video only: %s", self.shown, e)
                self._ach = -1
        play = self.request("PLAY", base, {"Session": self.session})
        self._parse_rtp_info(play.header("rtp-info"), base, video, audio)
        self.sock.settimeout(self.read_timeout_s)
        self._next_keepalive = time.monotonic() + self.session_timeout_s / 2

    def _audio_supported(self, m: SdpMedia) -> bool:
        if m.encoding != "MPEG4-GENERIC" or m.fmtp.get("mode", "").lower() not in ("aac-hbr", "aac-lbr"):
            return False
        try:
            self._asc, rate, self._achannels = aac_config(m.fmtp.get("config", ""))
        except ValueError:
            return False
        self._arate = m.clock_rate or rate
        return self._arate > 0 and _int(m.fmtp.get("sizelength", "-1")) > 0

    def _setup(self, uri: str, channel: int) -> int:
        headers = {"Transport": f"RTP/AVP/TCP;unicast;interleaved={channel}-{channel + 1}"}
        if self.session:
            headers["Session"] = self.session
        resp = self.request("SETUP", uri, headers)
        sess = resp.header("session")
        if sess:
            sid, _, rest = sess.partition(";")
            self.session = sid.strip()
            m = re.search(r"timeout\s*=\s*(\d+)", rest)
            if m and int(m.group(1)) > 0:
                self.session_timeout_s = float(m.group(1))
        m = re.search(r"interleaved=(\d+)", resp.header("transport"))
        return int(m.group(1)) if m else channel

    def _parse_rtp_info(self, value: str, base: str, video: SdpMedia, audio: SdpMedia | None) -> None:
        urls = {control_url(base, video.control): self._vch}
        if audio is not None and self._ach >= 0:
            urls[control_url(base, audio.control)] = self._ach
        for entry in value.split(","):
            fields = dict(f.strip().partition("=")[::2] for f in entry.split(";"))
            url, rtptime = fields.get("url", ""), fields.get("rtptime", "")
            if not rtptime.isdigit():
                continue
            for u, ch in urls.items():
                if url and (url == u or u.endswith(url) or url.endswith(u.rsplit("/", 1)[-1])):
                    self._rtp_info[ch] = int(rtptime)

    def _template(self, codec: str) -> av.stream.Stream:
        """A stream of a tiny in-memory input, only to give the muxer the codec id and type."""
        s = self._templates.get(codec)
        if s is None:
            if codec == "aac":
                data, fmt = adts_header(self._asc, 0) * 2, "aac"
            else:
                assert self._vdep is not None
                data, fmt = self._vdep.annexb_params(), codec
            c = av.open(io.BytesIO(data), format=fmt)
            self._template_inputs.append(c)
            s = self._templates[codec] = (c.streams.audio if codec == "aac" else c.streams.video)[0]
        return s

    def _update_dimensions(self) -> None:
        assert self._vdep is not None
        sps = self._vdep.sps()
        if sps is None:
            return
        try:
            self.width, self.height = (h264_dimensions if self.video_codec == "h264" else h265_dimensions)(sps)
        except (ValueError, IndexError):
            log.warning("%s: could not read the picture size from the SPS", self.shown)

    # -- streaming ---------------------------------------------------------------------
    def packets(self) -> Iterator[tuple[bool, av.Packet, int, int]]:
        vdep, adep = self._vdep, self._adep
        assert vdep is not None
        vpush, vout = vdep.push, vdep.out
        apush, aout = (adep.push, adep.out) if adep is not None else (None, [])
        vch, ach = self._vch, self._ach
        Packet = av.Packet
        atb = Fraction(1, self._arate) if adep is not None else None
        lost_seen = 0
        bye = False
        last_read = _BATCH_BYTES
        t_start, got = time.monotonic(), 0
        while True:
            buf, mv = self._buf, self._mv
            pos, end = self._pos, self._end
            # walk every complete interleaved frame in the buffer
            while end - pos >= 4:
                if buf[pos] != 0x24:  # not '$': an RTSP message (keep-alive answer)
                    self._pos = pos
                    if self._take_message() is None:
                        break
                    pos = self._pos
                    continue
                stop = pos + 4 + ((buf[pos + 2] << 8) | buf[pos + 3])
                if stop > end:
                    break
                ch = buf[pos + 1]
                if ch == vch:
                    vpush(mv[pos + 4:stop])
                elif ch == ach:
                    apush(mv[pos + 4:stop])
                elif ch & 1:
                    bye = self._rtcp(ch, mv[pos + 4:stop]) or bye
                pos = stop
            self._pos = pos
            if bye:
                vdep.flush()
            if vout:
                for au in vout:
                    if not vdep.ready:
                        self.skipped_before_params += 1  # no SPS/PPS yet (none in the SDP): cannot describe it
                        continue
                    if self._last_vts is not None and self._last_vts - 90_000 < au.ts < self._last_vts:
                        # presentation time running backwards in decode order: B-frames.  This
                        # client gives each frame dts = pts and cannot reorder them; recording
                        # them would store the picture out of order.  The worker switches the
                        # camera to FFmpeg's client, which derives decode timestamps.
                        raise StreamError("b_frames", "摄像机使用 B 帧，内置 RTSP 客户端不支持 / the camera sends B-frames, "
                                                      "which the native RTSP client does not reorder")
                    pkt = Packet(au.data)
                    pkt.time_base = VIDEO_TB
                    pkt.pts = pkt.dts = au.ts
                    pkt.is_keyframe = au.key
                    if au.damaged:
                        pkt.is_corrupt = True
                    self._last_vts = au.ts
                    yield False, pkt, au.ts, au.ts
                vout.clear()
            if aout:
                for au in aout:
                    shift = self._a_shift
                    if shift is None:
                        shift = self._audio_shift(au.ts)
                        if shift is None:
                            continue  # no video yet to align with
                    pkt = Packet(au.data)
                    pkt.time_base = atb
                    pkt.pts = pkt.dts = au.ts + shift
                    yield True, pkt, 0, 0
                aout.clear()
            lost = vdep.lost + (adep.lost if adep is not None else 0)
            if lost != lost_seen:
                self.on_loss(lost - lost_seen)
                lost_seen = lost
            if bye:
                return  # the camera ended the stream (RTCP BYE), as FFmpeg's end of file
            if time.monotonic() >= self._next_keepalive:
                self._keepalive()
            if last_read < _BATCH_BYTES:
                time.sleep(self._pause(got, time.monotonic() - t_start))
            last_read = self._recv()
            got += last_read
            if last_read == 0:
                vdep.flush()
                if vout:
                    continue  # hand out the last access unit, then end
                raise self._fail("stream_ended", "码流结束 / stream ended: the camera closed the connection")

    def _pause(self, got: int, elapsed: float) -> float:
        """How long to wait before the next read: ``batch_wait_s``, unless the socket's
        receive buffer could not hold that long at this session's rate (Linux reports
        SO_RCVBUF doubled for its bookkeeping: about half of it is room for data)."""
        if elapsed < 1.0 or got <= 0:
            return min(self.batch_wait_s, _FIRST_WAIT_S)
        try:
            room = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) / 2
        except OSError:
            room = 64 * 1024
        return max(min(_MIN_WAIT_S, self.batch_wait_s), min(self.batch_wait_s, room / (got / elapsed)))

    def _rtcp(self, ch: int, p: memoryview) -> bool:
        reports, bye = parse_rtcp(p)
        for r in reports:
            self.sender_reports[ch] = r
        return bye and ch == self._vch + 1

    def _audio_shift(self, a_ts: int) -> int | None:
        """Offset that puts audio RTP time on the video's media timeline (in audio clock units)."""
        rate = self._arate
        v0, a0 = self._rtp_info.get(self._vch), self._rtp_info.get(self._ach)
        if v0 is not None and a0 is not None:
            # both tracks' rtptime at the PLAY instant: exact alignment
            self._a_shift = round(v0 * rate / 90000) - a0
        elif self._last_vts is not None:
            # no RTP-Info: assume the audio frame arrived with the latest video frame
            self._a_shift = round(self._last_vts * rate / 90000) - a_ts
        return self._a_shift

    def _keepalive(self) -> None:
        self._next_keepalive = time.monotonic() + self.session_timeout_s / 2
        uri = self.url
        self._send(self._request_bytes(self._keepalive_method, uri, {"Session": self.session}))
