"""Simulated RTSP cameras for tests: a GStreamer RTSP server in a subprocess.

GstRtspServer is only reachable through PyGObject (``gi``), which exists for
Debian's ``/usr/bin/python3`` but not inside the project virtualenv, so
:class:`RtspSimulator` runs :mod:`rtsp_gst_server` (a standalone script next to
this file) under that interpreter and talks to it through a JSON config file
and one ``READY <port>`` line on stdout.

Typical use::

    clip = make_clip(tmp_path / "a.mp4", seconds=10)
    mounts = {"/cam1": Mount.from_clip(clip.path), "/live": Mount.live()}
    with RtspSimulator(mounts, workdir=tmp_path) as sim:
        url = sim.url("/cam1")          # rtsp://127.0.0.1:<port>/cam1
        sim.kill(); sim.restart()       # camera reboot, same port

Behaviour worth knowing:

* Mounts are not shared by default: every client gets its own pipeline, so a
  :meth:`Mount.from_clip` mount plays the file from its start, once, at real-time
  pace, then ends the stream (RTCP BYE; FFmpeg reports end of file).
* Publish clock mode ``clock_and_offset`` makes gst-rtsp-server treat media as
  non-seekable, so the ``Range: npt=0.000-`` in FFmpeg's PLAY never causes a
  flushing seek. It matters for shared mounts: in the default ``clock`` mode a
  client joining a shared clip mount rewinds it to 0 for every viewer.
* The listening socket uses SO_REUSEADDR, so :meth:`RtspSimulator.restart`
  rebinds the same port at once, even with old connections in TIME-WAIT.
* A mount with ``auth`` answers 401 (Basic challenge) to missing or wrong
  credentials; other mounts stay open.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import quote

from simulator.clip import ClipInfo, Codec

SERVER_SCRIPT = Path(__file__).with_name("rtsp_gst_server.py")
DEFAULT_PYTHON = os.environ.get("LABWITNESS_GST_PYTHON", "/usr/bin/python3")
# Exit status rtsp_gst_server.py uses when it cannot bind/listen.
_EXIT_LISTEN_FAILED = 3


class RtspSimulatorError(RuntimeError):
    pass


def _gst_quote(value: str) -> str:
    """Quote a property value for a gst-launch description."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Mount:
    """One RTSP path: a gst-launch bin whose payloaders are named pay0, pay1, ..."""

    launch: str
    shared: bool = False
    auth: tuple[str, str] | None = None
    protocols: tuple[str, ...] = ("tcp", "udp")  # RTP transports accepted; ("udp",): refuses RTP over TCP

    def with_protocols(self, *protocols: str) -> Mount:
        return dataclasses.replace(self, protocols=tuple(protocols))

    @classmethod
    def from_clip(
        cls,
        clip: str | Path | ClipInfo,
        codec: Codec | None = None,
        audio: bool | None = None,
        *,
        shared: bool = False,
        auth: tuple[str, str] | None = None,
    ) -> Mount:
        """Serve an MP4 once, from its start, at real-time pace, then EOS.

        ``codec``/``audio`` default to the clip's own when given a
        :class:`ClipInfo`, otherwise to H.264 without audio.
        """
        if isinstance(clip, ClipInfo):
            path = clip.path
            codec = clip.codec if codec is None else codec
            audio = clip.has_audio if audio is None else audio
        else:
            path = Path(clip)
        codec = codec or "h264"
        if codec not in _PARSE_PAY:
            raise ValueError(f"unsupported codec {codec!r}; use one of {sorted(_PARSE_PAY)}")
        parse, pay = _PARSE_PAY[codec]
        # config-interval=-1 puts SPS/PPS (and VPS) in-band before every IDR:
        # the MP4 keeps them only in the sample description, and a client that
        # joins mid-stream or loses the SDP parameters would otherwise never
        # be able to decode.
        launch = (
            f"filesrc location={_gst_quote(str(Path(path).resolve()))} ! qtdemux name=d "
            f"d.video_0 ! queue ! {parse} config-interval=-1 ! {pay} name=pay0 pt=96"
        )
        if audio:
            launch += " d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97"
        return cls(launch=launch, shared=shared, auth=auth)

    @classmethod
    def live(
        cls,
        width: int = 320,
        height: int = 240,
        fps: int = 25,
        codec: Codec = "h264",
        bitrate_kbps: int = 500,
        *,
        shared: bool = False,
        auth: tuple[str, str] | None = None,
        bframes: int = 0,
        key_int: int | None = None,
        audio: AudioCodec | None = None,
    ) -> Mount:
        """An endless live encode (scrolling test pattern), one IDR per ``key_int`` frames (default: a second).

        ``bframes`` > 0 encodes B-frames (decode order differs from presentation order,
        as many cameras' "H.264 Main/High" or H.265 settings do); ``audio`` adds a live
        tone as a second track: ``"aac"`` (MPEG4-GENERIC), ``"pcma"``/``"pcmu"`` (G.711,
        8 kHz, the factory default of many cameras) or ``"g726"`` (a codec nobody records).
        """
        source = (
            "videotestsrc is-live=true pattern=smpte horizontal-speed=4 ! "
            f"video/x-raw,format=I420,width={width},height={height},framerate={fps}/1"
        )
        gop = key_int or fps
        if codec == "h264":
            # tune=zerolatency turns B-frames off; with B-frames a short lookahead keeps latency low
            # (the ultrafast preset forces B-frames off whatever bframes says: superfast keeps them)
            tune = ("tune=zerolatency speed-preset=ultrafast" if bframes == 0
                    else f"bframes={bframes} b-adapt=false rc-lookahead=5 speed-preset=superfast")
            encoder = (
                f"x264enc {tune} "
                f"key-int-max={gop} bitrate={bitrate_kbps} ! "
                # rtph264pay's caps would otherwise negotiate Constrained Baseline: no B-frames
                + ("video/x-h264,profile=main ! " if bframes else "")
                + "h264parse config-interval=-1"
            )
        elif codec == "hevc":
            tune = "tune=zerolatency " if bframes == 0 else ""
            opts = "log-level=error" + (f":bframes={bframes}:b-adapt=0:rc-lookahead=5" if bframes else "")
            encoder = (
                f"x265enc {tune}speed-preset=ultrafast "
                f"key-int-max={gop} bitrate={bitrate_kbps} option-string={opts} "
                "! h265parse config-interval=-1"
            )
        else:
            raise ValueError(f"unsupported codec {codec!r}")
        pay = _PARSE_PAY[codec][1]
        launch = f"{source} ! {encoder} ! {pay} name=pay0 pt=96"
        if audio is not None:
            launch += " " + _live_audio(audio)
        return cls(launch=launch, shared=shared, auth=auth)

    @classmethod
    def audio_only(
        cls, *, shared: bool = False, auth: tuple[str, str] | None = None
    ) -> Mount:
        """A live G.711 A-law tone and no video, like an intercom/audio device."""
        return cls(
            launch=(
                "audiotestsrc is-live=true wave=sine freq=440 samplesperbuffer=160 ! "
                "audio/x-raw,format=S16LE,rate=8000,channels=1 ! alawenc ! "
                "rtppcmapay name=pay0 pt=8"
            ),
            shared=shared,
            auth=auth,
        )


AudioCodec = Literal["aac", "pcma", "pcmu", "g726"]


def _live_audio(codec: str) -> str:
    """A live 440 Hz tone payloaded as ``pay1`` in the given codec."""
    tone = "audiotestsrc is-live=true wave=sine freq=440 volume=0.3"
    if codec == "aac":
        return (f"{tone} samplesperbuffer=1024 ! audioconvert ! audioresample ! "
                "audio/x-raw,rate=16000,channels=1 ! avenc_aac ! rtpmp4gpay name=pay1 pt=97")
    if codec in ("pcma", "pcmu"):
        enc, pay, pt = ("alawenc", "rtppcmapay", 8) if codec == "pcma" else ("mulawenc", "rtppcmupay", 0)
        return (f"{tone} samplesperbuffer=160 ! audio/x-raw,format=S16LE,rate=8000,channels=1 ! "
                f"{enc} ! {pay} name=pay1 pt={pt}")
    if codec == "g726":
        return (f"{tone} samplesperbuffer=160 ! audio/x-raw,format=S16LE,rate=8000,channels=1 ! "
                "avenc_g726 bitrate=32000 ! rtpg726pay name=pay1 pt=98")
    raise ValueError(f"unsupported audio codec {codec!r}")


_PARSE_PAY: dict[str, tuple[str, str]] = {
    "h264": ("h264parse", "rtph264pay"),
    "hevc": ("h265parse", "rtph265pay"),
}


class RtspSimulator:
    """Runs ``rtsp_gst_server.py`` under the system Python; a context manager.

    ``port=0`` picks a free port on the first :meth:`start`; later starts
    (:meth:`restart`) reuse the port that was bound, so client URLs stay valid
    across a simulated camera reboot.
    """

    def __init__(
        self,
        mounts: dict[str, Mount],
        port: int = 0,
        host: str = "127.0.0.1",
        workdir: Path | None = None,
        *,
        python: str = DEFAULT_PYTHON,
        ready_timeout: float = 15.0,
        publish_clock_mode: Literal["none", "clock", "clock_and_offset"] = "clock_and_offset",
        tls_pem: Path | None = None,
    ) -> None:
        """``tls_pem`` (certificate + key): RTSP over TLS only; :meth:`url` gives ``rtsps://``."""
        if not mounts:
            raise ValueError("at least one mount is needed")
        self.mounts = {_normalise_path(p): m for p, m in mounts.items()}
        self.host = host
        self.python = python
        self.ready_timeout = ready_timeout
        self.publish_clock_mode = publish_clock_mode
        self.tls_pem = tls_pem
        self._port = port
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="rtsp-sim-")) if workdir is None else Path(workdir)
        self._process: subprocess.Popen[bytes] | None = None
        self._generation = 0
        self._stderr_path: Path | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> RtspSimulator:
        """Spawn the server and wait until it listens; returns ``self``."""
        if self.running:
            raise RtspSimulatorError("RTSP simulator is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._generation += 1
        stem = f"rtsp-server.{self._generation}"
        config_path = self.workdir / f"{stem}.json"
        stdout_path = self.workdir / f"{stem}.stdout"
        self._stderr_path = self.workdir / f"{stem}.stderr"
        config_path.write_text(json.dumps(self._config(), indent=2), encoding="utf-8")

        # PYTHONPATH/PYTHONHOME from the venv would point the system
        # interpreter at the wrong site-packages (and break ``gi``).
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        with open(stdout_path, "wb") as out, open(self._stderr_path, "wb") as err:
            # stdin stays an open pipe that is never written: if this process
            # dies without stop(), the server sees EOF and exits by itself.
            # Output goes to files, not pipes, so a chatty GStreamer warning
            # can never block the server on a full pipe nobody reads.
            self._process = subprocess.Popen(
                [self.python, str(SERVER_SCRIPT), str(config_path)],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                env=env,
                start_new_session=True,  # a Ctrl-C aimed at pytest is not sent to it too
            )
        try:
            self._port = self._wait_ready(stdout_path)
        except BaseException:
            self._terminate(signal.SIGKILL, timeout=5.0)
            raise
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        self._terminate(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: the abrupt death of a camera (connections reset, no TEARDOWN)."""
        self._terminate(signal.SIGKILL, timeout=5.0)

    def restart(self) -> RtspSimulator:
        """Stop if running, then start again on the same port."""
        if self._port == 0:
            raise RtspSimulatorError("restart() before the first start(): no port to reuse")
        self.stop()
        return self.start()

    def __enter__(self) -> RtspSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- addresses ---------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port == 0:
            raise RtspSimulatorError("port is not known until start() has bound one")
        return self._port

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process else None

    def url(self, path: str, user: str | None = None, password: str | None = None) -> str:
        """``rtsp://host:port/path``, with ``user:password@`` when given."""
        credentials = ""
        if user is not None:
            credentials = quote(user, safe="")
            if password is not None:
                credentials += ":" + quote(password, safe="")
            credentials += "@"
        return f"{'rtsps' if self.tls_pem else 'rtsp'}://{credentials}{self.host}:{self.port}{_normalise_path(path)}"

    # -- internals ---------------------------------------------------------

    def _config(self) -> dict[str, object]:
        return {
            **({"tls_pem": str(self.tls_pem)} if self.tls_pem is not None else {}),
            "host": self.host,
            "port": self._port,
            "publish_clock_mode": self.publish_clock_mode,
            "exit_on_stdin_eof": True,
            "mounts": {
                path: {
                    "launch": m.launch,
                    "shared": m.shared,
                    "auth": list(m.auth) if m.auth else None,
                    "protocols": list(m.protocols),
                }
                for path, m in self.mounts.items()
            },
        }

    def _wait_ready(self, stdout_path: Path) -> int:
        assert self._process is not None
        deadline = time.monotonic() + self.ready_timeout
        while True:
            for line in stdout_path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("READY "):
                    return int(line.split()[1])
            code = self._process.poll()
            if code is not None:
                what = "could not bind/listen" if code == _EXIT_LISTEN_FAILED else "exited"
                raise RtspSimulatorError(
                    f"RTSP simulator {what} (status {code}) before READY on "
                    f"{self.host}:{self._port}; stderr:\n{self.stderr_tail()}"
                )
            if time.monotonic() > deadline:
                raise RtspSimulatorError(
                    f"RTSP simulator not READY within {self.ready_timeout:.0f} s; "
                    f"stderr:\n{self.stderr_tail()}"
                )
            time.sleep(0.02)

    def stderr_tail(self, lines: int = 30) -> str:
        """The last lines the current/last server process wrote to stderr."""
        if self._stderr_path is None or not self._stderr_path.exists():
            return ""
        text = self._stderr_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _terminate(self, sig: signal.Signals, timeout: float) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdin is not None:
            process.stdin.close()
        self._process = None


def _normalise_path(path: str) -> str:
    return path if path.startswith("/") else "/" + path


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Serve a live test camera over RTSP.")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--codec", choices=sorted(_PARSE_PAY), default="h264")
    args = parser.parse_args()
    simulator = RtspSimulator({"/live": Mount.live(codec=args.codec)}, port=args.port, host=args.host)
    with simulator:
        print(f"serving {simulator.url('/live')} (Ctrl-C to stop)")
        try:
            while simulator.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
