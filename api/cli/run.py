"""The commands that run labwitness: ``record``, ``serve`` and ``demo``.

Each stops on SIGINT/SIGTERM and, when it ends, says what it uploaded and that
the spool is empty (or what is left, and where).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer

from api.cli.common import console, fail, runtime, settings_or_exit, setup_logging
from api.installation import announce_served_url
from labwitness.errors import ConfigError, LabwitnessError
from recorder.rtsp_url import check_rtsp_url
from storage.layout import check_camera_id


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM: the command stops cleanly (uploading what it recorded)."""
    stop = threading.Event()

    def handler(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def print_stop_report(rt) -> None:
    """The stop message: what this run uploaded, and that the spool is empty (or what is left, and where)."""
    report = getattr(getattr(rt, "recorder", None), "stop_report", None)
    if report is not None:
        console.print(report.message(), style=None if report.spool_empty else "red", markup=False,
                      soft_wrap=True)  # a path to copy, never folded


def record(
    url: Annotated[Optional[str], typer.Option(help="RTSP URL (rtsp://user:pass@host:554/path)")] = None,
    camera_id: Annotated[Optional[str], typer.Option("--camera-id", help="camera id (with --url)")] = None,
    duration: Annotated[Optional[float], typer.Option(help="seconds to record, then upload everything and exit")] = None,
    segment_seconds: Annotated[Optional[float], typer.Option(help="target segment length (LABWITNESS_SEGMENT_SECONDS)")] = None,
    upload_timeout: Annotated[float, typer.Option(help="seconds to wait for the spool to drain at exit")] = 600.0,
    json_out: Annotated[bool, typer.Option("--json", help="print a JSON summary")] = False,
    verbose: Annotated[bool, typer.Option("-v")] = False,
) -> None:
    """录制一路码流（或所有已配置摄像机） / Record one stream (or every configured camera).

    Goes through the same spool -> storage -> index path as the service and,
    with --duration, exits 0 once everything recorded is stored and locked.
    """
    setup_logging(verbose)
    from recorder.service import CameraSpec  # heavy: the recorder pulls in av; keeps --help fast

    settings = settings_or_exit(segment_seconds=segment_seconds)
    if (url is None) != (camera_id is None):
        fail(ConfigError("--url 与 --camera-id 需同时给出 / --url and --camera-id go together"))
    if duration is not None and duration <= 0:
        fail(ConfigError(f"--duration 必须大于 0 / --duration must be > 0, got {duration}"))
    if url is not None:  # a bad URL or id is a ValidationError: exit 2 before anything starts
        check_rtsp_url(url)
        check_camera_id(camera_id)
    stop = stop_on_signals()
    try:
        with runtime(settings, leases=False) as rt:  # records what it is told, not by camera leases
            if url is not None:
                try:
                    rt.registry.upsert_camera(rt.new_camera(camera_id, url), actor="cli:record")
                except LabwitnessError as e:
                    logging.getLogger(__name__).warning("camera not registered in the index yet: %s", e)
                cams = [CameraSpec(camera_id, url)]
            else:
                cams = [rt.camera_spec(c) for c in rt.registry.cameras(enabled_only=True)]
                if not cams:
                    fail(ConfigError("没有已启用的摄像机 / no enabled cameras configured; use --url"))
            rt.recorder.sync(cams)
            stop.wait(duration)
            workers = rt.recorder.workers()
            drained = rt.recorder.stop(drain_timeout=upload_timeout)  # closes the open segments first
            summary = {cid: {"segments": w.status.segments, "frames": w.status.frames,
                             "last_error": w.status.last_error} for cid, w in workers.items()}
    except LabwitnessError as e:
        fail(e)
    if json_out:
        print(json.dumps({"cameras": summary, "uploaded": drained}, ensure_ascii=False, default=str))
    else:
        for cid, s in summary.items():
            console.print(f"{cid}: {s['segments']} segments, {s['frames']} frames {s['last_error']}")
    print_stop_report(rt)
    if not drained:
        raise typer.Exit(1)
    if not any(s["segments"] for s in summary.values()):
        errs = "; ".join(s["last_error"] for s in summary.values() if s["last_error"])
        console.print(f"[red]未录到任何画面 / nothing was recorded:[/] {errs}")
        raise typer.Exit(1)


def uvicorn_options(settings) -> dict:
    """How uvicorn serves: X-Forwarded-* believed only from ``forwarded_allow_ips`` (none by default:
    uvicorn's own default trusts 127.0.0.1, i.e. any local user could forge a client address), TLS when
    a certificate is configured."""
    opts: dict = {"host": settings.host, "port": settings.port, "log_level": "info",
                  "proxy_headers": bool(settings.forwarded_allow_ips.strip()),
                  "forwarded_allow_ips": settings.forwarded_allow_ips.strip() or "",
                  "server_header": False}
    if settings.ssl_certfile is not None:
        opts.update(ssl_certfile=str(settings.ssl_certfile), ssl_keyfile=str(settings.ssl_keyfile))
    return opts


def log_to_dir(settings) -> None:
    """With ``log_dir`` set, also log to LOG_DIR/labwitness.log (reopened after logrotate moves it)."""
    if settings.log_dir is None:
        return
    from logging.handlers import WatchedFileHandler

    from labwitness.private_fs import private_dir

    h = WatchedFileHandler(private_dir(settings.log_dir) / "labwitness.log", encoding="utf-8")
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(h)


def serve(
    host: Annotated[Optional[str], typer.Option()] = None,
    port: Annotated[Optional[int], typer.Option()] = None,
    ssl_certfile: Annotated[Optional[Path], typer.Option(help="serve https: certificate chain, PEM (LABWITNESS_SSL_CERTFILE)")] = None,
    ssl_keyfile: Annotated[Optional[Path], typer.Option(help="serve https: private key, PEM (LABWITNESS_SSL_KEYFILE)")] = None,
    forwarded_allow_ips: Annotated[Optional[str], typer.Option(help="the reverse proxy's addresses whose X-Forwarded-* "
                                                                    "are believed (LABWITNESS_FORWARDED_ALLOW_IPS)")] = None,
    roles: Annotated[Optional[str], typer.Option(
        "--roles", help="comma-separated subset of api,recorder,jobs (LABWITNESS_ROLES; default all three)")] = None,
    node_id: Annotated[Optional[str], typer.Option(
        "--node-id", help="this node's name in the cluster (LABWITNESS_NODE_ID; default the host name)")] = None,
    verbose: Annotated[bool, typer.Option("-v")] = False,
) -> None:
    """运行节点：API/界面、录像、任务（默认全部） / Run a node: API and UI, recorders, jobs (default: all).

    One server runs all three roles on SQLite or PostgreSQL.  A cluster runs any
    number of nodes of each role against one PostgreSQL and one S3 store; recorder
    nodes share the cameras by leases (docs/cluster.md).  A node without the api
    role serves only /healthz and /metrics on its port.
    """
    setup_logging(verbose)
    import uvicorn  # heavy: the web server; keeps --help fast

    from api.app import create_app  # heavy: the FastAPI app (and the recorder's av); keeps --help fast

    settings = settings_or_exit(host=host, port=port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
                                forwarded_allow_ips=forwarded_allow_ips, roles=roles, node_id=node_id)
    log_to_dir(settings)
    try:
        from api.runtime import check_single_node
        check_single_node(settings)  # a second node on SQLite: exit 2 before anything starts
        service = create_app(settings)
        announce_served_url(settings)  # `labwitness export` beside it puts the same verify URL into packages
        uvicorn.run(service, **uvicorn_options(settings))
    except LabwitnessError as e:
        fail(e)
    print_stop_report(getattr(service.state, "runtime", None))


def demo(
    port: Annotated[int, typer.Option()] = 8000,
    cameras: Annotated[int, typer.Option(help="simulated cameras")] = 2,
    segment_seconds: Annotated[float, typer.Option()] = 10.0,
    first_segment_seconds: Annotated[float, typer.Option(
        help="each camera's first segment, so stored footage shows within seconds (0: as long as the others)")] = 2.0,
    data_dir: Annotated[Path, typer.Option(help="where the demo keeps its storage, index and spool")] = Path(".labwitness-demo"),
    duration: Annotated[Optional[float], typer.Option(help="stop after this many seconds (default: until Ctrl-C)")] = None,
    verbose: Annotated[bool, typer.Option("-v")] = False,
) -> None:
    """演示：模拟摄像机 + 内置存储 + 服务 / Demo: simulated cameras recorded into embedded storage, API up."""
    setup_logging(verbose)
    # the simulated cameras live on loopback: probe from there unless told otherwise
    settings = settings_or_exit(data_dir=data_dir, segment_seconds=segment_seconds, port=port,
                                first_segment_seconds=min(first_segment_seconds, segment_seconds),
                                discovery_interfaces=None if os.environ.get("LABWITNESS_DISCOVERY_INTERFACES") else "127.0.0.1")
    seaweed = None
    try:
        if not settings.s3_endpoint and settings.embedded_store == "child":
            # weed comes up (seconds) while this process imports the demo (seconds too): the runtime
            # then waits for it, and stops it (bench/demo_start.py)
            from labwitness.private_fs import private_dir
            from storage.seaweed import EmbeddedSeaweed

            private_dir(settings.data_dir)
            seaweed = EmbeddedSeaweed(settings.data_dir / "seaweedfs").launch()
        from api.demo import run_demo  # heavy: the simulators, the FastAPI app and uvicorn; keeps --help fast

        run_demo(settings, cameras=cameras, duration=duration, stop=stop_on_signals(), console=console, seaweed=seaweed)
    except LabwitnessError as e:
        fail(e)
    finally:
        if seaweed is not None:
            seaweed.stop()  # (already stopped by the runtime unless the demo ended before it started)
