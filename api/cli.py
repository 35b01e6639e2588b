"""The ``labwitness`` command (Typer).

Every command builds :class:`Settings` once (environment, config file, flags)
and passes it in.  Errors a person can act on are printed as one clear line
and exit with 2 (configuration) or 1 (operation failed).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from labwitness.errors import ConfigError, LabwitnessError

app = typer.Typer(help="labwitness — 检测区域录像留存与索引 / testing-area video retention and indexing",
                  no_args_is_help=True, pretty_exceptions_enable=False)
db_app = typer.Typer(help="索引数据库 / index database", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console(stderr=True)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("apscheduler", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(e: LabwitnessError) -> None:
    console.print(f"[bold red]错误 / error:[/] {e}")
    raise typer.Exit(2 if isinstance(e, ConfigError) else 1)


def _settings(**overrides):
    from api.settings import load_settings

    try:
        return load_settings(**overrides)
    except LabwitnessError as e:
        _fail(e)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


@app.command()
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
    _setup_logging(verbose)
    from api.runtime import Runtime
    from recorder.service import CameraSpec
    from recorder.worker import check_rtsp_url
    from storage.layout import check_camera_id

    settings = _settings(segment_seconds=segment_seconds)
    if (url is None) != (camera_id is None):
        _fail(ConfigError("--url 与 --camera-id 需同时给出 / --url and --camera-id go together"))
    if duration is not None and duration <= 0:
        _fail(ConfigError(f"--duration 必须大于 0 / --duration must be > 0, got {duration}"))
    try:
        if url is not None:
            check_rtsp_url(url)
            check_camera_id(camera_id)
    except (LabwitnessError, ValueError) as e:
        _fail(ConfigError(str(e)))  # bad arguments: a usage error, exit 2
    stop = _stop_on_signals()
    try:
        with Runtime(settings) as rt:
            if url is not None:
                try:
                    rt.registry.upsert_camera(rt.new_camera(camera_id, url), actor="cli:record")
                except LabwitnessError as e:
                    logging.getLogger(__name__).warning("camera not registered in the index yet: %s", e)
                cams = [CameraSpec(camera_id, url)]
            else:
                cams = [rt.camera_spec(c) for c in rt.registry.cameras(enabled_only=True)]
                if not cams:
                    _fail(ConfigError("没有已启用的摄像机 / no enabled cameras configured; use --url"))
            rt.recorder.sync(cams)
            stop.wait(duration)
            workers = rt.recorder.workers()
            drained = rt.recorder.stop(drain_timeout=upload_timeout)  # closes the open segments first
            summary = {cid: {"segments": w.status.segments, "frames": w.status.frames,
                             "last_error": w.status.last_error} for cid, w in workers.items()}
    except LabwitnessError as e:
        _fail(e)
    if json_out:
        print(json.dumps({"cameras": summary, "uploaded": drained}, ensure_ascii=False, default=str))
    else:
        for cid, s in summary.items():
            console.print(f"{cid}: {s['segments']} segments, {s['frames']} frames {s['last_error']}")
    if not drained:
        console.print("[red]部分录像仍在本地缓存中，未能上传 / some footage is still in the spool, not yet stored[/]")
        raise typer.Exit(1)
    if not any(s["segments"] for s in summary.values()):
        errs = "; ".join(s["last_error"] for s in summary.values() if s["last_error"])
        console.print(f"[red]未录到任何画面 / nothing was recorded:[/] {errs}")
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option()] = None,
    port: Annotated[Optional[int], typer.Option()] = None,
    verbose: Annotated[bool, typer.Option("-v")] = False,
) -> None:
    """API、界面、录像与任务同一进程运行（单机部署） / Run API, UI, recorders and jobs in one process."""
    _setup_logging(verbose)
    import uvicorn

    from api.app import create_app

    settings = _settings(host=host, port=port)
    try:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
    except LabwitnessError as e:
        _fail(e)


@app.command()
def demo(
    port: Annotated[int, typer.Option()] = 8000,
    cameras: Annotated[int, typer.Option(help="simulated cameras")] = 2,
    segment_seconds: Annotated[float, typer.Option()] = 10.0,
    data_dir: Annotated[Path, typer.Option(help="where the demo keeps its storage, index and spool")] = Path(".labwitness-demo"),
    duration: Annotated[Optional[float], typer.Option(help="stop after this many seconds (default: until Ctrl-C)")] = None,
    verbose: Annotated[bool, typer.Option("-v")] = False,
) -> None:
    """演示：模拟摄像机 + 内置存储 + 服务 / Demo: simulated cameras recorded into embedded storage, API up."""
    _setup_logging(verbose)
    from api.demo import run_demo

    settings = _settings(data_dir=data_dir, segment_seconds=segment_seconds, port=port)
    try:
        run_demo(settings, cameras=cameras, duration=duration, stop=_stop_on_signals(), console=console)
    except LabwitnessError as e:
        _fail(e)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """把索引数据库迁移到最新结构 / Migrate the index database to the newest schema."""
    from index.db import make_engine
    from index.migrate import current, upgrade

    settings = _settings()
    engine = make_engine(settings.db_url)
    try:
        upgrade(engine)
        console.print(f"索引已是最新 / index at revision {current(engine)} ({engine.url.render_as_string(hide_password=True)})")
    except Exception as e:
        console.print(f"[red]迁移失败 / migration failed:[/] {e}")
        raise typer.Exit(1)
    finally:
        engine.dispose()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
