"""The benchmark's cameras: endless 1080p25 streams, one per *source* kind.

=====================  =========================================================
``h264``               H.264 (Constrained Baseline, no B-frames) ~4 Mbit/s, GOP
                       2 s, no audio: the common IP camera default.
``h265-g711``          H.265 Main ~2 Mbit/s (cameras halve the bitrate for
                       H.265), GOP 2 s, no B-frames, plus G.711 A-law audio
                       (8 kHz mono, PCMA, the factory default of many cameras).
``h264-bframes-aac``   H.264 High with 2 B-frames (no pyramid) ~4 Mbit/s, GOP
                       2 s, plus AAC-LC audio (16 kHz mono).
``h264-midgop``        H.264 like ``h264`` but a long GOP (one IDR every 5 s):
                       cameras joining the shared stream at staggered times
                       land mid-GOP, as 100 cameras behind one shared stream do.
=====================  =========================================================

The video of each is made once, cached under ``bench/out/``:
:func:`simulator.clip.make_clip` for the B-frame-free ones, a PyAV libx264
encode here for the B-frame one; the simulator's own frames (a gradient and a
moving bar) compress to well under 1 Mbit/s, so a fixed texture plus a little
per-frame "sensor noise" is added to the luma plane; the encoder's rate
control then holds the requested bitrate the way a real camera's does.

The MP4 is remuxed (stream copy) into MPEG-TS and served by ONE shared
GStreamer mount that loops it forever::

    multifilesrc loop=true ! tsdemux ! h264parse|h265parse ! rtph264pay|rtph265pay

tsdemux treats the jump back at each loop as a PCR discontinuity and keeps the
output timestamps running, so every client sees one continuous real-time
stream however long the run is (a plain ``from_clip`` mount would end with
the clip).  All N cameras of a run connect to this one mount.

Audio is not in the file: MPEG-TS has no stream type for G.711 (tsdemux and
mpegtsmux do not carry it), so the mount encodes it live in the same pipeline
(:func:`audio_branch`: a 440 Hz tone, ``alawenc`` or ``avenc_aac``) as a
second RTP stream next to the looped video; AAC is made the same way so both
audio sources behave alike.

:func:`probe` joins a source's RTSP URL with FFmpeg's client (PyAV) and reads
what really arrives -- codec, size, bitrate, keyframe interval, B-frames
(presentation order differs from arrival order), audio codec/rate/channels,
frames before the first keyframe -- and :func:`check` compares it with what
the source claims, so a benchmark never runs on a source that is not what
its name says; it joins as a second client, after :func:`start_keeper`'s, as
every camera of a run does.  :func:`inspect_recording` reads the start of a recorded
segment (codecs, whether it starts at a keyframe, B-frames kept).
"""

from __future__ import annotations

import io
import json
import subprocess
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from simulator import clip as clipmod
from simulator.rtsp import Mount, _gst_quote

WIDTH, HEIGHT, FPS = 1920, 1080, 25
BITRATE = 4_000_000  # bit/s
GOP = 2 * FPS  # one IDR every 2 s, a common IP camera default
CLIP_SECONDS = 60
_NOISE_FRAMES = 7
_NOISE_AMPLITUDE = 4  # luma levels; 4 gives ~4.2 Mbit/s at 1080p ultrafast

#: what FFmpeg (PyAV) calls each audio codec a source may carry, and its rate
AUDIO_EXPECT = {"pcma": ("pcm_alaw", 8000), "aac": ("aac", 16000)}


@dataclass(frozen=True)
class SourceSpec:
    """What one benchmark source is (and what :func:`check` verifies it carries)."""

    name: str
    summary: str
    codec: str  # "h264" | "hevc"
    bitrate: int  # bit/s asked of the encoder
    gop: int  # frames between IDRs (closed GOPs)
    bframes: int = 0
    audio: str | None = None  # "pcma" | "aac" | None: live in the mount, see the module docstring
    joins_mid_gop: bool = False  # the scenario needs (and the probe verifies) joins landing mid-GOP

    @property
    def gop_s(self) -> float:
        return self.gop / FPS

    @property
    def ffmpeg_segment_format(self) -> str:
        """Container for the ``ffmpeg -c copy -f segment`` baseline: mp4 refuses G.711 (no MP4
        sample entry for A-law in FFmpeg 5.1) and mpegts would carry it only as an opaque data
        stream, so G.711 goes to Matroska, which stores it as audio; everything else to MP4."""
        return "matroska" if self.audio == "pcma" else "mp4"


SOURCES: dict[str, SourceSpec] = {s.name: s for s in (
    SourceSpec("h264", "H.264 Constrained Baseline 1080p25 ~4 Mbit/s, GOP 2 s, no B-frames, no audio",
               "h264", BITRATE, GOP),
    SourceSpec("h265-g711", "H.265 Main 1080p25 ~2 Mbit/s, GOP 2 s, no B-frames + G.711 A-law 8 kHz mono",
               "hevc", 2_000_000, GOP, audio="pcma"),
    SourceSpec("h264-bframes-aac", "H.264 High 1080p25 ~4 Mbit/s, GOP 2 s, 2 B-frames + AAC-LC 16 kHz mono",
               "h264", BITRATE, GOP, bframes=2, audio="aac"),
    SourceSpec("h264-midgop", "H.264 Constrained Baseline 1080p25 ~4 Mbit/s, long GOP 5 s, no audio; "
               "cameras join the shared stream mid-GOP", "h264", BITRATE, 5 * FPS, joins_mid_gop=True),
)}


class _TexturedPainter(clipmod._Painter):
    """The simulator's painter plus a fixed texture and per-frame noise."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__(width, height)
        rng = np.random.default_rng(1)
        texture = rng.integers(0, 40, size=(height, width), dtype=np.uint8)
        self.background = (self.background // 2 + texture + 30).astype(np.uint8)
        self.noise = [rng.integers(0, _NOISE_AMPLITUDE, size=(height, width), dtype=np.uint8)
                      for _ in range(_NOISE_FRAMES)]

    def paint(self, i: int) -> np.ndarray:
        buf = super().paint(i)
        luma = buf[: self.height]
        np.add(luma, self.noise[i % _NOISE_FRAMES], out=luma)
        return buf


@dataclass(frozen=True)
class Source:
    mp4: Path
    ts: Path
    seconds: float
    frames: int
    keyframes: int
    bitrate: int  # measured, bit/s
    generate_seconds: float  # wall time it took to make (0 when cached)
    spec: SourceSpec = SOURCES["h264"]

    def mount(self) -> Mount:
        parse, pay = ("h265parse", "rtph265pay") if self.spec.codec == "hevc" else ("h264parse", "rtph264pay")
        launch = (
            f"multifilesrc location={_gst_quote(str(self.ts.resolve()))} loop=true "
            'caps="video/mpegts,systemstream=true,packetsize=188" ! tsdemux ! '
            f"{parse} config-interval=-1 ! {pay} name=pay0 pt=96"
        )
        if self.spec.audio:
            launch += " " + audio_branch(self.spec.audio)
        return Mount(launch=launch, shared=True)


def audio_branch(codec: str) -> str:
    """A live 440 Hz tone as ``pay1``, like :func:`simulator.rtsp._live_audio`, behind a
    ``tee allow-not-linked=true``: a client that sets up only the video (labwitness's native
    client skips audio it does not record) makes the server unlink the audio payloader, and
    the NOT_LINKED flowing back up would stop the live source with an error -- which ends a
    shared mount for every camera (the next DESCRIBE gets 503)."""
    tone = "audiotestsrc is-live=true wave=sine freq=440 volume=0.3"
    guard = "tee allow-not-linked=true ! "
    if codec == "aac":
        return (f"{tone} samplesperbuffer=1024 ! audioconvert ! audioresample ! "
                f"audio/x-raw,rate=16000,channels=1 ! avenc_aac ! {guard}rtpmp4gpay name=pay1 pt=97")
    if codec == "pcma":
        return (f"{tone} samplesperbuffer=160 ! audio/x-raw,format=S16LE,rate=8000,channels=1 ! "
                f"alawenc ! {guard}rtppcmapay name=pay1 pt=8")
    raise ValueError(f"unsupported audio codec {codec!r}")


def _encode_bframes(path: Path, spec: SourceSpec, seconds: int) -> clipmod.ClipInfo:
    """A camera-like H.264 High encode with B-frames (make_clip encodes none): closed GOPs of
    ``spec.gop`` frames, ``spec.bframes`` B-frames between references, no B-pyramid, no
    scene-cut IDRs, ABR at ``spec.bitrate``."""
    frames = keyframes = 0
    painter = _TexturedPainter(WIDTH, HEIGHT)
    with av.open(str(path), mode="w", format="mp4") as container:
        params = (f"keyint={spec.gop}:min-keyint={spec.gop}:scenecut=0:open-gop=0:bframes={spec.bframes}"
                  ":b-adapt=0:b-pyramid=none")
        stream = container.add_stream("libx264", rate=FPS, options={
            "preset": "veryfast", "profile": "high", "x264-params": params})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = spec.gop
        stream.codec_context.max_b_frames = spec.bframes
        stream.codec_context.bit_rate = spec.bitrate

        def mux(packets) -> None:
            nonlocal frames, keyframes
            for p in packets:
                frames += 1
                keyframes += 1 if p.is_keyframe else 0
                container.mux(p)

        for i in range(seconds * FPS):
            frame = av.VideoFrame.from_ndarray(painter.paint(i), format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            mux(stream.encode(frame))
        mux(stream.encode(None))
    return clipmod.ClipInfo(path=path, frames=frames, keyframes=keyframes, fps=FPS, seconds=seconds,
                            codec="h264", has_audio=False)


def ensure_source(out_dir: Path, seconds: int = CLIP_SECONDS, log=print, spec: SourceSpec | str = "h264") -> Source:
    """The cached clip of ``spec``, made now if missing (0.3-2 s of CPU per clip second)."""
    spec = SOURCES[spec] if isinstance(spec, str) else spec
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"src-{WIDTH}x{HEIGHT}-{FPS}fps-{spec.bitrate // 1000}k-gop{spec.gop}-{seconds}s"
    if spec.name != "h264":  # (the original source keeps its cache name)
        stem = f"src-{spec.codec}-b{spec.bframes}-" + stem[4:]
    mp4, ts, info_f = out_dir / f"{stem}.mp4", out_dir / f"{stem}.ts", out_dir / f"{stem}.json"
    if mp4.exists() and ts.exists() and info_f.exists():
        d = json.loads(info_f.read_text())
        return Source(mp4=mp4, ts=ts, seconds=d["seconds"], frames=d["frames"], keyframes=d["keyframes"],
                      bitrate=d["bitrate"], generate_seconds=0.0, spec=spec)
    log(f"generating the {seconds} s 1080p {spec.name} source clip once (cached in {out_dir}) ...")
    t0 = time.monotonic()
    tmp = mp4.with_suffix(".tmp.mp4")
    if spec.bframes:
        info = _encode_bframes(tmp, spec, seconds)
    else:
        original = clipmod._Painter
        clipmod._Painter = _TexturedPainter
        try:
            info = clipmod.make_clip(tmp, seconds=seconds, fps=FPS, width=WIDTH, height=HEIGHT, codec=spec.codec,
                                     gop=spec.gop, bitrate=spec.bitrate)
        finally:
            clipmod._Painter = original
    tmp.replace(mp4)
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(mp4), "-c", "copy",
                    "-bsf:v", "hevc_mp4toannexb" if spec.codec == "hevc" else "h264_mp4toannexb",
                    "-f", "mpegts", str(ts)], check=True)
    elapsed = time.monotonic() - t0
    bitrate = round(mp4.stat().st_size * 8 / info.seconds)
    src = Source(mp4=mp4, ts=ts, seconds=info.seconds, frames=info.frames, keyframes=info.keyframes,
                 bitrate=bitrate, generate_seconds=elapsed, spec=spec)
    d = asdict(src)
    d.update(mp4=str(mp4), ts=str(ts), spec=spec.name)
    info_f.write_text(json.dumps(d, indent=2))
    log(f"{spec.name} source clip ready in {elapsed:.1f} s: {info.frames} frames, {bitrate / 1e6:.2f} Mbit/s")
    return src


# -- what really arrives over RTSP ---------------------------------------------------------------
def start_keeper(url: str, transport: str = "tcp") -> subprocess.Popen:
    """A client that stays on a shared mount for a whole source's runs (``ffmpeg -c copy -f null``).

    The first client of a shared mount starts its pipeline, so it would begin at the clip's
    first keyframe; with the keeper on, the stream runs before any camera connects (as a real
    camera's does: its GOPs do not restart when a recorder connects) and every camera, the
    first included, joins wherever the stream is -- mid-GOP, nearly always."""
    return subprocess.Popen(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "quiet", "-rtsp_transport", transport,
                             "-i", url, "-map", "0", "-c", "copy", "-f", "null", "-"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_keeper(keeper: subprocess.Popen) -> None:
    keeper.terminate()
    try:
        keeper.wait(10)
    except subprocess.TimeoutExpired:
        keeper.kill()
        keeper.wait()


def probe(url: str, seconds: float, timeout: float = 20.0, transport: str = "tcp") -> dict:
    """Join ``url`` with FFmpeg's RTSP client (TCP) and describe ``seconds`` of what arrives."""
    t_end = None
    video: list[tuple[int | None, bool, int]] = []  # (pts, keyframe, size) in arrival order
    audio_packets = 0
    with av.open(url, options={"rtsp_transport": transport}, timeout=timeout) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0] if c.streams.audio else None
        vcc = v.codec_context
        for pkt in c.demux(*([v] + ([a] if a else []))):
            if pkt.size == 0:
                continue
            if pkt.stream is v:
                video.append((pkt.pts, bool(pkt.is_keyframe), pkt.size))
            else:
                audio_packets += 1
            t_end = t_end or time.monotonic() + seconds
            if time.monotonic() >= t_end:
                break
        tb = v.time_base
        out = {
            "video_codec": vcc.name, "width": vcc.width, "height": vcc.height, "profile": vcc.profile,
            "audio_codec": a.codec_context.name if a else None,
            "audio_rate": a.codec_context.sample_rate if a else None,
            "audio_channels": a.codec_context.channels if a else None,
            "audio_packets": audio_packets,
        }
    keys = [i for i, (_, k, _) in enumerate(video) if k]
    out["video_packets"] = len(video)
    # the join: frames that arrived before the first keyframe (0 = joined on a keyframe)
    out["frames_before_first_keyframe"] = keys[0] if keys else len(video)
    out["keyframe_interval_frames"] = keys[1] - keys[0] if len(keys) > 1 else None
    # B-frames: a packet presented before one that arrived earlier (decode order != presentation order)
    reordered, top = 0, None
    for pts, _, _ in video:
        if pts is None:
            continue
        if top is not None and pts < top:
            reordered += 1
        top = pts if top is None else max(top, pts)
    out["reordered_packets"] = reordered
    pts = [p for p, _, _ in video if p is not None]
    span = float((max(pts) - min(pts)) * tb) if len(pts) > 1 else 0.0
    out["bitrate"] = round(sum(s for _, _, s in video) * 8 / (span + 1 / FPS)) if span else None
    return out


def check(spec: SourceSpec, p: dict) -> list[str]:
    """What ``p`` (a :func:`probe`) shows that ``spec`` does not claim; [] when it is all there."""
    bad = []
    if p["video_codec"] != spec.codec:
        bad.append(f"video {p['video_codec']}, not {spec.codec}")
    if (p["width"], p["height"]) != (WIDTH, HEIGHT):
        bad.append(f"size {p['width']}x{p['height']}")
    if p["keyframe_interval_frames"] is None:
        bad.append("fewer than two keyframes seen")
    elif abs(p["keyframe_interval_frames"] - spec.gop) > 1:
        bad.append(f"keyframe every {p['keyframe_interval_frames']} frames, not {spec.gop}")
    if bool(spec.bframes) != bool(p["reordered_packets"]):
        bad.append(f"{p['reordered_packets']} packets out of presentation order (B-frames expected: {spec.bframes})")
    if p["bitrate"] is None or not 0.6 * spec.bitrate <= p["bitrate"] <= 1.5 * spec.bitrate:
        bad.append(f"video bitrate {p['bitrate']} bit/s, asked {spec.bitrate}")
    if spec.audio is None:
        if p["audio_codec"]:
            bad.append(f"unexpected audio {p['audio_codec']}")
    else:
        codec, rate = AUDIO_EXPECT[spec.audio]
        got = (p["audio_codec"], p["audio_rate"], p["audio_channels"])
        if got != (codec, rate, 1) or not p["audio_packets"]:
            bad.append(f"audio {got} ({p['audio_packets']} packets), expected ({codec}, {rate}, 1)")
    if spec.joins_mid_gop and not 0 < p["frames_before_first_keyframe"] < spec.gop:
        bad.append(f"the join did not land mid-GOP ({p['frames_before_first_keyframe']} frames before a keyframe)")
    return bad


def describe(p: dict) -> str:
    """One line of what a probe saw."""
    audio = (f"{p['audio_codec']} {p['audio_rate']} Hz {p['audio_channels']} ch ({p['audio_packets']} pkts)"
             if p["audio_codec"] else "no audio")
    kf = p["keyframe_interval_frames"]
    return (f"{p['video_codec']} {p['profile'] or ''} {p['width']}x{p['height']} "
            f"{(p['bitrate'] or 0) / 1e6:.2f} Mbit/s, keyframe every {kf if kf is not None else '?'} frames "
            f"({kf / FPS if kf else 0:g} s), {p['reordered_packets']} of {p['video_packets']} packets reordered "
            f"(B-frames {'yes' if p['reordered_packets'] else 'no'}), {audio}, "
            f"joined {p['frames_before_first_keyframe']} frames before a keyframe")


def inspect_recording(data: bytes | str | Path, packets: int = 120) -> dict:
    """The start of one recorded segment (whole file, or its first bytes): codecs, whether its
    first video packet is a keyframe, and whether B-frames survived (pts != dts somewhere)."""
    src = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    out: dict = {"video_codec": None, "audio_codec": None, "first_video_keyframe": None,
                 "video_packets": 0, "audio_packets": 0, "reordered": 0, "error": None}
    try:
        with av.open(src) as c:
            out["video_codec"] = c.streams.video[0].codec_context.name if c.streams.video else None
            out["audio_codec"] = c.streams.audio[0].codec_context.name if c.streams.audio else None
            for pkt in c.demux():
                if pkt.size == 0:
                    continue
                if pkt.stream.type == "video":
                    if out["first_video_keyframe"] is None:
                        out["first_video_keyframe"] = bool(pkt.is_keyframe)
                    out["video_packets"] += 1
                    if pkt.pts is not None and pkt.dts is not None and pkt.pts != pkt.dts:
                        out["reordered"] += 1
                elif pkt.stream.type == "audio":
                    out["audio_packets"] += 1
                if out["video_packets"] >= packets:
                    break
    except (av.error.FFmpegError, OSError) as e:  # a truncated read ends mid-fragment: what came before counts
        if not out["video_packets"]:
            out["error"] = str(e)[:200]
    return out
