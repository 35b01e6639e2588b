"""RTSP session set-up: OPTIONS, DESCRIBE, SETUP of the tracks labwitness records, PLAY.

:func:`start_session` takes a connected :class:`recorder.rtsp_conn.RtspConnection`
and leaves it playing; it answers with what was set up (:class:`Playing`):
the video track (H.264/H.265, required), the audio track when the camera offers
one this client receives (MPEG4-GENERIC AAC-hbr/lbr, or G.711 PCMA/PCMU, which
the worker transcodes to AAC: :mod:`recorder.audio_transcode`), the camera's
audio codec in any case (``audio_codec``: the worker says in the camera's status
when it is not recorded; an audio track this client does not receive is not set
up) and each track's ``rtptime`` at the PLAY instant from ``RTP-Info``.

Transport: RTP interleaved in the RTSP connection, unless the camera refuses it
(461 Unsupported Transport, or an answer without ``interleaved``) or the worker
remembered that it did: then RTP over UDP (:mod:`recorder.rtp_udp`), chosen
once per session for all its tracks (``conn.transport``).

A 3xx answer to OPTIONS or DESCRIBE is a redirect: :func:`start_session`
answers :class:`Moved` with the ``Location`` and the caller opens a new
connection there (:mod:`recorder.rtsp_redirect` decides what may follow).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from labwitness.errors import StreamError
from labwitness.media.aac import aac_config
from recorder.rtp_depacketize import h264_param_sets, h265_param_sets
from recorder.rtp_udp import UdpReceiver
from recorder.rtsp_conn import RtspConnection
from recorder.sdp import SdpMedia, control_url, parse_int, parse_sdp

log = logging.getLogger(__name__)

_VIDEO_ENCODINGS = {"H264": "h264", "H265": "hevc", "HEVC": "hevc"}
#: interleaved channel pairs asked for in SETUP (RTP, then RTCP on the odd one)
_VIDEO_CHANNEL, _AUDIO_CHANNEL = 0, 2


@dataclass
class AacTrack:
    """An MPEG4-GENERIC AAC track (RFC 3640) as SDP describes it."""

    config: bytes  # AudioSpecificConfig
    rate: int
    channels: int
    size_length: int
    index_length: int
    index_delta_length: int
    channel: int = -1  # interleaved RTP channel once set up


@dataclass
class G711Track:
    """A G.711 track (RFC 3551 PCMA/PCMU, static payload type 8/0 or by rtpmap)."""

    codec: str  # "pcm_alaw" | "pcm_mulaw"
    rate: int
    channels: int
    channel: int = -1  # interleaved RTP channel once set up


#: SDP audio encodings -> FFmpeg's codec names (what the worker's audio plan and the status speak)
#: (as PyAV names the decoder of FFmpeg's own RTSP client, so that both clients say the same)
_AUDIO_ENCODINGS = {"MPEG4-GENERIC": "aac", "PCMA": "pcm_alaw", "PCMU": "pcm_mulaw", "MP4A-LATM": "aac_latm",
                    "G726-16": "g726le", "G726-24": "g726le", "G726-32": "g726le", "G726-40": "g726le",
                    "AAL2-G726-32": "g726", "G722": "g722", "L16": "pcm_s16be", "MPA": "mp3", "OPUS": "opus"}


def audio_codec_name(m: SdpMedia) -> str:
    """The codec of an SDP audio medium as FFmpeg names it (unknown ones: the SDP encoding, lower case)."""
    return _AUDIO_ENCODINGS.get(m.encoding) or m.encoding.lower() or f"rtp payload type {m.payload_type}"


def g711_track(m: SdpMedia) -> G711Track | None:
    """The G.711 track of an audio medium, or None when it is not G.711."""
    codec = {"PCMA": "pcm_alaw", "PCMU": "pcm_mulaw"}.get(m.encoding)
    if codec is None or not 1 <= m.channels <= 2:
        return None
    return G711Track(codec, m.clock_rate if m.clock_rate > 0 else 8000, m.channels)


@dataclass
class Playing:
    """What one session set up: its tracks' codecs, channels and PLAY-time RTP timestamps."""

    video_codec: str  # "h264" | "hevc"
    video_params: list[bytes]  # parameter sets from the SDP (may be none: then in-band)
    framerate: float  # from the SDP; 0 when not given
    video_channel: int
    audio: AacTrack | G711Track | None
    audio_codec: str = ""  # the camera's audio codec (FFmpeg's name), set up or not; "" none
    rtp_info: dict[int, int] = field(default_factory=dict)  # channel -> rtptime at PLAY


def aac_track(m: SdpMedia) -> AacTrack | None:
    """The AAC track of an audio medium, or None when the native client does not record it."""
    if m.encoding != "MPEG4-GENERIC" or m.fmtp.get("mode", "").lower() not in ("aac-hbr", "aac-lbr"):
        return None
    try:
        config, rate, channels = aac_config(m.fmtp.get("config", ""))
    except ValueError:
        return None
    rate = m.clock_rate or rate
    if not (rate > 0 and parse_int(m.fmtp.get("sizelength", "-1")) > 0):
        return None
    return AacTrack(config, rate, channels, parse_int(m.fmtp.get("sizelength", "13")),
                    max(0, parse_int(m.fmtp.get("indexlength", "3"))),
                    max(0, parse_int(m.fmtp.get("indexdeltalength", "3"))))


@dataclass
class Moved:
    """The camera redirected OPTIONS or DESCRIBE (3xx) to ``location``."""

    status: int
    location: str


def start_session(conn: RtspConnection, transport: str = "tcp") -> Playing | Moved:
    """OPTIONS, DESCRIBE, SETUP video (and AAC or G.711 audio), PLAY; StreamError when the camera cannot be
    recorded.  ``transport`` "udp" skips asking for interleaving (a camera known to refuse it)."""
    conn.transport = transport
    opts = conn.request("OPTIONS", conn.url)
    if 300 <= opts.status < 400:
        return _moved(conn, opts)
    if "GET_PARAMETER" in opts.header("public").upper():
        conn.keepalive_method = "GET_PARAMETER"
    desc = conn.request("DESCRIBE", conn.url, {"Accept": "application/sdp"})
    if 300 <= desc.status < 400:
        return _moved(conn, desc)
    base = desc.header("content-base") or desc.header("content-location") or conn.url
    session_control, media = parse_sdp(desc.body.decode("utf-8", "replace"))
    if session_control and session_control != "*":
        base = control_url(base, session_control)
    video = next((m for m in media if m.kind == "video"), None)
    if video is None:
        raise conn.fail("no_video", "码流中没有视频 / the stream has no video track")
    codec = _VIDEO_ENCODINGS.get(video.encoding)
    if codec is None:
        raise conn.fail("unsupported_codec", f"不支持的视频编码 / video codec {video.encoding or video.payload_type!r} "
                                             "is not H.264/H.265")
    params = h264_param_sets(video.fmtp) if codec == "h264" else h265_param_sets(video.fmtp)
    audio_media = next((m for m in media if m.kind == "audio"), None)
    audio: AacTrack | G711Track | None = None
    if audio_media is not None:
        audio = aac_track(audio_media) or g711_track(audio_media)
        # (not logged here: the worker puts it in the camera's status and logs it once a camera)

    playing = Playing(codec, params, video.framerate, _setup(conn, control_url(base, video.control), _VIDEO_CHANNEL), None,
                      audio_codec_name(audio_media) if audio_media is not None else "")
    if audio is not None:
        assert audio_media is not None
        try:
            audio.channel = _setup(conn, control_url(base, audio_media.control), _AUDIO_CHANNEL)
            playing.audio = audio
        except StreamError as e:  # video is what matters: record it without the audio
            if e.reason in ("auth_failed", "timeout", "stream_ended"):
                raise
            log.warning("%s: audio track not set up, recording video only: %s", conn.shown, e)
    play = conn.request("PLAY", base, {"Session": conn.session})
    urls = {control_url(base, video.control): playing.video_channel}
    if playing.audio is not None and audio_media is not None:
        urls[control_url(base, audio_media.control)] = playing.audio.channel
    playing.rtp_info = rtp_info(play.header("rtp-info"), urls)
    conn.playing()
    return playing


def _moved(conn: RtspConnection, resp) -> Moved:
    location = resp.header("location")
    if not location:
        raise conn.fail("stream_error", f"摄像机要求重定向但未给出地址 / the camera redirected ({resp.status} "
                                        f"{resp.reason}) without a Location")
    return Moved(resp.status, location)


def _setup(conn: RtspConnection, uri: str, channel: int) -> int:
    """SETUP one track, interleaved on ``channel`` or over UDP; the channel the packet loop sees it on."""
    headers = {}
    if conn.session:
        headers["Session"] = conn.session
    if conn.transport == "tcp":
        headers["Transport"] = f"RTP/AVP/TCP;unicast;interleaved={channel}-{channel + 1}"
        resp = conn.request("SETUP", uri, headers, accept=(461,))
        if resp.status != 461 and "interleaved=" in resp.header("transport"):
            _session(conn, resp)
            m = re.search(r"interleaved=(\d+)", resp.header("transport"))
            return int(m.group(1)) if m else channel
        if channel != _VIDEO_CHANNEL:  # video is interleaved already: one transport per session
            raise conn.fail("stream_error", "摄像机拒绝以 TCP 传输此轨道 / the camera refused this track over TCP")
        log.info("%s: the camera refuses RTP over the RTSP connection (%s); using RTP over UDP",
                 conn.shown, f"{resp.status} {resp.reason}" if resp.status == 461 else "no interleaved in its answer")
        if resp.status != 461:
            _session(conn, resp)
            headers["Session"] = conn.session
        conn.transport = "udp"
    return _setup_udp(conn, uri, channel, headers)


def _setup_udp(conn: RtspConnection, uri: str, channel: int, headers: dict[str, str]) -> int:
    if conn.udp is None:
        conn.udp = UdpReceiver(conn)
    track = conn.udp.add_track(channel)
    a, b = track.ports
    headers["Transport"] = f"RTP/AVP;unicast;client_port={a}-{b}"
    resp = conn.request("SETUP", uri, headers)
    _session(conn, resp)
    m = re.search(r"server_port=(\d+)(?:-(\d+))?", resp.header("transport"))
    if m is None:
        raise conn.fail("stream_error", "摄像机未给出 UDP 端口 / the camera's SETUP answer has no server_port for RTP over UDP")
    rtp = int(m.group(1))
    conn.udp.connect(track, rtp, int(m.group(2)) if m.group(2) else rtp + 1)
    return channel


def _session(conn: RtspConnection, resp) -> None:
    sess = resp.header("session")
    if sess:
        sid, _, rest = sess.partition(";")
        conn.session = sid.strip()
        m = re.search(r"timeout\s*=\s*(\d+)", rest)
        if m and int(m.group(1)) > 0:
            conn.session_timeout_s = float(m.group(1))


def rtp_info(value: str, urls: dict[str, int]) -> dict[int, int]:
    """Channel -> rtptime from PLAY's ``RTP-Info``, matching each entry's URL to a track's
    control URL (cameras give it whole, as a path, or as the last component only)."""
    out: dict[int, int] = {}
    for entry in value.split(","):
        fields = dict(f.strip().partition("=")[::2] for f in entry.split(";"))
        url, rtptime = fields.get("url", ""), fields.get("rtptime", "")
        if not rtptime.isdigit():
            continue
        for u, ch in urls.items():
            if url and (url == u or u.endswith(url) or url.endswith(u.rsplit("/", 1)[-1])):
                out[ch] = int(rtptime)
    return out
